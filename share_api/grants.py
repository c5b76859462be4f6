"""Grants (授权): which organisation may read which columns of which rows of a resource,
masked how, until when — and the record of every read.

A grant names a resource (``<dept>.<dataset>`` or ``marts.<mart>``), the columns granted,
a structured row filter (``share_api.rowfilter``), a masking profile (column → a
``catalog.model.MaskingRule`` value: ``pseudonymise`` under the recipient's own key,
``suppress``, a display mask, a generalisation, or ``none``), an expiry, a rate limit
(requests a minute) and, for a data request, the request it answers. A **standing** grant
(a front end's, on a published mart) has no request and need not expire.

Every read goes through :func:`live_grant` (exists, the caller's organisation holds it,
not revoked, not expired: checked on every call, so a revocation takes effect on the
next request), the rate limit, then :func:`read_grant` (``share_api.views``: the grant's
view as of a lake snapshot) and :func:`record_read` (a ``grant_reads`` row and a
``data.read`` audit record: who, which grant, which snapshot, how many rows, the SHA-256 of
the bytes returned). ``grant_reads`` rows are written by the audit log's group commit in
the same pass as their records (one transaction for the reads of a batch, durable before
the response leaves).

Decrypting a column for a grant (purpose ``share_grant:<id>``) is allowed only for a live
grant covering that column: :func:`decrypt_check` is the checker ``masking.crypto`` asks.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from fastapi import HTTPException

from catalog.model import Catalogue, MaskingRule
from share_api.db import aware, bump, current_revisions, metadata, new_id, utc_now
from share_api.rowfilter import RowFilterError, compile_filter

if TYPE_CHECKING:
    import pyarrow as pa

    from share_api.deps import Principal
    from share_api.service import Service

DEFAULT_RATE_PER_MINUTE = 1_200  # requests a minute on one grant, per server process
MAX_RATE_PER_MINUTE = 1_000_000

grants_table = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("grantee_org", sa.String(64), nullable=False, index=True),
    sa.Column("resource", sa.String(160), nullable=False, index=True),
    sa.Column("columns", sa.JSON, nullable=False),
    sa.Column("row_filter", sa.JSON),
    sa.Column("masking", sa.JSON, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("request_id", sa.String(40)),
    sa.Column("standing", sa.Boolean, nullable=False, default=False),
    sa.Column("rate_per_minute", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(160)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_by", sa.String(160)),
    sa.Column("revoke_reason", sa.String(400)),
)

grant_reads = sa.Table(
    "grant_reads",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("grant_id", sa.String(40), nullable=False, index=True),
    sa.Column("org", sa.String(64), nullable=False),
    sa.Column("principal", sa.String(200), nullable=False),
    sa.Column("snapshot", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("audit_seq", sa.BigInteger),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
)


@dataclass(frozen=True)
class Grant:
    id: str
    grantee_org: str
    resource: str
    columns: tuple[str, ...]
    row_filter: dict | None
    masking: dict[str, str]
    expires_at: dt.datetime | None
    request_id: str | None
    standing: bool
    rate_per_minute: int
    created_at: dt.datetime
    created_by: str | None
    revoked_at: dt.datetime | None
    revoked_by: str | None
    revoke_reason: str | None

    @classmethod
    def from_row(cls, row: Any) -> Grant:
        m = row._mapping
        return cls(
            id=m["id"],
            grantee_org=m["grantee_org"],
            resource=m["resource"],
            columns=tuple(m["columns"]),
            row_filter=m["row_filter"],
            masking=dict(m["masking"]),
            expires_at=aware(m["expires_at"]),
            request_id=m["request_id"],
            standing=bool(m["standing"]),
            rate_per_minute=int(m["rate_per_minute"]),
            created_at=aware(m["created_at"]),
            created_by=m["created_by"],
            revoked_at=aware(m["revoked_at"]),
            revoked_by=m["revoked_by"],
            revoke_reason=m["revoke_reason"],
        )

    def status(self, now: dt.datetime | None = None) -> str:
        """``live``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utc_now()):
            return "expired"
        return "live"

    def as_dict(self) -> dict[str, Any]:
        """What the API shows of a grant (its terms; never data)."""
        return {
            "id": self.id,
            "grantee_org": self.grantee_org,
            "resource": self.resource,
            "columns": list(self.columns),
            "row_filter": self.row_filter,
            "masking": self.masking,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "request_id": self.request_id,
            "standing": self.standing,
            "rate_per_minute": self.rate_per_minute,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "status": self.status(),
        }


