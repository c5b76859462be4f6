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
from curated.houses import staged_name
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


Group = tuple[str, str]  # (concept, dept): one row of the table


def _text(value: str) -> str:
    """A SQL string literal (catalogue codes and concept names)."""
    return "'" + value.replace("'", "''") + "'"


def _entries_sql(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, groups: set[Group] | None = None
) -> str | None:
    """SQL: every collected value of a golden concept — concept, dept, dataset, authority,
    person_id (null when unlinked) and whether it was readable (only those of ``groups``
    when given) — the index joined to the golden records once (whether each golden value
    is there), each dataset's staged rows joined to it once (materialised CTEs), a SELECT
    per field; None when no dataset holds one."""
    attrs = golden_attributes(catalogue)
    has_value = ", ".join(f'p."{a.column}" IS NOT NULL AS "g_{a.column}"' for a in attrs)
    ctes = [
        f'"_index" AS MATERIALIZED (SELECT m.dept, m.dataset, m.key_pid, m.{PERSON_ID}, '
        f"{has_value} FROM {ZONE}.{MENTIONS} m LEFT JOIN {ZONE}.{PERSON} p USING ({PERSON_ID}))"
    ]
    selects = []
    for dept, ds in catalogue.datasets():
        held = [(a, n) for a in attrs for n in fields_of_concept(ds, a.concept)]
        if groups is not None:
            held = [(a, n) for a, n in held if (a.concept, dept.code) in groups]
        if not held or not has_table(con, "staged", staged_name(dept.code, ds)):
            continue
        cte = f'"_d{len(ctes)}"'
        filled = [f's."{n}" IS NOT NULL AS "f{i}"' for i, (_, n) in enumerate(held)]
        golden = [f'coalesce(m."g_{a.column}", FALSE) AS "g{i}"' for i, (a, _) in enumerate(held)]
        ctes.append(
            f"{cte} AS MATERIALIZED (SELECT m.{PERSON_ID}, {', '.join(filled + golden)} "
            f'FROM {staged_table(dept.code, ds)} s LEFT JOIN "_index" m '
            f"ON m.key_pid = s.{KEY_PID} AND m.dept = {_text(dept.code)} "
            f"AND m.dataset = {_text(ds.code)})"
        )
        for i, (a, _) in enumerate(held):
            # the authority's own department collects by right: never readable
            readable = "FALSE" if dept.code == a.authority.dept else f'"g{i}"'
            selects.append(
                f"SELECT {_text(a.concept)} AS concept, {_text(dept.code)} AS dept, "
                f"{_text(ds.code)} AS dataset, {_text(a.authority.dept)} AS authority_dept, "
                f"{_text(a.authority.dataset.code)} AS authority_dataset, {PERSON_ID}, "
                f"{readable} AS readable "
                f'FROM {cte} WHERE "f{i}"'
            )
    if not selects:
        return None
    return f"WITH {', '.join(ctes)} {' UNION ALL '.join(selects)}"


def recollection_frame(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, groups: set[Group] | None = None
) -> pl.DataFrame:
    """The rows of ``curated.recollection`` (per concept × department; only ``groups``
    when given), counted in one query (only the counts leave DuckDB)."""
    entries = _entries_sql(con, catalogue, groups)
    if entries is None:
        return pl.DataFrame(schema={c: _POLARS[t] for c, t in COLUMNS})
    counted = con.execute(
        "SELECT concept, dept, authority_dept, authority_dataset, "
        "count(DISTINCT dataset) AS datasets, count(*) AS rows_collected, "
        f"count(DISTINCT {PERSON_ID}) AS persons_collected, "
        "count(*) FILTER (WHERE readable) AS rows_readable, "
        f"count(DISTINCT {PERSON_ID}) FILTER (WHERE readable) AS persons_readable "
        f"FROM ({entries}) GROUP BY concept, dept, authority_dept, authority_dataset"
    ).pl()
    return (
        counted.with_columns((pl.col("dept") == pl.col("authority_dept")).alias("is_authority"))
        .select([c for c, _ in COLUMNS])
        .cast({c: pl.Int64 for c, t in COLUMNS if t == "BIGINT"})
        .sort(["concept", "dept"])
    )


_POLARS = {"VARCHAR": pl.String, "BOOLEAN": pl.Boolean, "BIGINT": pl.Int64}


def build_recollection(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, groups: set[Group] | None = None
) -> int:
    """Recount ``curated.recollection`` (after the golden records): whole, or only the
    rows of ``groups`` (:func:`changed_groups`; the others cannot have changed); the rows
    recounted."""
    if groups is not None and not has_table(con, ZONE, RECOLLECTION):
        groups = None
    frame = recollection_frame(con, catalogue, groups)
    with transaction(con):
        ensure_table(con, ZONE, RECOLLECTION, COLUMNS)
        if groups is None:
            con.execute(f"DELETE FROM {ZONE}.{RECOLLECTION}")
        else:
            for concept, dept in sorted(groups):
                con.execute(
                    f"DELETE FROM {ZONE}.{RECOLLECTION} WHERE concept = ? AND dept = ?",
                    [concept, dept],
                )
        insert_frame(con, ZONE, RECOLLECTION, frame)
    return frame.height


def changed_groups(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    datasets: set[tuple[str, str]],
    persons: set[str],
    before: int,
) -> set[Group] | None:
    """The (concept, dept) rows a build can have changed: those of a concept a changed
    dataset (staged rows or index mentions: ``datasets``) holds, in its department; and,
    for a concept whose golden value appeared or vanished for one of the rebuilt
    ``persons`` (``curated.person`` at snapshot ``before`` against now), every department
    collecting it. None when the lake cannot say (recount all)."""
    attrs = golden_attributes(catalogue)
    holding = {
        (a.concept, dept.code, ds.code)
        for dept, ds in catalogue.datasets()
        for a in attrs
        if fields_of_concept(ds, a.concept)
    }
    out = {(c, d) for c, d, s in holding if (d, s) in datasets}
    if not persons:
        return out
    scope = pl.DataFrame({PERSON_ID: sorted(persons)}, schema={PERSON_ID: pl.String})
    flips = ", ".join(
        f'bool_or((o."{a.column}" IS NULL) <> (n."{a.column}" IS NULL)) AS "{i}"'
        for i, a in enumerate(attrs)
    )
    con.register("_recollection_scope", scope.to_arrow())
    try:
        row = con.execute(
            f"SELECT {flips} FROM _recollection_scope s "
            f"LEFT JOIN (SELECT * FROM {ZONE}.{PERSON} AT (VERSION => {int(before)})) o "
            f"USING ({PERSON_ID}) "
            f"LEFT JOIN {ZONE}.{PERSON} n USING ({PERSON_ID})"
        ).fetchone()
    except duckdb.Error:  # no person table at that snapshot
        return None
    finally:
        con.unregister("_recollection_scope")
    flipped = {a.concept for a, f in zip(attrs, row or (), strict=False) if f}
    return out | {(c, d) for c, d, _ in holding if c in flipped}


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
    "changed_groups",
    "duplicate_entry_avoidable",
    "recollection_by_concept",
    "recollection_by_department",
    "recollection_frame",
]
