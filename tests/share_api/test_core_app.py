"""The app around every route (issue 14 items 7, 8): an oversized body is refused with 413
before a route reads it, every 4xx has an audit record (one, not two), a validation error
never echoes the values sent, and the committed OpenAPI spec is the app's."""

from __future__ import annotations

import json
import socket
import threading

import httpx

from masking.errors import AuditError
from share_api.app import SPEC_FILE, openapi_spec
from share_api.service import Service


def records(service: Service, action: str | None = None) -> list[dict]:
    return [r for r in service.audit.log.records() if action is None or r["action"] == action]


def refusals(service: Service, status: int) -> list[dict]:
    return [r for r in records(service, "http.refused") if r["status"] == status]


def test_an_oversized_body_is_413_and_audited(service: Service, api, people):
    person = people.make("wjw", "requester")
    limit = service.settings.share_max_body_bytes
    big = b'{"label": "' + b"x" * limit + b'"}'
    answer = api.post("/tokens", content=big, headers=person.headers)
    assert answer.status_code == 413
    assert str(limit) in answer.json()["detail"]
    [refused] = refusals(service, 413)
    assert (refused["method"], refused["path"], refused["limit"]) == ("POST", "/tokens", limit)
    assert refused["actor"] == "anonymous"  # refused before anyone is signed in
    assert records(service, "auth.token_issue")[-1]["user"] == person.user_id  # fixture's
    assert len(records(service, "auth.token_issue")) == 1  # … and no token made by it


def test_a_body_at_the_limit_is_read(service: Service, api, people):
    person = people.make("wjw", "requester")
    limit = service.settings.share_max_body_bytes
    body = json.dumps({"label": "x" * 10}).encode()
    body = body[:-2] + b" " * (limit - len(body)) + body[-2:]  # padded to exactly the limit
    assert len(body) == limit
    answer = api.post("/tokens", content=body, headers=person.headers)
    # a 1 MB label is refused by the model (≤ 200) — read, judged, not cut off as too large
    assert answer.status_code in (201, 422), answer.text
    assert refusals(service, 413) == []


def test_a_streamed_oversized_body_is_413_on_a_real_server(service: Service, server, people):
    person = people.make("wjw", "requester")
    limit = service.settings.share_max_body_bytes

    def chunks():  # no Content-Length: chunked transfer, the size known only as it comes
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    with server.client(person) as client:
        try:
            answer = client.post("/tokens", content=chunks())
            status = answer.status_code
        except httpx.HTTPError:  # the server may close while the client still sends
            status = 413
    assert status == 413
    assert len(refusals(service, 413)) == 1


def test_a_declared_oversized_length_is_refused_unread(service: Service, server, people):
    person = people.make("wjw", "requester")
    limit = service.settings.share_max_body_bytes
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST /tokens HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {person.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n{{}}"
    )
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())  # 2 bytes sent of the declared limit + 1: never read
        answer = sock.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:80]
    [refused] = refusals(service, 413)
    assert refused["path"] == "/tokens"


def test_every_4xx_has_one_audit_record(service: Service, api, people):
    requester = people.make("wjw", "requester")
    before = len(records(service))
    assert api.get("/no/such/path").status_code == 404
    [missing] = refusals(service, 404)
    assert (missing["actor"], missing["path"], missing["client"]) == (
        "anonymous",
        "/no/such/path",
        "127.0.0.1",
    )
    # a failed sign-in: its auth.failed record is the refusal's (no second record)
    assert api.get("/me").status_code == 401
    assert refusals(service, 401) == []
    assert records(service, "auth.failed")[-1]["reason"] == "missing"
    # a missing role: auth.forbidden is the refusal's record
    assert api.get("/admin/users", headers=requester.headers).status_code == 403
    assert refusals(service, 403) == []
    [forbidden] = records(service, "auth.forbidden")
    assert forbidden["actor"] == requester.actor and forbidden["needs"]
    # a route's own 404, after sign-in: the record names the caller
    answer = api.delete("/tokens/tok-0123456789abcdef", headers=requester.headers)
    assert answer.status_code == 404
    assert refusals(service, 404)[-1]["actor"] == requester.actor
    new = records(service)[before:]
    kinds = [r["action"] for r in new]
    assert kinds.count("http.refused") == 2 and kinds.count("auth.failed") == 1


