"""Routes of identities (issue 14 items 1, 9): who am I, one's own tokens, and the
administration of organisations, people and roles — a role only under the two-person
rule, used once; lowering privilege takes one administrator."""

from __future__ import annotations

import datetime as dt

from share_api.principals import authenticate_token
from share_api.service import Service


def records(service: Service, action: str) -> list[dict]:
    return [r for r in service.audit.log.records() if r["action"] == action]


def test_me_names_the_person_their_org_and_roles(api, people):
    person = people.make("mzj", "reviewer", "requester")
    answer = api.get("/me", headers=person.headers)
    assert answer.status_code == 200
    me = answer.json()
    assert (me["user_id"], me["org"], me["org_kind"]) == (person.user_id, "mzj", "department")
    assert me["roles"] == ["requester", "reviewer"] and me["org_name"]
    assert me["token_id"] == person.token_id and person.token not in answer.text


def test_every_signed_in_request_is_audited(service: Service, api, people):
    person = people.make("wjw", "requester")
    api.get("/me", headers=person.headers)
    [ok] = [r for r in records(service, "auth.ok") if r["actor"] == person.actor]
    assert (ok["token"], ok["path"], ok["method"]) == (person.token_id, "/me", "GET")


def test_a_new_token_never_outlives_the_one_used(service: Service, api, people):
    person = people.make("wjw", "requester", ttl=dt.timedelta(hours=1))
    longer = api.post("/tokens", json={"ttl_seconds": 2 * 3600}, headers=person.headers)
    assert longer.status_code == 422
    made = api.post("/tokens", json={"label": "laptop"}, headers=person.headers)
    assert made.status_code == 201
    new = made.json()
    assert dt.datetime.fromisoformat(new["expires_at"]) <= person.issued.expires_at
    assert authenticate_token(service, new["token"]).user_id == person.user_id
    listed = api.get("/tokens", headers=person.headers).json()
    assert {t["id"] for t in listed} == {person.token_id, new["token_id"]}
    assert all(t["live"] for t in listed) and new["token"] not in str(listed)


def test_revoking_ones_own_token_fails_its_next_use(service: Service, api, people):
    person = people.make("wjw", "requester")
    other = people.make("mzj", "requester")
    assert api.delete(f"/tokens/{other.token_id}", headers=person.headers).status_code == 404
    gone = api.delete(f"/tokens/{person.token_id}", headers=person.headers)
    assert gone.status_code == 200 and gone.json()["live"] is False
    assert api.get("/me", headers=person.headers).status_code == 401
    failed = records(service, "auth.failed")[-1]
    assert (failed["reason"], failed["token"], failed["actor"]) == (
        "revoked",
        person.token_id,
        person.actor,
    )
    assert api.get("/me", headers=other.headers).status_code == 200


def test_an_expired_token_is_401(service: Service, api, people, monkeypatch):
    person = people.make("wjw", "requester", ttl=dt.timedelta(seconds=60))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    monkeypatch.setattr("share_api.principals.utc_now", lambda: later)
    answer = api.get("/me", headers=person.headers)
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_administration_needs_the_admin_role(api, people):
    officer = people.make("hub", "data_officer")
    assert api.get("/admin/users", headers=officer.headers).status_code == 200  # overseer
    for method, path, body in [
        ("post", "/admin/orgs", {"code": "app1", "name": "x", "kind": "frontend"}),
        ("post", "/admin/users", {"org": "wjw", "name": "x"}),
        ("delete", "/admin/tokens/tok-0123456789abcdef", None),
    ]:
        kwargs = {"json": body} if body else {}
        answer = api.request(method.upper(), path, headers=officer.headers, **kwargs)
        assert answer.status_code == 403, path


