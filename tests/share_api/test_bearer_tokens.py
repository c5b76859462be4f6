"""The rules every bearer token of the service shares (``share_api.bearer_tokens``): the
API's ``tok-`` tokens and Delta Sharing's ``dsp-`` profile tokens are bounded, stored and
revoked by one set of functions, whichever kind."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from share_api import bearer_tokens
from share_api.principals import PrincipalError, issue_token, revoke_token, tokens
from share_api.sharing import tokens as profiles

NOW = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def refused(message: str) -> ValueError:
    return ValueError(message)


def test_a_life_is_bounded_by_the_longest_and_not_after() -> None:
    assert bearer_tokens.expiry(NOW, None, DAY, None, refused) == NOW + DAY
    assert bearer_tokens.expiry(NOW, DAY / 2, DAY, None, refused) == NOW + DAY / 2
    cap = NOW + dt.timedelta(hours=3)
    assert bearer_tokens.expiry(NOW, None, DAY, cap, refused) == cap  # never past not_after
    naive_cap = cap.replace(tzinfo=None)  # SQLite's stored times come back naive (UTC)
    assert bearer_tokens.expiry(NOW, None, DAY, naive_cap, refused) == cap
    for ttl in (dt.timedelta(0), -DAY, DAY * 2):
        with pytest.raises(ValueError, match="ttl: more than 0 and at most 86400 s"):
            bearer_tokens.expiry(NOW, ttl, DAY, None, refused)
    with pytest.raises(ValueError, match="expired at once"):
        bearer_tokens.expiry(NOW, None, DAY, NOW, refused)


def test_a_new_token_is_its_id_and_a_secret_of_which_only_the_hash_is_kept() -> None:
    token_id, secret_sha256, token = bearer_tokens.new_token("xyz")
    assert bearer_tokens.id_pattern("xyz").fullmatch(token_id)
    match = bearer_tokens.token_pattern("xyz").fullmatch(token)
    assert match is not None and match.group(1) == token_id
    secret = match.group(2)
    assert secret_sha256 == hashlib.sha256(secret.encode()).hexdigest() != secret
    assert bearer_tokens.hash_secret(secret) == secret_sha256
    assert bearer_tokens.token_pattern("tok").fullmatch(token) is None  # another kind's


def test_both_kinds_are_tables_of_one_shape_and_show_no_hash() -> None:
    shared = [c.name for c in tokens.c]
    own = [c.name for c in profiles.profile_tokens.c if c.name not in shared]
    assert own == ["created_by"]
    assert [c.name for c in profiles.profile_tokens.c if c.name != "created_by"] == shared
    for table in (tokens, profiles.profile_tokens):
        assert "secret_sha256" in table.c
        assert "secret_sha256" not in [c.name for c in bearer_tokens.shown_columns(table)]


def test_a_token_of_either_kind_is_revoked_once_and_audited(service, people) -> None:
    alice = people.make("wjw", "requester")
    api = issue_token(service, alice.user_id, actor=alice.actor)
    profile = profiles.issue_profile(service, alice.user_id, "http://h/delta-sharing")
    revocations = (
        (lambda: revoke_token(service, api.token_id, actor=alice.actor), "auth.token_revoke"),
        (
            lambda: profiles.revoke_profile(service, profile.token_id, actor=alice.actor),
            "sharing.profile_revoke",
        ),
    )
    for revoke, action in revocations:
        assert revoke() is True
        assert revoke() is False  # a second revocation changes nothing
        records = [r for r in service.audit.log.records() if r["action"] == action]
        assert len(records) == 1 and records[0]["user"] == alice.user_id
    with pytest.raises(PrincipalError) as missing:
        revoke_token(service, "tok-0000000000000000", actor=alice.actor)
    assert missing.value.status == 404
