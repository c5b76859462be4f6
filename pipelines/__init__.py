"""streethub pipelines."""

from pipelines.allocators import tune_allocators

tune_allocators()  # before polars or DuckDB is imported by any module of the hub
