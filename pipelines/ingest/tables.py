"""The raw and staged tables of a run's datasets, created together before its first step.

A DuckLake commit that creates a table costs about 45 ms of CPU, and the next statement
another 25-30 ms (DuckLake reloads its catalogue after a schema change); ten tables in one
commit cost about what one does. A first run creates two tables a dataset (raw and staged,
~62 on the simulated street), each in its first delivery's own commit before this module:
about 4 CPU s of a 1,000-resident first run. So the run's first dataset step creates, in
one lake transaction, the tables every dataset the run ingests still lacks
(:func:`ensure_dataset_tables`), with the same columns, in the same order, as the
delivery's own transaction makes them (:func:`pipelines.ingest.raw.ensure_raw_table`,
:func:`pipelines.ingest.staged.add_pid_columns`); that transaction still ensures them (a
catalogue that gained a field, a table made outside a run).

What this leaves behind: a dataset the run selected (a file in its inbox, a pull due)
that then lands or loads nothing — an empty pull, a refused file, a delivery that failed
as a whole — has an empty raw and staged table, where it had none before (the old rule:
a table from its first loaded delivery on). Its ledger is what it was: the deliveries,
accounts and quarantine say what happened. Readers that list the staged zone see the
dataset with no rows (the scorecard scores it as such; a dataset with an account was
scored before too). A dataset the run did not select gets no table.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from catalog.model import Dataset
from lakehouse.lake import tables_in, transaction
from pipelines.ingest.raw import ensure_raw_table, raw_table
from pipelines.ingest.staged import add_pid_columns


def missing_tables(
    con: duckdb.DuckDBPyConnection, datasets: Iterable[tuple[str, Dataset]]
) -> list[tuple[str, str, Dataset]]:
    """(zone, dept, dataset) of the raw and staged tables the datasets lack (one read of
    DuckLake's catalogue)."""
    have = tables_in(con)
    return [
        (zone, dept, ds)
        for dept, ds in datasets
        for zone in ("raw", "staged")
        if (zone, raw_table(dept, ds)) not in have
    ]


def ensure_dataset_tables(
    con: duckdb.DuckDBPyConnection, datasets: Iterable[tuple[str, Dataset]]
) -> int:
    """Create the raw and staged tables that ``datasets`` ((dept code, dataset)) lack, all
    in one lake transaction (one snapshot; none when nothing is missing). Outside a
    transaction, by a writer. Returns the tables created."""
    missing = missing_tables(con, datasets)
    if not missing:
        return 0
    with transaction(con):
        for zone, dept, ds in missing:
            if zone == "raw":
                ensure_raw_table(con, dept, ds)
            else:
                add_pid_columns(con, raw_table(dept, ds), ds)
    return len(missing)
