"""Snapshot expiry: replaced personal data does not live on in old snapshots and files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from catalog.settings import Settings
from lakehouse.lake import open_lake
from lakehouse.snapshots import current_snapshot, expire, list_snapshots, read_at


def _parquet_files(settings: Settings) -> set[Path]:
    return set(settings.lake_data_dir.rglob("*.parquet"))


def _lake_with_a_replaced_table(settings: Settings) -> tuple[int, set[Path]]:
    """A marts table written, then replaced: (the old snapshot, the old snapshot's files)."""
    with open_lake(settings) as con:
        con.execute(
            "CREATE TABLE marts.people AS SELECT 'old value ' || i AS v FROM range(50) t(i)"
        )
    old_files = _parquet_files(settings)
    with open_lake(settings) as con:
        old = current_snapshot(con)
        con.execute("DELETE FROM marts.people")
        con.execute("INSERT INTO marts.people SELECT 'new value ' || i FROM range(50) t(i)")
    assert old_files and old_files < _parquet_files(settings)
    return old, old_files


def test_an_old_snapshots_files_are_gone_after_expiry(settings: Settings) -> None:
    settings = settings.model_copy(update={"snapshot_retention_days": 0})
    old, old_files = _lake_with_a_replaced_table(settings)
    with open_lake(settings, read_only=True) as con:  # before: time travel reads the old data
        assert read_at(con, "marts", "people", snapshot=old).fetchall()[0][0].startswith("old")
    with open_lake(settings) as con:
        done = expire(con, settings)
        snaps = list_snapshots(con)
        rows = con.execute("SELECT v FROM marts.people ORDER BY v").fetchall()
    assert done.snapshots >= 2 and done.files >= len(old_files)
    assert len(snaps) == 1  # only the newest snapshot is left
    assert not any(f.exists() for f in old_files)
    assert not any(
        "old value" in f.read_bytes().decode("latin-1") for f in _parquet_files(settings)
    )
    assert len(rows) == 50 and all(r[0].startswith("new value") for r in rows)
    with open_lake(settings, read_only=True) as con, pytest.raises(duckdb.Error):
        read_at(con, "marts", "people", snapshot=old).fetchall()


def test_snapshots_within_the_retention_and_none_keep_everything(settings: Settings) -> None:
    week = settings.model_copy(update={"snapshot_retention_days": 7})
    _, old_files = _lake_with_a_replaced_table(week)
    with open_lake(week) as con:
        before = len(list_snapshots(con))
        assert expire(con, week).snapshots == 0  # all younger than a week
        forever = week.model_copy(update={"snapshot_retention_days": None})
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        assert expire(con, forever, now=later).snapshots == 0
        assert len(list_snapshots(con)) == before
    assert all(f.exists() for f in old_files)
    # a month later, the week's retention expires them
    with open_lake(week) as con:
        done = expire(con, week, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    assert done.snapshots == before - 1 and not any(f.exists() for f in old_files)
