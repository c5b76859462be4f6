"""Must-show (issue 14): hostile calls each get the right 4xx AND an audit record — no
token, an expired token, a revoked token, another department's grant, a row filter
carrying SQL injection, a path-traversal table name, an oversized body — and none of them
gets a 5xx or a value of the data. Run against a real uvicorn server."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
import pytest

from share_api import grants
from share_api.alerts import open_alerts
from share_api.principals import disable_user, revoke_token
from share_api.service import Service
from share_api.views import resolve
from tests.share_api.audit_support import built_mart, standing_grant

INJECTIONS = (
    "x' OR '1'='1",
    "1; DROP TABLE grants; --",
    '") OR 1=1 --',
    '\' UNION SELECT * FROM staged."gaj__registered_residents" --',
)
TRAVERSALS = (
    "..%2F..%2Fstaged%2Fgaj__registered_residents",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%5C..%5Cshare%5Cshare.db",
    'grant-0"%3B DROP TABLE grants%3B --',
)


class Audit:
    """The audit records written since it was made."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.mark = len(service.audit.log.records())

    def new(self, action: str | None = None, **match: Any) -> list[dict[str, Any]]:
        found = self.service.audit.log.records()[self.mark :]
        return [
            r
            for r in found
            if (action is None or r["action"] == action)
            and all(r.get(k) == v for k, v in match.items())
        ]


@pytest.fixture
def mart(mart_street) -> str:
    return built_mart(mart_street)


