"""Landing's lake commits: one per delivery, with what is recorded beside it.

A landed file's ledger row and its inbox record, and a pull's delivery and its record, go in
one DuckLake commit (each commit costs a snapshot and a catalogue reload): counted here
as snapshots, with the rows each commit must hold. Small generated files in a private home.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import quality.gate
from catalog.loader import load_catalogue
from catalog.model import ConnectorKind, Dataset
from catalog.settings import Settings
from lakehouse.lake import open_lake, row_count
from pipelines.connectors.sql_db import Pulled
from pipelines.ingest import ingest_and_stage, landing, staged
from pipelines.ingest.inbox import known_keys_by_dept
from pipelines.ingest.landing import land
from pipelines.ingest.ledger import ensure_ledger, pending
from pipelines.protection import Protection

OLD = time.time() - 3600  # long settled
CSV = b"case_id,opened_at\r\nA-1,2026-11-20 22:57:33\r\n"


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


@pytest.fixture(scope="module")
def cgj(cat) -> Dataset:
    return next(d for d in cat.departments["cgj"].datasets if d.code == "violation_cases")


@pytest.fixture(scope="module")
def pulled_dataset(cat) -> tuple[str, Dataset]:
    return next(
        (dept.code, ds) for dept, ds in cat.datasets() if ds.delivery.kind is ConnectorKind.sql_db
    )


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[Settings, duckdb.DuckDBPyConnection]]:
    settings = Settings(home=tmp_path / "home").ensure_dirs()
    (settings.inbox_dir / "cgj").mkdir(parents=True)
    with open_lake(settings) as con:
        yield settings, con


def snapshots(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchone()[0]


def deliver(settings: Settings, name: str, data: bytes) -> None:
    path = settings.inbox_dir / "cgj" / name
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))


def test_each_landed_file_is_one_commit_with_its_inbox_record(home, cgj) -> None:
    settings, con = home
    ensure_ledger(con)
    deliver(settings, "violation_cases_1.csv", CSV)
    deliver(settings, "violation_cases_2.csv", CSV + b"A-2,2026-11-21 08:00:00\r\n")
    before = snapshots(con)
    result = land(con, settings, "cgj", cgj)
    assert len(result.landed) == 2
    assert snapshots(con) - before == 2  # was 4: the ledger row, then the inbox record
    files = con.execute("SELECT file_name FROM landing.inbox_files ORDER BY 1").fetchall()
    assert files == [("violation_cases_1.csv",), ("violation_cases_2.csv",)]
    assert list((settings.inbox_dir / "cgj").iterdir()) == []
    # the same content again under another name: nothing landed, the file remembered, once
    deliver(settings, "violation_cases_3.csv", CSV)
    before = snapshots(con)
    again = land(con, settings, "cgj", cgj)
    assert (again.landed, again.skipped) == ([], 1)
    assert snapshots(con) - before == 1
    assert row_count(con, "landing", "deliveries") == 2
    assert row_count(con, "landing", "inbox_files") == 3
    # the dataset's deliveries as landing counts them, with no read of its own afterwards
    assert (result.deliveries_total, again.deliveries_total) == (2, 2)


def test_copies_in_one_landing_land_once(home, cgj) -> None:
    """The hashes landing reads once are kept up to date as it lands: a second file of the
    same content in the same landing is a copy, as it is in a later one."""
    settings, con = home
    ensure_ledger(con)
    deliver(settings, "violation_cases_1.csv", CSV)
    deliver(settings, "violation_cases_2.csv", CSV)
    deliver(settings, "violation_cases_3.csv", CSV + b"A-2,2026-11-21 08:00:00\r\n")
    result = land(con, settings, "cgj", cgj)
    assert (len(result.landed), result.skipped, result.deliveries_total) == (2, 1, 2)
    assert row_count(con, "landing", "deliveries") == 2
    hashes = con.execute("SELECT count(DISTINCT sha256) FROM landing.deliveries").fetchone()[0]
    assert hashes == 2
    assert row_count(con, "landing", "inbox_files") == 3


def test_a_pull_is_recorded_in_the_commit_of_what_it_brought(
    home, pulled_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, con = home
    ensure_ledger(con)
    dept, ds = pulled_dataset
    answers = iter(
        [
            Pulled(b'{"a": 1}\n', 1, "c1", "db"),
            Pulled(b"", 0, None, "db"),
            RuntimeError("connection refused"),
            Pulled(b'{"a": 2}\n', 1, "c2", "db"),
        ]
    )

    def pull(*args, **kw) -> Pulled:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(landing, "pull_sql", pull)
    counts, results = [], []
    for record in (True, True, True, False):
        before = snapshots(con)
        results.append(land(con, settings, dept, ds, record=record))
        counts.append(snapshots(con) - before)
    # landed + recorded, recorded (nothing came), failure + recorded, landed only
    assert counts == [1, 1, 1, 1]
    # each pull's result counts the dataset's deliveries (read with the cursor, not again)
    assert [r.deliveries_total for r in results] == [1, 1, 1, 2]
    pulls = con.execute("SELECT landed, failed FROM landing.pulls ORDER BY pulled_at").fetchall()
    assert pulls == [(1, 0), (0, 0), (0, 1)]
    assert row_count(con, "landing", "deliveries") == 2
    failed = con.execute("SELECT count(*) FROM landing.delivery_accounts WHERE status='failed'")
    assert failed.fetchone()[0] == 1


def test_a_pulls_bytes_are_let_go_before_its_delivery_is_read(
    home, pulled_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull's bytes (a whole table's, tens of MB on a large street) are landed and let go
    before the delivery is read and gated in landing's transaction, not held under it."""
    settings, con = home
    ensure_ledger(con)
    dept, ds = pulled_dataset
    freed: list[bool] = []

    class Tracked(bytes):
        def __del__(self) -> None:
            freed.append(True)

    monkeypatch.setattr(
        landing, "pull_sql", lambda *a, **kw: Pulled(Tracked(b'{"a": 1}\n'), 1, "c1", "db")
    )
    seen: list[bool] = []

    class Load:  # a reader that notes whether the bytes were let go when it starts
        def __call__(self, d) -> None:
            seen.append(bool(freed))

        def committed(self) -> None:
            pass

        def fell_back(self) -> None:
            pass

    result = land(con, settings, dept, ds, load=Load())
    assert len(result.landed) == 1 and seen == [True]


