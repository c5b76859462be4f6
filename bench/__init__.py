"""Benchmarks (not tests): ``python -m bench`` runs them all, ``python -m bench gate`` one."""

import pipelines  # noqa: F401  (first, as every process of the hub: its libraries' settings)