def test_a_validation_error_names_fields_never_values(service: Service, api, people):
    person = people.make("wjw", "requester")
    secretish = "110105199001011234"  # what a caller might paste by mistake
    answer = api.post(
        "/tokens", json={"label": secretish, "ttl_seconds": secretish}, headers=person.headers
    )
    assert answer.status_code == 422
    assert secretish not in answer.text
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["body", "ttl_seconds"] and problem["msg"]
    [refused] = refusals(service, 422)
    assert refused["actor"] == person.actor
    assert secretish not in json.dumps(records(service))


def test_the_committed_spec_is_the_apps():
    committed = json.loads(SPEC_FILE.read_text())
    assert committed == openapi_spec(), (
        "share_api/openapi.json differs from the app's spec: run `streethub openapi --write`"
    )


def test_the_served_spec_is_the_committed_one(api):
    answer = api.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.json() == json.loads(SPEC_FILE.read_text())
    assert answer.json()["components"]["securitySchemes"]["token"]["scheme"] == "bearer"


def test_an_unwritable_audit_log_refuses_the_call_with_503(
    service: Service, api, people, monkeypatch
):
    person = people.make("wjw", "requester")

    def broken(action, actor, **details):
        raise AuditError("the disk is full")

    monkeypatch.setattr(service.audit, "record", broken)
    answer = api.get("/me", headers=person.headers)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "30"
    assert "disk" not in answer.text  # the cause stays in the server's log


def test_the_app_warms_the_text_scrubber_at_start(service: Service, monkeypatch):
    from fastapi.testclient import TestClient

    from share_api import app as app_module

    warmed = threading.Event()
    monkeypatch.setattr(app_module, "warm", warmed.set)
    with TestClient(app_module.create_app(service=service)):
        assert warmed.wait(10)


PUBLIC = {("get", "/audit/public-key")}  # the audit verification key is public (item 9)


def test_every_operation_but_the_public_key_needs_a_token(service: Service, api):
    """Every call is authenticated (issue 14 item 1): each operation of the spec declares
    the bearer scheme and refuses an anonymous call with 401, whatever its parameters."""
    spec = api.get("/openapi.json").json()
    operations = [(method, path) for path, ops in spec["paths"].items() for method in ops]
    assert len(operations) >= 30
    before = len(records(service, "auth.failed"))
    for method, path in operations:
        declared = bool(spec["paths"][path][method].get("security"))
        assert declared == ((method, path) not in PUBLIC), (method, path)
        if (method, path) in PUBLIC:
            continue
        url = path.replace("{", "").replace("}", "")  # every path parameter: its own name
        kwargs = {"json": {}} if method in ("post", "put", "patch") else {}
        answer = api.request(method.upper(), url, **kwargs)
        assert answer.status_code == 401, (method, path, answer.status_code)
    assert len(records(service, "auth.failed")) - before == len(operations) - len(PUBLIC)


def test_the_nul_character_is_refused_wherever_it_comes(service: Service, api, people):
    """No text of the service may hold NUL (PostgreSQL refuses it in text: schemathesis
    found 500s there): a body, query or path carrying one is a 422 naming where, audited
    with the path's NUL written as an escape."""
    person = people.make("wjw", "requester")
    nul_body = api.post("/tokens", content=b'{"label": "a\\u0000b"}', headers=person.headers)
    assert nul_body.status_code == 422 and nul_body.json()["detail"][0]["loc"] == ["body"]
    nul_query = api.get("/admin/users?org=wjw%00x", headers=person.headers)
    assert nul_query.status_code == 422 and nul_query.json()["detail"][0]["loc"] == ["query"]
    nul_path = api.delete("/tokens/tok-0%00", headers=person.headers)
    assert nul_path.status_code == 422 and nul_path.json()["detail"][0]["loc"] == ["path"]
    refused = refusals(service, 422)
    assert [r["path"] for r in refused] == ["/tokens", "/admin/users", "/tokens/tok-0\\x00"]
    assert all(r["actor"] == "anonymous" for r in refused)  # refused before sign-in
    # an escaped backslash before "u0000" is text, no NUL: the route reads it
    text = api.post(
        "/tokens",
        content=b'{"label": "a\\\\u0000b"}',
        headers={**person.headers, "Content-Type": "application/json"},
    )
    assert text.status_code == 201, text.text
