"""The lake: zones, Parquet files (no inlining), snapshots, time travel, several processes."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from catalog.errors import LakeError
from catalog.settings import Settings
from lakehouse.lake import ZONES, init_lake, open_lake
from lakehouse.snapshots import (
    changes,
    current_snapshot,
    insertions,
    list_snapshots,
    list_tables,
    read_at,
)


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


def test_a_home_whose_path_has_a_quote_a_space_and_chinese_opens(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "O'Brien 的 街道 home").ensure_dirs()
    init_lake(settings)  # the extension folder, the spill folder, the ATTACH and DATA_PATH
    with open_lake(settings) as con:
        con.execute("CREATE TABLE landing.t (x VARCHAR)")
        con.execute("INSERT INTO landing.t VALUES (?)", ["a'b"])
    with open_lake(settings, read_only=True) as con:
        assert con.execute("SELECT x FROM landing.t").fetchall() == [("a'b",)]
    assert any(settings.lake_data_dir.rglob("*.parquet"))


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


def test_the_change_feed_names_a_span_of_snapshots(settings: Settings) -> None:
    with open_lake(settings) as con:
        con.execute("CREATE TABLE staged.t AS SELECT range AS i FROM range(3)")
        first = current_snapshot(con)
        con.execute("INSERT INTO staged.t VALUES (10), (11)")
        con.execute("DELETE FROM staged.t WHERE i = 0")
        last = current_snapshot(con)
        added = con.execute(f"SELECT i FROM {insertions('staged', 't', first + 1, last)}")
        assert sorted(r[0] for r in added.fetchall()) == [10, 11]
        changed = con.execute(
            f"SELECT change_type, i FROM {changes('staged', 't', first + 1, last)} ORDER BY i"
        ).fetchall()
        assert changed == [("delete", 0), ("insert", 10), ("insert", 11)]
        whole = con.execute(f"SELECT count(*) FROM {insertions('staged', 't', 0, last)}")
        assert whole.fetchone()[0] == 5


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


def test_extensions_are_loaded_once_per_process_not_once_per_open(settings: Settings) -> None:
    from lakehouse.lake import close_idle, instances_created

    init_lake(settings)
    close_idle()
    before = instances_created()
    for i in range(5):
        with open_lake(settings) as con:
            con.execute("CREATE TABLE IF NOT EXISTS raw.t (i INTEGER)")
            con.execute("INSERT INTO raw.t VALUES (?)", [i])
        with (
            open_lake(settings, read_only=True) as outer,
            open_lake(settings, read_only=True) as inner,
        ):
            assert outer.execute("SELECT count(*) FROM raw.t").fetchone()[0] == i + 1
            assert inner.execute("SELECT count(*) FROM raw.t").fetchone()[0] == i + 1
    assert instances_created() - before == 2  # one, and a second for the nested open


def test_a_block_that_fails_or_leaves_state_behind_does_not_pass_it_on(settings: Settings) -> None:
    from lakehouse.lake import close_idle, instances_created

    init_lake(settings)
    close_idle()
    before = instances_created()
    with pytest.raises(RuntimeError), open_lake(settings) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("CREATE TABLE raw.half AS SELECT 1 AS i")
        raise RuntimeError("a step failed inside its transaction")
    with open_lake(settings) as con:  # a fresh instance: nothing of the failed block
        assert ("raw", "half") not in {
            (r[0], r[1])
            for r in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name='lake'"
            ).fetchall()
        }
        con.execute("CREATE TEMP TABLE scratch AS SELECT 1 AS i")  # left behind …
    with open_lake(settings, read_only=True) as con:  # … so that instance was not reused
        assert (
            con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'scratch'"
            ).fetchone()[0]
            == 0
        )
    assert instances_created() - before == 3


def _append(home: str, value: int) -> None:
    with open_lake(Settings(home=Path(home))) as con:
        con.execute("INSERT INTO raw.log VALUES (?)", [value])


def test_a_kept_instance_writes_after_another_process_wrote(settings: Settings) -> None:
    """Nothing of the lake survives between opens: a writer in this process, then one in
    another, then this process again — no id reused, every row and snapshot there."""
    from lakehouse.snapshots import list_snapshots

    with open_lake(settings) as con:
        con.execute("CREATE TABLE raw.log (v INTEGER)")
    ctx = mp.get_context("spawn")
    for step in range(3):
        _append(str(settings.home), 2 * step)  # this process, its kept instance
        p = ctx.Process(target=_append, args=(str(settings.home), 2 * step + 1))
        p.start()
        p.join(120)
        assert p.exitcode == 0
    _append(str(settings.home), 6)
    with open_lake(settings, read_only=True) as con:
        values = sorted(v for (v,) in con.execute("SELECT v FROM raw.log").fetchall())
        snaps = [s for s in list_snapshots(con)]
        files = con.execute(
            "SELECT count(*), count(DISTINCT data_file) FROM ducklake_list_files('lake', 'log', schema => 'raw')"
        ).fetchone()
    assert values == list(range(7))
    assert len(snaps) == len({repr(s) for s in snaps})
    assert files[0] == files[1] == 7  # one Parquet file per insert, none overwritten


def test_tables_in_lists_the_committed_tables_as_duckdb_does(settings: Settings) -> None:
    from lakehouse.lake import tables_in

    init_lake(settings)

    def listed(con) -> set[tuple[str, str]]:
        rows = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name='lake'"
        ).fetchall()
        return {(z, t) for z, t in rows}

    with open_lake(settings) as con:
        assert tables_in(con) == set()
        con.execute("CREATE TABLE raw.a AS SELECT 1 AS i")
        con.execute("CREATE TABLE staged.a AS SELECT 1 AS i")
        con.execute("CREATE TABLE staged.gone AS SELECT 1 AS i")
        con.execute("DROP TABLE staged.gone")  # a dropped table ends its snapshot range
        con.execute("CREATE OR REPLACE TABLE staged.a AS SELECT 2 AS i")  # listed once
        assert tables_in(con) == listed(con) == {("raw", "a"), ("staged", "a")}
        assert tables_in(con, "staged") == {("staged", "a")}
        assert tables_in(con, "marts") == set()
    with open_lake(settings, read_only=True) as con:  # a reader sees the same
        assert tables_in(con) == {("raw", "a"), ("staged", "a")}


def _writer_in_another_thread(settings: Settings) -> str:
    """What a writer's open of the lake in another thread of this process was told (its
    LakeError's message); fails when it was let in or hung."""
    import threading

    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with open_lake(settings):
                pass
        except LakeError as exc:
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    t.join(30)
    assert not t.is_alive() and len(errors) == 1
    return str(errors[0])


