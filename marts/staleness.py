"""Which marts are out of date (过期): a mart is stale when a lake table its SQL reads
changed after the mart was last written, or when it is not in the lake.

"Changed" is read from DuckLake's own metadata: the newest snapshot that created the table
(``CREATE OR REPLACE`` makes a new table), added or removed data files, added delete files
or changed its columns. A mart that reads a stale mart is stale too (it is rebuilt after
it). Nothing here reads a row of data.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from catalog.marts import Mart
from lakehouse.lake import METADATA
from marts.lineage import MARTS, mart_dependencies


def last_changed(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``zone.table`` → the snapshot id of its newest change, for every live table."""
    rows = con.execute(
        f"""
        SELECT s.schema_name || '.' || t.table_name,
               greatest(
                   t.begin_snapshot,
                   coalesce((SELECT max(greatest(f.begin_snapshot, coalesce(f.end_snapshot, 0)))
                             FROM {METADATA}.ducklake_data_file f
                             WHERE f.table_id = t.table_id), 0),
                   coalesce((SELECT max(d.begin_snapshot) FROM {METADATA}.ducklake_delete_file d
                             WHERE d.table_id = t.table_id), 0),
                   coalesce((SELECT max(greatest(c.begin_snapshot, coalesce(c.end_snapshot, 0)))
                             FROM {METADATA}.ducklake_column c
                             WHERE c.table_id = t.table_id), 0)
               )
        FROM {METADATA}.ducklake_table t
        JOIN {METADATA}.ducklake_schema s USING (schema_id)
        WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL
        """
    ).fetchall()
    return dict(rows)


def stale_marts(
    con: duckdb.DuckDBPyConnection, marts: Mapping[str, Mart], also: set[str] = frozenset()
) -> set[str]:
    """The marts to build again (see the module doc); ``also``: marts stale for a reason
    of the caller's (their SQL or catalogue entry changed), with what reads them."""
    changed = last_changed(con)
    deps = {name: mart_dependencies(dict(marts), name) for name in marts}
    stale = set(also) & set(marts) | {
        name
        for name in marts
        if f"{MARTS}.{name}" not in changed
        or any(changed.get(t, 0) > changed[f"{MARTS}.{name}"] for t in deps[name])
    }
    while True:  # a mart reading a stale mart is stale too
        more = {
            n
            for n in marts
            if n not in stale and any(t.split(".", 1)[1] in stale for t in deps[n]
                                      if t.startswith(f"{MARTS}."))
        }  # fmt: skip
        if not more:
            return stale
        stale |= more