class GrantError(HTTPException):
    """A grant that cannot be made or used: an HTTP status and a message naming fields,
    never values."""


# -- terms --------------------------------------------------------------------------------


def default_masking(catalogue: Catalogue, resource: str) -> dict[str, str]:
    """Each column's profile when nobody asks otherwise: a dataset field's catalogue rule
    (``pseudonymise`` then meaning the recipient's own key), a mart column ``none`` (it is
    published masked) except its pseudonyms, re-keyed to the recipient."""
    from share_api.views import resolve

    return {c.name: c.default_rule.value for c in resolve(catalogue, resource).columns.values()}


def check_terms(
    catalogue: Catalogue,
    resource: str,
    columns: list[str],
    row_filter: dict | None,
    masking: dict[str, str],
) -> dict[str, str]:
    """Validate a grant's terms against the catalogue; the full masking profile (a rule for
    every granted column: the given one, else the default). 400/404 naming what is wrong."""
    from share_api.views import allowed_rules, resolve

    try:
        res = resolve(catalogue, resource)
    except KeyError:
        raise GrantError(404, "no such resource in the catalogue") from None
    if not columns:
        raise GrantError(400, "a grant names at least one column")
    unknown = [c for c in columns if c not in res.columns]
    if unknown:
        raise GrantError(400, f"column(s) not in the resource: {', '.join(sorted(set(unknown)))}")
    if len(set(columns)) != len(columns):
        raise GrantError(400, "a column is named twice")
    stray = sorted(set(masking) - set(columns))
    if stray:
        raise GrantError(400, f"masking names column(s) not granted: {', '.join(stray)}")
    try:
        compile_filter(row_filter, res.types)
    except RowFilterError as exc:
        raise GrantError(400, str(exc)) from None
    profile: dict[str, str] = {}
    for name in columns:
        column = res.columns[name]
        rule = masking.get(name, column.default_rule.value)
        try:
            rule = MaskingRule(rule)
        except ValueError:
            raise GrantError(400, f"masking of {name}: not a masking rule") from None
        if rule not in allowed_rules(res, column):
            raise GrantError(400, f"masking of {name}: {rule.value} does not apply to this column")
        profile[name] = rule.value
    return profile


# -- making and ending grants -------------------------------------------------------------


def create_grant(
    service: Service,
    *,
    grantee_org: str,
    resource: str,
    columns: list[str],
    row_filter: dict | None,
    masking: dict[str, str],
    expires_at: dt.datetime | None,
    request_id: str | None,
    standing: bool = False,
    rate_per_minute: int | None = None,
    actor: str = "share_api",
) -> str:
    """Record a grant (terms checked against the catalogue); its id. A grant that is not
    standing must expire; a standing one is on a published mart. Audited ``grant.create``."""
    profile = check_terms(service.catalogue, resource, list(columns), row_filter, masking or {})
    if standing and not resource.startswith("marts."):
        raise GrantError(400, "a standing grant is on a published mart")
    if not standing and expires_at is None:
        raise GrantError(400, "a grant expires (expires_at), unless it is a standing grant")
    if expires_at is not None and expires_at.tzinfo is None:
        raise GrantError(400, "expires_at needs a time zone")
    rate = DEFAULT_RATE_PER_MINUTE if rate_per_minute is None else int(rate_per_minute)
    if not 0 < rate <= MAX_RATE_PER_MINUTE:
        raise GrantError(400, f"rate_per_minute is 1 to {MAX_RATE_PER_MINUTE}")
    grant_id = new_id("grant")
    with service.engine.begin() as con:
        con.execute(
            grants_table.insert().values(
                id=grant_id,
                grantee_org=grantee_org,
                resource=resource,
                columns=list(columns),
                row_filter=row_filter,
                masking=profile,
                expires_at=expires_at,
                request_id=request_id,
                standing=standing,
                rate_per_minute=rate,
                created_at=utc_now(),
                created_by=actor,
            )
        )
        bump(con, "grants")
    service.audit.record(
        "grant.create",
        actor,
        grant=grant_id,
        grantee=grantee_org,
        resource=resource,
        columns=len(columns),
        standing=standing,
        request=request_id or "",
        expires_at=expires_at.isoformat() if expires_at else "",
    )
    return grant_id


