"""The analysts' SQL endpoint (issue 17, build item 4): ``POST /analyst/sql`` answers the
rows the analyst database holds (masked: the analyst's own pseudonyms, the opted-out
resident absent, no personal value), cuts at the row cap and says so, audits each query
with its result's digest, refuses other organisations; a runaway query is interrupted at
the time limit in its worker process while the service answers other requests at once."""

from __future__ import annotations

import json
import statistics
import threading
import time

import duckdb
import polars as pl
import pytest

from lakehouse.lake import open_lake
from masking.leaks import scan_frame
from share_api.analysts import worker as worker_module
from share_api.analysts.lock import open_locked
from share_api.analysts.worker import (
    Job,
    PoolBusy,
    WorkerPool,
    address_space_for,
    jsonable,
    result_digest,
)
from share_api.routes.analyst_sql import POOL_KEY
from tests.share_api.conftest import OPTED_OUT_MART


def _audited(service, actor: str) -> list[dict]:
    return [
        r
        for r in service.audit.log.records()
        if r["action"] == "analyst.sql" and r["actor"] == actor
    ]


def test_a_query_answers_the_database_rows_masked_capped_and_audited(
    api, people, analyst_street, monkeypatch
):
    service = analyst_street.service
    analyst = people.make(analyst_street.org, "requester", kind="analyst")
    table = OPTED_OUT_MART
    sql = f"SELECT * FROM {table} ORDER BY ALL"
    answer = api.post("/analyst/sql", json={"sql": sql}, headers=analyst.headers)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    con = open_locked(analyst_street.path)
    try:
        cursor = con.execute(sql)
        held = [[jsonable(v) for v in row] for row in cursor.fetchall()]
        columns = [d[0] for d in cursor.description]
    finally:
        con.close()
    assert got["columns"] == columns
    assert got["rows"] == held and len(held) > 5
    assert got["truncated"] is False and got["max_rows"] == service.settings.analyst_sql_max_rows
    assert got["result_sha256"] == result_digest(columns, held)

    # masked only: the analyst's own pseudonyms (no hub pseudonym), the opt-out absent,
    # and no personal value in any cell
    frame = pl.DataFrame(got["rows"], schema=got["columns"], orient="row")
    with open_lake(service.settings, read_only=True) as lake:
        hub = {r[0] for r in lake.execute(f'SELECT person_id FROM marts."{table}"').fetchall()}
    assert analyst_street.opted_out in hub
    assert not set(frame["person_id"].to_list()) & hub
    assert scan_frame(frame).total == 0

    # the row cap: asked for fewer, cut and said so; the service's cap bounds any ask
    cut = api.post("/analyst/sql", json={"sql": sql, "max_rows": 5}, headers=analyst.headers)
    assert cut.status_code == 200
    assert cut.json()["rows"] == held[:5] and cut.json()["truncated"] is True
    monkeypatch.setattr(service.settings, "analyst_sql_max_rows", 3)
    capped = api.post("/analyst/sql", json={"sql": sql, "max_rows": 500}, headers=analyst.headers)
    assert capped.json()["rows"] == held[:3] and capped.json()["truncated"] is True
    assert capped.json()["max_rows"] == 3

    # every query audited: who, the text's digest, rows, the result's digest — not the text
    records = _audited(service, analyst.actor)
    assert [r["rows"] for r in records] == [len(held), 5, 3]
    assert [r["truncated"] for r in records] == [False, True, True]
    assert records[0]["result_sha256"] == got["result_sha256"]
    assert records[0]["seq"] == got["audit_seq"] == int(answer.headers["X-Audit-Seq"])
    assert all(sql not in str(r) for r in records)

    # a department's person is refused (403, audited), whatever roles it holds
    officer = people.make("wjw", "requester", "data_officer", "admin")
    refused = api.post("/analyst/sql", json={"sql": sql}, headers=officer.headers)
    assert refused.status_code == 403
    assert [r["outcome"] for r in _audited(service, officer.actor)] == ["refused"]
    # a failing query answers DuckDB's reason (400), audited as failed
    failed = api.post("/analyst/sql", json={"sql": f"SELECT nope FROM {table}"},
                      headers=analyst.headers)  # fmt: skip
    assert failed.status_code == 400 and "nope" in failed.json()["detail"]
    last = _audited(service, analyst.actor)[-1]
    assert last["outcome"] == "failed" and last["reason"] == "the query failed: BinderException"


