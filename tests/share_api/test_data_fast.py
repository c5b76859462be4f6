"""The JSON page served on the event loop (``routes.data.fast_read``): only when everything
it needs is in memory and current; every read audited and recorded, durable before the
answer; a revocation, a disabled person or an opt-out made by ANOTHER process (a second
service on the same state) refuses or changes the very next read."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from share_api import consent, grants, principals
from share_api.routes import data
from share_api.service import Service

RESOURCE = "wjw.chronic_followups"
COLUMNS = ["followup_id", "citizen_id"]


def make(service, org: str = "mzj") -> str:
    return grants.create_grant(
        service,
        grantee_org=org,
        resource=RESOURCE,
        columns=COLUMNS,
        row_filter=None,
        masking={"citizen_id": "pseudonymise"},
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        request_id=None,
    )


@pytest.fixture
def routed(monkeypatch) -> list[str]:
    """The grant ids of the reads that went through the declared route."""
    seen: list[str] = []
    real = data._read

    def spy(service, request, grant_id, *args):
        seen.append(grant_id)
        return real(service, request, grant_id, *args)

    monkeypatch.setattr(data, "_read", spy)
    return seen


@pytest.fixture
def other(share_settings):
    """A second service process on the same state (its own caches)."""
    second = Service.open(share_settings)
    yield second
    second.close()


def test_a_kept_page_is_served_on_the_loop_audited_and_recorded(service, people, api, routed):
    reader = people.make("mzj", "requester")
    gid = make(service)
    first = api.get(f"/grants/{gid}/data", params={"limit": 5}, headers=reader.headers)
    assert first.status_code == 200 and routed == [gid]
    again = api.get(f"/grants/{gid}/data?limit=5&format=json", headers=reader.headers)
    assert again.status_code == 200 and routed == [gid]  # no route: the fast path
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"] == "application/json"
    for h in ("X-Lake-Snapshot", "X-Total-Rows", "X-Content-SHA256", "Cache-Control"):
        assert again.headers[h] == first.headers[h]
    assert again.headers["X-Content-SHA256"] == hashlib.sha256(again.content).hexdigest()
    record = service.audit.find(int(again.headers["X-Audit-Seq"]))
    assert record["action"] == "data.read" and record["grant"] == gid
    assert record["token"] == reader.token_id and record["client"]
    assert record["digest"] == again.headers["X-Content-SHA256"] and record["rows"] == 5
    reads = grants.reads_of(service, gid)
    assert [r["audit_seq"] for r in reads] == [
        int(first.headers["X-Audit-Seq"]),
        int(again.headers["X-Audit-Seq"]),
    ]
    # what the fast path does not take exactly goes to the route, which decides as always
    odd = api.get(f"/grants/{gid}/data?limit=5&limit=6", headers=reader.headers)
    assert odd.status_code == 200 and routed == [gid, gid]
    bad = api.get(f"/grants/{gid}/data?limit=0", headers=reader.headers)
    assert bad.status_code == 422 and routed == [gid, gid]  # refused by validation
    nobody = api.get(f"/grants/{gid}/data?limit=5")
    assert nobody.status_code == 401
    assert service.audit.log.records()[-1]["action"] == "auth.failed"


def test_another_process_revoking_refuses_the_very_next_read(service, people, api, other):
    reader = people.make("mzj", "requester")
    gid = make(service)
    url = f"/grants/{gid}/data?limit=5"
    assert api.get(url, headers=reader.headers).status_code == 200
    assert api.get(url, headers=reader.headers).status_code == 200  # kept: fast path
    principals.revoke_token(other, reader.token_id, actor="admin/x")
    refused = api.get(url, headers=reader.headers)
    assert refused.status_code == 401 and "revoked" in refused.text
    failed = [r for r in service.audit.log.records() if r["action"] == "auth.failed"]
    assert failed[-1]["reason"] == "revoked" and failed[-1]["token"] == reader.token_id

    again = people.token_for(people.made[reader.user_id])
    headers = {"Authorization": f"Bearer {again.token}"}
    assert api.get(url, headers=headers).status_code == 200
    assert api.get(url, headers=headers).status_code == 200
    grants.revoke_grant(other, gid, "admin/x", "ended")
    assert api.get(url, headers=headers).status_code == 403
    denied = [r for r in service.audit.log.records() if r["action"] == "data.denied"]
    assert denied[-1]["reason"] == "revoked" and denied[-1]["grant"] == gid

    gid = make(service)
    url = f"/grants/{gid}/data?limit=5"
    assert api.get(url, headers=headers).status_code == 200
    assert api.get(url, headers=headers).status_code == 200
    people.make("mzj", "admin")  # the service keeps two administrators who can sign in
    people.make("mzj", "admin")
    assert principals.disable_user(other, reader.user_id, actor="admin/x")
    refused = api.get(url, headers=headers)
    assert refused.status_code == 401 and "disabled" in refused.text


def test_an_opt_out_in_another_process_applies_to_the_next_read(service, people, api, other):
    from lakehouse.lake import open_lake

    with open_lake(service.settings, read_only=True) as con:
        who, followup = con.execute(
            'SELECT "_pid_citizen_id", followup_id FROM staged."wjw__chronic_followups" '
            "ORDER BY followup_id LIMIT 1"
        ).fetchone()
    reader = people.make("mzj", "requester")
    gid = make(service)
    url = f"/grants/{gid}/data?limit=1000"

    def ids() -> set[str]:
        r = api.get(url, headers=reader.headers)
        assert r.status_code == 200
        return {row["followup_id"] for row in r.json()["rows"]}

    assert followup in ids() and followup in ids()  # the second from the fast path
    consent.record_choice(other, pseudonym=who, category="health", recipient_kind="department",
                          choice="declined", channel="counter", actor="mzj/officer")  # fmt: skip
    assert followup not in ids()


def test_a_whole_download_is_served_from_the_prepared_file(service, people, api, monkeypatch):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from share_api.sharing import files

    served = []
    real = files.prepared_download

    def spy(*args):
        found = real(*args)
        served.append(found is not None)
        return found

    monkeypatch.setattr(files, "prepared_download", spy)
    reader = people.make("mzj", "requester")
    gid = make(service)
    view = api.get(f"/grants/{gid}/data?format=arrow&limit=1000000000", headers=reader.headers)
    expected = pa.ipc.open_stream(view.content).read_all()
    for fmt in ("parquet", "arrow"):
        r = api.get(f"/grants/{gid}/data?format={fmt}", headers=reader.headers)
        assert r.status_code == 200
        assert int(r.headers["content-length"]) == len(r.content)
        assert r.headers["X-Content-SHA256"] == hashlib.sha256(r.content).hexdigest()
        assert r.headers["X-Lake-Snapshot"] == view.headers["X-Lake-Snapshot"]
        read = pq.read_table if fmt == "parquet" else lambda b: pa.ipc.open_stream(b).read_all()
        table = read(io.BytesIO(r.content))
        assert table.select(expected.column_names).to_pylist() == expected.to_pylist()
        record = service.audit.find(int(r.headers["X-Audit-Seq"]))
        assert record["digest"] == r.headers["X-Content-SHA256"]
        assert record["format"] == fmt and record["rows"] == expected.num_rows
    assert served == [True, True]  # the ranged read (a limit) was the view's
    assert len([r for r in grants.reads_of(service, gid) if r["format"] != "json"]) == 3


def test_the_fast_path_takes_a_new_lake_snapshot_within_a_second(service, people, api, routed):
    import time

    from lakehouse.lake import open_lake

    reader = people.make("mzj", "requester")
    gid = make(service)
    url = f"/grants/{gid}/data?limit=5"
    first = api.get(url, headers=reader.headers)
    assert api.get(url, headers=reader.headers).status_code == 200 and routed == [gid]
    with open_lake(service.settings) as con:  # the copy's lake moves on: 5 more rows
        con.execute(
            'INSERT INTO staged."wjw__chronic_followups" '
            'SELECT * FROM staged."wjw__chronic_followups" LIMIT 5'
        )
    time.sleep(1.1)  # a process takes the current snapshot as current for a second
    now = api.get(url, headers=reader.headers)
    assert int(now.headers["X-Lake-Snapshot"]) > int(first.headers["X-Lake-Snapshot"])
    assert int(now.headers["X-Total-Rows"]) == int(first.headers["X-Total-Rows"]) + 5
    then = api.get(url + f"&snapshot={first.headers['X-Lake-Snapshot']}", headers=reader.headers)
    assert then.content == first.content


EXIT_SCRIPT = """
import datetime as dt
from fastapi.testclient import TestClient
from catalog.settings import get_settings
from share_api import grants, principals
from share_api.app import create_app
from share_api.service import Service

