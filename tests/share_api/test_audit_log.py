"""The share service's auditor (issue 14 item 7): records of concurrent requests are
group-committed (one lock + one fsync a batch, never one a record), every record is
durable when ``record`` returns, a record is found by its seq, read receipts verify with
the exported public key alone, and retention is never below 180 days."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from catalog.settings import Settings
from masking.audit import public_keys_from, verify_receipt
from masking.audit.format import record_hash
from masking.errors import AuditError
from share_api.audit import GroupCommit
from share_api.service import Service


@pytest.fixture(params=["intl", "gm"])
def service(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    svc = Service.open(Settings(home=home, cipher_suite=request.param))
    for purpose in ("audit_signing", "audit_checkpoint"):  # keys made now, not mid-count
        svc.keyring.current(purpose)
    yield svc
    svc.close()


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every fsync of an audit file, counted (and slowed a little, like a real disk, so
    concurrent callers pile up behind a write)."""
    calls: list[int] = []
    real = os.fsync

    def counted(fd: int) -> None:
        calls.append(fd)
        time.sleep(0.002)
        real(fd)

    monkeypatch.setattr("masking.audit.format.os.fsync", counted)
    return calls


def test_append_many_is_one_fsync_and_chains_in_order(service: Service, fsyncs: list[int]):
    log = service.audit.log
    records = log.append_many([("data.read", f"o/u{i}", {"rows": i}) for i in range(100)])
    assert len(fsyncs) == 1
    assert [r["seq"] for r in records] == list(range(1, 101))
    assert [r["actor"] for r in records] == [f"o/u{i}" for i in range(100)]
    assert log.verify().ok
    assert json.loads(log.head_path.read_text())["seq"] == 100


def test_concurrent_records_are_batched_and_durable_on_return(service: Service, fsyncs: list[int]):
    auditor = service.audit
    threads, each = 24, 15
    seen: list[int] = []
    lost: list[int] = []
    start = threading.Barrier(threads)

    def client(n: int) -> None:
        start.wait()
        for i in range(each):
            record = auditor.record("data.read", f"org{n}/u", grant=f"g{n}", rows=i)
            seen.append(record["seq"])
            found = auditor.find(record["seq"])  # on disk when record() returned
            if found is None or found["hash"] != record["hash"]:
                lost.append(record["seq"])

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total = threads * each
    assert lost == []
    assert sorted(seen) == list(range(1, total + 1))
    assert auditor.stats.records == total
    assert auditor.stats.batches == len(fsyncs)  # one fsync a batch, no checkpoint due
    assert auditor.stats.batches <= total / 4, auditor.stats  # batched, not one a record
    assert auditor.stats.largest > 1
    assert service.audit.log.verify().ok


def test_bad_details_are_refused_before_queueing(service: Service):
    with pytest.raises(AuditError, match="scalars: rows"):
        service.audit.record("data.read", "o/u", rows=[1, 2])
    with pytest.raises(AuditError, match="cannot set seq"):
        service.audit.record("data.read", "o/u", seq=3)
    assert service.audit.record("data.read", "o/u", rows=2)["seq"] == 1


def test_a_failed_write_reaches_every_caller_of_its_batch(
    service: Service, monkeypatch: pytest.MonkeyPatch
):
    def broken(_entries):
        raise OSError("disk full")

    monkeypatch.setattr(service.audit.log, "append_many", broken)
    with pytest.raises(AuditError, match=r"data\.read was not written"):
        service.audit.record("data.read", "o/u", rows=1)
    monkeypatch.undo()
    assert service.audit.record("data.read", "o/u", rows=1)["seq"] == 1


def test_find_bisects_to_the_record(service: Service):
    log = service.audit.log
    assert log.find(1) is None  # empty log
    log.append_many([("a.b", "o/u", {"i": i, "pad": "x" * (i % 17)}) for i in range(1, 501)])
    for seq in (1, 2, 137, 250, 499, 500):
        assert log.find(seq)["i"] == seq
    assert log.find(0) is None
    assert log.find(501) is None


