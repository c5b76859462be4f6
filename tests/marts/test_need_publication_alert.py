"""marts.elderly_alert (marts/sql/elderly_alert.sql): the elderly living alone whose door
passes fell against their own baseline, with the explanation; window and threshold are
settings. Door records are planted in a copy of the mart street for four residents of
elderly_care: steady, halved-and-more, gone quiet, and too rarely seen to judge."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from catalog.settings import Settings
from lakehouse.lake import open_lake
from marts.alert_quality import against_events, alert_lists
from marts.build import build_mart
from pipelines.protection import Protection
from tests.mart_street import MartStreet
from tests.streets import copy_home

# passes a day in the baseline (the 90 days before the window) and in the window (the 30 days
# up to as_of)
PLANTED = {"steady": (3, 3), "dropped": (5, 2), "quiet": (5, 0), "rare": (0.2, 0)}


def plant(con, people: dict[str, str], as_of: dt.date) -> None:
    """Door records (one row per person and day, as the curated zone keeps them) of the 120
    days up to as_of, replacing any the people had."""
    rows = []
    for label, pid in people.items():
        before, recent = PLANTED[label]
        for back in range(120):
            rate = recent if back < 30 else before
            passes = round(rate) if rate >= 1 or not rate else int(back % round(1 / rate) == 0)
            if passes:
                rows.append((f"ev-{label}-{back}", pid, as_of - dt.timedelta(days=back), passes))
    frame = pl.DataFrame(rows, schema=["event_id", "person_id", "day", "occurrences"], orient="row")
    con.register("planted", frame.to_arrow())
    con.execute(
        "DELETE FROM curated.event WHERE granularity = 'person_day' AND list_contains(?, person_id)",
        [list(people.values())],
    )
    con.execute(
        "INSERT INTO curated.event (event_id, dept, dataset, granularity, occurrences, day, "
        "person_id) SELECT event_id, 'iot', 'door_access_events', 'person_day', occurrences, "
        "day, person_id FROM planted"
    )
    con.unregister("planted")


@pytest.fixture
def alerted(mart_street: MartStreet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Build elderly_alert on a copy with the planted records; (people, build(**settings))."""
    copy = copy_home(mart_street.settings.home, tmp_path)
    monkeypatch.setenv("STREETHUB_HOME", str(copy.home))
    with open_lake(copy) as con:
        found = con.execute(
            "SELECT person_id, as_of FROM marts.elderly_care ORDER BY person_id LIMIT 4"
        ).fetchall()
        people = dict(zip(PLANTED, [r[0] for r in found], strict=True))
        plant(con, people, found[0][1])

    protection = Protection.from_settings(copy, actor="test/elderly_alert")

    def build(**settings: str) -> pl.DataFrame:
        for name, value in settings.items():
            monkeypatch.setenv(f"STREETHUB_ELDERLY_ALERT_{name.upper()}", value)
        with open_lake(copy) as con:
            build_mart(con, mart_street.catalogue, mart_street.marts, "elderly_alert", protection)
            return con.execute("SELECT * FROM marts.elderly_alert").pl()

    return people, build


def test_a_drop_against_the_persons_own_baseline_is_on_the_list_with_its_reason(alerted):
    people, build = alerted
    table = build()
    by = {r["person_id"]: r for r in table.iter_rows(named=True)}
    assert set(by) == {people["dropped"], people["quiet"]}
    dropped = by[people["dropped"]]
    assert dropped["drop_pct"] == 60 and dropped["recent_passes"] == 60
    assert dropped["expected_passes"] == pytest.approx(150.0)
    assert dropped["explanation"] == "近30天门禁出入次数下降60%；独居"
    assert by[people["quiet"]]["drop_pct"] == 100
    assert table["community_code"].null_count() == 0


def test_the_window_and_threshold_are_settings(alerted):
    people, build = alerted
    defaults = Settings()
    assert (defaults.elderly_alert_window_days, defaults.elderly_alert_min_drop) == (30, 0.5)
    assert set(build(min_drop="0.7")["person_id"]) == {people["quiet"]}
    # a 10-day window: the dropped resident's last 10 days against the 90 before them
    table = build(min_drop="0.5", window_days="10")
    assert (
        "近10天门禁出入次数下降"
        in table.filter(pl.col("person_id") == people["quiet"])["explanation"].item()
    )


def test_past_lists_and_their_precision_and_recall_against_events(alerted, mart_street):
    people, build = alerted
    now = build()["as_of"][0]
    earlier = now - dt.timedelta(days=40)
    copy = Settings()  # the copy (STREETHUB_HOME)
    with open_lake(copy) as con:
        published = con.execute("SELECT count(*) FROM marts.elderly_alert").fetchone()[0]
        lists = alert_lists(
            con, mart_street.catalogue, mart_street.marts,
            Protection.from_settings(copy, actor="test/backtest"), [earlier, now],
        )  # fmt: skip
        after = con.execute("SELECT count(*) FROM marts.elderly_alert").fetchone()[0]
        assert con.execute("SELECT getvariable('elderly_alert_as_of')").fetchone()[0] is None
    assert after == published == 2  # nothing published by the what-if
    # 40 days ago everyone walked at their baseline rate: no one on the list
    assert sorted(lists.iter_rows()) == sorted([(people["dropped"], now), (people["quiet"], now)])
    events = pl.DataFrame(
        {"person_id": [people["quiet"], people["steady"]],
         "event_date": [now + dt.timedelta(days=9), now + dt.timedelta(days=3)]}
    )  # fmt: skip
    quality = against_events(lists, events)
    assert (quality.precision, quality.recall) == (0.5, 0.5)