def test_a_role_takes_two_administrators_once(service: Service, api, people):
    first = people.make("hub", "admin")
    second = people.make("hub", "admin")
    made = api.post(
        "/admin/users",
        json={"org": "wjw", "name": "王 reviewer", "user_id": "wjw-wang"},
        headers=first.headers,
    )
    assert made.status_code == 201 and made.json()["roles"] == []
    grant = {"role": "reviewer", "operation": "op-0000000000000000"}
    assert (
        api.post("/admin/users/wjw-wang/roles", json=grant, headers=first.headers).status_code
        == 404
    )
    opened = api.post(
        "/admin/operations",
        json={"kind": "role.grant", "payload": {"user": "wjw-wang", "role": "reviewer"}},
        headers=first.headers,
    )
    assert opened.status_code == 201
    grant["operation"] = opened.json()["id"]
    # the opener alone is not enough
    one = api.post("/admin/users/wjw-wang/roles", json=grant, headers=first.headers)
    assert one.status_code == 409
    # the opener cannot be the second approver
    again = api.post(
        f"/requests/{grant['operation']}/reviews",
        json={"decision": "approve"},
        headers=first.headers,
    )
    assert again.status_code >= 400
    approved = api.post(
        f"/requests/{grant['operation']}/reviews",
        json={"decision": "approve"},
        headers=second.headers,
    )
    assert approved.status_code == 200, approved.text
    # an approval is for that person and role only
    other = api.post(
        "/admin/users/wjw-wang/roles", json={**grant, "role": "admin"}, headers=first.headers
    )
    assert other.status_code == 409
    done = api.post("/admin/users/wjw-wang/roles", json=grant, headers=first.headers)
    assert done.status_code == 200 and done.json()["roles"] == ["reviewer"]
    assert (
        api.post("/admin/users/wjw-wang/roles", json=grant, headers=first.headers).status_code
        == 409
    )  # used once
    [granted] = records(service, "admin.role_grant")
    assert (granted["user"], granted["role"], granted["actor"]) == (
        "wjw-wang",
        "reviewer",
        first.actor,
    )


def test_a_new_persons_first_token_is_handed_over_once(service: Service, api, people):
    admin = people.make("hub", "admin")
    api.post(
        "/admin/users",
        json={"org": "mzj", "name": "李", "user_id": "mzj-li"},
        headers=admin.headers,
    )
    first = api.post(
        "/admin/users/mzj-li/tokens", json={"label": "onboarding"}, headers=admin.headers
    )
    assert first.status_code == 201
    token = first.json()["token"]
    assert api.get("/me", headers={"Authorization": f"Bearer {token}"}).json()["roles"] == []
    again = api.post("/admin/users/mzj-li/tokens", headers=admin.headers)
    assert again.status_code == 409  # no administrator signs in as someone who has a token
    listed = api.get("/admin/users/mzj-li/tokens", headers=admin.headers).json()
    assert [t["id"] for t in listed] == [first.json()["token_id"]]


def test_lowering_privilege_takes_one_administrator(service: Service, api, people):
    admin = people.make("hub", "admin")
    person = people.make("wjw", "requester", "reviewer")
    removed = api.delete(f"/admin/users/{person.user_id}/roles/reviewer", headers=admin.headers)
    assert removed.status_code == 200 and removed.json()["roles"] == ["requester"]
    revoked = api.delete(f"/admin/tokens/{person.token_id}", headers=admin.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert api.get("/me", headers=person.headers).status_code == 401
    fresh = people.make("wjw", "requester")
    disabled = api.post(f"/admin/users/{fresh.user_id}/disable", headers=admin.headers)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"]
    assert api.get("/me", headers=fresh.headers).status_code == 401
    assert (
        api.post(f"/admin/users/{admin.user_id}/disable", headers=admin.headers).status_code == 409
    )


def test_front_ends_and_analysts_are_made_by_an_administrator(api, people):
    admin = people.make("hub", "admin")
    made = api.post(
        "/admin/orgs",
        json={"code": "jianwai_app", "name": "建外街道居民小程序", "kind": "frontend"},
        headers=admin.headers,
    )
    assert made.status_code == 201 and made.json()["kind"] == "frontend"
    dup = api.post(
        "/admin/orgs",
        json={"code": "jianwai_app", "name": "again", "kind": "frontend"},
        headers=admin.headers,
    )
    assert dup.status_code == 409
    bad = api.post(
        "/admin/orgs",
        json={"code": "../etc", "name": "x", "kind": "frontend"},
        headers=admin.headers,
    )
    assert bad.status_code == 422
    codes = {o["code"] for o in api.get("/admin/orgs", headers=admin.headers).json()}
    assert {"jianwai_app", "wjw", "mzj"} <= codes
