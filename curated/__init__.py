"""streethub curated zone: one person, one house, one event across departments.

Plain functions over the lake (DuckDB) and polars frames, no Dagster: the master resident
index (persons linked across departments, exact on the person-key pseudonym, Splink for
records without a usable ID), golden records with history, households, houses, events and
things, keyed by pseudonyms. May import catalog, lakehouse, masking and quality.
"""
