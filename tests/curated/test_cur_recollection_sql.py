"""The re-collection counts, made in one query (DuckDB counts, only the counts leave it),
equal the counts of every collected value read out a dataset at a time and counted in
polars (the way they were made before): whole and for some (concept, dept) groups."""

from __future__ import annotations

import duckdb
import polars as pl

from catalog.authority import fields_of_concept
from catalog.model import Catalogue
from curated.golden import MENTIONS, PERSON, PERSON_ID, ZONE, golden_attributes, staged_table
from curated.houses import staged_name
from curated.recollection import COLUMNS, recollection_frame
from lakehouse.lake import has_table, open_lake
from quality.keys import KEY_PID
from tests.mart_street import MartStreet


def counted_in_polars(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, groups: set | None
) -> pl.DataFrame:
    frames = []
    for dept, ds in catalogue.datasets():
        held = [
            (a, n) for a in golden_attributes(catalogue) for n in fields_of_concept(ds, a.concept)
        ]
        held = [(a, n) for a, n in held if groups is None or (a.concept, dept.code) in groups]
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
            frames.append(
                rows.filter(pl.col(f"f{i}")).select(
                    pl.lit(a.concept).alias("concept"),
                    pl.lit(dept.code).alias("dept"),
                    pl.lit(ds.code).alias("dataset"),
                    pl.lit(a.authority.dept).alias("authority_dept"),
                    pl.lit(a.authority.dataset.code).alias("authority_dataset"),
                    PERSON_ID,
                    (pl.lit(dept.code != a.authority.dept) & pl.col(f"g{i}").fill_null(False))
                    .alias("readable"),
                )
            )  # fmt: skip
    readable = pl.col("readable")
    return (
        pl.concat(frames)
        .group_by(["concept", "dept", "authority_dept", "authority_dataset"])
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


def test_the_counts_of_one_query_equal_the_counts_in_polars(mart_street: MartStreet):
    cat = mart_street.catalogue
    with open_lake(mart_street.settings, read_only=True) as con:
        whole = recollection_frame(con, cat)
        assert whole.height > 5 and whole["rows_readable"].sum() > 0
        assert whole.equals(counted_in_polars(con, cat, None))
        some = {(c, d) for c, d in whole.select("concept", "dept").rows()[::3]}
        part = recollection_frame(con, cat, some)
        assert set(part.select("concept", "dept").rows()) == some
        assert part.equals(counted_in_polars(con, cat, some))
        assert recollection_frame(con, cat, set()).height == 0