_BY_ID = grants_table.select().where(grants_table.c.id == sa.bindparam("grant_id"))


CHANGEABLE = ("columns", "row_filter", "masking", "expires_at", "rate_per_minute")


def change_grant(service: Service, grant_id: str, request_id: str, actor: str) -> Grant:
    """Change a live grant's terms after approval, as a ``grant.change`` administrators'
    operation two different administrators approved says (``share_api.requests``; used
    once). Its payload names ``grant`` and any of :data:`CHANGEABLE`: ``columns``,
    ``row_filter`` and ``masking`` as JSON text, ``expires_at`` as ISO-8601 text,
    ``rate_per_minute`` a number. The terms are checked as a new grant's; audited
    ``grant.change`` with the names of the terms changed."""
    import json

    from share_api.requests import RequestError, approved_admin_operation

    grant = get_grant(service, grant_id)
    if grant is None or grant.status() != "live":
        raise GrantError(404 if grant is None else 409, "no such live grant")
    try:
        payload = approved_admin_operation(
            service, request_id, "grant.change", actor, expect={"grant": grant_id}
        )
    except RequestError as exc:
        raise GrantError(exc.status, str(exc)) from None
    changed = sorted(k for k in payload if k in CHANGEABLE)
    try:
        terms = {k: json.loads(payload[k]) for k in ("columns", "row_filter", "masking")
                 if k in payload}  # fmt: skip
        expires = payload.get("expires_at", grant.expires_at)
        if isinstance(expires, str):
            expires = dt.datetime.fromisoformat(expires) if expires else None
    except (TypeError, ValueError):
        raise GrantError(400, "the approved change's terms do not parse") from None
    columns = terms.get("columns", list(grant.columns))
    masking = terms.get("masking", {c: r for c, r in grant.masking.items() if c in columns})
    row_filter = terms.get("row_filter", grant.row_filter)
    if not isinstance(columns, list) or not isinstance(masking, dict):
        raise GrantError(400, "columns is a list and masking a mapping")
    profile = check_terms(service.catalogue, grant.resource, columns, row_filter, masking)
    if expires is None and not grant.standing:
        raise GrantError(400, "a grant expires (expires_at), unless it is a standing grant")
    if expires is not None and expires.tzinfo is None:
        raise GrantError(400, "expires_at needs a time zone")
    rate = int(payload.get("rate_per_minute", grant.rate_per_minute))
    if not 0 < rate <= MAX_RATE_PER_MINUTE:
        raise GrantError(400, f"rate_per_minute is 1 to {MAX_RATE_PER_MINUTE}")
    with service.engine.begin() as con:
        con.execute(
            grants_table.update()
            .where(grants_table.c.id == grant_id)
            .values(
                columns=columns,
                row_filter=row_filter,
                masking=profile,
                expires_at=expires,
                rate_per_minute=rate,
            )
        )
        bump(con, "grants")
    service.audit.record(
        "grant.change", actor, grant=grant_id, request=request_id, changed=",".join(changed)
    )
    from share_api.views import forget_grant

    forget_grant(service, grant_id)
    return get_grant(service, grant_id)


