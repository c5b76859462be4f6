"""What every DuckDB instance the hub opens is set to, whatever machine it runs on."""

from __future__ import annotations

import duckdb


def in_utc(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Keep the instance's time in UTC: its TIMESTAMPTZ values come back as UTC datetimes,
    as every schema of the hub declares them (``pl.Datetime("us", "UTC")``). DuckDB's
    default is the machine's zone: on a server set to Asia/Shanghai a delivery's arrival
    came back in +08:00 and the row gate refused to compare it (the main job failed every
    dataset). GLOBAL: the cursors of a held instance see it too (a plain SET is the
    session's own)."""
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    return con


def scratch() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for a few frames already in memory (a filter, a diff), in UTC,
    that never spills: what it holds may be personal values, and DuckDB's default would
    write what does not fit in the clear into ``.tmp/`` of the working directory. Past its
    memory (80 % of the machine) a query fails instead. A DuckDB reading the lake or a
    department's rows is bounded and spills encrypted
    (``lakehouse.extensions.bounded_instance``)."""
    return in_utc(duckdb.connect(config={"temp_directory": ""}))
