"""appeal_sla against the simulator's truth: per handling department, the appeals first
answered (dispatched) within 2 h (emergencies) or 24 h (the others) and the accept →
dispatch → resolve times, recounted from the clean rows of the appeals the lake staged."""

from __future__ import annotations

import datetime as dt

import polars as pl

from catalog.model import Catalogue
from curated.events import CLOSED, TIME
from tests.marts.truth import (
    assert_figures,
    built_with_events,
    concept_column,
    events_with,
    mart_and_truth,
    staged_truth,
    when,
)

MART = "appeal_sla"
URGENCY, DISPATCHED, HANDLER = "event.urgency", "event.dispatched_time", "event.handler"
LIMIT = {"emergency": dt.timedelta(hours=2)}  # every other urgency: 24 h
OTHERWISE = dt.timedelta(hours=24)
ROUNDED = {
    "answered_in_time_share": 4,
    "emergency_answered_in_time_share": 4,
    "ordinary_answered_in_time_share": 4,
    "median_dispatch_minutes": 1,
    "p90_dispatch_minutes": 1,
    "median_resolve_hours": 2,
    "p90_resolve_hours": 2,
    "median_dispatch_to_resolve_hours": 2,
}


def true_appeals(con, sim_dir, cat: Catalogue) -> pl.DataFrame:
    """One row per staged appeal from its clean row: ``handling_dept, urgency, accepted,
    dispatched, resolved``."""
    frames = []
    for dept, ds in events_with(cat, URGENCY):  # the hotline's appeals
        rows = staged_truth(con, sim_dir, dept, ds)

        def col(concept: str, rows=rows, ds=ds) -> pl.Series:
            return concept_column(rows, ds, concept)

        frames.append(
            pl.DataFrame(
                {
                    "handling_dept": col(HANDLER).str.strip_chars(),
                    "urgency": col(URGENCY).str.strip_chars(),
                    "accepted": when(col(TIME)),
                    "dispatched": when(col(DISPATCHED)),
                    "resolved": when(col(CLOSED)),
                }
            )
        )
    return pl.concat(frames)


def expected_sla(appeals: pl.DataFrame) -> pl.DataFrame:
    """The SLA recounted per handling department from the truth's appeals."""
    limit = pl.col("urgency").replace_strict(LIMIT, default=OTHERWISE, return_dtype=pl.Duration)
    emergency = pl.col("urgency") == "emergency"
    waited = pl.col("dispatched") - pl.col("accepted")
    frame = appeals.with_columns(
        (pl.col("dispatched").is_not_null() & (waited <= limit)).alias("in_time"),
        (waited.dt.total_seconds() / 60).alias("dispatch_minutes"),
        ((pl.col("resolved") - pl.col("accepted")).dt.total_seconds() / 3600).alias("resolve_h"),
        ((pl.col("resolved") - pl.col("dispatched")).dt.total_seconds() / 3600).alias("d2r_h"),
    )
    in_time = pl.col("in_time")
    return frame.group_by("handling_dept").agg(
        pl.len().alias("appeals"),
        emergency.sum().alias("emergency_appeals"),
        pl.col("dispatched").count().alias("dispatched"),
        in_time.sum().alias("answered_in_time"),
        (in_time.sum() / pl.len()).alias("answered_in_time_share"),
        (in_time & emergency).sum().alias("emergency_answered_in_time"),
        in_time.filter(emergency).mean().alias("emergency_answered_in_time_share"),
        (in_time & ~emergency).sum().alias("ordinary_answered_in_time"),
        in_time.filter(~emergency).mean().alias("ordinary_answered_in_time_share"),
        pl.col("dispatch_minutes").median().alias("median_dispatch_minutes"),
        pl.col("dispatch_minutes").quantile(0.9, "linear").alias("p90_dispatch_minutes"),
        pl.col("resolved").count().alias("resolved"),
        pl.col("resolve_h").median().alias("median_resolve_hours"),
        pl.col("resolve_h").quantile(0.9, "linear").alias("p90_resolve_hours"),
        pl.col("d2r_h").median().alias("median_dispatch_to_resolve_hours"),
        pl.col("accepted").min().dt.date().alias("first_accepted"),
        pl.col("accepted").max().dt.date().alias("last_accepted"),
    )


def test_the_sla_per_department_is_the_truth_recounted(mart_street):
    mart, appeals = mart_and_truth(mart_street, MART, URGENCY, true_appeals)
    expected = expected_sla(appeals)
    assert_figures(mart, expected, ["handling_dept"], ROUNDED)
    # the street's figure, as the governance scorecard sums it: late answers exist, so the
    # share is neither trivially 1 nor the resolution rate
    share = mart["answered_in_time"].sum() / mart["appeals"].sum()
    resolved = mart["resolved"].sum() / mart["appeals"].sum()
    print(f"{MART}: {mart.height} departments, {appeals.height} appeals, answered in time "
          f"{share:.2%}, resolved {resolved:.2%}")  # fmt: skip
    assert 0.5 < share < 1 and share != resolved
    assert mart["appeals"].sum() == appeals.height > 100


