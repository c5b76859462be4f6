"""The elderly alert's precision and recall (marts/alert_quality.py): against visit outcomes
(a real street) and against planted events (the simulator), on small frames whose answers
are counted by hand in the comments."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from marts.alert_quality import AlertQuality, against_events, against_visits

D = dt.date(2026, 10, 1)


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def test_against_events_counts_warnings_in_the_horizon_only() -> None:
    alerts = pl.DataFrame(
        {"person_id": ["a", "b", "c", "a"], "as_of": [day(0), day(0), day(0), day(40)]}
    )
    events = pl.DataFrame(
        {
            "person_id": ["a", "b", "d", "c", "e", "a"],
            # a: 10 days after its first list (right, caught); b: 31 days after (too late);
            # d: never alerted (missed); c: before its list (not warnable by it, and before
            # the first list: not counted); e: after the last list's horizon (not counted);
            # a again: 5 days after its second list (right, caught)
            "event_date": [day(10), day(31), day(20), day(-3), day(90), day(45)],
        }
    )
    quality = against_events(alerts, events, horizon_days=30)
    # alert rows: (a,0) right, (b,0) wrong, (c,0) wrong, (a,40) right
    assert (quality.alerted, quality.hits) == (4, 2)
    # warnable events: a@10, b@31, d@20, a@45 — caught a@10 and a@45
    assert (quality.positives, quality.found) == (4, 2)
    assert quality.precision == 0.5 and quality.recall == 0.5
    longer = against_events(alerts, events, horizon_days=31)
    assert (longer.hits, longer.found) == (3, 3)  # b's event now inside its horizon


def test_against_visits_judges_by_residents_seen_and_their_latest_visit() -> None:
    visits = pl.DataFrame(
        {
            "person_id": ["a", "b", "c", "d", "e", "a"],
            "on_alert": [True, True, True, False, True, True],
            "visited": [True, True, False, True, True, True],
            "need_found": [False, True, False, True, False, True],
            "visited_at": [day(1), day(1), day(1), day(2), day(2), day(5)],
        }
    )
    quality = against_visits(visits)
    # seen and alerted: a (latest: need found), b (need), e (none); c not seen
    assert (quality.alerted, quality.hits) == (3, 2)
    # found in need: a, b (alerted), d (not alerted)
    assert (quality.positives, quality.found) == (3, 2)
    assert quality.precision == pytest.approx(2 / 3) and quality.recall == pytest.approx(2 / 3)


def test_nothing_to_judge_is_no_figure_not_zero() -> None:
    empty = AlertQuality(0, 0, 0, 0)
    assert empty.precision is None and empty.recall is None
    none = pl.DataFrame(schema={"person_id": pl.String, "as_of": pl.Date})
    events = pl.DataFrame({"person_id": ["a"], "event_date": [D]})
    assert against_events(none, events) == empty
