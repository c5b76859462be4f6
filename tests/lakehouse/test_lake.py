"""The lake: zones, Parquet files (no inlining), snapshots, time travel, several processes."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from catalog.errors import LakeError
from catalog.settings import Settings
from lakehouse.lake import ZONES, init_lake, open_lake
from lakehouse.snapshots import current_snapshot, list_snapshots, list_tables, read_at


def test_init_creates_every_zone_once(settings: Settings) -> None:
    init_lake(settings)
    init_lake(settings)  # idempotent: no new snapshot the second time
    with open_lake(settings, read_only=True) as con:
        schemas = {
            r[0]
            for r in con.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE catalog_name='lake'"
            ).fetchall()
        }
        snaps = list_snapshots(con)
    assert set(ZONES) <= schemas
    assert len(snaps) == 2  # the empty lake, then one snapshot creating all zones


def test_rows_are_parquet_files_not_inlined(settings: Settings) -> None:
    with open_lake(settings) as con:
        con.execute("CREATE TABLE raw.t AS SELECT 1 AS i")
    files = list(settings.lake_data_dir.rglob("*.parquet"))
    assert len(files) == 1 and files[0].parent.name == "t"


def test_time_travel_by_snapshot_and_timestamp(settings: Settings) -> None:
    with open_lake(settings) as con:
        con.execute("CREATE TABLE staged.t AS SELECT range AS i FROM range(3)")
        first = current_snapshot(con)
        stamp = con.execute("SELECT now()").fetchone()[0]
        time.sleep(0.05)
        con.execute("INSERT INTO staged.t VALUES (10), (11)")
        assert current_snapshot(con) == first + 1
    with open_lake(settings, read_only=True) as con:
        assert read_at(con, "staged", "t").count("*").fetchone()[0] == 5
        assert read_at(con, "staged", "t", snapshot=first).count("*").fetchone()[0] == 3
        assert read_at(con, "staged", "t", timestamp=stamp).count("*").fetchone()[0] == 3
        assert list_tables(con) == [("staged", "t", 5)]
        with pytest.raises(LakeError):
            read_at(con, "nowhere", "t")
        with pytest.raises(LakeError):
            read_at(con, "staged", "t; DROP TABLE x")


def test_reader_of_an_uninitialised_lake_gets_a_clear_error(settings: Settings) -> None:
    with (
        pytest.raises(LakeError, match="not been initialised"),
        open_lake(settings, read_only=True),
    ):
        pass


def test_read_only_connection_cannot_write(settings: Settings) -> None:
    init_lake(settings)
    with open_lake(settings, read_only=True) as con, pytest.raises(Exception, match="read-only"):
        con.execute("CREATE TABLE raw.x AS SELECT 1")


def _writer(home: str, batches: int, ready: mp.Event) -> None:
    s = Settings(home=Path(home))
    with open_lake(s) as con:
        for b in range(batches):
            con.execute("INSERT INTO raw.events SELECT ?, range FROM range(100)", [b])
            if b == 2:
                ready.set()
            time.sleep(0.02)


def _reader(home: str, snapshot: int, out: mp.Queue, ready: mp.Event) -> None:
    s = Settings(home=Path(home))
    ready.wait(30)
    counts = []
    for _ in range(20):
        with open_lake(s, read_only=True) as con:
            then = read_at(con, "raw", "events", snapshot=snapshot).count("*").fetchone()[0]
            now = read_at(con, "raw", "events").count("*").fetchone()[0]
        counts.append((then, now))
        time.sleep(0.01)
    out.put(counts)


def test_one_process_writes_while_another_reads_a_snapshot(settings: Settings) -> None:
    with open_lake(settings) as con:
        con.execute("CREATE TABLE raw.events (batch INTEGER, i BIGINT)")
        con.execute("INSERT INTO raw.events SELECT -1, range FROM range(100)")
        snap = current_snapshot(con)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    w = ctx.Process(target=_writer, args=(str(settings.home), 30, ready))
    r = ctx.Process(target=_reader, args=(str(settings.home), snap, out, ready))
    w.start()
    r.start()
    counts = out.get(timeout=120)
    w.join(120)
    r.join(120)
    assert w.exitcode == 0 and r.exitcode == 0
    assert all(then == 100 for then, _ in counts)  # the snapshot never moves
    nows = [now for _, now in counts]
    assert nows == sorted(nows) and nows[0] >= 400  # the reader sees the writer's progress
    with open_lake(settings, read_only=True) as con:
        assert read_at(con, "raw", "events").count("*").fetchone()[0] == 3100


def _hold_writer(home: str, hold_s: float, started: mp.Event) -> None:
    with open_lake(Settings(home=Path(home))):
        started.set()
        time.sleep(hold_s)


def test_second_writer_waits_for_the_first(settings: Settings) -> None:
    init_lake(settings)
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    p = ctx.Process(target=_hold_writer, args=(str(settings.home), 1.5, started))
    p.start()
    assert started.wait(60)
    t0 = time.monotonic()
    with open_lake(settings) as con:
        waited = time.monotonic() - t0
        con.execute("CREATE TABLE raw.after AS SELECT 1 AS i")
    p.join(30)
    assert waited > 0.5


def test_second_writer_gives_up_with_a_clear_error(settings: Settings) -> None:
    init_lake(settings)
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    p = ctx.Process(target=_hold_writer, args=(str(settings.home), 3, started))
    p.start()
    assert started.wait(60)
    impatient = settings.model_copy(update={"lake_lock_timeout_s": 0.3})
    with pytest.raises(LakeError, match="another process"), open_lake(impatient):
        pass
    p.join(30)