def test_the_gated_plaintext_is_let_go_before_the_staged_rows_are_written(
    home, cgj, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate's standardised rows (a whole delivery's plaintext) are let go before the
    staged rows, their protected copy, are written: at 200,000 residents the staged inserts
    stood on both, and were the ingest's highs."""
    settings, con = home
    ensure_ledger(con)
    header = "案件编号,案件类型,发现时间,所属社区,地址,经度,纬度,案件描述,处理状态"
    row = "CG000001,占道经营,2026-11-20 09:30:00,110105001001,建外大街1号,116.45,39.91,摊贩,处理中"
    deliver(settings, "violation_cases_1.csv", f"{header}\r\n{row}\r\n".encode())
    gated: list[weakref.ref] = []
    real_gate = quality.gate.gate

    def spied_gate(raw, dataset):
        result = real_gate(raw, dataset)
        gated.append(weakref.ref(result.staged))
        return result

    held_at_insert: list[bool] = []
    real_insert = staged.insert_frame

    def spied_insert(con, zone, table, frame) -> None:
        if zone == "staged":
            held_at_insert.append(gated[-1]() is not None)
        real_insert(con, zone, table, frame)

    monkeypatch.setattr(quality.gate, "gate", spied_gate)
    monkeypatch.setattr(staged, "insert_frame", spied_insert)
    protection = Protection.from_settings(settings)
    _, _, accounts = ingest_and_stage(con, settings, "cgj", cgj, protection=protection)
    assert [a.rows_out for a in accounts] == [1] and held_at_insert == [False]


def test_known_keys_and_row_counts_on_a_lake_without_ledger_tables(home, cgj) -> None:
    settings, con = home
    assert known_keys_by_dept(con) == {}  # no ledger table yet: probed, nothing known
    assert row_count(con, "landing", "deliveries") == 0
    assert row_count(con, "nowhere", "nothing") == 0
    con.execute(
        "CREATE TABLE landing.inbox_files (file_key VARCHAR, dept VARCHAR, dataset VARCHAR, "
        "file_name VARCHAR, size_bytes BIGINT, mtime_ns BIGINT, seen_at TIMESTAMPTZ)"
    )
    con.execute("INSERT INTO landing.inbox_files VALUES ('k1', 'cgj', 'x', 'f', 1, 1, now())")
    assert known_keys_by_dept(con) == {"cgj": {"k1"}}  # one of the two tables only
    ensure_ledger(con)
    deliver(settings, "violation_cases_1.csv", CSV)
    os.symlink("/etc/hostname", settings.inbox_dir / "cgj" / "violation_cases_9.csv")
    result = land(con, settings, "cgj", cgj)
    assert len(result.landed) == 1 and result.refused == 1
    # both sources in one read: the files dealt with and the refused entry's account
    keys = known_keys_by_dept(con, "cgj")["cgj"]
    files = {k for (k,) in con.execute("SELECT file_key FROM landing.inbox_files").fetchall()}
    refused = {
        k
        for (k,) in con.execute(
            "SELECT delivery_id FROM landing.delivery_accounts WHERE status = 'failed'"
        ).fetchall()
    }
    assert len(refused) == 1 and keys == files | refused
    assert row_count(con, "landing", "deliveries") == 1