def no_values_in(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text


def test_no_token(server, service: Service):
    audit = Audit(service)
    with server.client() as c:
        r = c.get("/grants")
        r2 = c.get("/catalogue")
    assert r.status_code == r2.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert len(audit.new("auth.failed", reason="missing", path="/grants")) == 1
    assert len(audit.new("auth.failed", reason="missing", path="/catalogue")) == 1


def test_a_garbage_token(server, service: Service):
    audit = Audit(service)
    with server.client("not-a-token") as c:
        assert c.get("/grants").status_code == 401
    with server.client("tok-0000000000000000." + "A" * 43) as c:
        assert c.get("/grants").status_code == 401
    reasons = [r["reason"] for r in audit.new("auth.failed")]
    assert reasons == ["malformed", "invalid"]


def test_expired_token(server, service: Service, people):
    person = people.make("wjw", "requester", ttl=dt.timedelta(seconds=1))
    audit = Audit(service)
    time.sleep(1.2)
    with server.client(person) as c:
        r = c.get("/grants")
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    [failed] = audit.new("auth.failed", reason="expired")
    assert failed["token"] == person.token_id and failed["actor"] == person.actor
    assert person.token.split(".", 1)[1] not in service.audit.log.path.read_text()


def test_revoked_token_is_refused_and_raises_an_alert(server, service: Service, people):
    person = people.make("wjw", "requester")
    with server.client(person) as c:
        assert c.get("/grants").status_code == 200
        revoke_token(service, person.token_id)
        audit = Audit(service)
        r = c.get("/grants")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    [failed] = audit.new("auth.failed", reason="revoked")
    assert failed["token"] == person.token_id
    [opened] = audit.new("alert.open", kind="revoked_token")
    assert opened["subject"] == person.token_id
    [alert] = open_alerts(service, "wjw")
    assert alert["kind"] == "revoked_token" and alert["audit_seq"] == opened["seq"]


def test_a_missing_role_and_a_disabled_person(server, service: Service, people, mart: str):
    requester = people.make("wjw", "requester")
    audit = Audit(service)
    body = {"grantee_org": "wjw", "resource": mart}
    with server.client(requester) as c:
        r = c.post("/grants", json=body)  # a standing grant needs a data officer or admin
    assert r.status_code == 403
    [forbidden] = audit.new("auth.forbidden", actor=requester.actor)
    assert forbidden["path"] == "/grants" and "data_officer" in forbidden["needs"]
    assert audit.new("http.refused") == []  # one refusal, one record
    assert grants.list_grants(service, "wjw") == []

    disable_user(service, requester.user_id, actor="sjj/admin")
    audit = Audit(service)
    with server.client(requester) as c:
        r = c.get("/grants")
    assert r.status_code == 401 and "disabled" in r.json()["detail"]
    [failed] = audit.new("auth.failed", reason="disabled")
    assert failed["token"] == requester.token_id


def test_another_departments_grant(server, service: Service, people, mart: str):
    owner = people.make("wjw", "requester")
    other = people.make("mzj", "requester")
    grant_id = standing_grant(service, "wjw", mart, 3)
    with server.client(owner) as c:
        assert c.get(f"/grants/{grant_id}/data").status_code == 200
    audit = Audit(service)
    with server.client(other) as c:
        r = c.get(f"/grants/{grant_id}/data")
        r_arrow = c.get(f"/grants/{grant_id}/data", params={"format": "arrow"})
        r_terms = c.get(f"/grants/{grant_id}")
    assert r.status_code == r_arrow.status_code == 403
    assert r_terms.status_code == 404
    denied = audit.new("data.denied", reason="not_grantee", grant=grant_id)
    assert len(denied) == 2 and {d["actor"] for d in denied} == {other.actor}
    refused = audit.new("http.refused", actor=other.actor)
    assert [r["status"] for r in refused] == [403, 403, 404]
    assert audit.new("data.read") == []


@pytest.mark.parametrize("injection", INJECTIONS)
def test_sql_injection_in_a_row_filter(server, service: Service, people, mart: str, injection: str):
    officer = people.make("sjj", "data_officer")
    ref = mart

    column = next(iter(resolve(service.catalogue, ref).columns))
    audit = Audit(service)
    bodies = [
        {"field": injection, "op": "eq", "value": 1},  # as a column name
        {"field": column, "op": injection, "value": 1},  # as an operator
        {"and": injection},  # as a node
    ]
    with server.client(officer) as c:
        answers = []
        for row_filter in bodies:
            body = {"grantee_org": "wjw", "resource": ref, "row_filter": row_filter}
            r = c.post("/grants", json=body)
            answers.append(r)
            no_values_in(r)
            assert r.status_code in (400, 422), r.text
            assert injection not in r.text  # errors name positions, never values
        # as a value: compared as the string it is, so it matches no row
        body = {
            "grantee_org": "sjj",
            "resource": ref,
            "columns": [column],
            "row_filter": {"field": column, "op": "eq", "value": injection},
        }
        made = c.post("/grants", json=body)
        assert made.status_code == 201, made.text
        rows = c.get(f"/grants/{made.json()['id']}/data")
    assert rows.status_code == 200 and rows.json()["rows"] == []
    assert grants.list_grants(service, "wjw") == []  # no injected grant was made
    refused = audit.new("http.refused", path="/grants", method="POST")
    assert [r["status"] for r in refused] == [r.status_code for r in answers]
    assert injection not in service.audit.log.path.read_text()


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_table_name(server, service: Service, people, path: str):
    person = people.make("wjw", "requester")
    audit = Audit(service)
    with server.client(person) as c:
        responses = [
            c.get(f"/grants/{path}/data"),
            c.get(f"/grants/{path}/data", params={"format": "parquet"}),
            c.get(f"/catalogue/{path}"),
            c.post(
                "/requests",
                json={
                    "resource": path.replace("%2F", "/"),
                    "columns": ["x"],
                    "purpose": "test",
                    "legal_basis": "test",
                },
            ),
        ]
    for r in responses:
        no_values_in(r)
        assert r.status_code in (400, 404, 422), (r.request.url, r.status_code, r.text)
    refused = audit.new("http.refused")  # a path no route takes: before sign-in
    assert [r["status"] for r in refused] == [r.status_code for r in responses]


def test_oversized_body(server, service: Service, people):
    person = people.make("wjw", "requester")
    limit = service.settings.share_max_body_bytes
    audit = Audit(service)
    with server.client(person) as c:
        big = {"resource": "x.y", "columns": ["a"], "purpose": "p" * (limit + 1)}
        r = c.post("/requests", json=big)
        # a body that lies about its length is cut off at the limit too
        streamed = c.post(
            "/requests",
            content=iter([b"{" + b" " * 65536] * (limit // 65536 + 2)),
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 413, r.text
    assert streamed.status_code == 413, streamed.text
    refused = audit.new("http.refused", path="/requests", method="POST")
    assert [(x["status"], x["limit"]) for x in refused] == [(413, limit), (413, limit)]
