"""demand_heatmap against the simulator's truth: 12345 appeals, grid events and violation
cases per grid cell × category × ISO week, recounted
from the clean rows of the records the lake staged, the grid cell taken from the truth's own
cell or, where a record states only coordinates, the truth cell its point lies in."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from catalog.authority import authority
from catalog.model import Catalogue, Dataset
from curated.events import CATEGORY, CLOSED, TIME, event_datasets, whereabouts
from curated.houses import concept_field
from curated.things import GRID, LAT, LON
from lakehouse.lake import open_lake
from tests.marts.truth import (
    assert_staged_as_delivered,
    built_with_events,
    header,
    nearest_cell,
    staged_truth,
    when,
)

MART = "demand_heatmap"
KEY = ["week_start", "grid_code", "category", "dept", "dataset"]
COLUMNS = ["week_start", "iso_week", *KEY[1:], "events", "closed"]
# what the issue names: 12345 appeals, grid events and violations
NAMED = {("rx", "appeals"), ("wg", "grid_events"), ("cgj", "violation_cases")}


@pytest.fixture(scope="module")
def cat(mart_street) -> Catalogue:
    return mart_street.catalogue


def demand_datasets(cat: Catalogue) -> list[tuple[str, Dataset]]:
    """The datasets the heat map counts (the issue's three), as the catalogue has them."""
    return [(dept, ds) for dept, ds in event_datasets(cat) if (dept, ds.code) in NAMED]


def register_cells(con, sim_dir, cat: Catalogue) -> pl.DataFrame:
    """``code, lon, lat``: the true centres of the grid register's cells the lake staged. A
    cell whose register row the gate quarantined is unknown to the hub, which places a point
    in it in the nearest cell it knows; the truth is recounted the same way."""
    ref = authority(cat, GRID)
    ds = ref.dataset
    rows = staged_truth(con, sim_dir, ref.dept, ds)
    return rows.select(
        pl.col(header(ds, concept_field(ds, GRID))).alias("code"),
        pl.col(header(ds, concept_field(ds, LON))).cast(pl.Float64).alias("lon"),
        pl.col(header(ds, concept_field(ds, LAT))).cast(pl.Float64).alias("lat"),
    )


def true_events(con, sim_dir, cat: Catalogue, cells: pl.DataFrame) -> pl.DataFrame:
    """One row per staged demand record: ``dept, dataset, at, grid_code, category, closed``
    from its clean row."""
    frames = []
    for dept, ds in demand_datasets(cat):
        rows = staged_truth(con, sim_dir, dept, ds)
        grid, lon, lat, closed = (concept_field(ds, c) for c in (GRID, LON, LAT, CLOSED))
        cell = (
            rows[header(ds, grid)]
            if grid
            else nearest_cell(rows[header(ds, lon)], rows[header(ds, lat)], cells)
        )
        frames.append(
            pl.DataFrame(
                {
                    "at": when(rows[header(ds, concept_field(ds, TIME))]),
                    "grid_code": cell,
                    "category": rows[header(ds, concept_field(ds, CATEGORY))].str.strip_chars(),
                    "closed": (
                        when(rows[header(ds, closed)]).is_not_null()
                        if closed
                        else pl.repeat(False, rows.height, eager=True)
                    ),
                }
            ).with_columns(pl.lit(dept).alias("dept"), pl.lit(ds.code).alias("dataset"))
        )
    return pl.concat(frames)


def expected_heatmap(events: pl.DataFrame) -> pl.DataFrame:
    """The heat map recounted: ISO weeks start on Monday."""
    return (
        events.with_columns(
            (pl.col("at").dt.date() - pl.duration(days=pl.col("at").dt.weekday() - 1)).alias(
                "week_start"
            )
        )
        .group_by(KEY)
        .agg(pl.len().alias("events"), pl.col("closed").sum().alias("closed"))
    )


def test_the_heatmap_is_the_truth_recounted(mart_street, cat: Catalogue):
    """Every (week, cell, category, dataset) count equals the truth's; an event the hub could
    not place (no cell in the record, no coordinates, no building) is the only difference
    allowed, counted under grid_code NULL."""
    mart = mart_street.table(MART)
    with open_lake(mart_street.settings, read_only=True) as con:
        cells = register_cells(con, mart_street.sim_dir, cat)
        truth = true_events(con, mart_street.sim_dir, cat, cells)
    expected = expected_heatmap(truth)
    assert mart.height > 100 and mart["events"].sum() == truth.height
    # per dataset × category × week the counts are exact, wherever the events were placed
    by = ["week_start", "category", "dept", "dataset"]
    got = mart.group_by(by).agg(pl.col("events").sum(), pl.col("closed").sum())
    want = expected.group_by(by).agg(pl.col("events").sum(), pl.col("closed").sum())
    assert got.sort(by).equals(want.sort(by).select(got.columns))
    # per grid cell: every placed event in its true cell
    joined = mart.join(expected, on=KEY, how="full", coalesce=True, suffix="_truth").fill_null(0)
    unplaced = int(mart.filter(pl.col("grid_code").is_null())["events"].sum())
    wrong = (
        joined.filter(pl.col("grid_code").is_not_null())
        .select((pl.col("events") - pl.col("events_truth")).abs().sum())
        .item()
    )
    misplaced = (wrong - unplaced) / 2
    closed_gap = (
        joined.filter(pl.col("grid_code").is_not_null())
        .select((pl.col("closed") - pl.col("closed_truth")).abs().sum())
        .item()
    )
    print(f"{MART}: {mart.height} rows, {truth.height} events, {unplaced} unplaced, "
          f"{misplaced:.0f} in another cell than the truth's")  # fmt: skip
    assert misplaced == 0
    assert unplaced <= 0.02 * truth.height
    assert closed_gap <= unplaced  # closed events counted in their cell too


def test_the_heatmap_counts_appeals_grid_events_and_violations_only(mart_street, cat):
    """The three sources, each a placed event dataset with a category, and nothing else:
    not the emergency incidents, the service centre's records (no place) or door access
    (whereabouts, summarised per person and day)."""
    mart = mart_street.table(MART)
    assert mart.columns == COLUMNS
    assert set(mart.select("dept", "dataset").unique().iter_rows()) == NAMED
    assert len(demand_datasets(cat)) == len(NAMED)
    for _, ds in demand_datasets(cat):
        assert not whereabouts(ds) and concept_field(ds, CATEGORY), ds.code
        assert concept_field(ds, GRID) or concept_field(ds, LON), ds.code
    with open_lake(mart_street.settings, read_only=True) as con:
        assert_staged_as_delivered(con, mart_street.sim_dir, demand_datasets(cat))


def test_weeks_are_iso_weeks_starting_on_monday(mart_street):
    mart = mart_street.table(MART)
    assert mart.select(KEY).is_unique().all()
    for start, label in mart.select("week_start", "iso_week").unique().iter_rows():
        year, week, day = start.isocalendar()
        assert day == 1 and label == f"{year}-W{week:02d}"
    assert (mart["events"] >= 1).all() and (mart["closed"] <= mart["events"]).all()


def test_week_boundaries_and_what_is_no_demand(mart_street, tmp_path):
    """Events planted in a category of their own: Sunday 23:59 and Monday 00:00 fall in two
    weeks; 1 January 2027 (a Friday) is in ISO week 2026-W53, which began on 28 December;
    a violation without a cell is counted under grid_code NULL; an incident and a service
    record of the same category are no demand on this map."""
    category, cell = "测试类别", "99999999999901"
    sunday, monday = dt.datetime(2026, 3, 8, 23, 59, 59), dt.datetime(2026, 3, 9)
    new_year = dt.datetime(2027, 1, 1, 10)
    cases = [  # dept, dataset, at, grid cell, closed
        ("rx", "appeals", sunday, cell, sunday + dt.timedelta(hours=3)),
        ("wg", "grid_events", sunday, cell, None),
        ("rx", "appeals", monday, cell, None),
        ("cgj", "violation_cases", new_year, cell, None),
        ("cgj", "violation_cases", new_year, None, new_year + dt.timedelta(days=2)),
        ("yjj", "incidents", monday, cell, None),
        ("rx", "service_records", monday, None, None),
    ]
    events = [
        {
            "event_id": f"planted-event-{i}",
            "dept": dept,
            "dataset": dataset,
            "granularity": "record",
            "occurrences": 1,
            "category": category,
            "at": at,
            "day": at.date(),
            "grid_code": grid,
            "closed_at": closed,
        }
        for i, (dept, dataset, at, grid, closed) in enumerate(cases)
    ]
    mart = built_with_events(mart_street, tmp_path, MART, events)
    planted = mart.filter(pl.col("category") == category).sort(KEY, nulls_last=True)
    rows = [
        (r["week_start"], r["iso_week"], r["grid_code"], r["dataset"], r["events"], r["closed"])
        for r in planted.to_dicts()
    ]
    assert rows == [
        (dt.date(2026, 3, 2), "2026-W10", cell, "appeals", 1, 1),
        (dt.date(2026, 3, 2), "2026-W10", cell, "grid_events", 1, 0),
        (dt.date(2026, 3, 9), "2026-W11", cell, "appeals", 1, 0),
        (dt.date(2026, 12, 28), "2026-W53", cell, "violation_cases", 1, 0),
        (dt.date(2026, 12, 28), "2026-W53", None, "violation_cases", 1, 1),
    ]
    before = mart_street.table(MART)
    assert mart.filter(pl.col("category") != category).sort(KEY).equals(before.sort(KEY))
