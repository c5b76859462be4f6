"""raw.load_delivery (issue 9): any exception from a reader becomes a failed account of
that delivery, in its own transaction, and the next delivery still loads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from catalog.model import ConnectorKind, Dataset
from catalog.settings import Settings
from lakehouse.lake import has_table, open_lake
from pipelines import connectors
from pipelines.connectors import records as records_mod
from pipelines.connectors.base import Parsed
from pipelines.ingest.ledger import Landed, ensure_ledger
from pipelines.ingest.raw import load_delivery
from pipelines.killpoints import KILL_POINTS
from tests.pipelines.test_connectors import ROWS, make_dataset

SECRET = "11010519491231002X"


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_lake(Settings(home=tmp_path / "home").ensure_dirs()) as con:
        ensure_ledger(con)
        yield con


def landed(path: Path, n: int) -> Landed:
    return Landed(f"d{n}", "wjw", "elderly", f"delivered_{n}.csv", str(path), "0" * 64, 1)


def identity(frame: pl.DataFrame, _: Dataset) -> pl.DataFrame:
    return frame


def csv_delivery(tmp_path: Path, n: int, rows: int = 2) -> Path:
    p = tmp_path / f"landed_{n}.csv"
    body = ["身份证号,姓名,出生日期"] + [",".join(ROWS[i % 2]) for i in range(rows)]
    p.write_text("\r\n".join(body) + "\r\n", encoding="utf-8")
    return p


def raw_rows(con: duckdb.DuckDBPyConnection, delivery_id: str) -> int:
    """The delivery's rows in raw; 0 when the table does not exist (a dataset's raw table
    is created in its first delivery's transaction: a failed first delivery leaves none)."""
    if not has_table(con, "raw", "wjw__elderly"):
        return 0
    return con.execute(
        'SELECT count(*) FROM raw."wjw__elderly" WHERE _delivery_id = ?', [delivery_id]
    ).fetchone()[0]


def account(con: duckdb.DuckDBPyConnection, delivery_id: str) -> tuple:
    return con.execute(
        "SELECT status, reason, rows_read, rows_loaded, rows_quarantined "
        "FROM landing.delivery_accounts WHERE delivery_id = ?",
        [delivery_id],
    ).fetchone()


def test_raw_kill_points_are_registered() -> None:
    assert {"raw.parsed", "raw.before_commit", "raw.committed"} <= set(KILL_POINTS)


@pytest.mark.parametrize(
    ("error", "phrase"),
    [
        (RecursionError(f"maximum recursion depth {SECRET}"), "too deep"),
        (MemoryError(SECRET), "too large"),
        (RuntimeError(f"calamine: /secret/landing/path {SECRET}"), "unreadable"),
        (UnicodeDecodeError("utf-8", SECRET.encode(), 0, 1, "bad"), "wrong encoding"),
    ],
)
def test_any_reader_exception_is_a_failed_account_and_the_next_delivery_loads(
    lake: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    phrase: str,
) -> None:
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    real = connectors.READERS[ConnectorKind.csv]

    def reader(path: Path, dataset: Dataset, settings: Settings) -> Iterator[Parsed]:
        if path.name == "landed_1.csv":
            raise error
        return real(path, dataset, settings)

    monkeypatch.setitem(connectors.READERS, ConnectorKind.csv, reader)
    bad = load_delivery(lake, "wjw", ds, landed(csv_delivery(tmp_path, 1), 1), identity)
    good = load_delivery(lake, "wjw", ds, landed(csv_delivery(tmp_path, 2), 2), identity)
    assert bad.status == "failed" and phrase in (bad.reason or "")
    assert type(error).__name__ in (bad.reason or "")
    assert "delivered_1.csv" in bad.reason and str(tmp_path) not in bad.reason
    assert SECRET not in bad.reason and "/secret/" not in bad.reason
    assert account(lake, "d1") == ("failed", bad.reason, 0, 0, 0)
    assert good.status == "loaded" and account(lake, "d2")[:4] == ("loaded", None, 2, 2)


def test_failure_after_the_first_batch_leaves_nothing_of_the_delivery(
    lake: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches are written as they come, in one transaction: a late failure rolls all back."""
    monkeypatch.setattr(records_mod, "BATCH_RECORDS", 2)
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    p = csv_delivery(tmp_path, 1, rows=6)
    p.write_bytes(p.read_bytes() + b"1;2\r\n" * 3)  # the last batch: broken rows only
    real = connectors.READERS[ConnectorKind.csv]

    def reader(path: Path, dataset: Dataset, settings: Settings) -> Iterator[Parsed]:
        for i, parsed in enumerate(real(path, dataset, settings)):
            if i == 2:
                raise ValueError(SECRET)
            yield parsed

    monkeypatch.setitem(connectors.READERS, ConnectorKind.csv, reader)
    acct = load_delivery(lake, "wjw", ds, landed(p, 1), identity)
    assert acct.status == "failed" and "ValueError" in acct.reason
    assert raw_rows(lake, "d1") == 0
    assert lake.execute("SELECT count(*) FROM quarantine.rows").fetchone()[0] == 0


def test_batched_delivery_balances_in_one_account(
    lake: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records_mod, "BATCH_RECORDS", 2)
    ds = make_dataset("csv", pattern="*.csv", encoding="utf-8")
    p = csv_delivery(tmp_path, 1, rows=5)
    p.write_bytes(p.read_bytes() + b"1,2\r\n" + ",".join(ROWS[0]).encode())  # cell count, cut
    acct = load_delivery(lake, "wjw", ds, landed(p, 1), identity)
    assert (acct.status, acct.rows_read, acct.rows_loaded, acct.rows_quarantined) == (
        "loaded", 7, 5, 2
    )  # fmt: skip
    assert raw_rows(lake, "d1") == 5
    got = lake.execute(
        "SELECT source_row, check_name FROM quarantine.rows WHERE delivery_id = 'd1' "
        "ORDER BY source_row"
    ).fetchall()
    assert got == [(7, "cell_count"), (8, "truncated")]


def test_jsonl_required_key_is_checked_over_the_whole_delivery(
    lake: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records_mod, "BATCH_RECORDS", 2)
    ds = make_dataset("jsonl", pattern="*.jsonl")
    full = json.dumps({"身份证号": "1", "姓名": "王", "出生日期": "x"}, ensure_ascii=False)
    part = json.dumps({"身份证号": "1"}, ensure_ascii=False)
    ok = tmp_path / "ok.jsonl"  # the first batch lacks 姓名, a later one has it
    ok.write_text("\n".join([part, part, full]) + "\n", encoding="utf-8")
    acct = load_delivery(lake, "wjw", ds, landed(ok, 1), identity)
    assert (acct.status, acct.rows_loaded) == ("loaded", 3)
    missing = tmp_path / "missing.jsonl"
    missing.write_text("\n".join([part] * 3) + "\n", encoding="utf-8")
    acct = load_delivery(lake, "wjw", ds, landed(missing, 2), identity)
    assert acct.status == "failed" and "missing column: required column(s) 姓名" in acct.reason
    assert raw_rows(lake, "d2") == 0