service = Service.open(get_settings())
principals.sync_departments(service)
user = principals.create_user(service, "mzj", name="退出检查", roles=["requester"])
token = principals.issue_token(service, user).token
gid = grants.create_grant(
    service, grantee_org="mzj", resource=%r, columns=%r, row_filter=None,
    masking={"citizen_id": "pseudonymise"}, request_id=None,
    expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
)
for _ in range(8):  # apps dropped without their lifespan: nobody closes their services
    client = TestClient(create_app(service=Service.open(get_settings())))
    for _ in range(3):
        answer = client.get(f"/grants/{gid}/data", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.status_code
print("read")
"""


def test_a_process_that_never_closes_its_service_exits_cleanly(share_settings, tmp_path):
    """The fast path's lake clock (a daemon thread reading the lake) is stopped before the
    interpreter finalises: a dropped app no longer aborts its process after the work is
    done (exit 134, "terminate called without an active exception": the whole test run
    failed so)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "read_and_exit.py"
    script.write_text(EXIT_SCRIPT % (RESOURCE, COLUMNS), encoding="utf-8")
    env = {**os.environ, "STREETHUB_HOME": str(share_settings.home)}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "read" in done.stdout and "terminate" not in done.stderr


def test_the_lake_clock_reads_the_lake_only_while_it_is_asked(service, monkeypatch):
    """Nobody asking for the current snapshot, the clock's thread stops reading the lake
    (a service idle all night polls nothing); the next ask finds its snapshot stale (the
    route reads the lake itself) and wakes it: it reads again, at once and then on."""
    import time

    from tests.share_api.conftest import lake_clock_threads

    others = lake_clock_threads()
    clock = data.lake_clock(service)
    monkeypatch.setattr(type(clock), "IDLE_AFTER_S", 0.5)

    def until(what, seconds: float = 5.0) -> bool:
        deadline = time.monotonic() + seconds
        while not what():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    assert clock.current() is not None and clock.reading  # read at once when made
    assert until(lambda: not clock.reading), "still reading with nobody asking"
    time.sleep(0.05)  # a read under way when it fell asleep is done
    last = clock.held
    time.sleep(1.5)  # three reads' time, were it awake
    assert clock.held == last, "read the lake while asleep"
    assert clock.current() is None  # stale: the route reads the lake itself
    assert clock.reading and until(lambda: clock.current() is not None, 2.0)
    woke = clock.held
    assert woke != last and woke[1] >= last[1]
    # asked again and again (a reader paging), it keeps reading, every half TTL
    assert until(lambda: clock.current() is not None and clock.held[0] > woke[0] + 0.4, 3.0)
    assert clock.reading and lake_clock_threads() - others
    assert until(lambda: not clock.reading)
    started = time.monotonic()
    clock.close()  # a sleeping clock's thread wakes to stop: no wait for a timeout
    assert time.monotonic() - started < 1.0 and not lake_clock_threads() - others
