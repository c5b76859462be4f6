"""Signed, expiring file URLs bound to recipient and file.

The Delta Sharing client sends no ``Authorization`` header to a file URL, so the URL is
its own credential::

    <endpoint>/files/<file id>?g=<grant>&r=<recipient org>&t=<profile token id>
                              &e=<expiry, unix s>&k=<key version>&s=<MAC>

``s`` is the suite's MAC (HMAC-SHA256, or HMAC-SM3 under the 国密 suite) over every other
part, base64url; it is compared in constant time. The MAC key is derived (the suite's MAC
over :data:`KEY_LABEL`, the way ``masking.stream`` derives a file key) from a version of
the keyring's ``at_rest`` data key, named by ``k``: a key rotation leaves URLs already
handed out valid until they expire, and the key never leaves the keyring's custody.

:func:`verify` checks the form, the MAC and the expiry only. The file route then checks,
on every request, what can change after a URL is made: the profile token ``t`` still
signs in (not revoked, not expired, its person not disabled), the grant ``g`` is live and
held by ``r``, and the file belongs to ``g``. Any failure is a 403 (:data:`FORBIDDEN`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from masking.errors import KeyRingError
from share_api.db import utc_now
from share_api.sharing.errors import FORBIDDEN, SharingError

if TYPE_CHECKING:
    from share_api.service import Service
    from share_api.sharing.tokens import Recipient

KEY_PURPOSE = "at_rest"  # the keyring's data key the URL key is derived from
KEY_LABEL = b"streethub-delta-sharing-url-key|"
FORMAT = "v1"
FILE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_FIELDS = ("g", "r", "t", "e", "k", "s")


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: dt.datetime

    @property
    def expiration_ms(self) -> int:
        return int(self.expires_at.timestamp() * 1000)


@dataclass(frozen=True)
class UrlClaims:
    """What a verified URL says: its file, grant, recipient, profile token and expiry."""

    file_id: str
    grant_id: str
    org: str
    token_id: str
    expires_at: dt.datetime


def _key(service: Service, version: int) -> bytes:
    def derive() -> bytes:
        data_key = service.keyring.get(KEY_PURPOSE, version)
        return service.keyring.suite.mac(data_key.material, KEY_LABEL + str(version).encode())

    return service.kept(f"sharing.urls.key.{version}", derive)


def _message(file_id: str, grant_id: str, org: str, token_id: str, exp: int, version: int):
    return "\n".join((FORMAT, file_id, grant_id, org, token_id, str(exp), str(version))).encode()


def _mac(service: Service, version: int, message: bytes) -> str:
    tag = service.keyring.suite.mac(_key(service, version), message)
    return base64.urlsafe_b64encode(tag).rstrip(b"=").decode("ascii")


def url_ttl(service: Service) -> dt.timedelta:
    return dt.timedelta(seconds=int(service.settings.share_url_ttl_seconds))


def sign(
    service: Service,
    endpoint: str,
    file_id: str,
    grant_id: str,
    recipient: Recipient,
    *,
    now: dt.datetime | None = None,
    ttl: dt.timedelta | None = None,
) -> SignedUrl:
    """A URL of ``file_id`` under ``endpoint`` for ``recipient`` through ``grant_id``,
    valid ``share_url_ttl_seconds`` (and never past the recipient's profile token)."""
    now = now or utc_now()
    expires = min(now + (ttl or url_ttl(service)), recipient.expires_at)
    exp = int(expires.timestamp())
    version = service.keyring.current(KEY_PURPOSE).version
    message = _message(file_id, grant_id, recipient.org, recipient.token_id, exp, version)
    query = {
        "g": grant_id,
        "r": recipient.org,
        "t": recipient.token_id,
        "e": exp,
        "k": version,
        "s": _mac(service, version, message),
    }
    url = f"{endpoint.rstrip('/')}/files/{file_id}?{urlencode(query)}"
    return SignedUrl(url, dt.datetime.fromtimestamp(exp, dt.UTC))


def forbidden(reason: str) -> SharingError:
    return SharingError(403, f"this file URL is not valid: {reason}", FORBIDDEN)


def verify(
    service: Service, file_id: str, params: dict[str, str], *, now: dt.datetime | None = None
) -> UrlClaims:
    """The claims of a file URL whose form, MAC and expiry check out; else a 403
    :class:`SharingError` naming which part failed (never a value of it)."""
    if not FILE_ID_RE.fullmatch(file_id or ""):
        raise forbidden("file id")
    missing = [f for f in _FIELDS if not params.get(f)]
    if missing:
        raise forbidden(f"missing {', '.join(missing)}")
    grant_id, org, token_id = params["g"], params["r"], params["t"]
    if not all(_NAME_RE.fullmatch(v) for v in (grant_id, org, token_id)):
        raise forbidden("malformed")
    try:
        exp, version = int(params["e"]), int(params["k"])
    except ValueError:
        raise forbidden("malformed") from None
    if not (0 < exp < 2**40 and 0 < version < 2**31):
        raise forbidden("malformed")
    try:
        expected = _mac(service, version, _message(file_id, grant_id, org, token_id, exp, version))
    except KeyRingError:  # a key version this keyring does not hold: no valid URL names it
        raise forbidden("signature") from None
    if not hmac.compare_digest(expected.encode(), params["s"].encode("ascii", "replace")):
        raise forbidden("signature")
    expires_at = dt.datetime.fromtimestamp(exp, dt.UTC)
    if expires_at <= (now or utc_now()):
        raise forbidden("expired")
    return UrlClaims(file_id, grant_id, org, token_id, expires_at)
