"""Delta Sharing profile tokens: their own format and table, only a hash stored, expiring,
revocable, refused once their person is disabled, audited; good for the protocol only."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import sqlalchemy as sa

from share_api.principals import AuthFailure, authenticate_token, disable_user
from share_api.sharing import tokens
from share_api.sharing.errors import SharingError

ENDPOINT = "http://127.0.0.1:8780/delta-sharing/"


def _records(service, action: str) -> list[dict]:
    return [r for r in service.audit.log.records() if r["action"] == action]


def test_a_profile_is_a_v1_bearer_profile_whose_secret_is_stored_only_hashed(service, people):
    alice = people.make("wjw", "requester")
    issued = tokens.issue_profile(service, alice.user_id, ENDPOINT, actor=alice.actor)
    profile = issued.profile
    assert set(profile) == {"shareCredentialsVersion", "endpoint", "bearerToken", "expirationTime"}
    assert profile["shareCredentialsVersion"] == 1
    assert profile["endpoint"] == "http://127.0.0.1:8780/delta-sharing"
    token = profile["bearerToken"]
    assert tokens.PROFILE_TOKEN_RE.fullmatch(token)
    assert token.startswith(issued.token_id + ".")
    assert dt.datetime.fromisoformat(profile["expirationTime"]) == issued.expires_at.replace(
        microsecond=0
    )
    secret = token.split(".", 1)[1]
    with service.engine.connect() as con:
        stored = con.execute(sa.select(tokens.profile_tokens)).mappings().one()
    assert secret not in str(dict(stored))
    assert stored["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(issued)
    (record,) = _records(service, "sharing.profile_issue")
    assert record["token"] == issued.token_id
    assert secret not in str(record)


def test_a_profile_token_signs_in_to_the_protocol_only(service, people):
    alice = people.make("wjw", "requester")
    token = tokens.issue_profile(service, alice.user_id, ENDPOINT).profile["bearerToken"]
    recipient = tokens.authenticate(service, token)
    assert (recipient.org, recipient.user_id, recipient.org_kind) == (
        "wjw",
        alice.user_id,
        "department",
    )
    with pytest.raises(AuthFailure) as api_refused:
        authenticate_token(service, token)  # the share API's own sign-in
    assert api_refused.value.reason == "malformed"
    with pytest.raises(AuthFailure) as profile_refused:
        tokens.authenticate(service, alice.token)  # an API token is no profile token
    assert profile_refused.value.reason == "malformed"


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: None, "missing"),
        (lambda t: t[:-1], "malformed"),
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "invalid"),
        (lambda t: "dsp-0123456789abcdef." + t.split(".")[1], "invalid"),
    ],
)
def test_a_wrong_token_fails_without_saying_more(service, people, mangle, reason):
    alice = people.make("wjw", "requester")
    token = tokens.issue_profile(service, alice.user_id, ENDPOINT).profile["bearerToken"]
    with pytest.raises(AuthFailure) as failed:
        tokens.authenticate(service, mangle(token))
    assert failed.value.reason == reason
    assert failed.value.actor == "anonymous"


def test_expired_revoked_and_disabled_are_refused_at_once(service, people):
    alice = people.make("wjw", "requester")
    issued = tokens.issue_profile(service, alice.user_id, ENDPOINT, ttl=dt.timedelta(hours=1))
    token = issued.profile["bearerToken"]
    later = issued.expires_at + dt.timedelta(seconds=1)
    with pytest.raises(AuthFailure) as expired:
        tokens.authenticate(service, token, now=later)
    assert (expired.value.reason, expired.value.actor) == ("expired", alice.actor)

    assert tokens.revoke_profile(service, issued.token_id, actor=alice.actor) is True
    assert tokens.revoke_profile(service, issued.token_id, actor=alice.actor) is False
    with pytest.raises(AuthFailure) as revoked:
        tokens.authenticate(service, token)
    assert revoked.value.reason == "revoked"
    with pytest.raises(AuthFailure):
        tokens.still_valid(service, issued.token_id)
    (record,) = _records(service, "sharing.profile_revoke")
    assert record["token"] == issued.token_id

    bob = people.make("wjw", "requester")
    other = tokens.issue_profile(service, bob.user_id, ENDPOINT)
    assert tokens.still_valid(service, other.token_id).user_id == bob.user_id
    disable_user(service, bob.user_id, actor="system")
    with pytest.raises(AuthFailure) as disabled:
        tokens.authenticate(service, other.profile["bearerToken"])
    assert disabled.value.reason == "disabled"
    with pytest.raises(SharingError) as refused:
        tokens.issue_profile(service, bob.user_id, ENDPOINT)
    assert refused.value.status == 409


def test_a_profile_lives_no_longer_than_asked_allowed_or_its_maker(service, people):
    alice = people.make("wjw", "requester")
    longest = tokens.profile_ttl(service)
    with pytest.raises(SharingError) as too_long:
        tokens.issue_profile(service, alice.user_id, ENDPOINT, ttl=longest * 2)
    assert too_long.value.status == 400
    with pytest.raises(SharingError):
        tokens.issue_profile(service, alice.user_id, ENDPOINT, ttl=dt.timedelta(0))
    cap = tokens.utc_now() + dt.timedelta(hours=2)
    capped = tokens.issue_profile(service, alice.user_id, ENDPOINT, not_after=cap)
    assert capped.expires_at == cap
    with pytest.raises(SharingError) as unknown:
        tokens.issue_profile(service, "nobody-here", ENDPOINT)
    assert unknown.value.status == 404
    listed = tokens.list_profile_tokens(service, alice.user_id)
    assert [t["id"] for t in listed] == [capped.token_id]
    assert "secret_sha256" not in listed[0]
    assert tokens.get_profile_token(service, capped.token_id)["user_id"] == alice.user_id
    with pytest.raises(SharingError) as none:
        tokens.revoke_profile(service, "dsp-0000000000000000")
    assert none.value.status == 404


def test_an_administrator_hands_a_profile_over_from_the_server(service, people, tmp_path):
    import json
    import stat

    from typer.testing import CliRunner

    from pipelines.cli import app

    alice = people.make("wjw", "requester")
    out = tmp_path / "wjw.share"
    runner = CliRunner()
    made = runner.invoke(app, ["sharing", "profile", "--user", alice.user_id, "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    profile = json.loads(out.read_text())
    assert profile["endpoint"].endswith("/delta-sharing")
    assert profile["bearerToken"] not in made.output
    recipient = tokens.authenticate(service, profile["bearerToken"])
    assert recipient.user_id == alice.user_id
    token_id = recipient.token_id
    gone = runner.invoke(app, ["sharing", "revoke-profile", token_id])
    assert gone.exit_code == 0 and "revoked" in gone.output
    with pytest.raises(AuthFailure):
        tokens.authenticate(service, profile["bearerToken"])
    unknown = runner.invoke(app, ["sharing", "profile", "--user", "nobody-here"])
    assert unknown.exit_code == 1
