"""Re-collection (重复采集): what departments type in again that they could read instead.

一次采集、多方复用 — collect once, reuse many times. For every golden attribute concept
(``curated.golden``) and every department holding a field of it, ``curated.recollection``
counts the values it collects itself (staged records with the field filled: ``rows``,
and the distinct persons they are about) and how many of them it could have read from
the authoritative source instead: the record's person (``curated.person_mentions``) has
a golden value for the concept (``curated.person``). The authority's own department
collects by right (``is_authority``, never counted as readable).

:func:`recollection_by_department` sums it per department — the figure behind "duplicate
entry −92 %": ``readable_share`` is the share of a department's entries it need not
type; :func:`recollection_by_concept` says per concept how many departments collect it
and how many could read it. Counts only: no value is read or decrypted (a sensitive
field's ciphertext is null exactly where its value is).
"""

from __future__ import annotations

import duckdb
import polars as pl

from catalog.authority import fields_of_concept
from catalog.model import Catalogue
from curated.golden import (
    MENTIONS,
    PERSON,
    PERSON_ID,
    ZONE,
    golden_attributes,
    staged_table,
)
from lakehouse.lake import ensure_table, has_table, insert_frame, transaction
from quality.keys import KEY_PID

RECOLLECTION = "recollection"
COLUMNS = [
    ("concept", "VARCHAR"),
    ("dept", "VARCHAR"),
    ("authority_dept", "VARCHAR"),
    ("authority_dataset", "VARCHAR"),
    ("is_authority", "BOOLEAN"),
    ("datasets", "BIGINT"),
    ("rows_collected", "BIGINT"),
    ("persons_collected", "BIGINT"),
    ("rows_readable", "BIGINT"),
    ("persons_readable", "BIGINT"),
]


_ENTRIES = "_recollection_entries"  # a temporary table of the connection


def _entry_queries(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue
) -> list[tuple[str, list[str]]]:
    """One query per dataset and field of a golden concept, with its parameters: every
    collected value: concept, dept, dataset, authority, person_id (null when unlinked) and
    whether it was readable."""
    attrs = golden_attributes(catalogue)
    out = []
    for dept, ds in catalogue.datasets():
        held = [(a, n) for a in attrs for n in fields_of_concept(ds, a.concept)]
        if not held or not has_table(con, "staged", f"{dept.code}__{ds.code}"):
            continue
        for a, n in held:
            own = dept.code == a.authority.dept
            readable = "false" if own else f'p."{a.column}" IS NOT NULL'
            sql = (
                "SELECT ?, ?, ?, ?, ?, "
                f"m.{PERSON_ID}, {readable} FROM {staged_table(dept.code, ds)} s "
                f"LEFT JOIN {ZONE}.{MENTIONS} m "
                f"ON m.key_pid = s.{KEY_PID} AND m.dept = ? AND m.dataset = ? "
                f"LEFT JOIN {ZONE}.{PERSON} p USING ({PERSON_ID}) "
                f'WHERE s."{n}" IS NOT NULL'
            )
            params = [a.concept, dept.code, ds.code, a.authority.dept,
                      a.authority.dataset.code, dept.code, ds.code]  # fmt: skip
            out.append((sql, params))
    return out


def recollection_frame(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> pl.DataFrame:
    """The rows of ``curated.recollection`` (per concept × department), counted in DuckDB
    (a temporary table of the entries, one insert a dataset and field): no row of the
    entries leaves the lake's connection."""
    queries = _entry_queries(con, catalogue)
    if not queries:
        return pl.DataFrame(schema={c: _POLARS[t] for c, t in COLUMNS})
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_ENTRIES} (concept VARCHAR, dept VARCHAR, "
        "dataset VARCHAR, authority_dept VARCHAR, authority_dataset VARCHAR, "
        f"{PERSON_ID} VARCHAR, readable BOOLEAN)"
    )
    try:
        for sql, params in queries:
            con.execute(f"INSERT INTO temp.{_ENTRIES} {sql}", params)
        frame = con.execute(
            "SELECT concept, dept, authority_dept, authority_dataset, "
            "dept = authority_dept AS is_authority, count(DISTINCT dataset) AS datasets, "
            f"count(*) AS rows_collected, count(DISTINCT {PERSON_ID}) AS persons_collected, "
            "count(*) FILTER (WHERE readable) AS rows_readable, "
            f"count(DISTINCT {PERSON_ID}) FILTER (WHERE readable) AS persons_readable "
            f"FROM temp.{_ENTRIES} GROUP BY ALL ORDER BY concept, dept"
        ).pl()
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.{_ENTRIES}")
    return frame.select([c for c, _ in COLUMNS]).cast({c: _POLARS[t] for c, t in COLUMNS})


_POLARS = {"VARCHAR": pl.String, "BOOLEAN": pl.Boolean, "BIGINT": pl.Int64}


def build_recollection(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> int:
    """Recount ``curated.recollection`` (after the golden records); its row count."""
    frame = recollection_frame(con, catalogue)
    with transaction(con):
        ensure_table(con, ZONE, RECOLLECTION, COLUMNS)
        con.execute(f"DELETE FROM {ZONE}.{RECOLLECTION}")
        insert_frame(con, ZONE, RECOLLECTION, frame)
    return frame.height


def _share(readable: str, collected: str) -> pl.Expr:
    return pl.when(pl.col(collected) > 0).then(pl.col(readable) / pl.col(collected)).otherwise(None)


def _others(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The rows of departments collecting a concept another department is authority for."""
    return con.execute(f"SELECT * FROM {ZONE}.{RECOLLECTION} WHERE NOT is_authority").pl()


def recollection_by_department(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per department, what it collects of concepts another department is the authority
    for: concepts, entries (values typed in) and how many it could have read instead
    (``readable_share``: the duplicate entry it could drop). Sorted by department."""
    return (
        _others(con)
        .filter(pl.col("rows_collected") > 0)
        .group_by("dept")
        .agg(
            pl.col("concept").n_unique().alias("concepts"),
            pl.col("rows_collected").sum(),
            pl.col("rows_readable").sum(),
            pl.col("persons_collected").sum().alias("person_values_collected"),
            pl.col("persons_readable").sum().alias("person_values_readable"),
        )
        .with_columns(_share("rows_readable", "rows_collected").alias("readable_share"))
        .sort("dept")
    )


def recollection_by_concept(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per concept: its authority, how many other departments collect it themselves and
    how many of them could read (some of) it from the authority, with the entries."""
    return (
        _others(con)
        .group_by("concept")
        .agg(
            pl.col("authority_dept").first(),
            (pl.col("rows_collected") > 0).sum().alias("departments_collecting"),
            (pl.col("rows_readable") > 0).sum().alias("departments_could_read"),
            pl.col("rows_collected").sum(),
            pl.col("rows_readable").sum(),
        )
        .with_columns(_share("rows_readable", "rows_collected").alias("readable_share"))
        .sort("concept")
    )


def duplicate_entry_avoidable(con: duckdb.DuckDBPyConnection) -> float | None:
    """The street's share of re-collected entries that could be read from the authority
    (the "duplicate entry −92 %" figure); None when nothing is re-collected."""
    others = _others(con)
    collected = int(others["rows_collected"].sum())
    return None if not collected else int(others["rows_readable"].sum()) / collected


__all__ = [
    "RECOLLECTION",
    "build_recollection",
    "duplicate_entry_avoidable",
    "recollection_by_concept",
    "recollection_by_department",
    "recollection_frame",
]
