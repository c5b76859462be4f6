"""Requests over HTTP on the mart street with the real grants: the share-type paths end in a
grant GRANTS made (or a refusal), reviews by role, least privilege; the two-person rule for a
role grant (CORE's route) and for ``streethub keys rotate``."""

from __future__ import annotations

import base64
import secrets

import pytest
from typer.testing import CliRunner

from catalog.model import ShareType
from share_api import grants
from share_api import requests as rq
from share_api.principals import create_org, init_admins, principal_for_user
from share_api.service import Service
from tests.cli_text import one_line

ASK = {"purpose": "核查救助对象", "legal_basis": "社会救助暂行办法 第十一条"}


def dataset(service, share_type: ShareType):
    """A dataset of this share type with an L3/L4 field: (resource, that field, dataset)."""
    for dept, ds in service.catalogue.datasets():
        sensitive = [f.name for f in ds.fields if f.level.sensitive]
        if ds.share_type is share_type and sensitive:
            return f"{dept.code}.{ds.code}", sensitive[0], ds
    raise LookupError(share_type)


def another_department(service, owner: str) -> str:
    return next(code for code in service.catalogue.departments if code != owner.split(".")[0])


def test_conditional_l3_request_over_http(service, people, api):
    resource, field, ds = dataset(service, ShareType.conditional)
    owner_org = resource.split(".")[0]
    alice = people.make(another_department(service, resource), "requester")
    bob = people.make(owner_org, "reviewer")
    dora = people.make(another_department(service, resource), "data_officer")
    columns = [field, ds.key[0]]

    made = api.post("/requests", headers=alice.headers, json={"resource": resource,
                    "columns": columns, **ASK})  # fmt: skip
    assert made.status_code == 201, made.text
    req = made.json()
    assert (req["status"], req["awaiting"]) == ("pending", ["owner", "data_officer"])
    path = f"/requests/{req['id']}/reviews"
    # the requester holds no reviewer role: refused before anything is looked at
    assert api.post(path, headers=alice.headers, json={"decision": "approve"}).status_code == 403
    one = api.post(path, headers=bob.headers, json={"decision": "approve"}).json()
    assert (one["status"], one["grant_id"]) == ("pending", None)  # one approval is not enough
    again = api.post(path, headers=bob.headers, json={"decision": "approve"})
    assert again.status_code == 409
    two = api.post(path, headers=dora.headers, json={"decision": "approve"}).json()
    assert two["status"] == "granted"

    grant = grants.get_grant(service, two["grant_id"])
    assert (grant.grantee_org, grant.resource, grant.request_id) == (
        alice.org,
        resource,
        req["id"],
    )
    assert list(grant.columns) == columns and grant.expires_at is not None
    assert grant.masking[field] == grants.default_masking(service.catalogue, resource)[field]
    assert grant.masking[field] != "none"

    # least privilege: another department sees nothing of it
    stranger = people.make(
        next(c for c in service.catalogue.departments if c not in (owner_org, alice.org)),
        "requester",
        "reviewer",
    )
    assert api.get("/requests", headers=stranger.headers).json() == []
    assert api.get(f"/requests/{req['id']}", headers=stranger.headers).status_code == 404
    assert [r["id"] for r in api.get("/requests", headers=alice.headers).json()] == [req["id"]]


def test_unconditional_is_granted_at_once_and_not_shareable_refused(service, people, api):
    resource, _, _ = dataset(service, ShareType.unconditional)
    alice = people.make(another_department(service, resource), "requester")
    got = api.post("/requests", headers=alice.headers, json={"resource": resource, **ASK})
    assert got.status_code == 201, got.text
    body = got.json()
    assert body["status"] == "granted", body
    grant = grants.get_grant(service, body["grant_id"])
    assert grant.masking == grants.default_masking(service.catalogue, resource)
    page = api.get(f"/grants/{grant.id}/data", headers=alice.headers, params={"limit": 5})
    assert page.status_code == 200, page.text  # readable at once, through the grant
    refused_ds = next(
        (d.code, x)
        for d, x in service.catalogue.datasets()
        if x.share_type.value == "not_shareable"
    )
    ref = f"{refused_ds[0]}.{refused_ds[1].code}"
    no = api.post("/requests", headers=alice.headers, json={"resource": ref, **ASK}).json()
    assert (no["status"], no["refusal_basis"]) == ("refused", refused_ds[1].legal_basis)
    assert no["grant_id"] is None


def test_a_bad_request_is_refused_naming_the_field(service, people, api):
    resource, _, _ = dataset(service, ShareType.conditional)
    alice = people.make(another_department(service, resource), "requester")
    bad = api.post("/requests", headers=alice.headers,
                   json={"resource": resource, "columns": ["nope"], **ASK})  # fmt: skip
    assert bad.status_code == 422 and "nope" in bad.text
    reader = people.make(alice.org)  # no requester role
    denied = api.post("/requests", headers=reader.headers, json={"resource": resource, **ASK})
    assert denied.status_code == 403


