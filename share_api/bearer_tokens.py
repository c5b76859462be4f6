"""The life of a bearer token, whichever credential it is: the share API's ``tok-`` tokens
(:mod:`share_api.principals`) and Delta Sharing's ``dsp-`` profile tokens
(:mod:`share_api.sharing.tokens`) are made, bounded, stored, listed and revoked by these
rules; :func:`share_api.principals.check_sign_in` is the one rule they sign in by.

- A token is ``<id>.<secret>``: the id (``<prefix>-<16 hex>``) is public (audit records and
  revocation name it), the secret is 256 random bits shown once, when it is issued; only
  its SHA-256 is stored (a random secret needs no slow hash), never the secret.
- Its life is at most the configured longest, never past ``not_after`` (a token cannot
  mint a credential that outlives it), and never already over.
- A revocation is at once and once: the ``principals`` revision counter moves in its
  transaction, so every process's kept sign-in row of it is dropped and the very next
  request with it fails; a second revocation changes nothing.

Each kind keeps a table of its own (:func:`token_table`, with any columns of its own) and
its own errors (the API's statuses, the protocol's error codes): the functions take the
table and raise what the caller hands them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from share_api.db import aware, bump, metadata, new_id, utc_now

if TYPE_CHECKING:
    from share_api.service import Service

SECRET_BYTES = 32  # 256 random bits: 43 URL-safe characters
HIDDEN = "secret_sha256"  # the one column no listing or record shows


def token_table(name: str, *own: sa.Column) -> sa.Table:
    """A table of bearer tokens: each one's id, person, secret's hash, label, when made
    (and the kind's ``own`` columns after it), when it expires and when and by whom it was
    revoked."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column(HIDDEN, sa.String(64), nullable=False),
        sa.Column("label", sa.Text, nullable=False, default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *own,
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_by", sa.Text),
    )


def id_pattern(prefix: str) -> re.Pattern[str]:
    """A token id of kind ``prefix`` (``tok``, ``dsp``)."""
    return re.compile(rf"({re.escape(prefix)}-[0-9a-f]{{16}})")


def token_pattern(prefix: str) -> re.Pattern[str]:
    """A whole token of kind ``prefix``: its id and its secret as the two groups."""
    return re.compile(rf"{id_pattern(prefix).pattern}\.([A-Za-z0-9_-]{{43}})")


def hash_secret(secret: str) -> str:
    """What is stored of a secret (and compared at sign-in): its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_token(prefix: str) -> tuple[str, str, str]:
    """A new token of kind ``prefix``: its id, its secret's hash (to store) and the token
    its holder is given (``<id>.<secret>``, the only time the secret exists)."""
    token_id = new_id(prefix)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return token_id, hash_secret(secret), f"{token_id}.{secret}"


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``token`` is the only time the secret exists outside its holder."""

    token_id: str
    token: str
    user_id: str
    expires_at: dt.datetime

    def __repr__(self) -> str:  # never the secret in a traceback or a log
        return f"IssuedToken(token_id={self.token_id!r}, user_id={self.user_id!r})"


def issue(
    service: Service,
    table: sa.Table,
    prefix: str,
    holder: Mapping[str, Any],
    expires_at: dt.datetime,
    *,
    now: dt.datetime,
    label: str,
    actor: str,
    action: str,
    **columns: Any,
) -> IssuedToken:
    """A new token of kind ``prefix`` for the person ``holder`` (its record: ``id``,
    ``org``), stored in ``table`` (with ``columns`` of the table's own) as made ``now`` and
    expiring at ``expires_at`` (:func:`expiry`); audited as ``action`` by ``actor`` with its
    id, never its secret."""
    token_id, secret_sha256, token = new_token(prefix)
    with service.engine.begin() as con:
        con.execute(
            table.insert().values(
                id=token_id,
                user_id=holder["id"],
                secret_sha256=secret_sha256,
                label=label[:200],
                created_at=now,
                expires_at=expires_at,
                **columns,
            )
        )
    service.audit.record(
        action,
        actor,
        token=token_id,
        user=holder["id"],
        org=holder["org"],
        expires_at=expires_at.isoformat(),
    )
    return IssuedToken(token_id, token, holder["id"], expires_at)


def expiry(
    now: dt.datetime,
    ttl: dt.timedelta | None,
    longest: dt.timedelta,
    not_after: dt.datetime | None,
    refused: Callable[[str], Exception],
) -> dt.datetime:
    """When a token issued ``now`` for ``ttl`` (None: ``longest``) expires: never past
    ``longest`` nor ``not_after``; ``refused(message)`` is raised for a life out of bounds
    or one that would be over at once."""
    ttl = longest if ttl is None else ttl
    if ttl <= dt.timedelta(0) or ttl > longest:
        raise refused(f"ttl: more than 0 and at most {longest.total_seconds():.0f} s")
    expires_at = now + ttl if not_after is None else min(now + ttl, aware(not_after))
    if expires_at <= now:
        raise refused("the token would be expired at once")
    return expires_at


def shown_columns(table: sa.Table) -> list[sa.Column]:
    """The columns of a token table a record or a listing shows: all but the hash."""
    return [c for c in table.c if c.name != HIDDEN]


def revoke(
    service: Service,
    table: sa.Table,
    token_id: str,
    *,
    actor: str,
    action: str,
    missing: Exception,
) -> bool:
    """Revoke token ``token_id`` of ``table`` now, by ``actor`` (audited as ``action``
    with the token's id and person); False when it was revoked already; ``missing`` is
    raised when there is none."""
    with service.engine.begin() as con:
        row = con.execute(
            sa.select(table.c.user_id, table.c.revoked_at).where(table.c.id == token_id)
        ).first()
        if row is None:
            raise missing
        if row.revoked_at is not None:
            return False
        con.execute(
            table.update()
            .where(table.c.id == token_id, table.c.revoked_at.is_(None))
            .values(revoked_at=utc_now(), revoked_by=actor)
        )
        bump(con, "principals")  # every process's kept sign-in row of it is dropped
    service.audit.record(action, actor, token=token_id, user=row.user_id)
    return True


def records(
    service: Service, table: sa.Table, where: sa.ColumnElement[bool], names: tuple[str, ...] = ()
) -> list[dict[str, object]]:
    """The tokens of ``table`` that ``where`` selects, newest first, as records: the
    columns ``names`` (none: every column but the hash), times timezone-aware."""
    columns = [table.c[n] for n in names] if names else shown_columns(table)
    with service.engine.connect() as con:
        rows = con.execute(
            sa.select(*columns).where(where).order_by(table.c.created_at.desc())
        ).all()
    return [
        {k: aware(v) if isinstance(v, dt.datetime) else v for k, v in r._mapping.items()}
        for r in rows
    ]
