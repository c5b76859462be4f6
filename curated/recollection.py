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
    PERSON,
    PERSON_ID,
    ZONE,
    golden_attributes,
    mentions_to_read,
    staged_table,
)
from curated.houses import staged_name
from lakehouse.lake import ensure_table, has_table, insert_frame, registered, tables_in, transaction
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


COUNTS = "_recollection_counts"  # temporary: values collected per field and person
MENTIONS_READ = "_recollection_mentions"  # temporary: the index's mentions, when few
PART = ("concept", "dept", "dataset", "authority_dept", "authority_dataset")


def _entries(
    catalogue: Catalogue, groups: set[Group] | None, staged: set[str], mentions: str
) -> tuple[list[tuple[str, list]], pl.DataFrame]:
    """(statements, parts): per staged dataset holding a golden concept's field, one query
    reading its rows once — (part, person_id — null when unlinked —, ``n`` values filled,
    ``nr`` of them readable) for each of its fields, a *part* (only those of ``groups``
    when given) —, and each part's concept, dept, dataset and authority. ``staged``: the
    staged tables that exist; ``mentions``: the relation of the index's mentions."""
    attrs = golden_attributes(catalogue)
    statements, parts = [], []
    for dept, ds in catalogue.datasets():
        held = [(a, n) for a in attrs for n in fields_of_concept(ds, a.concept)]
        if groups is not None:
            held = [(a, n) for a, n in held if (a.concept, dept.code) in groups]
        if not held or staged_name(dept.code, ds) not in staged:
            continue
        filled = [f's."{n}" IS NOT NULL AS "f{i}"' for i, (_, n) in enumerate(held)]
        golden = [f'"{a.column}" IS NOT NULL AS "g{i}"' for i, (a, _) in enumerate(held)]
        counts = [
            f'count(*) FILTER (WHERE "f{i}") AS n{i}, '
            f'count(*) FILTER (WHERE "f{i}" AND "g{i}") AS r{i}'
            for i in range(len(held))
        ]
        has = ", ".join(f"p.g{i}" for i in range(len(held)))
        picks = []
        for i, (a, _) in enumerate(held):
            # the authority's own department collects by right: never readable
            readable = "0" if dept.code == a.authority.dept else f"r{i}"
            picks.append(
                f"SELECT {len(parts)} AS part, {PERSON_ID}, n{i} AS n, {readable} AS nr "
                f"FROM c WHERE n{i} > 0"
            )
            parts.append(
                (a.concept, dept.code, ds.code, a.authority.dept, a.authority.dataset.code)
            )
        statements.append(
            (
                f"WITH c AS (SELECT {PERSON_ID}, {', '.join(counts)} FROM (SELECT "
                f"m.{PERSON_ID}, {', '.join(filled)}, {has} "
                f"FROM {staged_table(dept.code, ds)} s LEFT JOIN (SELECT key_pid, {PERSON_ID} "
                f"FROM {mentions} WHERE dept = ? AND dataset = ?) m "
                f"ON m.key_pid = s.{KEY_PID} "
                # whether each person has a golden value, not the (encrypted) values joined
                f"LEFT JOIN (SELECT {PERSON_ID}, {', '.join(golden)} FROM {ZONE}.{PERSON}) p "
                f"USING ({PERSON_ID})) GROUP BY {PERSON_ID}) " + " UNION ALL ".join(picks),
                [dept.code, ds.code],
            )
        )
    frame = pl.DataFrame(parts, schema=dict.fromkeys(PART, pl.String), orient="row")
    return statements, frame.with_row_index("part").cast({"part": pl.Int32})


def recollection_frame(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, groups: set[Group] | None = None
) -> pl.DataFrame:
    """The rows of ``curated.recollection`` (per concept × department; only ``groups``
    when given), counted in DuckDB a dataset at a time (a frame of every collected value
    was 1.4 GB at 200,000 residents; one query of every dataset held all their joins at
    once and ran out of DuckDB's memory). Not inside a transaction (its temporary table)."""
    staged = {t for _, t in tables_in(con, "staged")}
    with mentions_to_read(con, MENTIONS_READ) as mentions:
        statements, parts = _entries(catalogue, groups, staged, mentions)
        if not statements:
            return pl.DataFrame(schema={c: _POLARS[t] for c, t in COLUMNS})
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {COUNTS} "
            f"(part INTEGER, {PERSON_ID} VARCHAR, n BIGINT, nr BIGINT)"
        )
        try:
            for sql, params in statements:
                con.execute(f"INSERT INTO {COUNTS} {sql}", params)
            frame = _grouped(con, parts)
        finally:
            con.execute(f"DROP TABLE IF EXISTS temp.main.{COUNTS}")
    return frame.select([c for c, _ in COLUMNS]).cast({c: _POLARS[t] for c, t in COLUMNS})


