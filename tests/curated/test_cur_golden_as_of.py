"""A staged row's as-of day (``curated.golden.picked_columns``): its dating field, else the
day it was loaded — in Beijing, as the delivered dates are, not in UTC."""

from __future__ import annotations

import datetime as dt

import duckdb

from catalog.loader import load_catalogue
from curated.golden import KEY_PID, Plan, as_of_field, picked_columns
from lakehouse.session import in_utc


def test_a_row_loaded_on_a_utc_evening_is_of_the_next_day_in_beijing() -> None:
    dept, ds = next((d, ds) for d, ds in load_catalogue().datasets() if as_of_field(ds))
    dated = as_of_field(ds)
    con = in_utc(duckdb.connect())
    con.execute(f'CREATE TABLE t ({KEY_PID} VARCHAR, _loaded_at TIMESTAMPTZ, "{dated}" TIMESTAMP)')
    con.executemany(
        "INSERT INTO t VALUES (?, ?, ?)",
        [
            ("a", dt.datetime(2026, 12, 3, 17, 30, tzinfo=dt.UTC), None),  # 01:30 on the 4th
            ("b", dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.UTC), None),  # 23:30 on the 3rd
            ("c", dt.datetime(2026, 12, 3, 17, 30, tzinfo=dt.UTC), dt.datetime(2026, 11, 2, 9)),
        ],
    )
    plan = Plan(dept.code, ds, (), ())
    got = con.execute(f"SELECT {KEY_PID}, as_of FROM (SELECT {picked_columns(plan, [])} FROM t)")
    assert sorted(got.fetchall()) == [
        ("a", dt.date(2026, 12, 4)),
        ("b", dt.date(2026, 12, 3)),
        ("c", dt.date(2026, 11, 2)),  # its own date first
    ]