# the stored row as the driver gives it (no JSON or time parsing): compared with the row a
# kept Grant was made from, so an unchanged grant is not parsed again on every read
_RAW_BY_ID = sa.text(
    "SELECT " + ", ".join(f'"{c.name}"' for c in grants_table.columns) + ' FROM "grants" '
    'WHERE "id" = :grant_id'
)
KEPT_GRANTS = 4_096  # parsed grants kept per process


def get_grant(service: Service, grant_id: str) -> Grant | None:
    """The grant as stored now: a revocation or a change shows at once, in every process.

    A parsed grant is kept per process with the ``grants`` revision counter it was read
    under (``share_api.db``: bumped in the transaction of every grant made, changed or
    revoked); while the counter stands, the kept grant is the stored one and no row is
    read. When it moved, the row is read again (as the driver gives it: an unchanged row
    is not parsed again); a grant changed by another process also drops this process's
    kept views of it (``views.forget_grant``), so its new terms apply to the next read."""
    revision = current_revisions(service).grants
    kept = service.kept("grants.parsed", dict)
    held = kept.get(grant_id)
    if held is not None and held[0] == revision:
        return held[2]
    with service.engine.connect() as con:
        raw = con.execute(_RAW_BY_ID, {"grant_id": grant_id}).first()
        if raw is None:
            return None
        raw = tuple(raw)
        if held is not None and held[1] == raw:
            kept[grant_id] = (revision, raw, held[2])
            return held[2]
        row = con.execute(_BY_ID, {"grant_id": grant_id}).first()
    if row is None:  # pragma: no cover - grants are never deleted
        return None
    grant = Grant.from_row(row)
    if held is not None:  # changed since it was kept (here or by another process)
        from share_api.views import forget_grant

        forget_grant(service, grant_id)
    if len(kept) >= KEPT_GRANTS:
        kept.clear()
    kept[grant_id] = (revision, raw, grant)
    return grant


def list_grants(service: Service, org: str | None = None) -> list[Grant]:
    """Grants held by ``org`` (every grant when None), newest first."""
    query = grants_table.select().order_by(grants_table.c.created_at.desc())
    if org is not None:
        query = query.where(grants_table.c.grantee_org == org)
    with service.engine.connect() as con:
        return [Grant.from_row(r) for r in con.execute(query)]


def revoke_grant(service: Service, grant_id: str, actor: str, reason: str = "") -> Grant:
    """End a grant now: the next read of it is refused (403). Audited ``grant.revoke``."""
    with service.engine.begin() as con:
        done = con.execute(
            grants_table.update()
            .where(grants_table.c.id == grant_id, grants_table.c.revoked_at.is_(None))
            .values(revoked_at=utc_now(), revoked_by=actor, revoke_reason=reason[:400] or None)
        )
        bump(con, "grants")
        if not done.rowcount:
            exists = con.execute(
                sa.select(grants_table.c.id).where(grants_table.c.id == grant_id)
            ).first()
            raise GrantError(404 if exists is None else 409, "no such live grant")
    service.audit.record("grant.revoke", actor, grant=grant_id)
    from share_api.sharing.files import drop_grant
    from share_api.views import forget_grant

    forget_grant(service, grant_id)
    drop_grant(service, grant_id)  # its materialised files go now, not at the next sweep
    return get_grant(service, grant_id)


REVOKERS = ("data_officer", "admin", "reviewer")  # the roles that may revoke a grant


def may_revoke(principal: Principal, grant: Grant) -> bool:
    """Whether ``principal`` may revoke ``grant``: a data officer or an admin any grant; a
    reviewer one held by their organisation or on their department's data."""
    if principal.has("data_officer", "admin"):
        return True
    owner = grant.resource.partition(".")[0]
    return principal.has("reviewer") and principal.org in (grant.grantee_org, owner)


