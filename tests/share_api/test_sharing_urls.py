"""Signed file URLs: bound to file, grant, recipient and profile token, expiring, MACed
under a key derived from the keyring, compared in constant time; any change is a 403."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from share_api.sharing import urls
from share_api.sharing.errors import SharingError
from share_api.sharing.tokens import Recipient

ENDPOINT = "http://127.0.0.1:8780/delta-sharing"
NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)


def _recipient(org: str = "wjw", expires_at: dt.datetime | None = None) -> Recipient:
    return Recipient(
        "alice",
        org,
        "department",
        "dsp-0123456789abcdef",
        expires_at or NOW + dt.timedelta(days=30),
    )


def _parts(url: str) -> tuple[str, dict[str, str]]:
    split = urlsplit(url)
    return split.path.rsplit("/", 1)[1], dict(parse_qsl(split.query))


def test_a_signed_url_verifies_and_says_what_it_is_for(service):
    signed = urls.sign(service, ENDPOINT + "/", "f-abc", "grant-1", _recipient(), now=NOW)
    assert signed.url.startswith(ENDPOINT + "/files/f-abc?")
    assert signed.expires_at == NOW + urls.url_ttl(service)
    assert signed.expiration_ms == int(signed.expires_at.timestamp() * 1000)
    file_id, params = _parts(signed.url)
    claims = urls.verify(service, file_id, params, now=NOW)
    assert (claims.file_id, claims.grant_id, claims.org, claims.token_id) == (
        "f-abc",
        "grant-1",
        "wjw",
        "dsp-0123456789abcdef",
    )
    assert claims.expires_at == signed.expires_at


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"r": "gaj"}, "signature"),  # another recipient
        ({"g": "grant-2"}, "signature"),  # another grant
        ({"t": "dsp-fedcba9876543210"}, "signature"),  # another profile token
        ({"e": None}, "signature"),  # a later expiry (filled in below)
        ({"k": "99"}, "signature"),  # a key version the ring does not hold
        ({"s": "A" * 43}, "signature"),
        ({"s": None}, "missing s"),
        ({"r": "bad/org"}, "malformed"),
        ({"e": "soon"}, "malformed"),
    ],
)
def test_any_changed_part_is_403(service, change, reason):
    signed = urls.sign(service, ENDPOINT, "f-abc", "grant-1", _recipient(), now=NOW)
    file_id, params = _parts(signed.url)
    for key, value in change.items():
        if value is None and key == "e":
            value = str(int(params["e"]) + 3600)
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    with pytest.raises(SharingError) as refused:
        urls.verify(service, file_id, params, now=NOW)
    assert refused.value.status == 403
    assert refused.value.code == "PERMISSION_DENIED"
    assert reason in refused.value.message


def test_another_file_id_under_the_same_signature_is_403(service):
    signed = urls.sign(service, ENDPOINT, "f-abc", "grant-1", _recipient(), now=NOW)
    _file_id, params = _parts(signed.url)
    with pytest.raises(SharingError) as refused:
        urls.verify(service, "f-abd", params, now=NOW)
    assert refused.value.status == 403
    with pytest.raises(SharingError):
        urls.verify(service, "../etc", params, now=NOW)


def test_an_expired_url_is_403_and_no_url_outlives_its_profile(service):
    signed = urls.sign(service, ENDPOINT, "f-abc", "grant-1", _recipient(), now=NOW)
    file_id, params = _parts(signed.url)
    with pytest.raises(SharingError) as expired:
        urls.verify(service, file_id, params, now=signed.expires_at)
    assert expired.value.status == 403
    assert "expired" in expired.value.message
    soon = NOW + dt.timedelta(minutes=5)
    short = urls.sign(service, ENDPOINT, "f-abc", "grant-1", _recipient(expires_at=soon), now=NOW)
    assert short.expires_at == soon


def test_the_query_is_what_the_client_keeps(service):
    signed = urls.sign(service, ENDPOINT, "f-abc", "grant-1", _recipient(), now=NOW)
    _file_id, params = _parts(signed.url)
    assert urlencode(params) == urlsplit(signed.url).query
    assert set(params) == {"g", "r", "t", "e", "k", "s"}
