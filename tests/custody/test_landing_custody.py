"""Every copy of a delivery protected: landed encrypted, the inbox emptied once landed
(or the original archived, encrypted), landed files expired by retention, old plaintext
landed files still read — and raw loads what was landed, under either suite.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
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
from pipelines.ingest import ingest_dataset, landing
from pipelines.ingest.landing import apply_retention, open_landed
from pipelines.ingest.ledger import ensure_ledger
from pipelines.protection import Protection

OLD = time.time() - 3600
PEOPLE = [
    ("J1", "张三", "11010519491231002X", "女", "13812345678"),
    ("J2", "李四", "110105194912310035", "男", "13912345678"),
]
HEADER = "体检编号,姓名,身份证号,性别,出生日期,体检日期,收缩压,舒张压,空腹血糖,体检结论,联系电话,体检机构"


def health_csv(people=PEOPLE) -> bytes:
    rows = [
        f"{c},{n},{i},{g},1949-12-31,2026-01-02,120,80,5.5,正常,{m},社区卫生服务中心"
        for c, n, i, g, m in people
    ]
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode("gbk")


@pytest.fixture(scope="module")
def checks() -> Dataset:
    wjw = load_catalogue().departments["wjw"]
    return next(d for d in wjw.datasets if d.code == "elderly_health_checks")


@pytest.fixture
def hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, duckdb.DuckDBPyConnection]]:
    monkeypatch.setenv("STREETHUB_HOME", str(tmp_path / "home"))
    settings = Settings(home=tmp_path / "home", settle_seconds=1.0).ensure_dirs()
    (settings.inbox_dir / "wjw").mkdir(parents=True)
    with open_lake(settings) as con:
        ensure_ledger(con)
        yield settings, con


def deliver(settings: Settings, name: str, data: bytes) -> Path:
    path = settings.inbox_dir / "wjw" / name
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))
    return path


def plain_in(folder: Path, *values: str) -> list[str]:
    """Files under ``folder`` holding any of ``values`` in the clear (UTF-8 or GBK)."""
    hits = []
    for p in folder.rglob("*") if folder.exists() else ():
        if p.is_file():
            data = p.read_bytes()
            for v in values:
                if v.encode() in data or v.encode("gbk") in data:
                    hits.append(f"{p.name}: {v[:3]}…")
    return hits


def secrets_() -> list[str]:
    return [v for row in PEOPLE for v in (row[1], row[2], row[4])]


def test_a_delivery_lands_encrypted_leaves_the_inbox_and_loads(
    hub: tuple[Settings, duckdb.DuckDBPyConnection], checks: Dataset
) -> None:
    settings, con = hub
    data = health_csv()
    inbox_file = deliver(settings, "elderly_health_checks_1.csv", data)
    landed, accounts = ingest_dataset(con, settings, "wjw", checks)
    (one,) = landed.landed
    assert one.sha256 == hashlib.sha256(data).hexdigest() and one.size_bytes == len(data)
    assert not inbox_file.exists()  # removed once its landing was committed
    assert is_encrypted(Path(one.landed_path).read_bytes())
    assert plain_in(settings.landing_dir, *secrets_()) == []
    assert plain_in(settings.inbox_dir, *secrets_()) == []
    with open_landed(settings, one.landed_path) as fh:
        assert fh.read() == data
    (account,) = accounts
    assert account.status == "loaded" and account.rows_loaded == 2
    raw = con.execute('SELECT * FROM raw."wjw__elderly_health_checks"').pl()
    revealed = Protection.from_settings(settings).reveal_text(raw, checks, "quality_gate")
    assert sorted(revealed["citizen_id"].to_list()) == sorted(r[2] for r in PEOPLE)


def test_the_same_content_again_is_skipped_and_its_file_removed(
    hub: tuple[Settings, duckdb.DuckDBPyConnection], checks: Dataset
) -> None:
    settings, con = hub
    deliver(settings, "elderly_health_checks_1.csv", health_csv())
    ingest_dataset(con, settings, "wjw", checks)
    again = deliver(settings, "elderly_health_checks_copy.csv", health_csv())
    result, _ = ingest_dataset(con, settings, "wjw", checks)
    assert result.landed == [] and result.skipped == 1 and not again.exists()


def test_keep_inbox_originals_archives_them_encrypted(
    hub: tuple[Settings, duckdb.DuckDBPyConnection], checks: Dataset
) -> None:
    settings, con = hub
    settings = settings.model_copy(update={"keep_inbox_originals": True})
    data = health_csv()
    inbox_file = deliver(settings, "elderly_health_checks_1.csv", data)
    (one,), _ = (lambda r: (r[0].landed, r[1]))(ingest_dataset(con, settings, "wjw", checks))
    assert not inbox_file.exists()
    (archived,) = (settings.archive_dir / "wjw").rglob("*.csv")
    assert archived.name == Path(one.landed_path).name and is_encrypted(archived.read_bytes())
    assert plain_in(settings.archive_dir, *secrets_()) == []
    with open_landed(settings, archived) as fh:
        assert fh.read() == data


def test_a_run_stopped_before_the_inbox_file_was_removed_is_finished_by_the_next(
    hub: tuple[Settings, duckdb.DuckDBPyConnection],
    checks: Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, con = hub
    inbox_file = deliver(settings, "elderly_health_checks_1.csv", health_csv())

    class Stopped(BaseException):
        pass

    def stop(*_args) -> bool:
        raise Stopped

    real = landing.remove_from_inbox
    monkeypatch.setattr(landing, "remove_from_inbox", stop)
    with pytest.raises(Stopped):
        ingest_dataset(con, settings, "wjw", checks)
    assert inbox_file.exists()  # landed and recorded, not removed yet
    monkeypatch.setattr(landing, "remove_from_inbox", real)
    result, _ = ingest_dataset(con, settings, "wjw", checks)
    assert result.landed == [] and result.skipped == 1
    assert not inbox_file.exists()
    assert con.execute("SELECT count(*) FROM landing.deliveries").fetchone()[0] == 1


def test_a_file_changed_since_it_was_listed_stays_in_the_inbox(
    hub: tuple[Settings, duckdb.DuckDBPyConnection], checks: Dataset
) -> None:
    settings, _ = hub
    inbox_file = deliver(settings, "elderly_health_checks_1.csv", health_csv())
    from pipelines.ingest.inbox import scan_inbox

    (entry,) = scan_inbox(settings, "wjw", [checks]).entries
    inbox_file.write_bytes(health_csv(PEOPLE[:1]))  # rewritten by the department meanwhile
    assert landing.remove_from_inbox(settings, "wjw", entry) is False
    assert inbox_file.exists()


def test_retention_removes_old_loaded_landed_files_and_marks_the_ledger(
    hub: tuple[Settings, duckdb.DuckDBPyConnection], checks: Dataset
) -> None:
    settings, con = hub
    settings = settings.model_copy(update={"keep_inbox_originals": True})
    deliver(settings, "elderly_health_checks_1.csv", health_csv())
    deliver(settings, "elderly_health_checks_2.csv", b"\xff\xfe not a csv at all")
    result, accounts = ingest_dataset(con, settings, "wjw", checks)
    by_status = {a.status: a for a in accounts}
    assert set(by_status) == {"loaded", "failed"}
    loaded = next(d for d in result.landed if d.delivery_id == by_status["loaded"].delivery_id)
    failed = next(d for d in result.landed if d.delivery_id == by_status["failed"].delivery_id)

    assert apply_retention(con, settings) == 0  # no retention set: kept forever
    kept = settings.model_copy(update={"landing_retention_days": 30})
    assert apply_retention(con, kept) == 0  # not old enough yet
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    assert apply_retention(con, kept, at=later) == 1
    assert not Path(loaded.landed_path).exists()
    assert Path(failed.landed_path).exists()  # a failed delivery keeps its copy for a retry
    marks = con.execute("SELECT delivery_id, reason FROM landing.landed_files_removed").fetchall()
    assert [m[0] for m in marks] == [loaded.delivery_id] and "retention" in marks[0][1]
    ledger = con.execute("SELECT delivery_id FROM landing.deliveries").fetchall()
    assert {r[0] for r in ledger} == {loaded.delivery_id, failed.delivery_id}  # rows kept
    assert apply_retention(con, kept, at=later) == 0  # once
    (archived,) = (settings.archive_dir / "wjw").rglob(Path(loaded.landed_path).name)
    assert archived.exists()  # the archive is kept apart from landing retention


def test_a_plaintext_file_landed_before_encryption_still_loads(
    hub: tuple[Settings, duckdb.DuckDBPyConnection],
    checks: Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, con = hub
    data = health_csv()
    deliver(settings, "elderly_health_checks_1.csv", data)
    monkeypatch.setattr(landing, "encryptor", lambda settings: landing.Identity())
    landed = landing.land(con, settings, "wjw", checks)
    (one,) = landed.landed
    assert Path(one.landed_path).read_bytes() == data  # as the old landing left it
    monkeypatch.undo()
    from pipelines.ingest.raw import load_raw

    (account,) = load_raw(con, "wjw", checks, Protection.from_settings(settings).protect)
    assert account.status == "loaded" and account.rows_loaded == 2


def test_a_tampered_landed_file_fails_its_delivery_without_a_value(
    hub: tuple[Settings, duckdb.DuckDBPyConnection], checks: Dataset
) -> None:
    settings, con = hub
    deliver(settings, "elderly_health_checks_1.csv", health_csv() * 2000)  # several segments
    (one,) = landing.land(con, settings, "wjw", checks).landed
    blob = bytearray(Path(one.landed_path).read_bytes())
    blob[70_000] ^= 0x20
    Path(one.landed_path).write_bytes(bytes(blob))
    from pipelines.ingest.raw import load_raw

    (account,) = load_raw(con, "wjw", checks, Protection.from_settings(settings).protect)
    assert account.status == "failed" and "segment 1 fails authentication" in account.reason
    assert all(v not in account.reason for v in secrets_())


def test_under_the_gm_suite_files_land_in_sm4_and_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checks: Dataset
) -> None:
    monkeypatch.setenv("STREETHUB_CIPHER_SUITE", "gm")
    monkeypatch.setenv("STREETHUB_HOME", str(tmp_path / "gm"))
    settings = Settings(home=tmp_path / "gm").ensure_dirs()
    (settings.inbox_dir / "wjw").mkdir(parents=True)
    data = health_csv()
    deliver(settings, "elderly_health_checks_1.csv", data)
    with open_lake(settings) as con:
        ensure_ledger(con)
        result, (account,) = ingest_dataset(con, settings, "wjw", checks)
    (one,) = result.landed
    blob = Path(one.landed_path).read_bytes()
    assert is_encrypted(blob) and blob[9] == 2  # suite code 2: SM4-GCM
    assert account.status == "loaded" and account.rows_loaded == 2


def test_without_its_key_a_landed_file_is_left_unread_not_failed(
    hub: tuple[Settings, duckdb.DuckDBPyConnection],
    checks: Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, con = hub
    right, wrong = base64.b64encode(b"k" * 32).decode(), base64.b64encode(b"w" * 32).decode()
    monkeypatch.setenv("STREETHUB_MASTER_KEY", right)
    deliver(settings, "elderly_health_checks_1.csv", health_csv())
    (one,) = landing.land(con, settings, "wjw", checks).landed
    from masking.errors import KeyRingError
    from pipelines.ingest.raw import load_raw

    monkeypatch.setenv("STREETHUB_MASTER_KEY", wrong)  # the run lacks the right key
    with pytest.raises(KeyRingError):
        load_raw(con, "wjw", checks, Protection.from_settings(settings).protect)
    assert con.execute("SELECT count(*) FROM landing.delivery_accounts").fetchone()[0] == 0
    monkeypatch.setenv("STREETHUB_MASTER_KEY", right)  # the next run has it: it loads
    (account,) = load_raw(con, "wjw", checks, Protection.from_settings(settings).protect)
    assert account.delivery_id == one.delivery_id and account.status == "loaded"


def test_an_original_whose_landed_copy_expired_is_archived_from_the_inbox_encrypted(
    hub: tuple[Settings, duckdb.DuckDBPyConnection], checks: Dataset
) -> None:
    settings, con = hub
    data = health_csv()
    deliver(settings, "elderly_health_checks_1.csv", data)
    (one,) = ingest_dataset(con, settings, "wjw", checks)[0].landed
    expiring = settings.model_copy(update={"landing_retention_days": 0})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert apply_retention(con, expiring, at=later) == 1  # the landed copy is gone
    keeping = settings.model_copy(update={"keep_inbox_originals": True})
    again = deliver(settings, "elderly_health_checks_again.csv", data)  # the same bytes
    result, _ = ingest_dataset(con, keeping, "wjw", checks)
    assert result.skipped == 1 and not again.exists()
    (archived,) = (settings.archive_dir / "wjw").rglob("*.csv")
    assert archived.name == Path(one.landed_path).name and is_encrypted(archived.read_bytes())
    with open_landed(settings, archived) as fh:
        assert fh.read() == data


def test_reencrypt_landed_moves_every_copy_to_the_rings_suite_and_current_key(
    hub: tuple[Settings, duckdb.DuckDBPyConnection],
    checks: Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, con = hub
    settings = settings.model_copy(update={"keep_inbox_originals": True})
    data, old_data = health_csv(), health_csv(PEOPLE[:1])
    deliver(settings, "elderly_health_checks_1.csv", data)
    (one,) = ingest_dataset(con, settings, "wjw", checks)[0].landed
    deliver(settings, "elderly_health_checks_0.csv", old_data)  # landed before encryption
    monkeypatch.setattr(landing, "encryptor", lambda settings: landing.Identity())
    (old,) = landing.land(con, settings, "wjw", checks).landed
    monkeypatch.undo()
    assert Path(old.landed_path).read_bytes() == old_data
    from masking.keys import KeyRing

    ring = KeyRing.from_settings(settings)
    assert ring.suite.name == "intl"
    ring.change_suite("gm")  # what `streethub keys rekey --suite gm` records at its end
    monkeypatch.setenv("STREETHUB_CIPHER_SUITE", "gm")
    tampered = settings.landing_dir / "wjw" / checks.code / f"{'0' * 64}.csv"
    tampered.write_bytes(Path(one.landed_path).read_bytes())  # named for other bytes

    done = landing.reencrypt_landed(settings)
    assert done.files == 4 and done.current == 0  # 2 landed, 2 archived (one plaintext)
    assert done.failed == [f"landing/wjw/{checks.code}/{'0' * 64}.csv"]
    for path, expect in ((one.landed_path, data), (old.landed_path, old_data)):
        blob = Path(path).read_bytes()
        assert is_encrypted(blob) and blob[9] == 2  # SM4-GCM now
        with open_landed(settings, path) as fh:
            assert fh.read() == expect
    assert plain_in(settings.landing_dir, *secrets_()) == []
    assert plain_in(settings.archive_dir, *secrets_()) == []
    again = landing.reencrypt_landed(settings)
    assert again.files == 0 and again.current == 4  # once
