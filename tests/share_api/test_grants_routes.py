"""The /grants routes: who sees which grants, standing grants on published marts for front
ends (read like any grant), immediate revocation over HTTP, and many concurrent reads on a
real server (each recorded once, one snapshot, the same bytes)."""

from __future__ import annotations

import datetime as dt
import hashlib
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from share_api import grants

MART = "marts.resident_profile"


def dataset_grant(service, org: str) -> str:
    return grants.create_grant(
        service, grantee_org=org, resource="gaj.registered_residents", columns=["gender"],
        row_filter=None, masking={}, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        request_id=None,
    )  # fmt: skip


def test_listing_is_least_privilege(service, people, api) -> None:
    mine, theirs = dataset_grant(service, "mzj"), dataset_grant(service, "wjw")
    requester = people.make("mzj", "requester")
    officer = people.make("zjj", "data_officer")
    listed = {g["id"] for g in api.get("/grants", headers=requester.headers).json()}
    assert mine in listed and theirs not in listed
    assert {mine, theirs} <= {g["id"] for g in api.get("/grants", headers=officer.headers).json()}
    assert api.get(f"/grants/{theirs}", headers=requester.headers).status_code == 404
    shown = api.get(f"/grants/{mine}", headers=requester.headers).json()
    assert shown["status"] == "live" and shown["columns"] == ["gender"] and shown["reads"] == 0


def test_standing_grant_for_a_front_end(service, people, api) -> None:
    officer = people.make("zjj", "data_officer")
    app_user = people.make("residentapp", "requester", kind="frontend")
    body = {"grantee_org": "residentapp", "resource": MART}
    made = api.post("/grants", json=body, headers=officer.headers)
    assert made.status_code == 201, made.text
    grant = made.json()
    assert (
        grant["standing"]
        and grant["expires_at"] is None
        and grant["masking"]["person_id"] == ("pseudonymise")
    )
    # a requester cannot make one; a standing grant is on a mart only
    assert api.post("/grants", json=body, headers=app_user.headers).status_code == 403
    bad = {**body, "resource": "gaj.registered_residents"}
    assert api.post("/grants", json=bad, headers=officer.headers).status_code == 422
    page = api.get(f"/grants/{grant['id']}/data", params={"limit": 5}, headers=app_user.headers)
    assert page.status_code == 200 and len(page.json()["rows"]) == 5
    assert set(page.json()["rows"][0]) == set(grant["columns"])


def test_revoke_over_http_takes_effect_at_once(service, people, api) -> None:
    gid = dataset_grant(service, "mzj")
    reader = people.make("mzj", "requester")
    stranger = people.make("rsj", "reviewer")
    assert api.get(f"/grants/{gid}/data", headers=reader.headers).status_code == 200
    assert api.post(f"/grants/{gid}/revoke", json={}, headers=stranger.headers).status_code == 404
    owner = people.make("gaj", "reviewer")
    done = api.post(f"/grants/{gid}/revoke", json={"reason": "case closed"}, headers=owner.headers)
    assert done.status_code == 200 and done.json()["status"] == "revoked"
    assert api.get(f"/grants/{gid}/data", headers=reader.headers).status_code == 403
    assert api.post(f"/grants/{gid}/revoke", json={}, headers=owner.headers).status_code == 409
    actions = [r["action"] for r in service.audit.log.records() if r.get("grant") == gid]
    assert actions == ["grant.create", "data.read", "grant.revoke", "data.denied"]


def test_concurrent_reads_on_a_real_server(service, people, server) -> None:
    gid = dataset_grant(service, "mzj")
    reader = people.make("mzj", "requester")

    def read(i: int) -> tuple[int, str, str, bytes]:
        with server.client(reader) as client:
            r = client.get(f"/grants/{gid}/data", params={"format": "arrow", "limit": 50})
            return (
                r.status_code,
                r.headers["X-Lake-Snapshot"],
                r.headers["X-Content-SHA256"],
                r.content,
            )

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(read, range(48)))
    assert {r[0] for r in results} == {200}
    assert len({r[1] for r in results}) == 1 and len({r[3] for r in results}) == 1
    assert results[0][2] == hashlib.sha256(results[0][3]).hexdigest()
    assert pa.ipc.open_stream(results[0][3]).read_all().num_rows == 50
    reads = grants.reads_of(service, gid)
    assert len(reads) == 48 and len({r["audit_seq"] for r in reads}) == 48


def test_changing_a_grant_needs_two_administrators(service, people, api) -> None:
    import json

    from share_api.requests import open_admin_operation, review

    gid = dataset_grant(service, "mzj")
    first, second = people.make("zjj", "admin"), people.make("gaj", "admin")
    payload = {"grant": gid, "columns": json.dumps(["gender", "community_code"]),
               "rate_per_minute": 10}  # fmt: skip
    op = open_admin_operation(service, first.principal, "grant.change", payload)
    url = f"/grants/{gid}/change"
    assert api.post(url, json={"request_id": op}, headers=first.headers).status_code == 409
    review(service, second.principal, op, "approve")
    reader = people.make("mzj", "requester")
    assert api.post(url, json={"request_id": op}, headers=reader.headers).status_code == 403
    done = api.post(url, json={"request_id": op}, headers=first.headers)
    assert done.status_code == 200, done.text
    assert done.json()["columns"] == ["gender", "community_code"]
    assert done.json()["rate_per_minute"] == 10
    rows = api.get(f"/grants/{gid}/data", headers=reader.headers).json()["rows"]
    assert set(rows[0]) == {"gender", "community_code"}
    assert api.post(url, json={"request_id": op}, headers=first.headers).status_code == 409
    other = dataset_grant(service, "mzj")  # an approval is for the grant it names
    op2 = open_admin_operation(service, first.principal, "grant.change", payload)
    review(service, second.principal, op2, "approve")
    wrong = api.post(f"/grants/{other}/change", json={"request_id": op2}, headers=first.headers)
    assert wrong.status_code == 409


def test_a_read_is_one_audit_record_naming_its_sign_in(service, people, api) -> None:
    """A data read's sign-in is audited in the read's own record (token and client named):
    one durable record a read; a refused read names the token too; a bad token is still
    ``auth.failed`` and 401."""
    gid = dataset_grant(service, "mzj")
    reader = people.make("mzj", "requester")
    stranger = people.make("rsj", "requester")
    before = len(service.audit.log.records())
    assert api.get(f"/grants/{gid}/data", headers=reader.headers).status_code == 200
    made = service.audit.log.records()[before:]
    assert [r["action"] for r in made] == ["data.read"]
    assert made[0]["token"] == reader.token_id and made[0]["client"]
    assert api.get(f"/grants/{gid}/data", headers=stranger.headers).status_code == 403
    denied = [r for r in service.audit.log.records() if r["action"] == "data.denied"]
    assert denied[-1]["token"] == stranger.token_id and "auth.ok" not in {
        r["action"] for r in service.audit.log.records()[before:]
    }
    wrong = reader.token[:-1] + ("A" if reader.token[-1] != "A" else "B")
    bad = {"Authorization": f"Bearer {wrong}"}
    assert api.get(f"/grants/{gid}/data", headers=bad).status_code == 401
    failed = [r for r in service.audit.log.records() if r["action"] == "auth.failed"]
    assert failed[-1]["token"] == reader.token_id and failed[-1]["reason"] == "invalid"
