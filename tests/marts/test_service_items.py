"""service_items against the simulator's truth: per government-service item, applications,
handling time (receipt → finishing), finishing within the promised working days and the
visits applicants made, recounted from the clean rows of the records the lake staged."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from catalog.model import Catalogue
from curated.events import CATEGORY, CLOSED, STATUS, TIME
from tests.marts.truth import (
    assert_figures,
    built_with_events,
    concept_column,
    events_with,
    mart_and_truth,
    staged_truth,
    when,
)

MART = "service_items"
ITEM, HANDLER, LIMIT, VISITS = (
    "event.item_code",
    "event.handler",
    "event.time_limit_days",
    "event.visits",
)
KEY = ["item_code", "item_name", "handling_dept", "time_limit_days"]
FINISHED, REFUSED, IN_PROGRESS = "已办结", "不予受理", "办理中"  # the catalogue's 办件状态
ROUNDED = {
    "median_handling_days": 2,
    "p90_handling_days": 2,
    "finished_in_time_share": 4,
    "mean_visits": 2,
    "at_most_one_visit_share": 4,
}


def true_records(con, sim_dir, cat: Catalogue) -> pl.DataFrame:
    """One row per staged service record from its clean row (``applicant``: the truth's
    person, the applicant's real citizen ID)."""
    frames = []
    for dept, ds in events_with(cat, ITEM):  # the records that name a service item
        rows = staged_truth(con, sim_dir, dept, ds)

        def col(concept: str, rows=rows, ds=ds) -> pl.Series:
            return concept_column(rows, ds, concept).cast(pl.String).str.strip_chars()

        frames.append(
            pl.DataFrame(
                {
                    "item_code": col(ITEM),
                    "item_name": col(CATEGORY),
                    "handling_dept": col(HANDLER),
                    "time_limit_days": col(LIMIT).cast(pl.Int64),
                    "visits": col(VISITS).cast(pl.Int64),
                    "status": col(STATUS),
                    "received": when(col(TIME)),
                    "finished_at": when(col(CLOSED)),
                    "applicant": rows["_person"],
                }
            )
        )
    return pl.concat(frames)


def working_days(start: pl.Series, end: pl.Series) -> pl.Series:
    """Monday–Friday days after ``start``'s day up to ``end``'s day (numpy's business days)."""
    first = start.dt.date().to_numpy().astype("datetime64[D]") + 1
    last = end.dt.date().fill_null(start.dt.date()).to_numpy().astype("datetime64[D]") + 1
    return pl.Series(np.busday_count(first, last), dtype=pl.Int64)


def expected_items(records: pl.DataFrame) -> pl.DataFrame:
    finished = pl.col("status") == FINISHED
    days = (pl.col("finished_at") - pl.col("received")).dt.total_seconds() / 86400
    in_time = finished & (pl.col("working_days") <= pl.col("time_limit_days"))
    frame = records.with_columns(
        working_days(records["received"], records["finished_at"]).alias("working_days")
    )
    return (
        frame.group_by(KEY)
        .agg(
            pl.len().alias("applications"),
            pl.col("applicant").n_unique().alias("applicants"),
            finished.sum().alias("finished"),
            (pl.col("status") == REFUSED).sum().alias("refused"),
            (pl.col("status") == IN_PROGRESS).sum().alias("in_progress"),
            days.filter(finished).median().alias("median_handling_days"),
            days.filter(finished).quantile(0.9, "linear").alias("p90_handling_days"),
            in_time.sum().alias("finished_in_time"),
            (in_time.sum() / finished.sum()).alias("finished_in_time_share"),
            pl.col("visits").mean().alias("mean_visits"),
            (pl.col("visits") == 0).sum().alias("zero_visits"),
            (pl.col("visits") <= 1).sum().alias("at_most_one_visit"),
            (pl.col("visits") <= 1).mean().alias("at_most_one_visit_share"),
            pl.col("visits").max().alias("max_visits"),
        )
        .with_columns(
            pl.when(pl.col("finished") > 0).then(pl.col("finished_in_time_share")),
        )
    )


def test_each_item_is_the_truth_recounted(mart_street):
    mart, records = mart_and_truth(mart_street, MART, ITEM, true_records)
    expected = expected_items(records)
    assert_figures(mart, expected, KEY, ROUNDED)
    assert mart["applications"].sum() == records.height > 50
    late = 1 - mart["finished_in_time"].sum() / mart["finished"].sum()
    online = mart["zero_visits"].sum() / mart["applications"].sum()
    print(f"{MART}: {mart.height} items, {records.height} applications, finished late "
          f"{late:.1%}, wholly online {online:.1%}")  # fmt: skip
    # some items finish late and some applications need more than one visit: the figures
    # measure something
    assert 0 < late < 0.5
    assert (mart["at_most_one_visit_share"] < 1).any() and (mart["max_visits"] > 1).any()


def test_counts_add_up_per_item(mart_street):
    mart = mart_street.table(MART)
    assert mart.select(KEY).is_unique().all()
    assert (mart["applicants"] <= mart["applications"]).all()
    assert (mart["zero_visits"] <= mart["at_most_one_visit"]).all()
    assert (mart["finished_in_time"] <= mart["finished"]).all()
    # an item handled on the spot (即办, one working day) is finished within about a day
    # (at a window within hours, online within 30 h), the others take days
    on_the_spot = pl.col("time_limit_days") <= 1
    assert (mart.filter(on_the_spot)["p90_handling_days"] <= 1.25).all()
    assert mart.filter(~on_the_spot)["median_handling_days"].min() > 1


def test_working_days_and_visits_at_their_boundaries(mart_street, tmp_path):
    """Records planted for two items of their own: a weekend is no working day (received on
    a Friday, finished on the Monday: one working day), a refusal and an application in
    progress count apart, and visits are counted over every application."""
    fri, sat, mon = (
        dt.datetime(2026, 3, 6, 16),
        dt.datetime(2026, 3, 7, 22),
        dt.datetime(2026, 3, 2, 10),
    )
    day = dt.timedelta(days=1)
    cases = [  # item (limit in working days), received, finished, status, visits, applicant
        (1, fri, fri + 3 * day - 6 * dt.timedelta(hours=1), FINISHED, 1, "a"),  # Monday 10:00
        (1, fri, fri + 4 * day, FINISHED, 2, "a"),  # Tuesday: 2 working days, late
        (5, mon, mon + 7 * day, FINISHED, 0, "b"),  # the next Monday: 5, in time
        (5, mon, mon + 8 * day, FINISHED, 1, "c"),  # Tuesday: 6, late
        (5, sat, sat + 6 * day, FINISHED, 3, "d"),  # online on a Saturday, Friday: 5
        (5, mon, mon + dt.timedelta(hours=1), REFUSED, 1, "e"),
        (5, mon, None, IN_PROGRESS, 0, "e"),
    ]
    events = [
        {
            "event_id": f"planted-service-{i}",
            "dept": "rx",
            "dataset": "service_records",
            "granularity": "record",
            "occurrences": 1,
            "item_code": f"TEST{limit:03d}",
            "category": f"测试事项{limit}",
            "handler": "测试承办部门",
            "time_limit_days": limit,
            "status": status,
            "at": received,
            "day": received.date(),
            "closed_at": finished,
            "visits": visits,
            "person_id": f"planted-person-{applicant}",
        }
        for i, (limit, received, finished, status, visits, applicant) in enumerate(cases)
    ]
    mart = built_with_events(mart_street, tmp_path, MART, events)
    got = {
        r["item_code"]: r
        for r in mart.filter(pl.col("item_code").str.starts_with("TEST")).to_dicts()
    }
    assert sorted(got) == ["TEST001", "TEST005"]
    one, five = got["TEST001"], got["TEST005"]
    assert (one["applications"], one["applicants"], one["finished"]) == (2, 1, 2)
    assert (one["finished_in_time"], one["finished_in_time_share"]) == (1, 0.5)
    assert (five["applications"], five["applicants"], five["finished"]) == (5, 4, 3)
    assert (five["refused"], five["in_progress"]) == (1, 1)
    assert (five["finished_in_time"], five["finished_in_time_share"]) == (2, round(2 / 3, 4))
    assert five["median_handling_days"] == 7.0  # finished after 7, 8 and 6 days
    # visits 0, 1, 3, 1, 0: the refusal and the application in progress count too
    assert (five["mean_visits"], five["zero_visits"], five["at_most_one_visit"]) == (1.0, 2, 4)
    assert (five["at_most_one_visit_share"], five["max_visits"]) == (0.8, 3)
    before = mart_street.table(MART)
    assert mart.filter(~pl.col("item_code").str.starts_with("TEST")).equals(before)