def live_grant(service: Service, grant_id: str, principal: Principal) -> Grant:
    """The grant, if ``principal``'s organisation holds it and it is live; else 404 (no
    such grant) or 403 (another's, revoked, expired), each audited ``data.denied``."""
    grant = get_grant(service, grant_id)
    reason = None
    if grant is None:
        reason, status = "unknown", 404
    elif grant.grantee_org != principal.org:
        reason, status = "not_grantee", 403
    else:
        reason, status = (None, 200) if grant.status() == "live" else (grant.status(), 403)
    if reason is not None:
        service.audit.record(
            "data.denied",
            principal.actor,
            grant=grant_id[:40],
            reason=reason,
            token=principal.token_id,
        )
        raise GrantError(status, "no such grant" if status == 404 else f"grant {reason}")
    return grant


def decrypt_check(service: Service):
    """The checker ``masking.crypto`` asks before decrypting for ``share_grant:<id>``:
    (grant id, column id ``<resource_code>.<field>``) → whether that grant exists, is live
    and covers the field."""

    def check(grant_id: str, column: str) -> bool:
        grant = get_grant(service, grant_id)
        if grant is None or grant.status() != "live":
            return False
        from share_api.views import resolve

        try:
            res = resolve(service.catalogue, grant.resource)
        except KeyError:
            return False
        return any(res.column_id(c) == column for c in grant.columns) or any(
            res.column_id(c) == column for c in filter_reads(res, grant)
        )

    return check


def filter_reads(res, grant: Grant) -> set[str]:
    """Columns the grant's row filter reads (decrypted to filter, never returned)."""
    from share_api.rowfilter import filter_fields

    return filter_fields(grant.row_filter, res.types)


# -- rate limits ----------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per grant, per process: ``rate`` requests a minute, bursts up to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # grant → (tokens, at)

    def allow(self, grant_id: str, rate_per_minute: int) -> float:
        """0 when a request may go now; else the seconds until one may."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(grant_id, (float(rate_per_minute), now))
            tokens = min(float(rate_per_minute), tokens + (now - at) * rate_per_minute / 60)
            if tokens >= 1:
                self._buckets[grant_id] = (tokens - 1, now)
                return 0.0
            self._buckets[grant_id] = (tokens, now)
            return (1 - tokens) * 60 / rate_per_minute


def rate_wait(service: Service, grant: Grant) -> float:
    """Take one request of the grant's rate: 0 when it may go now, else the seconds until
    one may (nothing taken then)."""
    limiter = service.kept("grants.rate", RateLimiter)
    return limiter.allow(grant.id, grant.rate_per_minute)


def check_rate(service: Service, grant: Grant, principal: Principal) -> None:
    """429 (audited ``data.rate_limited``) when the grant's rate is spent."""
    wait = rate_wait(service, grant)
    if wait:
        service.audit.record(
            "data.rate_limited", principal.actor, grant=grant.id, token=principal.token_id
        )
        raise GrantError(
            429, "rate limit of this grant reached", headers={"Retry-After": str(int(wait) + 1)}
        )


# -- reading and its record -----------------------------------------------------------------


def read_grant(
    service: Service,
    grant: Grant,
    *,
    snapshot: int | None = None,
    offset: int = 0,
    limit: int | None = None,
    recipient_kind: str = "department",
) -> pa.Table:
    """Rows ``offset`` … ``offset + limit`` of the grant's view as of ``snapshot`` (the lake's
    current one when None). The schema's metadata says the snapshot read
    (``streethub.snapshot``) and the view's row count (``streethub.total``)."""
    from share_api.views import grant_view

    view = grant_view(service, grant, snapshot=snapshot, recipient_kind=recipient_kind)
    return view.page(offset, limit)


def _write_reads(service: Service):
    """The ``grant_reads`` writer the audit log's batch calls right after its ``data.read``
    records are durable (``Auditor.record_then``): the rows of a batch's reads in one
    transaction, each naming its record's ``seq``; the reader returns once its row is
    durable too."""

    def write(done: list[tuple[dict[str, Any], Read]]) -> None:
        with service.engine.begin() as con:
            con.execute(grant_reads.insert(), [read.row(record) for record, read in done])

    return service.kept("grants.reads", lambda: write)