def test_a_runaway_query_is_interrupted_while_the_service_answers(
    server, people, analyst_street, monkeypatch
):
    service = analyst_street.service
    limit = 2.0
    monkeypatch.setattr(service.settings, "analyst_sql_time_limit_seconds", limit)
    analyst = people.make(analyst_street.org, "requester", kind="analyst")
    table = OPTED_OUT_MART
    runaway = (
        f"SELECT count(*) FROM {table} a, {table} b, {table} c, {table} d, {table} e, {table} f"
    )
    with server.client(analyst) as client:
        warm = client.post("/analyst/sql", json={"sql": f"SELECT count(*) FROM {table}"})
        assert warm.status_code == 200  # a worker is up: the runaway's time is the query's
        outcome: dict = {}

        def run() -> None:
            started = time.monotonic()
            outcome["answer"] = client.post("/analyst/sql", json={"sql": runaway})
            outcome["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.3)
        latencies = []
        with server.client(analyst) as other:
            while thread.is_alive():
                started = time.monotonic()
                assert other.get("/audit/public-key").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.1)
        thread.join()
        answer = outcome["answer"]
        assert answer.status_code == 422, answer.text
        assert "time limit" in answer.json()["detail"]
        assert limit <= outcome["seconds"] < limit + 3
        # answered all along: a blocked service answers once or twice in the runaway's two
        # seconds (each waits for it); a loaded machine may slow one answer, not most
        assert len(latencies) >= 5 and statistics.median(latencies) < 0.5, latencies
        # interrupted by DuckDB, not killed: the same worker answers the next query
        assert service.kept(POOL_KEY, lambda: None).killed == 0
        after = client.post("/analyst/sql", json={"sql": f"SELECT count(*) FROM {table}"})
        assert after.status_code == 200 and after.json()["rows"] == warm.json()["rows"]
    records = _audited(service, analyst.actor)
    assert [r["outcome"] for r in records] == ["ok", "interrupted", "ok"]
    assert records[1]["status"] == 422


def test_a_busy_pool_refuses_and_a_worker_past_its_deadline_is_killed_and_replaced(
    tmp_path, monkeypatch
):
    db = tmp_path / "tiny.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS i FROM range(3000)")
    quick = Job(str(db), "SELECT count(*) AS n FROM t", 10, 5.0, "128MB", 1)
    runaway = Job(str(db), "SELECT count(*) FROM t a, t b, t c, t d", 10, 1.5, "128MB", 1)
    pool = WorkerPool(1)
    try:
        assert pool.run(quick)["rows"] == [[3000]]
        answers: list[dict] = []
        thread = threading.Thread(target=lambda: answers.append(pool.run(runaway)))
        thread.start()
        time.sleep(0.3)
        with pytest.raises(PoolBusy):  # the only worker runs the runaway: refused at once
            pool.run(quick)
        thread.join()
        assert answers[0]["kind"] == "interrupted" and pool.killed == 0  # DuckDB's interrupt
        # a worker that does not answer by the service's deadline is killed, then replaced
        monkeypatch.setattr(worker_module, "GRACE_S", -1.2)  # deadline 0.3 s, interrupt 1.5 s
        started = time.monotonic()
        assert pool.run(runaway)["kind"] == "interrupted"
        assert time.monotonic() - started < 1.2
        assert pool.killed == 1
        deadline = time.monotonic() + 60
        while pool.idle == 0 and time.monotonic() < deadline:  # its spare starts meanwhile
            time.sleep(0.05)
        assert pool.idle == 1
        assert pool.run(quick)["rows"] == [[3000]]
        assert pool.idle == 1  # the spare answered, and waits again
    finally:
        pool.close()


def test_an_answer_past_the_byte_cap_is_a_failure_saying_so(monkeypatch):
    answer = {"kind": "ok", "columns": ["big"], "rows": [["x" * 5000]], "truncated": False}
    assert json.loads(worker_module.encoded(answer)) == answer
    monkeypatch.setattr(worker_module, "MAX_ANSWER_BYTES", 4096)
    cut = json.loads(worker_module.encoded(answer))
    assert cut["kind"] == "failed" and "larger than" in cut["reason"]


def test_a_worker_maps_at_most_its_address_space_and_lives_past_a_huge_value(tmp_path):
    assert address_space_for("512MB", 1) == 2**30 + 2**30 + 128 * 2**20
    assert address_space_for("1.5 GiB", 2) == 3 * 2**30 + 2**30 + 256 * 2**20
    with pytest.raises(ValueError):
        address_space_for("lots", 1)
    db = tmp_path / "tiny.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS i FROM range(10)")
    pool = WorkerPool(1, address_space_for("128MB", 1))
    try:
        huge = Job(str(db), "SELECT length(repeat('x', 1500000000)) AS n", 10, 20.0, "128MB", 1)
        answer = pool.run(huge)  # a 1.5 GB value: DuckDB's memory_limit does not stop it
        assert answer["kind"] == "failed" and "OutOfMemoryException" in answer["reason"]
        quick = Job(str(db), "SELECT count(*) FROM t", 10, 20.0, "128MB", 1)
        assert pool.run(quick)["rows"] == [[10]] and pool.killed == 0  # the same worker
    finally:
        pool.close()