def test_a_role_is_given_only_after_a_second_administrator_approves(service, people, api):
    ann, ben = people.make("hub", "admin", kind="analyst"), people.make("hub", "admin")
    carl = people.make("wjw")
    op = api.post("/admin/operations", headers=ann.headers,
                  json={"kind": "role.grant", "payload": {"user": carl.user_id,
                                                          "role": "reviewer"}})  # fmt: skip
    assert op.status_code == 201, op.text
    op_id = op.json()["id"]
    give = {"role": "reviewer", "operation": op_id}
    url = f"/admin/users/{carl.user_id}/roles"
    assert api.post(url, headers=ann.headers, json=give).status_code == 409  # not approved
    # the opener cannot be the second administrator
    own = api.post(f"/requests/{op_id}/reviews", headers=ann.headers, json={"decision": "approve"})
    assert own.status_code == 403
    ok = api.post(f"/requests/{op_id}/reviews", headers=ben.headers, json={"decision": "approve"})
    assert ok.json()["status"] == "approved"
    other = api.post(url, headers=ann.headers, json={"role": "admin", "operation": op_id})
    assert other.status_code == 409  # approved for another role
    done = api.post(url, headers=ann.headers, json=give)
    assert done.status_code == 200, done.text
    assert "reviewer" in done.json()["roles"]
    assert api.post(url, headers=ann.headers, json=give).status_code == 409  # used once


@pytest.fixture
def keys_home(settings, monkeypatch: pytest.MonkeyPatch):
    """A fresh home whose key ring sits under an environment master key (and its successor)."""
    for name in ("STREETHUB_KEY_PROVIDER",):
        monkeypatch.delenv(name, raising=False)
    for name in ("STREETHUB_MASTER_KEY", "STREETHUB_MASTER_KEY_NEW"):
        monkeypatch.setenv(name, base64.b64encode(secrets.token_bytes(32)).decode())
    return settings


def test_keys_rotate_takes_an_approved_request_once_admins_exist(keys_home):
    from pipelines.cli_keys import keys_app

    runner = CliRunner()
    service = Service.open(keys_home)
    create_org(service, "hub", "街道数据中台", "analyst")
    init_admins(service, "hub", [("ann", "Ann"), ("ben", "Ben")], actor="test")
    ann, ben = principal_for_user(service, "ann"), principal_for_user(service, "ben")
    op = rq.open_admin_operation(service, ann, "keys.rotate", {"pseudonyms": False})
    service.close()

    alone = runner.invoke(keys_app, ["rotate"])
    assert alone.exit_code == 1 and "second administrator" in one_line(alone)
    early = runner.invoke(keys_app, ["rotate", "--request", op])
    assert early.exit_code == 1 and "not approved" in early.output

    service = Service.open(keys_home)
    rq.review(service, ben, op, "approve")
    service.close()
    other = runner.invoke(keys_app, ["rotate", "--request", op, "--pseudonyms"])
    assert other.exit_code == 1 and "differs in: pseudonyms" in other.output
    done = runner.invoke(keys_app, ["rotate", "--request", op])
    assert done.exit_code == 0, done.output
    again = runner.invoke(keys_app, ["rotate", "--request", op])
    assert again.exit_code == 1 and "not approved" in again.output  # used

    # re-keying too: refused before anything is re-encrypted, without or with another suite
    service = Service.open(keys_home)
    rekey = rq.open_admin_operation(service, ann, "keys.rekey", {"suite": "intl"})
    rq.review(service, ben, rekey, "approve")
    service.close()
    alone = runner.invoke(keys_app, ["rekey", "--suite", "gm"])
    assert alone.exit_code == 1 and "second administrator" in one_line(alone)
    other = runner.invoke(keys_app, ["rekey", "--suite", "gm", "--request", rekey])
    assert other.exit_code == 1 and "differs in: suite" in other.output
    wrong_kind = runner.invoke(keys_app, ["rotate", "--request", rekey])
    assert wrong_kind.exit_code == 1 and "no keys.rotate operation" in wrong_kind.output


def test_keys_rotate_without_a_share_service_needs_no_request(keys_home):
    assert not rq.two_person_rule_in_force(keys_home)
    assert not (keys_home.home_abs / "share").exists()  # asking made nothing


def test_attention_over_http_and_from_the_cli(service, people, api):
    from pipelines.cli import app as cli

    resource, _, _ = dataset(service, ShareType.conditional)
    alice = people.make(another_department(service, resource), "requester")
    dora = people.make(alice.org, "data_officer")
    req = api.post("/requests", headers=alice.headers, json={"resource": resource, **ASK}).json()

    seen = api.get("/attention", headers=dora.headers)
    assert seen.status_code == 200
    assert [i["id"] for i in seen.json()["sections"]["reviews_waiting"]] == [req["id"]]
    assert api.get("/attention", headers=alice.headers).json()["counts"]["reviews_waiting"] == 0
    assert api.get("/attention").status_code == 401

    out = CliRunner().invoke(cli, ["attention", "--user", dora.user_id, "--json"])
    assert out.exit_code == 0, out.output
    assert req["id"] in out.output
    table = CliRunner().invoke(cli, ["attention", "--user", dora.user_id])
    assert "reviews waiting: 1" in table.output and req["id"] in table.output
    nobody = CliRunner().invoke(cli, ["attention", "--user", "no-such-person"])
    assert nobody.exit_code == 1