@dataclass(frozen=True)
class Read:
    """One read of a grant, as its records tell it (never the data: counts and a digest)."""

    grant: Grant
    principal: Principal
    snapshot: int
    fmt: str
    offset: int
    rows: int
    nbytes: int
    digest: str
    client: str | None = None

    def audit_details(self) -> dict[str, Any]:
        """The ``data.read`` record's details: the token the reader signed in with, and the
        client's address when known (the data route audits a read's sign-in in this one
        record)."""
        signed_in = {"token": self.principal.token_id}
        if self.client is not None:
            signed_in["client"] = self.client
        return {
            **signed_in,
            "grant": self.grant.id,
            "resource": self.grant.resource,
            "snapshot": self.snapshot,
            "format": self.fmt,
            "offset": self.offset,
            "rows": self.rows,
            "digest": self.digest,
        }

    def row(self, record: dict[str, Any]) -> dict[str, Any]:
        """Its ``grant_reads`` row, naming the audit record ``record``."""
        return {
            "id": new_id("read"),
            "grant_id": self.grant.id,
            "org": self.principal.org,
            "principal": self.principal.actor,
            "snapshot": self.snapshot,
            "format": self.fmt,
            "offset": self.offset,
            "rows": self.rows,
            "bytes": self.nbytes,
            "digest": self.digest,
            "audit_seq": record.get("seq"),
            "time": utc_now(),
        }


def record_read(
    service: Service,
    grant: Grant,
    principal: Principal,
    *,
    snapshot: int,
    fmt: str,
    offset: int,
    rows: int,
    nbytes: int,
    digest: str,
    client: str | None = None,
) -> dict[str, Any]:
    """The ``data.read`` audit record (its ``seq`` is the read's receipt; see
    :meth:`Read.audit_details`) and the ``grant_reads`` row the metrics read, both durable
    when this returns."""
    read = Read(grant, principal, snapshot, fmt, offset, rows, nbytes, digest, client)
    then = (_write_reads(service), read)
    return service.audit.record_then("data.read", principal.actor, read.audit_details(), then)


async def record_read_async(service: Service, read: Read) -> dict[str, Any]:
    """:func:`record_read` for a handler on the event loop: the same two records, written
    in one pass by the audit log's writer thread, both durable when this returns."""
    then = (_write_reads(service), read)
    return await service.audit.record_async(
        "data.read", read.principal.actor, read.audit_details(), then
    )


def record_read_queued(service: Service, read: Read) -> None:
    """:func:`record_read` queued into the audit's group commit, the caller not waiting
    (``Auditor.record_queued_then``): for a read whose disclosure is durable on record
    already (a Delta Sharing query a profile repeats, its files' first ranges on record)."""
    then = (_write_reads(service), read)
    service.audit.record_queued_then("data.read", read.principal.actor, read.audit_details(), then)


def reads_of(service: Service, grant_id: str) -> list[dict[str, Any]]:
    """The recorded reads of a grant, oldest first."""
    query = grant_reads.select().where(grant_reads.c.grant_id == grant_id)
    with service.engine.connect() as con:
        return [dict(r._mapping) for r in con.execute(query.order_by(grant_reads.c.time))]


__all__ = [
    "DEFAULT_RATE_PER_MINUTE",
    "Grant",
    "GrantError",
    "Read",
    "change_grant",
    "check_rate",
    "check_terms",
    "create_grant",
    "decrypt_check",
    "default_masking",
    "get_grant",
    "grant_reads",
    "grants_table",
    "list_grants",
    "live_grant",
    "may_revoke",
    "rate_wait",
    "read_grant",
    "reads_of",
    "record_read",
    "record_read_async",
    "record_read_queued",
    "revoke_grant",
]