_GROUP = ["concept", "dept", "authority_dept", "authority_dataset"]  # a row of the table


GROUP_ROWS = 400_000  # rows of the counts grouped at once (whole rows of the table)


def _grouped(con: duckdb.DuckDBPyConnection, parts: pl.DataFrame) -> pl.DataFrame:
    """The table's rows from the counts of :data:`COUNTS` per ``parts`` row.

    No count(DISTINCT): DuckDB cannot spill its per-group sets; a group's values per
    person and per dataset instead, as grouping sets — keyed by a group number and a
    dataset number (each row of the table, each dataset, named afterwards), for the rows
    of the table whose counts number about :data:`GROUP_ROWS` at a time: the per-person
    hash table of every row at once (2.4 million counts) was the build's peak at 200,000
    residents (+300 MB with numbers for keys, +400 MB with the four names)."""
    groups = parts.select(_GROUP).unique(maintain_order=True).with_row_index("grp")
    datasets = parts.select("dept", "dataset").unique(maintain_order=True).with_row_index("ds")
    ids = (
        parts.join(groups, on=_GROUP)
        .join(datasets, on=["dept", "dataset"])
        .select("part", "grp", "ds")
    )
    sizes = pl.DataFrame(
        con.execute(f"SELECT part, count(*) FROM {COUNTS} GROUP BY part").fetchall(),
        schema={"part": pl.Int32, "rows": pl.Int64},
        orient="row",
    )
    per_group = ids.join(sizes, on="part").group_by("grp").agg(pl.col("rows").sum()).sort("grp")
    cut = (per_group["rows"].cum_sum() - per_group["rows"]) // GROUP_ROWS
    batches = per_group.select("grp", cut.alias("_batch")).partition_by(
        "_batch", include_key=False
    ) or [per_group.select("grp")]  # no counts: one empty batch
    found = []
    for batch in batches:
        _streethub_ids = ids.join(batch, on="grp", how="semi")
        found.append(
            con.execute(
                "SELECT grp, count(*) FILTER (WHERE per_dataset) AS datasets, "
                "CAST(sum(n) FILTER (WHERE per_dataset) AS BIGINT) AS rows_collected, "
                f"count({PERSON_ID}) FILTER (WHERE NOT per_dataset) AS persons_collected, "
                "CAST(sum(nr) FILTER (WHERE per_dataset) AS BIGINT) AS rows_readable, "
                f"count({PERSON_ID}) FILTER (WHERE NOT per_dataset AND nr > 0) "
                f"AS persons_readable FROM (SELECT grp, {PERSON_ID}, sum(n) AS n, "
                f"sum(nr) AS nr, GROUPING({PERSON_ID}) = 1 AS per_dataset "
                f"FROM {COUNTS} JOIN _streethub_ids USING (part) "
                f"GROUP BY GROUPING SETS ((grp, {PERSON_ID}), (grp, ds))) GROUP BY grp"
            )
            .pl()
            .cast({"grp": pl.UInt32})
        )
    return (
        groups.join(pl.concat(found), on="grp")
        .with_columns(is_authority=pl.col("dept") == pl.col("authority_dept"))
        .sort("concept", "dept")
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
    try:
        with registered(con, "_recollection_scope", scope.to_arrow()):
            row = con.execute(
                f"SELECT {flips} FROM _recollection_scope s "
                f"LEFT JOIN (SELECT * FROM {ZONE}.{PERSON} AT (VERSION => {int(before)})) o "
                f"USING ({PERSON_ID}) "
                f"LEFT JOIN {ZONE}.{PERSON} n USING ({PERSON_ID})"
            ).fetchone()
    except duckdb.Error:  # no person table at that snapshot
        return None
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
