"""Whereabouts summarised per person and day in DuckDB (``curated.events.per_person_day``)
equal the polars group-by they replace, ties and nulls included: each summarised column
takes the smallest of its most frequent non-null values."""

from __future__ import annotations

import datetime as dt
import random
from types import SimpleNamespace

import duckdb
import polars as pl
import pytest

from curated.events import SUMMARISED, per_person_day


def reference(events: pl.DataFrame) -> pl.DataFrame:
    """The polars path as it was: ``drop_nulls().mode().sort().first()`` per group."""

    def mode(col: str) -> pl.Expr:
        return pl.col(col).drop_nulls().mode().sort().first()

    return (
        events.with_columns(
            pl.when(pl.col("person_id").is_null()).then(pl.col("grid_code")).alias("_cell")
        )
        .group_by("person_id", "day", "_cell")
        .agg(pl.len().cast(pl.Int64).alias("occurrences"), *(mode(c).alias(c) for c in SUMMARISED))
        .sort("day", "person_id", "_cell", nulls_last=True)
    )


def generated(seed: int, n: int = 4_000) -> pl.DataFrame:
    """Few persons, days and values per column, so that groups hold ties; about a fifth
    of each column null (a person, a day, a whole group's value), Chinese and ASCII text."""
    rng = random.Random(seed)

    def pick(values: list, nulls: float = 0.2):
        return [None if rng.random() < nulls else rng.choice(values) for _ in range(n)]

    days = [dt.date(2026, 11, d) for d in (1, 2, 3)]
    return pl.DataFrame(
        {
            "person_id": pick([f"p{i:02d}" for i in range(25)], 0.15),
            "day": pick(days, 0.05),
            "grid_code": pick(["G1", "G2", "G10", "g2"], 0.25),
            "community_code": pick(["光华里", "建外", "永安里", "C9"], 0.3),
            "category": pick(["进", "出", "in"]),
            "house_id": pick(["h1", "h2", "h3"], 0.6),
            "lon": [rng.random() for _ in range(n)],
        },
        schema_overrides={"day": pl.Date},
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_per_person_day_equals_the_polars_mode(seed: int):
    events = generated(seed)
    ds = SimpleNamespace(resource_code="RES")
    with duckdb.connect() as con:
        got = per_person_day(con, events, ds)
    want = reference(events)
    # the generated groups do tie: the rule is exercised, not only the plain majority
    counts = events.drop_nulls("category").group_by("person_id", "day", "category").len()
    tops = counts.group_by("person_id", "day").agg(
        (pl.col("len") == pl.col("len").max()).sum().alias("top")
    )
    assert tops.filter(pl.col("top") > 1).height > 10
    assert got["occurrences"].sum() == events.height
    assert got.select(want.drop("_cell").columns).equals(want.drop("_cell"), null_equal=True)
    label = want.select(
        pl.concat_str(
            [
                pl.lit("RES"),
                pl.col("day").cast(pl.String),
                pl.col("person_id").fill_null(""),
                pl.col("_cell").fill_null(""),
            ],
            separator=":",
        )
    ).to_series()
    assert got["_label"].equals(label.alias("_label"))
    assert (got["granularity"] == "person_day").all()
    assert got["at"].equals(want["day"].cast(pl.Datetime("us")).alias("at"), null_equal=True)


def test_per_person_day_of_a_group_without_values_is_null():
    events = pl.DataFrame(
        {
            "person_id": ["a", "a", None, None],
            "day": [dt.date(2026, 1, 1)] * 4,
            "grid_code": [None, None, "G1", "G1"],
            "community_code": [None, "C1", None, None],
            "category": ["x", "y", "y", "x"],
            "house_id": [None] * 4,
        },
        schema_overrides={"house_id": pl.String},
    )
    with duckdb.connect() as con:
        got = per_person_day(con, events, SimpleNamespace(resource_code="R"))
    assert got.select("person_id", "occurrences", *SUMMARISED).rows() == [
        ("a", 2, None, "C1", "x", None),
        (None, 2, "G1", None, "x", None),
    ]


@pytest.mark.parametrize("rows", [1, 1_500])
def test_per_person_day_in_parts_of_days_equals_all_days_at_once(rows: int, monkeypatch):
    """Grouped a run of whole days at a time (``DAY_ROWS`` records; a part per day, or
    two days and the null day): the rows, their order and labels of one grouping."""
    from curated import events as module

    events = generated(4)
    ds = SimpleNamespace(resource_code="RES")
    with duckdb.connect() as con:
        whole = per_person_day(con, events, ds)
        parts = module._day_parts(events, rows)
        monkeypatch.setattr(module, "DAY_ROWS", rows)
        got = per_person_day(con, events, ds)
        empty = per_person_day(con, events.clear(), ds)
    assert len(parts) == (4 if rows == 1 else 3)  # three days and the null day
    assert sum(p.height for p in parts) == events.height
    assert got.equals(whole, null_equal=True)
    assert empty.height == 0 and empty.columns == whole.columns
