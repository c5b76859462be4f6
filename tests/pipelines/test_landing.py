"""Landing as deliveries really arrive: half-written, young, hostile, oddly named, killed.

Small generated files in a private home (no simulated street); settled files are
backdated with ``os.utime`` rather than waited for.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from catalog.loader import load_catalogue
from catalog.model import Dataset
from catalog.settings import Settings
from lakehouse.lake import open_lake
from masking.stream import is_encrypted
from pipelines.ingest import landing
from pipelines.ingest.landing import LandingResult, land, open_landed
from pipelines.ingest.ledger import ensure_ledger
from pipelines.killpoints import KILL_POINTS

OLD = time.time() - 3600  # an hour ago: long settled
CSV = b"case_id,opened_at\r\nA-1,2026-11-20 22:57:33\r\n"


@pytest.fixture(scope="module")
def cgj() -> Dataset:
    return next(
        d for d in load_catalogue().departments["cgj"].datasets if d.code == "violation_cases"
    )


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Settings]:
    """A private home whose lake stays open for the test (opening it costs ~0.3 s or more)."""
    settings = Settings(home=tmp_path / "home", settle_seconds=2.0).ensure_dirs()
    (settings.inbox_dir / "cgj").mkdir(parents=True)
    with open_lake(settings) as con:
        ensure_ledger(con)
        LAKE[settings.home_abs] = con
        yield settings
        del LAKE[settings.home_abs]


LAKE: dict[Path, duckdb.DuckDBPyConnection] = {}


def lake(settings: Settings) -> duckdb.DuckDBPyConnection:
    return LAKE[settings.home_abs]


def deliver(settings: Settings, name: str, data: bytes = CSV, *, settled: bool = True) -> Path:
    path = settings.inbox_dir / "cgj" / name
    path.write_bytes(data)
    if settled:
        os.utime(path, (OLD, OLD))
    return path


def land_once(settings: Settings, ds: Dataset, **kw) -> LandingResult:
    return land(lake(settings), settings, "cgj", ds, **kw)


def ledger(settings: Settings, sql: str) -> list[tuple]:
    return lake(settings).execute(sql).fetchall()


def landed_rows(settings: Settings) -> list[tuple]:
    return ledger(
        settings, "SELECT file_name, landed_path, sha256, size_bytes FROM landing.deliveries"
    )


def refused_accounts(settings: Settings) -> list[tuple]:
    return ledger(
        settings,
        "SELECT delivery_id, status, reason FROM landing.delivery_accounts "
        "WHERE reason LIKE 'refused:%' ORDER BY delivery_id",
    )


def assert_landed_copy_matches(settings: Settings) -> None:
    """Each landed copy is encrypted on disk and decrypts to its recorded hash and size."""
    for _, landed_path, sha, size in landed_rows(settings):
        assert is_encrypted(Path(landed_path).read_bytes()[:8])
        with open_landed(settings, landed_path) as fh:
            data = fh.read()
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == size


def landed_bytes(settings: Settings, landed_path: str) -> bytes:
    with open_landed(settings, landed_path) as fh:
        return fh.read()


def test_kill_points_are_registered() -> None:
    assert {"landing.copy_started", "landing.copied", "landing.recorded"} <= set(KILL_POINTS)


@pytest.mark.parametrize("restore_mtime", [False, True], ids=["appends", "appends-restoring-mtime"])
def test_file_growing_while_copied_is_not_landed_and_lands_later(
    home: Settings, cgj: Dataset, monkeypatch: pytest.MonkeyPatch, restore_mtime: bool
) -> None:
    path = deliver(home, "violation_cases_1.csv", CSV * 50)
    monkeypatch.setattr(landing, "CHUNK_BYTES", 64)
    real_kill_point = landing.kill_point

    def writer_between_chunks(name: str) -> None:  # the exporter appends after chunk 1
        real_kill_point(name)
        if name == "landing.copy_started":
            st = path.stat()
            with open(path, "ab") as fh:
                fh.write(b"A-2,2026-11-20 23:01:02\r\n")
            if restore_mtime:
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    monkeypatch.setattr(landing, "kill_point", writer_between_chunks)
    first = land_once(home, cgj)
    assert first.landed == [] and first.waiting == ["violation_cases_1.csv"]
    assert landed_rows(home) == []
    assert list((home.landing_dir / "cgj" / "violation_cases").glob("*")) == []  # copy discarded

    monkeypatch.setattr(landing, "kill_point", real_kill_point)
    os.utime(path, (OLD, OLD))  # the writer is done, the file settled
    delivered = path.read_bytes()
    second = land_once(home, cgj)
    assert len(second.landed) == 1 and second.waiting == []
    assert not path.exists()  # removed from the inbox once its landing is committed
    (row,) = landed_rows(home)
    assert row[2] == hashlib.sha256(delivered).hexdigest()
    assert landed_bytes(home, row[1]) == delivered


def test_file_growing_under_a_writer_thread_never_records_a_wrong_hash(
    home: Settings, cgj: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = deliver(home, "violation_cases_2.csv", CSV * 200)
    monkeypatch.setattr(landing, "CHUNK_BYTES", 32)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            with open(path, "ab") as fh:
                fh.write(b"A-3,2026-11-21 08:00:00\r\n")
            os.utime(path, (OLD, OLD))  # pretends to be settled: only the pass can tell
            time.sleep(0.0005)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        for _ in range(5):
            land_once(home, cgj)
    finally:
        stop.set()
        thread.join(5)
    assert_landed_copy_matches(home)  # whatever landed, its hash is its copy's
    if not path.exists():  # landed between two appends, and removed: deliver the rest again
        deliver(home, path.name, CSV)
    latest = hashlib.sha256(path.read_bytes()).hexdigest()
    land_once(home, cgj)
    assert_landed_copy_matches(home)
    assert latest in {r[2] for r in landed_rows(home)}


def test_young_file_waits_then_lands(home: Settings, cgj: Dataset) -> None:
    deliver(home, "violation_cases_3.csv", settled=False)
    young = land_once(home, cgj)
    assert young.landed == [] and young.waiting == ["violation_cases_3.csv"]
    started = time.monotonic()
    waited = land_once(home, cgj, wait_for_settle=True)
    assert len(waited.landed) == 1 and waited.waiting == []
    assert time.monotonic() - started < home.settle_seconds + 1.5  # the settle period, no more


def test_file_with_a_future_mtime_settles_by_being_watched(home: Settings, cgj: Dataset) -> None:
    settings = home.model_copy(update={"settle_seconds": 0.3})
    path = deliver(settings, "violation_cases_4.csv", settled=False)
    future = time.time() + 3600
    os.utime(path, (future, future))
    assert land_once(settings, cgj).waiting == ["violation_cases_4.csv"]
    assert len(land_once(settings, cgj, wait_for_settle=True).landed) == 1


def test_file_changing_during_the_wait_is_left_waiting(
    home: Settings, cgj: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = home.model_copy(update={"settle_seconds": 0.3})
    path = deliver(settings, "violation_cases_5.csv", settled=False)

    def sleep_while_writing(seconds: float) -> None:
        with open(path, "ab") as fh:
            fh.write(b"A-9,2026-11-21 09:00:00\r\n")

    monkeypatch.setattr(time, "sleep", sleep_while_writing)
    result = land_once(settings, cgj, wait_for_settle=True)
    assert result.landed == [] and result.waiting == ["violation_cases_5.csv"]


def test_symlinks_inside_and_outside_are_refused_unread_and_accounted_once(
    home: Settings, cgj: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "elsewhere" / "secret.csv"
    outside.parent.mkdir()
    outside.write_bytes(b"case_id\r\nSECRET-VALUE\r\n")
    inbox = home.inbox_dir / "cgj"
    inside = deliver(home, "readme.txt")
    (inbox / "violation_cases_out.csv").symlink_to(outside)
    (inbox / "violation_cases_in.csv").symlink_to(inside)
    opened: list[str] = []
    real_open = os.open

    def spy(path, *args, **kw):
        opened.append(os.fspath(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(os, "open", spy)
    first = land_once(home, cgj)
    second = land_once(home, cgj)
    monkeypatch.setattr(os, "open", real_open)
    assert first.refused == 2 and second.refused == 0 and first.landed == second.landed == []
    assert not any("violation_cases_" in p or "secret" in p for p in opened)
    accounts = refused_accounts(home)
    assert len(accounts) == 2 and all(status == "failed" for _, status, _ in accounts)
    reasons = sorted(r for _, _, r in accounts)
    assert all(r.startswith("refused: symbolic link") for r in reasons)
    assert any("outside the inbox" in r and "violation_cases_out.csv" in r for r in reasons)
    assert any("inside the inbox" in r and "violation_cases_in.csv" in r for r in reasons)
    assert not any(str(tmp_path) in r for r in reasons)  # no absolute path in a reason
    assert landed_rows(home) == []


def test_fifo_socket_and_directory_are_refused_without_hanging(
    home: Settings, cgj: Dataset
) -> None:
    inbox = home.inbox_dir / "cgj"
    os.mkfifo(inbox / "violation_cases_fifo.csv")
    (inbox / "violation_cases_dir.csv").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(inbox / "violation_cases_sock.csv"))
    except OSError:  # path too long for a socket on this machine
        sock.close()
        sock = None
    outcome: dict[str, LandingResult] = {}
    worker = threading.Thread(target=lambda: outcome.update(r=land_once(home, cgj)), daemon=True)
    worker.start()
    worker.join(30)
    if sock is not None:
        sock.close()
    assert not worker.is_alive(), "landing hung on a FIFO"
    result = outcome["r"]
    assert result.landed == [] and result.refused == (3 if sock is not None else 2)
    reasons = [r for _, _, r in refused_accounts(home)]
    assert any("not a regular file (a FIFO)" in r for r in reasons)
    assert any("not a regular file (a directory)" in r for r in reasons)


def test_file_over_the_size_limit_is_refused_once(home: Settings, cgj: Dataset) -> None:
    settings = home.model_copy(update={"max_file_bytes": 10})
    deliver(settings, "violation_cases_big.csv")
    assert land_once(settings, cgj).refused == 1
    assert land_once(settings, cgj).refused == 0
    (reason,) = [r for _, _, r in refused_accounts(settings)]
    assert reason.startswith("refused: too large:") and "max_file_bytes" in reason


def test_file_the_system_will_not_read_is_refused_once(
    home: Settings, cgj: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(home, "violation_cases_bad_disk.csv")
    real_read = os.read

    def failing_read(fd: int, n: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    for _ in range(2):
        monkeypatch.setattr(os, "read", failing_read)
        result = land_once(home, cgj)
        monkeypatch.setattr(os, "read", real_read)
    assert result.landed == [] and result.waiting == []
    (reason,) = [r for _, _, r in refused_accounts(home)]
    assert reason.startswith("refused: not readable (Input/output error)")
    assert list((home.landing_dir / "cgj" / "violation_cases").glob("*")) == []


def test_department_folder_resolving_outside_the_inbox_is_refused(
    home: Settings, cgj: Dataset, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "violation_cases_1.csv").write_bytes(CSV)
    os.utime(elsewhere / "violation_cases_1.csv", (OLD, OLD))
    (home.inbox_dir / "cgj").rmdir()
    (home.inbox_dir / "cgj").symlink_to(elsewhere)
    result = land_once(home, cgj)
    assert result.landed == [] and result.refused == 1
    assert "refused: outside the inbox" in refused_accounts(home)[0][2]


def test_upper_case_name_and_empty_file_land(home: Settings, cgj: Dataset) -> None:
    deliver(home, "VIOLATION_CASES_1.CSV")
    deliver(home, "violation_cases_empty.csv", b"")
    result = land_once(home, cgj)
    assert sorted(d.file_name for d in result.landed) == [
        "VIOLATION_CASES_1.CSV",
        "violation_cases_empty.csv",
    ]
    assert {r[3] for r in landed_rows(home)} == {len(CSV), 0}
    assert_landed_copy_matches(home)
    assert list((home.inbox_dir / "cgj").iterdir()) == []  # both removed once landed
    deliver(home, "violation_cases_again.csv")  # the same contents delivered again
    deliver(home, "violation_cases_empty_again.csv", b"")
    again = land_once(home, cgj)
    assert again.landed == [] and again.skipped == 2
    assert list((home.inbox_dir / "cgj").iterdir()) == []  # copies of landed deliveries too


def test_name_that_is_not_utf8_lands_and_is_stored_readably(home: Settings, cgj: Dataset) -> None:
    deliver(home, os.fsdecode(b"violation_cases_\xff\xfe.csv"))
    (landed,) = land_once(home, cgj).landed
    assert landed.file_name == "violation_cases_\\xff\\xfe.csv"
    assert landed_rows(home)[0][0] == landed.file_name


def test_unmatched_files_are_listed_once_per_department(home: Settings) -> None:
    wjw = load_catalogue().departments["wjw"]
    folder = home.inbox_dir / "wjw"
    folder.mkdir()
    for name in ("notes.txt", "elderly_health_checks.xlsx", "odd\x1b[2J.csv"):
        (folder / name).write_bytes(b"x")
    results = [land(lake(home), home, "wjw", ds) for ds in wjw.datasets]
    first, *others = results
    assert first.unmatched_total == 3
    assert first.unmatched == ["elderly_health_checks.xlsx", "notes.txt", "odd\\x1b[2J.csv"]
    assert all(r.unmatched == [] and r.unmatched_total == 0 for r in others)


def test_stale_part_copy_is_removed(home: Settings, cgj: Dataset) -> None:
    folder = home.landing_dir / "cgj" / "violation_cases"
    folder.mkdir(parents=True)
    (folder / "0123456789abcdef.part").write_bytes(b"half a deliv")
    land_once(home, cgj)
    assert list(folder.glob("*.part")) == []


class Killed(BaseException):
    """Stands in for SIGKILL at a kill point (nothing after it runs)."""


def test_torn_landed_copy_without_ledger_row_is_copied_again(
    home: Settings, cgj: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = deliver(home, "violation_cases_1.csv", CSV * 20)
    real_kill_point = landing.kill_point

    def die_after_rename(name: str) -> None:
        if name == "landing.copied":
            raise Killed

    monkeypatch.setattr(landing, "kill_point", die_after_rename)
    with pytest.raises(Killed):
        land_once(home, cgj)
    monkeypatch.setattr(landing, "kill_point", real_kill_point)
    assert landed_rows(home) == []
    delivered = path.read_bytes()
    sha = hashlib.sha256(delivered).hexdigest()
    copy = home.landing_dir / "cgj" / "violation_cases" / f"{sha}.csv"
    copy.write_bytes(copy.read_bytes()[:17])  # torn afterwards (e.g. a crash of the disk cache)
    result = land_once(home, cgj)
    assert len(result.landed) == 1
    assert landed_bytes(home, str(copy)) == delivered
    assert_landed_copy_matches(home)


def test_any_pull_exception_becomes_a_failed_account(
    monkeypatch: pytest.MonkeyPatch, home: Settings
):
    cat = load_catalogue()
    dept, ds = next((d.code, s) for d, s in cat.datasets() if s.delivery.kind.value == "sql_db")

    def broken_pull(*args, **kw):
        raise ValueError("constraint failed near '11010519491231002X'")

    monkeypatch.setattr(landing, "pull_sql", broken_pull)
    result = land(lake(home), home, dept, ds)
    (reason,) = result.failed
    assert "ValueError" in reason and "11010519491231002X" not in reason
    rows = ledger(home, "SELECT status, reason FROM landing.delivery_accounts")
    assert rows == [("failed", reason)]


def delivered_bytes(settings: Settings, dept: str, file_name: str) -> bytes:
    """A delivered file's bytes: from the inbox while it lies there, else from its landed
    copy (landing removes an inbox file once it is landed; the copy is encrypted).
    For tests that deliver a file again, changed."""
    path = settings.inbox_dir / dept / file_name
    if path.exists():
        return path.read_bytes()
    with open_lake(settings, read_only=True) as con:
        (landed_path,) = con.execute(
            "SELECT landed_path FROM landing.deliveries WHERE dept = ? AND file_name = ?",
            [dept, file_name],
        ).fetchone()
    with open_landed(settings, landed_path) as fh:
        return fh.read()
