"""streethub pipelines."""

from pipelines.allocators import tune_libraries

tune_libraries()  # before polars or DuckDB is imported by any module of the hub
