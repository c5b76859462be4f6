"""service_circle against the simulator's truth: merchants in business and service-circle
points per grid cell × kind × category, with registered merchants, round-the-clock places
and walk minutes, recounted from the clean rows of the records the lake staged (each point
in the truth cell its coordinates lie in)."""

from __future__ import annotations

import polars as pl
import pytest

from catalog.authority import authority
from catalog.model import Entity
from curated.houses import concept_field
from lakehouse.lake import open_lake
from tests.marts.residents_truth import true_cells
from tests.marts.truth import header, nearest_cell, staged_truth

MART = "service_circle"
CREDIT = "merchant.credit_code"
IN_BUSINESS = "存续"  # the market register's status of a merchant in business
ROUND_THE_CLOCK = "00:00-24:00"
KEY = ["grid_code", "kind", "category"]


def places(rows: pl.DataFrame, ds, kind: str, cells: pl.DataFrame) -> pl.DataFrame:
    """One row per staged place of ``ds`` with its true cell, category and point facts."""
    names = {f.name for f in ds.fields}

    def col(name: str, default=None) -> pl.Expr:
        return pl.col(header(ds, name)) if name in names else pl.lit(default)

    lon = rows[header(ds, concept_field(ds, "place.lon"))]
    lat = rows[header(ds, concept_field(ds, "place.lat"))]
    return rows.select(
        nearest_cell(lon, lat, cells).alias("grid_code"),
        pl.lit(kind).alias("kind"),
        col("category").alias("category"),
        col("status", IN_BUSINESS).alias("status"),
        pl.col("_merchant"),
        (col("open_hours") == ROUND_THE_CLOCK).fill_null(False).alias("all_day"),
        col("walk_minutes").cast(pl.Int64, strict=False).alias("walk"),
    )


@pytest.fixture(scope="module")
def truth(mart_street) -> pl.DataFrame:
    """What the mart should say, recomputed: per cell × kind × category."""
    cat = mart_street.catalogue
    register = authority(cat, CREDIT)
    assert register is not None
    points = [
        (d.code, ds)
        for d, ds in cat.datasets()
        if ds.entity is Entity.thing
        and ds.code != register.dataset.code
        and any(f.concept == CREDIT for f in ds.fields)
    ]
    assert points, "no service-circle points in the catalogue"
    with open_lake(mart_street.settings, read_only=True) as con:
        cells = true_cells(mart_street.sim_dir, con, cat)
        merchants = staged_truth(con, mart_street.sim_dir, register.dept, register.dataset)
        frames = [places(merchants, register.dataset, "merchant", cells)]
        frames += [
            places(staged_truth(con, mart_street.sim_dir, d, ds), ds, "service_point", cells)
            for d, ds in points
        ]
    registered = set(merchants["_merchant"].drop_nulls())
    found = (
        pl.concat(frames)
        .filter(pl.col("status") == IN_BUSINESS)
        .with_columns(pl.col("_merchant").is_in(list(registered)).alias("registered"))
    )
    kinds = found.select("kind", "category").unique()
    grid = cells.select(pl.col("code").alias("grid_code")).join(kinds, how="cross")
    counts = found.group_by(KEY).agg(
        pl.len().alias("places"),
        pl.col("registered").sum().alias("registered_merchants"),
        pl.col("all_day").sum().alias("round_the_clock"),
        pl.col("walk").min().alias("walk_minutes_min"),
        pl.col("walk").mean().alias("walk_minutes_avg"),
        (pl.col("walk") <= 15).sum().alias("within_15_minutes"),
    )
    filled = ["places", "registered_merchants", "round_the_clock", "within_15_minutes"]
    return grid.join(counts, on=KEY, how="left").with_columns(pl.col(filled).fill_null(0))


def test_every_cell_kind_and_category_is_the_truth_recounted(mart_street, truth):
    mart = mart_street.table(MART)
    assert mart.select(KEY).is_unique().all()
    got = mart.join(truth, on=KEY, how="full", suffix="_truth", coalesce=True)
    assert got.height == mart.height == truth.height, (mart.height, truth.height)
    for column in ["places", "registered_merchants", "round_the_clock", "within_15_minutes",
                   "walk_minutes_min"]:  # fmt: skip
        wrong = got.filter(~pl.col(column).eq_missing(pl.col(f"{column}_truth")))
        assert wrong.height == 0, (column, wrong.select(KEY, column, f"{column}_truth"))
    gap = (got["walk_minutes_avg"] - got["walk_minutes_avg_truth"]).abs().drop_nulls()
    assert gap.len() > 0 and gap.max() <= 0.05 + 1e-9
    assert mart["places"].sum() == truth["places"].sum() > 0


def test_gaps_are_listed_and_both_kinds_are_there(mart_street):
    mart = mart_street.table(MART)
    assert set(mart["kind"]) == {"merchant", "service_point"}
    per_cell = mart.group_by("grid_code", "kind").len()
    # every cell lists every category of its kind, so a missing category shows as 0
    assert per_cell.group_by("kind").agg(pl.col("len").n_unique())["len"].to_list() == [1, 1]
    assert (mart["places"] == 0).any() and (mart["places"] > 0).any()
    assert (mart["community_code"].str.len_chars() == 12).all()
