"""Delta Sharing profiles and their bearer tokens (good for the protocol only).

A **profile** is the JSON file a recipient's tool is pointed at (``shareCredentialsVersion``
1: the endpoint, a bearer token, its expiry). Its token is a credential of its own:

- ``dsp-<16 hex>.<43 characters>``: the id is public (audit records and revocation name it),
  the secret is 256 random bits shown once, in the profile; only its SHA-256 is stored
  (:data:`profile_tokens`), never the secret;
- it signs in to the ``/delta-sharing`` protocol routes only: the share API's routes read
  ``tok-`` tokens from their own table, so a profile cannot call them, and an API token is
  no profile token here;
- it expires (``share_profile_ttl_days``, and never after the API token it was made with:
  a stolen token cannot mint a longer-lived one), it can be revoked, and it fails at once
  when its person is disabled — each checked on every request;
- issue and revocation are audited (``sharing.profile_issue``, ``sharing.profile_revoke``),
  a failed sign-in as ``auth.failed`` like the API's (the alerts count them).

A profile belongs to a person of a recipient organisation; what it shows is what that
organisation's live grants show (share = the organisation).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from share_api import bearer_tokens
from share_api.db import aware, current_revisions, utc_now
from share_api.kept import kept_under
from share_api.principals import SYSTEM, AuthFailure, check_sign_in, sign_in_select, token_holder
from share_api.sharing.errors import SharingError

if TYPE_CHECKING:
    from share_api.service import Service

PROFILE_VERSION = 1  # shareCredentialsVersion: the 1.4.2 client refuses v2 bearer profiles
TOKEN_PREFIX = "dsp"
PROFILE_TOKEN_RE = bearer_tokens.token_pattern(TOKEN_PREFIX)
PROFILE_ID_RE = bearer_tokens.id_pattern(TOKEN_PREFIX)

profile_tokens = bearer_tokens.token_table(
    "sharing_profile_tokens", sa.Column("created_by", sa.Text, nullable=False)
)


@dataclass(frozen=True)
class Recipient:
    """Who calls the protocol: a person of organisation ``org`` (the share), signed in
    with the profile token ``token_id``."""

    user_id: str
    org: str
    org_kind: str
    token_id: str
    expires_at: dt.datetime

    @property
    def actor(self) -> str:
        return f"{self.org}/{self.user_id}"


@dataclass(frozen=True)
class IssuedProfile:
    """A new profile: ``profile`` (the file's JSON) is the only time the secret exists
    outside its holder."""

    token_id: str
    user_id: str
    expires_at: dt.datetime
    profile: dict[str, Any]

    def __repr__(self) -> str:  # never the secret in a traceback or a log
        return f"IssuedProfile(token_id={self.token_id!r}, user_id={self.user_id!r})"


def profile_ttl(service: Service) -> dt.timedelta:
    return dt.timedelta(days=float(service.settings.share_profile_ttl_days))


def issue_profile(
    service: Service,
    user_id: str,
    endpoint: str,
    *,
    ttl: dt.timedelta | None = None,
    not_after: dt.datetime | None = None,
    label: str = "",
    actor: str = SYSTEM,
) -> IssuedProfile:
    """A profile for ``user_id`` on ``endpoint`` (the protocol's base URL, with its
    ``/delta-sharing`` prefix) whose token lives ``ttl`` (at most the configured life) and
    not after ``not_after``; audited ``sharing.profile_issue`` (its id, never its secret).
    404 no such person, 409 a disabled one, 400 a life out of bounds."""
    now = utc_now()
    expires_at = bearer_tokens.expiry(
        now, ttl, profile_ttl(service), not_after, lambda m: SharingError(400, m)
    )
    holder = token_holder(service, user_id, _refused)
    issued = bearer_tokens.issue(
        service,
        profile_tokens,
        TOKEN_PREFIX,
        holder,
        expires_at,
        now=now,
        label=label,
        actor=actor,
        action="sharing.profile_issue",
        created_by=actor,
    )
    profile = {
        "shareCredentialsVersion": PROFILE_VERSION,
        "endpoint": endpoint.rstrip("/"),
        "bearerToken": issued.token,
        "expirationTime": expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return IssuedProfile(issued.token_id, user_id, expires_at, profile)


def _refused(status: int, message: str) -> SharingError:
    """A profile refused for its person (404 none; 409 disabled: PERMISSION_DENIED)."""
    return SharingError(status, message, "PERMISSION_DENIED" if status == 409 else None)


RECORD = ("id", "user_id", "label", "created_at", "expires_at", "revoked_at")  # what is shown


def get_profile_token(service: Service, token_id: str) -> dict[str, Any] | None:
    """A profile token's record without its hash (None when there is none)."""
    found = bearer_tokens.records(service, profile_tokens, profile_tokens.c.id == token_id, RECORD)
    return found[0] if found else None


def list_profile_tokens(service: Service, user_id: str) -> list[dict[str, Any]]:
    """A person's profile tokens (never a hash), newest first."""
    return bearer_tokens.records(
        service, profile_tokens, profile_tokens.c.user_id == user_id, RECORD
    )


def revoke_profile(service: Service, token_id: str, *, actor: str = SYSTEM) -> bool:
    """Revoke at once (its next call and its signed URLs fail; audited
    ``sharing.profile_revoke``); False if it was revoked already; 404 when there is none."""
    missing = SharingError(404, "no profile token with this id")
    action = "sharing.profile_revoke"
    return bearer_tokens.revoke(
        service, profile_tokens, token_id, actor=actor, action=action, missing=missing
    )


_SIGN_IN = sign_in_select(profile_tokens)


KEPT_PROFILE_TOKENS = 4_096  # profile tokens' sign-in rows kept per process


def _sign_in_row(service: Service, token_id: str, *, kept_only: bool = False) -> Any:
    """The token's sign-in row (token, person, organisation; None: no such token), kept
    per process while the ``principals`` revision counter stands (bumped by a revocation
    here, and by every change of a person or organisation), as the share API keeps its
    own tokens' (``principals.authenticate_token``): one query of the counters a request,
    and a revocation by any process fails the very next one. ``kept_only``: never the
    database — ``NotKept`` when the row is not kept under the current counter."""

    def read() -> Any:
        with service.engine.connect() as con:
            return con.execute(_SIGN_IN, {"token_id": token_id}).first()

    revision = current_revisions(service).principals
    return kept_under(service, "sharing.tokens.sign_in", token_id, revision, read,
                      kept_only=kept_only, most=KEPT_PROFILE_TOKENS)  # fmt: skip


def _recipient(
    service: Service,
    token_id: str,
    secret_sha256: str | None,
    now: dt.datetime,
    *,
    kept_only: bool = False,
):
    row = _sign_in_row(service, token_id, kept_only=kept_only)
    check_sign_in(row, token_id, secret_sha256, now)
    return Recipient(row.user_id, row.org, row.org_kind, token_id, aware(row.expires_at))


def authenticate(service: Service, token: str | None, *, now: dt.datetime | None = None):
    """The :class:`Recipient` a profile's bearer token signs in as; ``AuthFailure``
    (``share_api.principals``: missing, malformed, invalid, revoked, expired, disabled)
    otherwise. An unknown id and a wrong secret fail alike; the rest is told only to the
    holder of the right secret."""
    if not token:
        raise AuthFailure("missing")
    match = PROFILE_TOKEN_RE.fullmatch(token)
    if match is None:
        raise AuthFailure("malformed")
    token_id, secret = match.groups()
    return _recipient(service, token_id, bearer_tokens.hash_secret(secret), now or utc_now())


def still_valid(
    service: Service, token_id: str, *, now: dt.datetime | None = None, kept_only: bool = False
) -> Recipient:
    """The recipient of a profile token named by id (a signed URL carries the id its
    profile was signed in with): ``AuthFailure`` once it is revoked, expired or its person
    disabled — so revoking a profile stops its file URLs too. ``kept_only``: from memory
    only (:class:`NotKept` when its row is not kept)."""
    if not PROFILE_ID_RE.fullmatch(token_id or ""):
        raise AuthFailure("malformed")
    return _recipient(service, token_id, None, now or utc_now(), kept_only=kept_only)
