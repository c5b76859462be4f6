"""Identities, roles and tokens (issue 14 item 1): only a token's hash is stored, tokens
expire and are revoked at once, every sign-in is audited (failed ones with the reason and
never the secret), and the fixtures give a copied home, a service and a live server."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from share_api.principals import (
    AuthFailure,
    PrincipalError,
    add_role,
    authenticate_token,
    count_admins,
    create_user,
    disable_user,
    get_user,
    issue_token,
    list_orgs,
    list_tokens,
    remove_role,
    revoke_token,
    sync_departments,
    tokens,
)
from share_api.service import Service


def records(service: Service, action: str) -> list[dict]:
    return [r for r in service.audit.log.records() if r["action"] == action]


def test_every_catalogue_department_is_an_organisation(service: Service):
    codes = {o["code"]: o["kind"] for o in list_orgs(service)}
    for code in service.catalogue.departments:
        assert codes[code] == "department"
    assert sync_departments(service) == []  # once: a second start makes none


def test_only_the_hash_of_a_token_is_stored(service: Service, people):
    person = people.make("wjw", "requester")
    secret = person.token.split(".", 1)[1]
    with service.engine.connect() as con:
        row = con.execute(sa.select(tokens).where(tokens.c.id == person.token_id)).one()
    assert secret not in "".join(str(v) for v in row)
    assert row.secret_sha256 != secret and len(row.secret_sha256) == 64
    assert person.token not in repr(person.issued)
    log = service.settings.audit_dir
    for path in log.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert "secret_sha256" not in list_tokens(service, person.user_id)[0]


def test_a_token_signs_in_as_its_person(service: Service, people):
    person = people.make("mzj", "reviewer", "data_officer")
    principal = authenticate_token(service, person.token)
    assert principal == person.principal
    assert (principal.org, principal.org_kind) == ("mzj", "department")
    assert principal.roles == frozenset({"reviewer", "data_officer"})
    assert principal.token_id == person.token_id


@pytest.mark.parametrize(
    ("token", "reason"),
    [(None, "missing"), ("", "missing"), ("abc", "malformed"), ("tok-x.y", "malformed")],
)
def test_a_token_that_is_no_token_fails(service: Service, token, reason):
    with pytest.raises(AuthFailure) as failed:
        authenticate_token(service, token)
    assert failed.value.reason == reason and failed.value.token_id is None


def test_a_wrong_secret_and_an_unknown_id_fail_alike(service: Service, people):
    person = people.make("wjw", "requester")
    wrong = person.token[:-4] + ("AAAA" if not person.token.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthFailure) as failed:
        authenticate_token(service, wrong)
    assert (failed.value.reason, failed.value.actor) == ("invalid", "anonymous")
    unknown = "tok-0123456789abcdef." + person.token.split(".", 1)[1]
    with pytest.raises(AuthFailure) as failed:
        authenticate_token(service, unknown)
    assert failed.value.reason == "invalid"


def test_an_expired_token_fails(service: Service, people):
    person = people.make("wjw", "requester", ttl=dt.timedelta(seconds=60))
    assert authenticate_token(service, person.token).user_id == person.user_id
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
    with pytest.raises(AuthFailure) as failed:
        authenticate_token(service, person.token, now=later)
    assert failed.value.reason == "expired" and failed.value.actor == person.actor


def test_a_token_lives_at_most_the_configured_life(service: Service, people):
    person = people.make("wjw")
    longest = dt.timedelta(hours=service.settings.share_token_ttl_hours)
    with pytest.raises(PrincipalError) as refused:
        issue_token(service, person.user_id, ttl=longest + dt.timedelta(seconds=1))
    assert refused.value.status == 422
    issued = issue_token(service, person.user_id)
    life = issued.expires_at - dt.datetime.now(dt.UTC)
    assert longest - dt.timedelta(minutes=1) < life <= longest


def test_revocation_takes_effect_on_the_next_use(service: Service, people):
    person = people.make("wjw", "requester")
    other = people.token_for(person)
    assert revoke_token(service, person.token_id, actor=person.actor)
    with pytest.raises(AuthFailure) as failed:
        authenticate_token(service, person.token)
    assert failed.value.reason == "revoked" and failed.value.token_id == person.token_id
    assert authenticate_token(service, other.token).user_id == person.user_id  # others live
    assert not revoke_token(service, person.token_id, actor=person.actor)  # once
    [revoked] = records(service, "auth.token_revoke")
    assert revoked["token"] == person.token_id and revoked["actor"] == person.actor
    with pytest.raises(PrincipalError):
        revoke_token(service, "tok-0000000000000000")


def test_a_disabled_person_cannot_sign_in(service: Service, people):
    person = people.make("wjw", "requester")
    assert disable_user(service, person.user_id, actor="system")
    with pytest.raises(AuthFailure) as failed:
        authenticate_token(service, person.token)
    assert failed.value.reason == "disabled"
    with pytest.raises(PrincipalError):
        issue_token(service, person.user_id)


def test_roles_are_from_the_closed_list_and_audited(service: Service, people):
    person = people.make("wjw", "requester")
    with pytest.raises(PrincipalError):
        add_role(service, person.user_id, "superuser", actor="system")
    with pytest.raises(PrincipalError):
        create_user(service, "wjw", name="x", roles=["root"])
    with pytest.raises(PrincipalError) as no_org:
        create_user(service, "nosuchorg", name="x")
    assert no_org.value.status == 404
    assert add_role(service, person.user_id, "reviewer", actor="wjw/boss")
    assert not add_role(service, person.user_id, "reviewer", actor="wjw/boss")
    assert authenticate_token(service, person.token).roles == {"requester", "reviewer"}
    assert remove_role(service, person.user_id, "requester", actor="wjw/boss")
    assert get_user(service, person.user_id)["roles"] == ["reviewer"]
    [granted] = records(service, "admin.role_grant")
    assert (granted["user"], granted["role"], granted["actor"]) == (
        person.user_id,
        "reviewer",
        "wjw/boss",
    )


def test_a_frontend_and_an_analyst_team_are_organisations(service: Service, people):
    app_user = people.make("shequ_app", "requester", kind="frontend")
    analyst = people.make("analysts", "requester", kind="analyst")
    assert authenticate_token(service, app_user.token).org_kind == "frontend"
    assert authenticate_token(service, analyst.token).org_kind == "analyst"


def test_the_fixture_works_on_a_copy_of_the_session_street(share_settings, mart_street):
    assert share_settings.home_abs != mart_street.settings.home_abs
    assert (share_settings.home_abs / "lake").is_dir()


def test_the_live_server_answers_over_http(server, people):
    person = people.make("wjw", "requester")
    with server.client() as anonymous:
        assert anonymous.get("/openapi.json").status_code == 200
    assert server.url.startswith("http://127.0.0.1:")
    with server.client(person) as client:
        assert client.get("/me").status_code in (200, 404)  # /me lands with routes/auth


def test_the_last_two_administrators_stay(service: Service, people):
    """With one administrator left no role could be given again (two-person rule) and
    admin init runs once: neither disabling nor taking the role may go below two."""
    ann = people.make("hub", "admin")
    bob = people.make("hub", "admin", "reviewer")
    for lower in (
        lambda: disable_user(service, bob.user_id, actor=ann.actor),
        lambda: remove_role(service, bob.user_id, "admin", actor=ann.actor),
    ):
        with pytest.raises(PrincipalError) as refused:
            lower()
        assert refused.value.status == 409
    assert count_admins(service) == 2
    assert remove_role(service, bob.user_id, "reviewer", actor=ann.actor)  # other roles go
    cy = people.make("hub", "admin")
    assert disable_user(service, cy.user_id, actor=ann.actor)  # three → two: allowed
    assert count_admins(service) == 2  # a disabled administrator does not count
    with pytest.raises(PrincipalError):
        remove_role(service, ann.user_id, "admin", actor=bob.actor)


def test_making_the_same_person_at_once_is_one_person_and_409s(service: Service, people):
    """Callers racing to make one id: one person made, every other caller a 409 (never a
    database error, a 500). The race shows on PostgreSQL (read committed: without the
    unique-clash answer 2 runs in 3 failed); SQLite serialises it anyway."""
    people.org("hub")
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def make() -> None:
        barrier.wait()
        try:
            outcomes.append(create_user(service, "hub", name="same", user_id="same-person"))
        except Exception as exc:  # the test reports every kind
            outcomes.append(exc)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("same-person") == 1
    others = [o for o in outcomes if o != "same-person"]
    assert all(isinstance(o, PrincipalError) and o.status == 409 for o in others), others
