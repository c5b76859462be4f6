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
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from share_api.db import aware, bump, current_revisions, metadata, new_id, utc_now
from share_api.principals import SYSTEM, AuthFailure, check_sign_in, get_user, orgs, users
from share_api.sharing.errors import SharingError
from share_api.sharing.kept import kept_under

if TYPE_CHECKING:
    from share_api.service import Service

PROFILE_VERSION = 1  # shareCredentialsVersion: the 1.4.2 client refuses v2 bearer profiles
TOKEN_PREFIX = "dsp"
PROFILE_TOKEN_RE = re.compile(r"(dsp-[0-9a-f]{16})\.([A-Za-z0-9_-]{43})")
PROFILE_ID_RE = re.compile(r"dsp-[0-9a-f]{16}")

profile_tokens = sa.Table(
    "sharing_profile_tokens",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("label", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_by", sa.Text),
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


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


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
    longest = profile_ttl(service)
    ttl = longest if ttl is None else ttl
    if ttl <= dt.timedelta(0) or ttl > longest:
        raise SharingError(400, f"ttl: more than 0 and at most {longest.total_seconds():.0f} s")
    user = get_user(service, user_id)
    if user is None:
        raise SharingError(404, "no person with this user_id")
    if user["disabled_at"] is not None:
        raise SharingError(409, "the person is disabled", "PERMISSION_DENIED")
    now = utc_now()
    expires_at = now + ttl if not_after is None else min(now + ttl, aware(not_after))
    if expires_at <= now:
        raise SharingError(400, "the profile's token would be expired at once")
    token_id = new_id(TOKEN_PREFIX)
    secret = secrets.token_urlsafe(32)  # 43 characters
    with service.engine.begin() as con:
        con.execute(
            profile_tokens.insert().values(
                id=token_id,
                user_id=user_id,
                secret_sha256=_hash(secret),
                label=label[:200],
                created_at=now,
                created_by=actor,
                expires_at=expires_at,
            )
        )
    service.audit.record(
        "sharing.profile_issue",
        actor,
        token=token_id,
        user=user_id,
        org=user["org"],
        expires_at=expires_at.isoformat(),
    )
    profile = {
        "shareCredentialsVersion": PROFILE_VERSION,
        "endpoint": endpoint.rstrip("/"),
        "bearerToken": f"{token_id}.{secret}",
        "expirationTime": expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return IssuedProfile(token_id, user_id, expires_at, profile)


def _info(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {
        "id": m["id"],
        "user_id": m["user_id"],
        "label": m["label"],
        "created_at": aware(m["created_at"]),
        "expires_at": aware(m["expires_at"]),
        "revoked_at": aware(m["revoked_at"]),
    }


_INFO_COLUMNS = [c for c in profile_tokens.c if c.name not in ("secret_sha256",)]


def get_profile_token(service: Service, token_id: str) -> dict[str, Any] | None:
    """A profile token's record without its hash (None when there is none)."""
    with service.engine.connect() as con:
        row = con.execute(sa.select(*_INFO_COLUMNS).where(profile_tokens.c.id == token_id)).first()
    return _info(row) if row is not None else None


def list_profile_tokens(service: Service, user_id: str) -> list[dict[str, Any]]:
    """A person's profile tokens (never a hash), newest first."""
    with service.engine.connect() as con:
        rows = con.execute(
            sa.select(*_INFO_COLUMNS)
            .where(profile_tokens.c.user_id == user_id)
            .order_by(profile_tokens.c.created_at.desc())
        ).all()
    return [_info(r) for r in rows]


def revoke_profile(service: Service, token_id: str, *, actor: str = SYSTEM) -> bool:
    """Revoke at once (its next call and its signed URLs fail; audited
    ``sharing.profile_revoke``); False if it was revoked already; 404 when there is none."""
    with service.engine.begin() as con:
        row = con.execute(
            sa.select(profile_tokens.c.user_id, profile_tokens.c.revoked_at).where(
                profile_tokens.c.id == token_id
            )
        ).first()
        if row is None:
            raise SharingError(404, "no profile token with this id")
        if row.revoked_at is not None:
            return False
        con.execute(
            profile_tokens.update()
            .where(profile_tokens.c.id == token_id, profile_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utc_now(), revoked_by=actor)
        )
        bump(con, "principals")  # every process's kept sign-in row of it is dropped
    service.audit.record("sharing.profile_revoke", actor, token=token_id, user=row.user_id)
    return True


_SIGN_IN = (
    sa.select(
        profile_tokens.c.secret_sha256,
        profile_tokens.c.expires_at,
        profile_tokens.c.revoked_at,
        users.c.id.label("user_id"),
        users.c.disabled_at,
        orgs.c.code.label("org"),
        orgs.c.kind.label("org_kind"),
    )
    .select_from(profile_tokens)
    .join(users, users.c.id == profile_tokens.c.user_id)
    .join(orgs, orgs.c.code == users.c.org)
    .where(profile_tokens.c.id == sa.bindparam("token_id"))
)


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
    return _recipient(service, token_id, _hash(secret), now or utc_now())


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