def test_a_held_lake_serves_every_open_inside_it_without_attaching_again(
    settings: Settings,
) -> None:

    from lakehouse.lake import close_idle, held_opens, hold_lake, instances_created

    init_lake(settings)
    close_idle()
    before, served = instances_created(), held_opens()
    with hold_lake(settings):
        attached = instances_created()
        for i in range(3):
            with open_lake(settings) as con:
                con.execute("CREATE TABLE IF NOT EXISTS raw.t (i INTEGER)")
                con.execute("INSERT INTO raw.t VALUES (?)", [i])
            with open_lake(settings, read_only=True) as outer, open_lake(settings) as inner:
                assert outer.execute("SELECT count(*) FROM raw.t").fetchone()[0] == i + 1
                assert inner.execute("SELECT count(*) FROM raw.t").fetchone()[0] == i + 1
        # a block that fails inside its transaction rolls back; the held lake goes on
        with pytest.raises(RuntimeError), open_lake(settings) as con:
            con.execute("BEGIN TRANSACTION")
            con.execute("INSERT INTO raw.t VALUES (99)")
            raise RuntimeError("a step failed inside its transaction")
        with open_lake(settings, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM raw.t WHERE i = 99").fetchone()[0] == 0
        # another thread of this process cannot take the lock the hold has: told, not hung
        assert "another thread" in _writer_in_another_thread(settings)
        assert instances_created() == attached  # nothing attached inside the hold
    assert instances_created() - before == 1
    assert held_opens() - served == 3 * 3 + 2
    # every open after the hold attaches as before: the writer lock was released
    with open_lake(settings) as con:
        assert con.execute("SELECT count(*) FROM raw.t").fetchone()[0] == 3


def test_a_readers_hold_does_not_serve_a_writer(settings: Settings) -> None:
    from lakehouse.lake import held_opens, hold_lake

    init_lake(settings)
    with hold_lake(settings, read_only=True):
        served = held_opens()
        with open_lake(settings) as con:  # its own ATTACH, with the writer lock
            con.execute("CREATE TABLE raw.w AS SELECT 1 AS i")
        assert held_opens() == served
        with open_lake(settings, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM raw.w").fetchone()[0] == 1
        assert held_opens() == served + 1


def test_a_delivery_creates_its_table_and_rows_in_one_snapshot(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ensure_table inside a transaction (no commit of its own, a later field added), and a
    frame larger than one INSERT's slice: every row, one snapshot in all."""
    import polars as pl

    from lakehouse import lake

    monkeypatch.setattr(lake, "INSERT_ROWS", 3)
    init_lake(settings)
    with open_lake(settings) as con:
        before = current_snapshot(con)
        with lake.transaction(con):
            lake.ensure_table(con, "raw", "t", [("a", "VARCHAR")])
            lake.ensure_table(con, "raw", "t", [("a", "VARCHAR"), ("n", "BIGINT")])
            frame = pl.DataFrame({"n": list(range(10)), "a": [f"v{i}" for i in range(10)]})
            lake.insert_frame(con, "raw", "t", frame)
        assert current_snapshot(con) == before + 1
        rows = con.execute("SELECT a, n FROM raw.t ORDER BY n").fetchall()
        assert rows == [(f"v{i}", i) for i in range(10)]
        lake.ensure_table(con, "raw", "t", [("a", "VARCHAR")])  # outside: nothing to do
        assert current_snapshot(con) == before + 1


def test_list_tables_counts_from_the_catalogue_as_count_star(settings: Settings) -> None:
    """Rows counted from DuckLake's catalogue (live files' records less live deletes) equal
    ``count(*)`` after deletes in two snapshots, an update, a merge of the files, and rows
    another writer inlined into the catalogue (then counted table by table)."""
    from lakehouse.lake import connect

    with open_lake(settings) as con:
        con.execute("CREATE TABLE raw.t AS SELECT range AS i FROM range(100)")
        con.execute("CREATE TABLE staged.u AS SELECT range AS i FROM range(3)")
        con.execute("DELETE FROM raw.t WHERE i < 10")
        con.execute("DELETE FROM raw.t WHERE i >= 90")  # a second delete file, same data file
        con.execute("UPDATE raw.t SET i = i + 1000 WHERE i < 20")
        con.execute("CALL ducklake_merge_adjacent_files('lake', 't', schema => 'raw')").fetchall()
        con.execute("DELETE FROM raw.t WHERE i = 50")
        con.execute("DELETE FROM staged.u")
        assert list_tables(con) == [("raw", "t", 79), ("staged", "u", 0)]
    con = connect(settings)  # a writer that inlines small inserts (ours never do)
    try:
        con.execute("USE memory")
        con.execute("DETACH lake")
        con.execute(
            f"ATTACH 'ducklake:{settings.lake_metadata}' AS lake "
            f"(DATA_PATH '{settings.lake_data_dir}/', DATA_INLINING_ROW_LIMIT 50)"
        )
        con.execute("USE lake")
        con.execute("INSERT INTO raw.t VALUES (7), (8)")
        assert list_tables(con) == [("raw", "t", 81), ("staged", "u", 0)]
    finally:
        con.close()


def test_dropping_the_file_cache_lets_go_of_what_it_held_for_every_later_open(
    settings: Settings,
) -> None:
    from lakehouse.lake import drop_file_cache, hold_lake

    init_lake(settings)
    cached = (
        "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
        "WHERE tag = 'EXTERNAL_FILE_CACHE'"
    )
    setting = "SELECT current_setting('enable_external_file_cache')"
    with hold_lake(settings):
        with open_lake(settings) as con:
            con.execute(
                "CREATE TABLE raw.t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(50000)"
            )
        with open_lake(settings, read_only=True) as con:
            con.execute("SELECT count(DISTINCT s) FROM raw.t").fetchall()
            assert con.execute(setting).fetchone()[0] is True  # the ingest reads with it
            assert con.execute(cached).fetchone()[0] > 0
            drop_file_cache(con)
        with open_lake(settings) as con:  # another open of the held lake: the same instance
            assert con.execute(setting).fetchone()[0] is False
            assert con.execute(cached).fetchone()[0] == 0
            assert con.execute("SELECT count(DISTINCT s) FROM raw.t").fetchone()[0] == 50000
            assert con.execute(cached).fetchone()[0] == 0  # read, not kept


def _c_heap_in_use() -> int:
    """Bytes glibc's allocator has handed out and not got back (mallinfo2's uordblks)."""
    import ctypes
    import gc

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                         "uordblks", "fordblks", "keepcost")
        ]  # fmt: skip

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    gc.collect()
    return libc.mallinfo2().uordblks


def test_renewing_a_hold_gives_back_what_the_instance_kept_and_keeps_the_hold(
    settings: Settings,
) -> None:
    """DuckDB keeps C heap for every DuckLake statement an instance ran, until the instance
    closes (DETACH gives nothing back): renew_hold attaches a new instance under the same
    hold (the writer lock still held, the rows there) and closes the old one."""

    from lakehouse.lake import hold_lake, instances_created, renew_hold

    init_lake(settings)
    assert renew_hold(settings) is False  # nothing held
    with hold_lake(settings):
        for i in range(150):  # small units of work, as an ingest's: a write, then a read
            with open_lake(settings) as con:
                con.execute(f"CREATE TABLE IF NOT EXISTS raw.t{i % 10} (i INTEGER, s VARCHAR)")
                con.execute(f"INSERT INTO raw.t{i % 10} VALUES (?, 'x')", [i])
            with open_lake(settings, read_only=True) as con:
                con.execute(f"SELECT count(*) FROM raw.t{i % 10} WHERE i > 3").fetchall()
        with open_lake(settings) as con, pytest.raises(LakeError, match="1 block"):
            renew_hold(settings)  # its cursor would be closed under it
        kept, created = _c_heap_in_use(), instances_created()
        assert renew_hold(settings) is True
        given_back = kept - _c_heap_in_use()
        assert instances_created() == created + 1
        assert given_back > 1_000_000, f"{given_back:,} bytes given back"  # the old one closed
        with open_lake(settings) as con:  # the held lake, its new instance
            assert con.execute("SELECT count(*) FROM raw.t3").fetchone()[0] == 15
            con.execute("INSERT INTO raw.t3 VALUES (1000, 'y')")
        # the hold's writer lock is still taken
        assert "another thread" in _writer_in_another_thread(settings)
    with open_lake(settings) as con:  # the lock released at the hold's end
        assert con.execute("SELECT count(*) FROM raw.t3").fetchone()[0] == 16


def _snapshot_reads(con, marks: tuple[str, str]) -> int:
    """DuckLake's reads of the current snapshot (a lake transaction's first statement on its
    catalogue) logged between the two marker statements on ``con``'s instance."""
    logged = [
        m
        for (m,) in con.execute(
            "SELECT message FROM duckdb_logs WHERE type = 'QueryLog' ORDER BY timestamp"
        ).fetchall()
    ]
    start, end = (logged.index(f"SELECT '{m}'") for m in marks)
    return sum(
        "ducklake_snapshot WHERE snapshot_id = (SELECT MAX(snapshot_id)" in m
        for m in logged[start:end]
    )


def test_a_registered_frame_and_its_statements_share_one_lake_transaction(
    settings: Settings,
) -> None:
    """On a cursor of the lake, registering a frame, reading it and letting it go each began
    a DuckLake transaction (a read of the catalogue's snapshot); in ``registered`` they are
    one. The view is gone after the block."""
    import duckdb
    import pyarrow as pa

    from lakehouse.lake import registered

    init_lake(settings)
    frame = pa.table({"a": [1, 2, 3]})
    with open_lake(settings) as con:
        con.execute("CALL enable_logging(['QueryLog'])")
        con.execute("SELECT 'bare'")
        con.register("_frame", frame)
        assert con.execute("SELECT sum(a) FROM _frame").fetchone()[0] == 6
        con.unregister("_frame")
        con.execute("SELECT 'helper'")
        with registered(con, "_frame", frame):
            assert con.execute("SELECT sum(a) FROM _frame").fetchone()[0] == 6
        con.execute("SELECT 'end'")
        assert _snapshot_reads(con, ("bare", "helper")) >= 3
        assert _snapshot_reads(con, ("helper", "end")) == 1
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM _frame")


def test_a_registered_block_joins_the_transaction_it_is_in_and_commits_with_it(
    settings: Settings,
) -> None:
    import pyarrow as pa

    from lakehouse.lake import in_transaction, registered, transaction

    init_lake(settings)
    with open_lake(settings) as con:
        con.execute("CREATE TABLE raw.t (a INTEGER)")
        before = current_snapshot(con)
        with transaction(con):
            with registered(con, "_frame", pa.table({"a": [1, 2]})):
                con.execute("INSERT INTO raw.t SELECT a FROM _frame")
            assert in_transaction(con)  # still the caller's: nothing committed yet
            with registered(con, "_frame", pa.table({"a": [3]})):
                con.execute("INSERT INTO raw.t SELECT a FROM _frame")
        assert not in_transaction(con)
        assert current_snapshot(con) == before + 1  # both inserts in the caller's one commit
        assert con.execute("SELECT sum(a) FROM raw.t").fetchone()[0] == 6
        with registered(con, "_frame", pa.table({"a": [4]})):  # a block of its own commits
            con.execute("INSERT INTO raw.t SELECT a FROM _frame")
            assert in_transaction(con)
        assert current_snapshot(con) == before + 2
        assert con.execute("SELECT sum(a) FROM raw.t").fetchone()[0] == 10


def test_a_registered_block_that_fails_raises_its_own_error_and_keeps_nothing(
    settings: Settings,
) -> None:
    """The block's statement fails: its own error is raised (not the aborted transaction's
    on letting the view go), its writes are rolled back, the view is gone and the cursor
    works on; inside a caller's transaction the error is the block's too."""
    import duckdb
    import pyarrow as pa

    from lakehouse.lake import in_transaction, registered, transaction

    init_lake(settings)
    frame = pa.table({"a": ["1", "x"]})
    with open_lake(settings) as con:
        con.execute("CREATE TABLE raw.t (a INTEGER)")
        with pytest.raises(duckdb.ConversionException), registered(con, "_frame", frame):
            con.execute("INSERT INTO raw.t VALUES (7)")
            con.execute("INSERT INTO raw.t SELECT CAST(a AS INTEGER) FROM _frame")
        assert not in_transaction(con)
        assert con.execute("SELECT count(*) FROM raw.t").fetchone()[0] == 0
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM _frame")
        with pytest.raises(RuntimeError), registered(con, "_frame", frame):  # not DuckDB's
            con.execute("INSERT INTO raw.t VALUES (7)")
            raise RuntimeError("the caller's own failure")
        assert con.execute("SELECT count(*) FROM raw.t").fetchone()[0] == 0
        with (
            pytest.raises(duckdb.ConversionException),
            transaction(con),
            registered(con, "_frame", frame),
        ):
            con.execute("INSERT INTO raw.t SELECT CAST(a AS INTEGER) FROM _frame")
        assert not in_transaction(con)
        con.execute("INSERT INTO raw.t VALUES (8)")
        assert con.execute("SELECT sum(a) FROM raw.t").fetchone()[0] == 8