def test_a_read_receipt_verifies_with_the_public_key_alone(service: Service):
    service.audit.record("auth.ok", "wjw/u1")
    read = service.audit.record(
        "data.read", "wjw/u1", grant="grant-1", snapshot=7, rows=100, digest="ab" * 16
    )
    receipt = json.loads(json.dumps(service.audit.receipt(read)))  # as a client gets it
    keys = public_keys_from(json.loads(json.dumps(service.audit.public_keys())))
    assert "mac" not in receipt["record"]
    assert receipt["record"]["seq"] == read["seq"] and receipt["record"]["rows"] == 100
    assert verify_receipt(receipt, keys) == []

    changed = json.loads(json.dumps(receipt))
    changed["record"]["rows"] = 99
    assert verify_receipt(changed, keys) == [
        "the record does not match its hash: changed",
        "the signature does not verify under the exported public key",
    ]

    resigned = json.loads(json.dumps(receipt))  # a forger rehashes: the signature fails
    resigned["record"]["rows"] = 99
    resigned["record"]["hash"] = record_hash(resigned["record"])
    assert verify_receipt(resigned, keys) == [
        "the signature does not verify under the exported public key"
    ]

    assert verify_receipt(receipt, {}) == [
        f"no public key for {receipt['suite']} version {receipt['kv']} in the key file"
    ]


def test_retention_is_at_least_180_days(service: Service):
    assert service.audit.retention_days == service.settings.share_audit_retention_days >= 180
    longer = Settings(home=service.settings.home, share_audit_retention_days=400)
    assert longer.share_audit_retention_days == 400
    with pytest.raises(ValidationError, match="share_audit_retention_days"):
        Settings(home=service.settings.home, share_audit_retention_days=179)


def test_close_signs_a_checkpoint_over_the_run(service: Service):
    service.audit.record("auth.ok", "o/u")
    service.audit.close()
    newest = service.audit.log.verify().witnessed
    assert newest is not None and newest.seq == 1


def test_group_commit_batches_any_writer():
    """The batcher alone: a writer that returns nothing (rows inserted in one transaction),
    threads released once their batch is written, a failure raised to its batch only."""
    written: list[list[int]] = []

    def write(items: list[int]) -> None:
        time.sleep(0.005)
        if 13 in items:
            raise ValueError("no thirteens")
        written.append(items)

    commit: GroupCommit[int, None] = GroupCommit(write)
    errors: list[int] = []
    start = threading.Barrier(20)

    def client(n: int) -> None:
        start.wait()
        try:
            assert commit.submit(n) is None
            assert any(n in batch for batch in written)  # written before submit returned
        except ValueError:
            errors.append(n)

    workers = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert 13 in errors
    assert sorted(n for batch in written for n in batch) == sorted(set(range(20)) - set(errors))
    assert commit.stats.batches == len(written)
    assert commit.stats.records == 20 - len(errors)
    assert len(written) + 1 < 20  # batched: fewer writes than items


def test_awaited_items_share_batches_with_threads_and_learn_a_failed_write():
    """Coroutines on an event loop and threads submit at once: one writer thread leads the
    coroutines' batches, every item is written before its caller goes on, a failed write
    reaches every caller of that batch, and the batches are fewer than the items."""
    import asyncio

    written: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        time.sleep(0.002)
        if 13 in items:
            raise ValueError("no thirteens")
        written.append(items)
        return [n * 10 for n in items]

    commit: GroupCommit[int, int] = GroupCommit(write, name="test")
    errors: list[int] = []

    async def one(n: int) -> None:
        try:
            assert await commit.submit_async(n) == n * 10
            assert any(n in batch for batch in written)  # written before the await returned
        except ValueError:
            errors.append(n)

    def thread(n: int) -> None:
        try:
            assert commit.submit(n) == n * 10
        except ValueError:  # in the thirteen's batch
            errors.append(n)

    async def main() -> None:
        threads = [threading.Thread(target=thread, args=(n,)) for n in range(100, 110)]
        for t in threads:
            t.start()
        await asyncio.gather(*(one(n) for n in range(40)))
        for t in threads:
            t.join()

    asyncio.run(main())
    assert 13 in errors
    done = sorted(n for batch in written for n in batch)
    assert done == sorted((set(range(40)) | set(range(100, 110))) - set(errors))
    assert len(written) + 1 < 50  # batched
    commit.close()
    with pytest.raises(RuntimeError):
        asyncio.run(commit.submit_async(1))