def test_counts_nest_and_shares_are_their_ratios(mart_street):
    """Per department: answered in time ⊆ dispatched ⊆ appeals, emergencies ⊆ appeals, and
    each published share is its count over its whole (null where the whole is none)."""
    mart = mart_street.table(MART)
    assert mart["handling_dept"].null_count() == 0 and mart["handling_dept"].is_unique().all()
    assert (mart["answered_in_time"] <= mart["dispatched"]).all()
    assert (mart["dispatched"] <= mart["appeals"]).all()
    assert (mart["emergency_answered_in_time"] <= mart["emergency_appeals"]).all()
    ordinary = mart["appeals"] - mart["emergency_appeals"]
    for share, part, whole in [
        ("answered_in_time_share", mart["answered_in_time"], mart["appeals"]),
        ("emergency_answered_in_time_share", mart["emergency_answered_in_time"],
         mart["emergency_appeals"]),
        ("ordinary_answered_in_time_share", mart["ordinary_answered_in_time"], ordinary),
    ]:  # fmt: skip
        # the mart rounds half away from zero (四舍五入: DuckDB's round); polars' default is
        # half to even, which 1 of 32 appeals in time (0.03125) told apart
        expected = (part / whole).round(4, mode="half_away_from_zero").to_list()
        got = mart[share].to_list()
        assert [g for g, w in zip(got, whole, strict=True) if w == 0] == [None] * int(
            (whole == 0).sum()
        )
        assert all(abs(g - e) < 1e-9 for g, e, w in zip(got, expected, whole, strict=True) if w), (
            share
        )


def test_the_limits_hold_to_the_minute(mart_street, tmp_path):
    """Appeals planted at the limits in one department of their own: answered at exactly
    2 h (emergency) or 24 h (ordinary) is in time, a minute later is not, an appeal not yet
    dispatched counts against the share, and resolving early does not make a late answer
    in time. The other departments' rows stay as they were."""
    t0 = dt.datetime(2026, 3, 2, 9, 0)
    hours = dt.timedelta(hours=1)
    minute = dt.timedelta(minutes=1)
    cases = [  # urgency, dispatched after, resolved after
        ("emergency", 2 * hours, 3 * hours),
        ("emergency", 2 * hours + minute, 2 * hours + 2 * minute),
        ("ordinary", 2 * hours + minute, None),
        ("ordinary", 24 * hours, 30 * hours),
        ("ordinary", 24 * hours + minute, 24 * hours + 2 * minute),
        ("ordinary", None, None),
    ]
    office = "测试承办单位"
    events = [
        {
            "event_id": f"planted-appeal-{i}",
            "dept": "rx",
            "dataset": "appeals",
            "granularity": "record",
            "occurrences": 1,
            "category": "其他",
            "status": "已受理",
            "at": t0,
            "day": t0.date(),
            "urgency": urgency,
            "handler": office,
            "dispatched_at": t0 + after if after is not None else None,
            "closed_at": t0 + resolved if resolved is not None else None,
        }
        for i, (urgency, after, resolved) in enumerate(cases)
    ]
    mart = built_with_events(mart_street, tmp_path, MART, events)
    row = mart.filter(pl.col("handling_dept") == office).to_dicts()
    assert len(row) == 1
    got = row[0]
    assert (got["appeals"], got["emergency_appeals"], got["dispatched"]) == (6, 2, 5)
    assert (got["answered_in_time"], got["answered_in_time_share"]) == (3, 0.5)
    assert (got["emergency_answered_in_time"], got["emergency_answered_in_time_share"]) == (1, 0.5)
    assert (got["ordinary_answered_in_time"], got["ordinary_answered_in_time_share"]) == (2, 0.5)
    # dispatch waits 120, 121, 121, 1440, 1441 minutes; resolutions 3, 2.03, 30, 24.03 h
    assert got["median_dispatch_minutes"] == 121.0
    assert got["resolved"] == 4 and got["median_resolve_hours"] == round((3 + 24 + 2 / 60) / 2, 2)
    assert (got["first_accepted"], got["last_accepted"]) == (t0.date(), t0.date())
    before = mart_street.table(MART)
    assert (
        mart.filter(pl.col("handling_dept") != office)
        .sort("handling_dept")
        .equals(before.sort("handling_dept"))
    )
