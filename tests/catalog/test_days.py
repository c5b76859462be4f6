"""The street's days are Beijing's, whatever the machine's clock (catalog.days)."""

from __future__ import annotations

import ast
import datetime as dt
import os
import re

import pytest

from catalog.days import BEIJING, BEIJING_OFFSET_MIN, beijing_day
from marts.build import run_day
from pipelines.defs.need_model.assets import scoring_cutoff

SESSION_DAY = re.compile(r"\bcurrent_date\b|\btoday\(\)", re.IGNORECASE)


def test_the_day_turns_at_1600_utc() -> None:
    assert beijing_day(dt.datetime(2026, 12, 3, 15, 59, 59, tzinfo=dt.UTC)) == dt.date(2026, 12, 3)
    assert beijing_day(dt.datetime(2026, 12, 3, 16, 0, tzinfo=dt.UTC)) == dt.date(2026, 12, 4)
    assert beijing_day(dt.datetime(2026, 12, 4, 0, 30, tzinfo=BEIJING)) == dt.date(2026, 12, 4)
    assert BEIJING.utcoffset(None) == dt.timedelta(minutes=BEIJING_OFFSET_MIN)


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        beijing_day(dt.datetime(2026, 12, 3, 20, 0))


def test_now_is_beijings_day() -> None:
    before = dt.datetime.now(dt.UTC)
    today = beijing_day()
    after = dt.datetime.now(dt.UTC)
    assert today in {
        (before + dt.timedelta(hours=8)).date(),
        (after + dt.timedelta(hours=8)).date(),
    }


def test_the_marts_and_the_need_model_count_the_streets_days() -> None:
    evening_utc = dt.datetime(2026, 12, 3, 20, 0, tzinfo=dt.UTC)  # 04:00 on the 4th in Beijing
    assert run_day(evening_utc) == dt.date(2026, 12, 4)
    # scored as of the last whole day in Beijing: the 3rd, not the machine's 2nd
    assert scoring_cutoff(evening_utc) == dt.date(2026, 12, 3)
    assert scoring_cutoff(dt.datetime(2026, 12, 3, 15, 0, tzinfo=dt.UTC)) == dt.date(2026, 12, 2)


def test_no_production_module_reads_the_machines_date() -> None:
    """No ``date.today()``, no naive ``datetime.now()``, no SQL ``current_date`` in the
    production path or the marts' SQL: each is the machine's or the session's day, not
    the street's (docstrings and comments may name them)."""
    from tests.test_production_path import REPO, production_modules, strings

    found = []
    for path in production_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name, owner = node.func.attr, node.func.value
            what = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if (name, what) == ("today", "date") or (
                (name, what) == ("now", "datetime") and not node.args and not node.keywords
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {what}.{name}()")
        found += [
            f"{path.relative_to(REPO)}:{line} current_date"
            for line, text in strings(tree)
            if SESSION_DAY.search(text)
        ]
    for path in sorted(REPO.glob("*/**/*.sql")):
        if ".venv" not in path.parts and SESSION_DAY.search(path.read_text(encoding="utf-8")):
            found.append(f"{path.relative_to(REPO)} current_date")
    assert found == []


def test_the_hub_keeps_utc_whatever_the_machines_zone() -> None:
    """The hub's DuckDB sessions keep UTC (lakehouse.session.in_utc). Under ``make test``'s
    second leg (STREETHUB_EXPECT_TZ=Asia/Shanghai) this also proves the leg ran where it
    says: Python's and DuckDB's own clocks are 8 hours ahead of UTC there."""
    import time

    import duckdb

    from lakehouse.session import in_utc

    con = in_utc(duckdb.connect())
    assert con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "UTC"
    expected = os.environ.get("STREETHUB_EXPECT_TZ")
    if expected is not None:
        assert time.localtime().tm_gmtoff == BEIJING_OFFSET_MIN * 60
        machine = duckdb.connect().execute("SELECT current_setting('TimeZone')").fetchone()[0]
        assert machine == expected
