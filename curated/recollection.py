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


def _entries(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, groups: set[Group] | None = None
) -> pl.DataFrame:
    """Every collected value of a golden concept, one query a dataset: concept, dept,
    authority, person_id (null when unlinked) and whether it was readable (only those of
    ``groups`` when given)."""
    attrs = golden_attributes(catalogue)
    frames = []
    for dept, ds in catalogue.datasets():
        held = [(a, n) for a in attrs for n in fields_of_concept(ds, a.concept)]
        if groups is not None:
            held = [(a, n) for a, n in held if (a.concept, dept.code) in groups]
        if not held or not has_table(con, "staged", staged_name(dept.code, ds)):
            continue
        filled = [f's."{n}" IS NOT NULL AS "f{i}"' for i, (_, n) in enumerate(held)]
        golden = [f'p."{a.column}" IS NOT NULL AS "g{i}"' for i, (a, _) in enumerate(held)]
        rows = con.execute(
            f"SELECT m.{PERSON_ID}, {', '.join(filled + golden)} "
            f"FROM {staged_table(dept.code, ds)} s LEFT JOIN {ZONE}.{MENTIONS} m "
            f"ON m.key_pid = s.{KEY_PID} AND m.dept = ? AND m.dataset = ? "
            f"LEFT JOIN {ZONE}.{PERSON} p USING ({PERSON_ID})",
            [dept.code, ds.code],
        ).pl()
        for i, (a, _) in enumerate(held):
            own = dept.code == a.authority.dept
            frames.append(
                rows.filter(pl.col(f"f{i}")).select(
                    pl.lit(a.concept).alias("concept"),
                    pl.lit(dept.code).alias("dept"),
                    pl.lit(ds.code).alias("dataset"),
                    pl.lit(a.authority.dept).alias("authority_dept"),
                    pl.lit(a.authority.dataset.code).alias("authority_dataset"),
                    PERSON_ID,
                    (pl.lit(not own) & pl.col(f"g{i}").fill_null(False)).alias("readable"),
                )
            )
    return pl.concat(frames) if frames else pl.DataFrame()


def recollection_frame(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, groups: set[Group] | None = None
) -> pl.DataFrame:
    """The rows of ``curated.recollection`` (per concept × department; only ``groups``
    when given)."""
    entries = _entries(con, catalogue, groups)
    if entries.height == 0:
        return pl.DataFrame(schema={c: _POLARS[t] for c, t in COLUMNS})
    readable = pl.col("readable")
    return (
        entries.group_by(["concept", "dept", "authority_dept", "authority_dataset"])
        .agg(
            pl.col("dataset").n_unique().alias("datasets"),
            pl.len().alias("rows_collected"),
            pl.col(PERSON_ID).drop_nulls().n_unique().alias("persons_collected"),
            readable.sum().alias("rows_readable"),
            pl.col(PERSON_ID).filter(readable).drop_nulls().n_unique().alias("persons_readable"),
        )
        .with_columns((pl.col("dept") == pl.col("authority_dept")).alias("is_authority"))
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
