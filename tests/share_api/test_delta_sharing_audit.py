"""The Delta Sharing calls' records and the group commit they ride on: records nobody waits
for (a file's further ranges, HEADs, ``/metadata``, a query's protocol detail) linger in
the writer's queue so that the next record a caller waits for writes them in its own batch
(one fsync, not two in turn); they are written within the linger all the same, and at once
by a drain or a close."""

from __future__ import annotations

import time

import pytest

from masking.errors import AuditError
from share_api import consent
from share_api.audit import GroupCommit
from tests.share_api.test_delta_sharing_client import file_lines, recipient_of, records, table_of
from tests.share_api.test_sharing_versions import KIND, a_resident, make_grant


def a_table(service, people, server, tmp_path):
    """A grant, a recipient with a downloaded profile, and the grant's listed table."""
    grant = make_grant(service)
    who = recipient_of(server, people, tmp_path)
    return grant, who, table_of(who, grant)


def recording() -> tuple[list[list[int]], GroupCommit]:
    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        batches.append(list(items))
        return items

    return batches, GroupCommit(write, name="test", linger=30.0)


def test_queued_items_are_written_by_the_next_caller_that_waits() -> None:
    batches, commit = recording()
    written: list[int | None] = []
    for item in (1, 2):
        commit.submit_queued(item, lambda result, _error: written.append(result))
    time.sleep(0.3)
    assert batches == []  # lingering: nobody waits for them
    assert commit.submit(3) == 3
    assert batches == [[1, 2, 3]] and written == [1, 2]
    commit.close()


def test_a_drain_or_a_close_writes_queued_items_at_once() -> None:
    batches, commit = recording()
    commit.submit_queued(1, lambda _r, _e: None)
    started = time.monotonic()
    commit.drain()
    assert batches == [[1]] and time.monotonic() - started < 10
    commit.submit_queued(2, lambda _r, _e: None)
    commit.close()
    assert batches == [[1], [2]] and time.monotonic() - started < 10


def test_queued_items_alone_are_written_within_the_linger() -> None:
    batches: list[list[int]] = []
    commit = GroupCommit(lambda items: batches.append(list(items)) or items, linger=0.05)
    commit.submit_queued(1, lambda _r, _e: None)
    deadline = time.monotonic() + 10
    while not batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batches == [[1]]
    commit.close()


def test_a_query_is_on_record_when_answered_its_detail_and_metadata_soon(
    service, people, server, tmp_path
) -> None:
    grant, who, table = a_table(service, people, server, tmp_path)
    before = {r["seq"] for r in records(service, "")}
    (line,) = file_lines(who, table)
    reads = [r for r in records(service, "data.read") if r["seq"] not in before]
    assert [(r["grant"], r["format"], r["token"]) for r in reads] == [
        (grant.id, "delta_sharing", who.token.split(".")[0])
    ]
    with who.protocol() as http:
        path = f"/shares/{table.share}/schemas/{table.schema}/tables/{table.name}/metadata"
        assert http.get(path).status_code == 200
    service.audit.flush()
    new = [r for r in records(service) if r["seq"] not in before]
    query = [r for r in new if r["action"] == "sharing.query"]
    assert [(r["grant"], r["files"], r["bytes"]) for r in query] == [(grant.id, 1, line["size"])]
    assert [r["grant"] for r in new if r["action"] == "sharing.metadata"] == [grant.id]


def unsigned(line: dict) -> dict:
    """A ``file`` line without its pre-signed URL and that URL's expiry.

    Each answer signs its URLs for a lifetime counted from that answer's
    second, so two queries a second boundary apart differ there.
    """
    return {k: v for k, v in line.items() if k not in {"url", "expirationTimestamp"}}


def test_a_repeated_query_is_queued_a_new_disclosure_durable(
    service, people, server, tmp_path, monkeypatch
) -> None:
    grant, who, table = a_table(service, people, server, tmp_path)
    durable: list[str] = []
    record_then = service.audit.record_then

    def counted(action, actor, details, then=None):
        durable.append(action)
        return record_then(action, actor, details, then)

    monkeypatch.setattr(service.audit, "record_then", counted)
    (first,) = file_lines(who, table)
    assert durable.count("data.read") == 1  # a first disclosure: on record before
    (again,) = file_lines(who, table)
    assert unsigned(again) == unsigned(first)  # the same file, signed afresh
    assert durable.count("data.read") == 1  # the same files again: queued
    consent.record_choice(service, pseudonym=a_resident(service), category="health",
                          recipient_kind=KIND, choice="declined", channel="app",
                          actor="test")  # fmt: skip
    (remade,) = file_lines(who, table)
    assert remade["id"] != first["id"] and durable.count("data.read") == 2
    service.audit.flush()
    reads = [r for r in records(service, "data.read") if r["grant"] == grant.id]
    assert len(reads) == 3


def test_after_a_queued_record_fails_the_next_wait_and_fail_closed(
    service, people, server, tmp_path, monkeypatch
) -> None:
    _grant, who, table = a_table(service, people, server, tmp_path)
    metadata = f"/shares/{table.share}/schemas/{table.schema}/tables/{table.name}/metadata"

    def broken(entries):
        raise OSError("the disk is full")

    auditor = service.audit
    monkeypatch.setattr(auditor.log, "append_many", broken)
    auditor.record_queued("test.queued", "test", n=1)
    auditor.flush()  # not written: logged
    with pytest.raises(AuditError):
        auditor.record_queued("test.queued", "test", n=2)
    with who.protocol() as http:
        assert http.get(metadata).status_code == 503
    monkeypatch.undo()
    with who.protocol() as http:
        assert http.get(metadata).status_code == 200  # written, waited for: open again
    auditor.record_queued("test.queued", "test", n=3)
    auditor.flush()
    assert [r["n"] for r in records(service, "test.")] == [3]
