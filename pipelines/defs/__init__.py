"""Dagster definitions, one folder per zone or domain, loaded by ``pipelines/definitions.py``."""