def test_an_awaited_record_is_durable_watched_and_brings_its_row(service: Service):
    """record_async / record_then: the record durable when the caller goes on, the
    watchers told, each ``then`` write called once a batch with its (record, payload)
    pairs after the records are durable; a failing ``then`` fails its callers only."""
    import asyncio

    seen: list[int] = []
    service.audit.watchers.append(lambda r: seen.append(r["seq"]))
    rows: list[tuple[int, str]] = []

    def keep(done: list[tuple[dict, str]]) -> None:
        assert all(service.audit.find(r["seq"]) for r, _ in done)  # durable before
        rows.extend((r["seq"], payload) for r, payload in done)

    def fail(_done: list) -> None:
        raise ValueError("no rows today")

    async def main() -> list:
        return await asyncio.gather(
            *(service.audit.record_async("data.read", "wjw/u1", {"grant": "g", "rows": n},
                                         (keep, f"p{n}")) for n in range(10)),
            service.audit.record_async("data.read", "wjw/u1", {"grant": "h"}, (fail, None)),
            service.audit.record_async("grant.create", "wjw/u1", {"grant": "i"}),
            return_exceptions=True,
        )  # fmt: skip

    *kept, failed, plain = asyncio.run(main())
    assert isinstance(failed, ValueError)
    assert sorted(rows) == sorted((r["seq"], f"p{r['rows']}") for r in kept)
    assert service.audit.find(plain["seq"])["hash"] == plain["hash"]
    assert len(seen) == 11  # all but the failed one, whose caller got the error instead
    sync = service.audit.record_then("data.read", "wjw/u1", {"grant": "g"}, (keep, "sync"))
    assert rows[-1] == (sync["seq"], "sync")


def test_a_receipt_still_verifies_after_the_checkpoint_key_rotates(service: Service):
    read = service.audit.record("data.read", "wjw/u1", grant="g", rows=1, digest="d")
    old = json.loads(json.dumps(service.audit.receipt(read)))
    service.keyring.rotate()  # a new master, new current signing keys
    new = service.audit.receipt(read)
    assert new["kv"] == old["kv"] + 1
    keys = public_keys_from(service.audit.public_keys())  # every version is exported
    assert verify_receipt(old, keys) == [] and verify_receipt(new, keys) == []
    only_new = {k: v for k, v in keys.items() if k[1] == new["kv"]}
    assert verify_receipt(old, only_new) == [
        f"no public key for {old['suite']} version {old['kv']} in the key file"
    ]


def test_a_failing_watcher_does_not_fail_the_durable_record(
    service: Service, caplog: pytest.LogCaptureFixture
):
    def broken(_record):
        raise RuntimeError("alert table locked")

    service.audit.watchers.insert(0, broken)
    seen: list[int] = []
    service.audit.watchers.append(lambda r: seen.append(r["seq"]))
    record = service.audit.record("data.read", "o/u", rows=1)
    assert service.audit.find(record["seq"])["hash"] == record["hash"]
    assert seen == [record["seq"]]  # the other watchers still ran
    assert f"audit watcher failed on record {record['seq']} (data.read): RuntimeError" in (
        caplog.text
    )


def test_a_queued_item_does_not_wait_for_the_write_and_is_written_in_order():
    """submit_queued returns while a write is under way; the item is written by the next
    batch (after the one in flight), in the order queued, and ``after`` then learns its
    result; drain returns once everything queued is written."""
    release, writing = threading.Event(), threading.Event()
    written: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        writing.set()
        release.wait(timeout=10)
        written.append(items)
        return [n * 10 for n in items]

    commit: GroupCommit[int, int] = GroupCommit(write, name="test")
    leader = threading.Thread(target=commit.submit, args=(1,))
    leader.start()
    assert writing.wait(timeout=10)  # the leader's write is under way (and held)
    seen: list[tuple[int | None, BaseException | None]] = []
    started = time.perf_counter()
    commit.submit_queued(2, lambda result, error: seen.append((result, error)))
    commit.submit_queued(3, lambda result, error: seen.append((result, error)))
    assert time.perf_counter() - started < 0.5 and not seen  # nobody waited for the write
    release.set()
    commit.drain()
    leader.join()
    assert written == [[1], [2, 3]]
    assert seen == [(20, None), (30, None)]
    commit.close()


def test_a_queued_record_is_written_and_watched(service: Service):
    seen: list[str] = []
    service.audit.watchers.append(lambda r: seen.append(r["action"]))
    first = service.audit.record("sharing.file", "o/u", file="f1", bytes=10)
    service.audit.record_queued("sharing.file_head", "o/u", file="f1", bytes=0)
    service.audit.flush()
    (probe,) = [r for r in service.audit.log.records() if r["seq"] > first["seq"]]
    assert probe["action"] == "sharing.file_head" and probe["file"] == "f1"
    assert seen == ["sharing.file", "sharing.file_head"]
    with pytest.raises(AuditError):  # bad details refused at once, not in the writer
        service.audit.record_queued("x", "o/u", rows=[1, 2])
