"""The scorecards' history marts (``history_of``): each build of the governance or quality
scorecard adds its rows under the run's day; a re-run the same day replaces that day's rows
(never a duplicate), other days are kept, so the dashboards have trends."""

from __future__ import annotations

import datetime as dt

import pytest

from catalog.marts import HISTORY_COLUMN, Mart
from lakehouse.lake import open_lake
from marts.build import build_mart, histories_of, run_day
from tests.streets import copy_home

HISTORIES = {
    "governance_scorecard": "governance_scorecard_history",
    "quality_scorecard": "quality_scorecard_history",
}
KEYS = {
    "governance_scorecard": ["figure"],
    "quality_scorecard": ["dept", "dataset", "dimension"],
}


def test_each_scorecard_has_a_history_mart(mart_street) -> None:
    for mart, history in HISTORIES.items():
        assert histories_of(mart_street.marts, mart) == [history]
        assert mart_street.marts[history].column_names[0] == HISTORY_COLUMN


@pytest.mark.parametrize("mart", sorted(HISTORIES))
def test_the_history_holds_the_scorecard_under_todays_date(mart_street, mart) -> None:
    """The session's street built the scorecards today: their history holds exactly their
    rows (the same figures) under today's date in Beijing, and no other day."""
    now = mart_street.query(f"SELECT * FROM marts.{mart}")  # quality: the main job built it
    history = mart_street.table(HISTORIES[mart])
    assert history[HISTORY_COLUMN].unique().to_list() == [mart_street.built_on]
    shared = [c for c in history.columns if c != HISTORY_COLUMN]
    assert history.drop(HISTORY_COLUMN).sort(KEYS[mart]).to_dicts() == (
        now.select(shared).sort(KEYS[mart]).to_dicts()
    )


def test_a_rerun_the_same_day_replaces_its_rows_and_other_days_stay(mart_street, tmp_path):
    settings = copy_home(mart_street.home, tmp_path)
    today = mart_street.built_on  # the day the session built the histories on (Beijing)
    earlier = [today - dt.timedelta(days=d) for d in (2, 1)]
    protection = mart_street.protection()
    with open_lake(settings) as con:
        figures = con.execute("SELECT count(*) FROM marts.governance_scorecard").fetchone()[0]
        for day in [*earlier, today, today]:  # today twice: a re-run the same day
            build_mart(
                con,
                mart_street.catalogue,
                mart_street.marts,
                "governance_scorecard",
                protection,
                run_date=day,
            )
        scores = con.execute("SELECT count(*) FROM marts.quality_scorecard").fetchone()[0]
        for day in (earlier[0], earlier[0]):  # the quality history built on its own
            build_mart(
                con,
                mart_street.catalogue,
                mart_street.marts,
                "quality_scorecard_history",
                None,
                run_date=day,
            )
        per_day = dict(
            con.execute(
                "SELECT run_date, count(*) FROM marts.governance_scorecard_history GROUP BY 1"
            ).fetchall()
        )
        quality_days = dict(
            con.execute(
                "SELECT run_date, count(*) FROM marts.quality_scorecard_history GROUP BY 1"
            ).fetchall()
        )
        dupes = con.execute(
            "SELECT count(*) FROM (SELECT run_date, figure FROM marts.governance_scorecard_history"
            " GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
    assert figures > 0 and scores > 0
    assert per_day == {earlier[0]: figures, earlier[1]: figures, today: figures}
    assert dupes == 0
    assert quality_days == {earlier[0]: scores, today: scores}


def test_a_history_mart_starts_with_its_run_date(mart_street) -> None:
    entry = mart_street.marts["governance_scorecard_history"].model_dump(mode="json")
    entry["columns"] = entry["columns"][1:]  # without run_date
    with pytest.raises(ValueError, match=HISTORY_COLUMN):
        Mart.model_validate(entry)


def test_the_run_date_is_the_day_in_beijing() -> None:
    late_utc = dt.datetime(2026, 11, 30, 17, 30, tzinfo=dt.UTC)  # 01:30 on 1 Dec in Beijing
    assert run_day(late_utc) == dt.date(2026, 12, 1)
    assert run_day(dt.datetime(2026, 11, 30, 15, 59, tzinfo=dt.UTC)) == dt.date(2026, 11, 30)


def test_history_written_before_a_column_changed_is_kept_by_column_name(mart_street, tmp_path):
    """A history table of an older YAML (a column since dropped, one not yet added) keeps its
    days: the columns are the YAML's, the new one empty on the older days."""
    settings = copy_home(mart_street.home, tmp_path)
    today = mart_street.built_on  # the day the session built the histories on (Beijing)
    old_day = today - dt.timedelta(days=7)
    with open_lake(settings) as con:
        con.execute(
            "CREATE OR REPLACE TABLE marts.governance_scorecard_history AS "
            "SELECT ?::DATE AS run_date, figure, name_zh, value, numerator, denominator, goal, "
            "unit, 'gone' AS retired FROM marts.governance_scorecard",
            [old_day],
        )
        build_mart(con, mart_street.catalogue, mart_street.marts,
                   "governance_scorecard_history", None, run_date=today)  # fmt: skip
        table = con.execute("SELECT * FROM marts.governance_scorecard_history").pl()
    assert table.columns == mart_street.marts["governance_scorecard_history"].column_names
    old = table.filter(table[HISTORY_COLUMN] == old_day).sort("figure")
    new = table.filter(table[HISTORY_COLUMN] == today).sort("figure")
    assert old.height == new.height > 0
    assert old["meets_goal"].null_count() == old.height  # not in the older table
    assert new["meets_goal"].null_count() < new.height
    assert old["value"].to_list() == new["value"].to_list()