def first_read_fails(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first read of a delivery (in its landing's transaction) fails once, as a disk
    might; every read's file name, in order, goes into the list returned."""
    calls: list[str] = []
    real = staged.read_and_gate

    def flaky(*args, **kw):
        calls.append(args[3].file_name)
        if len(calls) == 1:
            raise RuntimeError("the disk hiccuped")
        return real(*args, **kw)

    monkeypatch.setattr(staged, "read_and_gate", flaky)
    return calls


def test_a_read_that_fails_in_its_landing_commit_lands_alone_and_is_read_again(
    home, cgj, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new delivery is read and gated in its landing's transaction; when that read raises,
    the transaction is rolled back, the delivery landed alone (one commit) and read again
    the two-transaction way, which meets what the delivery holds as before: here a file
    whose header is not the catalogue's, accounted failed. Nothing twice, nothing lost."""
    settings, con = home
    ensure_ledger(con)
    calls = first_read_fails(monkeypatch)
    deliver(settings, "violation_cases_1.csv", CSV)
    before = snapshots(con)
    protection = Protection.from_settings(settings)
    landed, accounts, stage_accounts = ingest_and_stage(
        con, settings, "cgj", cgj, protection=protection
    )
    assert calls == ["violation_cases_1.csv"] * 2  # in landing's transaction, then alone
    assert len(landed.landed) == 1 and landed.deliveries_total == 1
    assert [a.status for a in accounts] == ["failed"] and stage_accounts == []
    # landed alone (with its inbox record), then its failed account: two commits
    assert snapshots(con) - before == 2
    for table in ("deliveries", "inbox_files", "delivery_accounts"):
        assert row_count(con, "landing", table) == 1, table
    assert list((settings.inbox_dir / "cgj").iterdir()) == []
    todo = pending(con, "cgj", cgj.code)
    assert not todo.unread and not todo.ungated
    # the same file again: a copy of a landed delivery, read by nobody
    deliver(settings, "violation_cases_2.csv", CSV)
    again, more, _ = ingest_and_stage(con, settings, "cgj", cgj, protection=protection)
    assert (again.landed, again.skipped, more) == ([], 1, [])
    assert len(calls) == 2


def test_an_unreadable_delivery_read_in_its_landing_commit_is_accounted_as_before(
    home, cgj
) -> None:
    """No fault but the file's own: the read in landing's transaction fails, the delivery is
    landed alone and accounted failed, as when landing and reading were separate."""
    settings, con = home
    ensure_ledger(con)
    deliver(settings, "violation_cases_1.csv", CSV)
    landed, accounts, stage_accounts = ingest_and_stage(
        con, settings, "cgj", cgj, protection=Protection.from_settings(settings)
    )
    assert len(landed.landed) == 1 and [a.status for a in accounts] == ["failed"]
    assert "missing column" in (accounts[0].reason or "")  # the catalogue's columns it lacks
    assert stage_accounts == []
    assert row_count(con, "landing", "delivery_accounts") == 1


def test_after_a_fallback_the_later_deliveries_are_read_after_it(
    home, cgj, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery whose read failed in its landing's transaction is read after landing; the
    deliveries landed after it in the same landing wait for it, so they are read in the
    order they arrived, never before it."""
    settings, con = home
    ensure_ledger(con)
    calls = first_read_fails(monkeypatch)
    deliver(settings, "violation_cases_1.csv", CSV)
    deliver(settings, "violation_cases_2.csv", CSV + b"A-2,2026-11-21 08:00:00\r\n")
    landed, accounts, _ = ingest_and_stage(
        con, settings, "cgj", cgj, protection=Protection.from_settings(settings)
    )
    order = [d.file_name for d in landed.landed]
    assert len(order) == 2
    # the first once in its landing's transaction, then both in the order they arrived
    assert calls == [order[0], *order]
    assert [a.file_name for a in accounts] == order
