"""Benchmarks (not tests): ``python -m bench`` runs them all, ``python -m bench gate`` one."""
