"""Requests and their reviews (数据申请—审核): the share-type rules of the 政务数据共享条例 and
the two-person rule, for data requests and for administrators' operations alike.

A department asks for a resource (``<dept>.<dataset>`` or ``marts.<name>``): some or all of
its fields, a row scope, a purpose, its legal basis or duty item (履职事项), a case
reference, a period. What happens is the catalogue's share type:

- not shareable (不予共享): refused at once with the legal basis the catalogue records;
- unconditional (无条件共享): granted at once, every L3/L4 field under its catalogue masking
  rule — unless the request asks for a sensitive field in clear, which takes the
  conditional path;
- conditional (有条件共享): reviewed. The owner department's reviewer answers, within the
  answer deadline in working days on the State Council calendar (:mod:`share_api.calendar`);
  past it the request is overdue. A request holding an L3/L4 field needs two approvals by
  different people: the owner department's reviewer and a data officer. A published mart
  has no owner department: data officers review it (two different ones for L3+).

Any reviewer may refuse, with a reason. The last approval makes the grant (GRANTS'
``create_grant``, called in :func:`_deliver` only); if that fails the request stays
``approved`` with the failure's kind, listed as a failed delivery until retried.

Administrators' operations (rotating or re-keying keys, granting a role, changing a grant
after approval) use the same tables: :func:`open_admin_operation` opens one (the opener's
approval counts as the first), a second administrator approves it, and the code that
performs it calls :func:`approved_admin_operation`, which hands over its payload once.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import HTTPException

from catalog.days import BEIJING, beijing_day
from catalog.model import Level, MaskingRule, ShareType
from share_api import calendar
from share_api.catalogue import Entry, lookup
from share_api.db import aware, default_url, metadata, new_id, utc_now
from share_api.deps import Principal
from share_api.rowfilter import RowFilterError, filter_fields

DEFAULT_PERIOD_DAYS = 90  # a grant asked for without a period ends after this many days
MAX_PERIOD_DAYS = 3 * 366  # the longest period a request may name

# request kinds: a data request, or one of the administrators' operations
DATA = "data"
ADMIN_KINDS = ("keys.rotate", "keys.rekey", "role.grant", "grant.change", "model.promote")

# statuses
PENDING, APPROVED, GRANTED, REFUSED, WITHDRAWN, USED = (
    "pending",
    "approved",
    "granted",
    "refused",
    "withdrawn",
    "used",
)

# paths a data request takes (the share type as applied to what was asked)
UNCONDITIONAL, CONDITIONAL, NOT_SHAREABLE = (t.value for t in ShareType)

# in what capacity a person reviews: the owner department's reviewer, a data officer,
# an administrator (admin operations)
OWNER, OFFICER, ADMIN = "owner", "data_officer", "admin"

APPROVE, REFUSE = "approve", "refuse"

requests_table = sa.Table(
    "share_requests",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # DATA or one of ADMIN_KINDS
    sa.Column("requester_org", sa.String(40), nullable=False),
    sa.Column("requester_user", sa.String(80), nullable=False),
    sa.Column("resource", sa.String(200)),  # <dept>.<dataset> | marts.<name>; data only
    sa.Column("owner_org", sa.String(40)),  # the department that answers; None for a mart
    sa.Column("columns", sa.JSON),  # the fields asked for
    sa.Column("unmasked", sa.JSON),  # sensitive fields asked for in clear
    sa.Column("row_filter", sa.JSON),  # the row scope, structured (GRANTS compiles it)
    sa.Column("purpose", sa.Text),
    sa.Column("legal_basis", sa.Text),  # the requester's legal basis or duty item (履职事项)
    sa.Column("case_reference", sa.String(200)),
    sa.Column("period_end", sa.Date),  # the grant expires after this day (Beijing)
    sa.Column("path", sa.String(20)),  # UNCONDITIONAL | CONDITIONAL | NOT_SHAREABLE
    sa.Column("needs", sa.JSON, nullable=False),  # capacities whose approval it needs
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True)),  # the owner's answer deadline
    sa.Column("due_provisional", sa.Boolean, nullable=False, default=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("refusal_basis", sa.Text),  # the catalogue's legal basis, or the reviewer's reason
    sa.Column("grant_id", sa.String(40)),
    sa.Column("delivery_error", sa.String(200)),  # the kind of failure, never a value
    sa.Column("payload", sa.JSON),  # an admin operation's parameters (scalars)
    sa.Column("used_at", sa.DateTime(timezone=True)),
    sa.Column("used_by", sa.String(120)),
    sa.Index("ix_share_requests_status", "status"),
    sa.Index("ix_share_requests_requester_org", "requester_org"),
    sa.Index("ix_share_requests_owner_org", "owner_org"),
)

reviews_table = sa.Table(
    "share_reviews",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("request_id", sa.String(40), nullable=False, index=True),
    sa.Column("reviewer_org", sa.String(40), nullable=False),
    sa.Column("reviewer_user", sa.String(80), nullable=False),
    sa.Column("capacity", sa.String(20), nullable=False),
    sa.Column("decision", sa.String(10), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    # one person reviews a request once: two approvals are two people
    sa.UniqueConstraint("request_id", "reviewer_org", "reviewer_user"),
)


class RequestError(Exception):
    """A request or review that cannot be made; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- what the catalogue says of a resource -----------------------------------------------


def describe(service, ref: str) -> Entry:
    """The catalogue's entry for ``ref`` (CATALOGUE's lookup); 404 when there is none."""
    try:
        return lookup(service, ref)
    except KeyError:
        raise RequestError(404, "no such resource in the catalogue") from None


def sensitive(entry: Entry, names) -> list[str]:
    """Those of ``names`` that are L3/L4 fields of ``entry``."""
    return [n for n in names if Level(entry.field(n).level).sensitive]


# --- the rules ---------------------------------------------------------------------------


def answer_working_days(settings) -> int:
    """The owner's answer deadline in working days (``share_answer_working_days``), for a
    request and for a correction request (share_api.feedback)."""
    return settings.share_answer_working_days


def approvals_needed(entry: Entry, touched: set[str]) -> list[str]:
    """The capacities whose approvals a reviewed request needs: an L3/L4 field among the
    fields it reads or filters on needs two different people (the owner department's
    reviewer and a data officer; two data officers for a mart), else the owner's reviewer
    (a data officer for a mart)."""
    first = OWNER if entry.owner_org else OFFICER
    if sensitive(entry, touched):
        return [first, OFFICER]
    return [first]


def share_path(entry: Entry, unmasked: list[str], filtered: set[str]) -> str:
    """Which path a request takes: the share type, except that an unconditional dataset
    asked for with a masked field in clear, or with a row scope over a sensitive field
    (its values compared in clear), is reviewed like a conditional one."""
    if entry.share_type is ShareType.unconditional and (unmasked or sensitive(entry, filtered)):
        return CONDITIONAL
    return entry.share_type.value


def _checked_columns(entry: Entry, columns: list[str] | None, unmasked: list[str]):
    names = [f.name for f in entry.fields]
    columns = list(dict.fromkeys(columns or names))
    unknown = sorted({c for c in [*columns, *unmasked] if c not in names})
    if unknown:
        raise RequestError(422, f"not fields of {entry.resource}: {', '.join(unknown)}")
    outside = [c for c in unmasked if c not in columns]
    if outside:
        raise RequestError(422, f"asked unmasked but not requested: {', '.join(outside)}")
    if unmasked and entry.kind == "mart":
        raise RequestError(422, "a mart is published masked: none of its columns comes in clear")
    plain = [c for c in unmasked if entry.field(c).masking == MaskingRule.none.value]
    if plain:
        raise RequestError(422, f"not masked by the catalogue: {', '.join(plain)}")
    return columns, list(dict.fromkeys(unmasked))


def _checked_filter(entry: Entry, row_filter: dict | None) -> set[str]:
    """The fields a row scope reads (GRANTS' compiler checks it: 422 naming the position)."""
    try:
        return filter_fields(row_filter, [f.name for f in entry.fields])
    except RowFilterError as exc:
        raise RequestError(422, str(exc)) from None


# --- data requests -----------------------------------------------------------------------


def create_request(
    service,
    principal: Principal,
    *,
    resource: str,
    purpose: str,
    legal_basis: str,
    columns: list[str] | None = None,
    unmasked: list[str] | None = None,
    row_filter: dict | None = None,
    case_reference: str | None = None,
    period_end: dt.date | None = None,
) -> dict[str, Any]:
    """Submit a data request for ``principal``'s organisation and apply the share-type rule
    at once: refused (not shareable), granted (unconditional) or pending review."""
    if not purpose.strip() or not legal_basis.strip():
        raise RequestError(422, "a request states its purpose and its legal basis or duty item")
    res = describe(service, resource)
    columns, unmasked = _checked_columns(res, columns, unmasked or [])
    filtered = _checked_filter(res, row_filter)
    now = utc_now()
    if period_end is not None:
        days = (period_end - beijing_day(now)).days
        if not 0 <= days <= MAX_PERIOD_DAYS:
            raise RequestError(422, f"period_end is today or later, within {MAX_PERIOD_DAYS} days")
    path = share_path(res, unmasked, filtered)
    row = {
        "id": new_id("req"),
        "kind": DATA,
        "requester_org": principal.org,
        "requester_user": principal.user_id,
        "resource": res.resource,
        "owner_org": res.owner_org,
        "columns": columns,
        "unmasked": unmasked,
        "row_filter": row_filter,
        "purpose": purpose,
        "legal_basis": legal_basis,
        "case_reference": case_reference,
        "period_end": period_end,
        "path": path,
        "needs": approvals_needed(res, {*columns, *filtered}) if path == CONDITIONAL else [],
        "submitted_at": now,
        "due_provisional": False,
    }
    if path == NOT_SHAREABLE:
        row |= {"status": REFUSED, "decided_at": now, "refusal_basis": res.legal_basis}
    elif path == UNCONDITIONAL:
        row |= {"status": APPROVED, "decided_at": now}
    else:
        due = calendar.answer_due(now, answer_working_days(service.settings))
        row |= {
            "status": PENDING,
            "due_at": due,
            "due_provisional": not calendar.schedule_known(beijing_day(due)),
        }
    with service.engine.begin() as con:
        con.execute(requests_table.insert().values(**row))
    service.audit.record(
        "request.create",
        principal.actor,
        request=row["id"],
        resource=res.resource,
        path=path,
        status=row["status"],
        fields=len(columns),
        unmasked=len(unmasked),
    )
    if path == NOT_SHAREABLE:
        service.audit.record(
            "request.decide", "system", request=row["id"], decision=REFUSE, basis="catalogue"
        )
    if path == UNCONDITIONAL:
        _deliver(service, row["id"], "system")
    return get_request(service, row["id"])


def review(
    service, principal: Principal, request_id: str, decision: str, reason: str | None = None
) -> dict[str, Any]:
    """A reviewer's decision on a pending request (data or admin operation). The approval
    that completes what the request needs makes the grant (data) or approves the operation."""
    if decision not in (APPROVE, REFUSE):
        raise RequestError(422, "decision is approve or refuse")
    if decision == REFUSE and not (reason and reason.strip()):
        raise RequestError(422, "a refusal states its reason")
    now = utc_now()
    with service.engine.begin() as con:
        # take the request's write lock first (a row lock on PostgreSQL, the database's on
        # SQLite, whose driver would read outside the transaction): two reviewers answering
        # at once are decided one after the other, so the last approval makes one grant
        con.execute(
            requests_table.update()
            .where(requests_table.c.id == request_id)
            .values(status=requests_table.c.status)
        )
        req = _row(con, request_id)
        if req is None or not can_see(principal, req):
            raise RequestError(404, "no such request")
        if req["status"] != PENDING:
            raise RequestError(409, f"the request is {req['status']}, not pending")
        if (req["requester_org"], req["requester_user"]) == (principal.org, principal.user_id):
            raise RequestError(403, "nobody reviews their own request")
        done = _reviews(con, request_id)
        if any(
            (r["reviewer_org"], r["reviewer_user"]) == (principal.org, principal.user_id)
            for r in done
        ):
            raise RequestError(409, "this person has already reviewed the request")
        capacity = _capacity(
            principal, req, [r["capacity"] for r in done if r["decision"] == APPROVE]
        )
        if capacity is None:
            raise RequestError(403, "this request needs no review of this person's role")
        _record_review(con, request_id, principal, capacity, decision, reason, now)
        approved = [r["capacity"] for r in done if r["decision"] == APPROVE]
        if decision == APPROVE:
            approved.append(capacity)
        if decision == REFUSE:
            status = REFUSED
        elif not _missing(req["needs"], approved):
            status = APPROVED
        else:
            status = PENDING
        if status != PENDING:
            values = {"status": status, "decided_at": now}
            if status == REFUSED:
                values["refusal_basis"] = reason
            con.execute(
                requests_table.update().where(requests_table.c.id == request_id).values(**values)
            )
    service.audit.record(
        "admin.review" if req["kind"] != DATA else "request.decide",
        principal.actor,
        request=request_id,
        kind=req["kind"],
        decision=decision,
        capacity=capacity,
        status=status,
    )
    if status == APPROVED and req["kind"] == DATA:
        _deliver(service, request_id, principal.actor)
    return get_request(service, request_id)


def withdraw(service, principal: Principal, request_id: str) -> dict[str, Any]:
    """The requester withdraws its pending request."""
    with service.engine.begin() as con:
        req = _row(con, request_id)
        if req is None or req["requester_org"] != principal.org:
            raise RequestError(404, "no such request")
        if req["status"] != PENDING:
            raise RequestError(409, f"the request is {req['status']}, not pending")
        con.execute(
            requests_table.update()
            .where(requests_table.c.id == request_id)
            .values(status=WITHDRAWN, decided_at=utc_now())
        )
    service.audit.record("request.withdraw", principal.actor, request=request_id)
    return get_request(service, request_id)


def _record_review(con, request_id, principal, capacity, decision, reason, now) -> None:
    con.execute(
        reviews_table.insert().values(
            id=new_id("rev"),
            request_id=request_id,
            reviewer_org=principal.org,
            reviewer_user=principal.user_id,
            capacity=capacity,
            decision=decision,
            reason=reason,
            decided_at=now,
        )
    )


def _missing(needs: list[str], approved: list[str]) -> list[str]:
    """The capacities still to approve (a list: two data officers are two entries)."""
    left = list(approved)
    missing = []
    for capacity in needs:
        if capacity in left:
            left.remove(capacity)
        else:
            missing.append(capacity)
    return missing


def _capacity(principal: Principal, req, approved: list[str]) -> str | None:
    """In which capacity ``principal`` reviews ``req`` now, given the approvals so far."""
    missing = _missing(req["needs"], approved) or list(req["needs"])  # a refusal: any role
    if req["kind"] != DATA:
        return ADMIN if principal.has("admin") else None
    if OWNER in missing and principal.has("reviewer") and principal.org == req["owner_org"]:
        return OWNER
    if OFFICER in missing and principal.has("data_officer"):
        return OFFICER
    return None


def can_review(principal: Principal, shown: dict[str, Any]) -> bool:
    """Whether ``principal`` can approve a request (as :func:`view` shows it) now: it is
    pending, not theirs, not reviewed by them yet, and awaits their role."""
    if shown["status"] != PENDING:
        return False
    if (shown["requester_org"], shown["requester_user"]) == (principal.org, principal.user_id):
        return False
    if any(r["reviewer"] == principal.actor for r in shown["reviews"]):
        return False
    approved = [r["capacity"] for r in shown["reviews"] if r["decision"] == APPROVE]
    return _capacity(principal, shown, approved) is not None


def _reviews(con, request_id: str) -> list:
    return list(
        con.execute(
            sa.select(reviews_table)
            .where(reviews_table.c.request_id == request_id)
            .order_by(reviews_table.c.decided_at)
        ).mappings()
    )


def _row(con, request_id: str):
    return (
        con.execute(sa.select(requests_table).where(requests_table.c.id == request_id))
        .mappings()
        .first()
    )


# --- delivery: the one call into GRANTS ----------------------------------------------------


def grant_expiry(period_end: dt.date | None, now: dt.datetime) -> dt.datetime:
    """A grant ends at midnight Beijing after the last day of the period asked for, or
    :data:`DEFAULT_PERIOD_DAYS` after it is made when no period was named (every grant of a
    request expires)."""
    last = period_end or beijing_day(now) + dt.timedelta(days=DEFAULT_PERIOD_DAYS)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), BEIJING)
    return end.astimezone(dt.UTC)


def grant_masking(service, req) -> dict[str, str]:
    """The masking profile the grant of data request ``req`` (a row, or :func:`view`'s
    dict) gets: each requested field's default (GRANTS' ``default_masking``), the fields
    asked for in clear ``none`` — what a reviewer approves, and the portal shows them."""
    from share_api import grants

    default = grants.default_masking(service.catalogue, req["resource"])
    masking = {c: p for c, p in default.items() if c in req["columns"]}
    for column in req["unmasked"] or []:
        masking[column] = MaskingRule.none.value  # in clear, as the reviewers approved
    return masking


def _deliver(service, request_id: str, actor: str) -> str | None:
    """Make the grant of an approved data request (GRANTS' ``create_grant``); on failure the
    request stays approved with the kind of failure recorded (a failed delivery)."""
    from share_api import grants

    with service.engine.begin() as con:
        req = _row(con, request_id)
    if req is None or req["status"] != APPROVED or req["kind"] != DATA:
        raise RequestError(409, "only an approved data request is delivered")
    try:
        masking = grant_masking(service, req)
        grant_id = grants.create_grant(
            service,
            grantee_org=req["requester_org"],
            resource=req["resource"],
            columns=list(req["columns"]),
            row_filter=req["row_filter"],
            masking=masking,
            expires_at=grant_expiry(req["period_end"], utc_now()),
            request_id=request_id,
            actor=actor,
        )
    except Exception as exc:  # any failure is a failed delivery, listed until retried
        # GRANTS' errors name fields, never values; of anything else only its kind is kept
        kind = (
            f"{exc.status_code} {exc.detail}"
            if isinstance(exc, HTTPException)
            else type(exc).__name__
        )
        with service.engine.begin() as con:
            con.execute(
                requests_table.update()
                .where(requests_table.c.id == request_id)
                .values(delivery_error=f"grant not made: {kind}"[:200])
            )
        service.audit.record("request.deliver_failed", actor, request=request_id, error=str(kind))
        return None
    with service.engine.begin() as con:
        first = con.execute(
            requests_table.update()
            .where(requests_table.c.id == request_id, requests_table.c.status == APPROVED)
            .values(status=GRANTED, grant_id=grant_id, delivery_error=None)
        ).rowcount
    if not first:  # two retries at once: the other's grant stands, this one ends now
        grants.revoke_grant(service, grant_id, actor, reason="the request was delivered already")
        raise RequestError(409, "the request was delivered already")
    return grant_id


def retry_delivery(service, principal: Principal, request_id: str) -> dict[str, Any]:
    """Try again to make the grant of an approved request whose delivery failed."""
    with service.engine.begin() as con:
        req = _row(con, request_id)
    if req is None or not can_see(principal, req):
        raise RequestError(404, "no such request")
    if not (principal.has("data_officer") or _owner_reviewer(principal, req)):
        raise RequestError(403, "a data officer or the owner's reviewer retries a delivery")
    _deliver(service, request_id, principal.actor)
    return get_request(service, request_id)


# --- who sees what -----------------------------------------------------------------------


def _owner_reviewer(principal: Principal, req) -> bool:
    return principal.has("reviewer") and principal.org == req["owner_org"]


def can_see(principal: Principal, req) -> bool:
    """Least privilege: a requester sees its own organisation's requests; the owner
    department's reviewers the requests for its data; data officers every data request;
    administrators the admin operations."""
    if req["kind"] != DATA:
        return principal.has("admin")
    return (
        req["requester_org"] == principal.org
        or _owner_reviewer(principal, req)
        or principal.has("data_officer")
    )


def _visible(principal: Principal):
    t = requests_table.c
    clauses = [t.requester_org == principal.org]
    if principal.has("reviewer"):
        clauses.append(t.owner_org == principal.org)
    if principal.has("data_officer"):
        clauses.append(t.kind == DATA)
    if principal.has("admin"):
        clauses.append(t.kind != DATA)
    visible = sa.or_(*clauses)
    return visible if principal.has("admin") else sa.and_(visible, t.kind == DATA)


def view(req, reviews: list, now: dt.datetime | None = None) -> dict[str, Any]:
    """A request as the API shows it (with its reviews and whether it is overdue)."""
    now = now or utc_now()
    due = aware(req["due_at"]) if req["due_at"] else None
    overdue = req["status"] == PENDING and due is not None and now >= due
    approved = [r["capacity"] for r in reviews if r["decision"] == APPROVE]
    out = {
        k: req[k]
        for k in (
            "id", "kind", "requester_org", "requester_user", "resource", "owner_org",
            "columns", "unmasked", "row_filter", "purpose", "legal_basis", "case_reference",
            "path", "needs", "status", "refusal_basis", "grant_id", "delivery_error",
        )
    }  # fmt: skip
    out |= {
        "period_end": req["period_end"].isoformat() if req["period_end"] else None,
        "submitted_at": _iso(req["submitted_at"]),
        "due_at": due.isoformat() if due else None,
        "due_provisional": bool(req["due_provisional"]),
        "decided_at": _iso(req["decided_at"]),
        "overdue": overdue,
        "working_days_overdue": calendar.working_days_overdue(due, now) if overdue else 0,
        "awaiting": _missing(req["needs"], approved) if req["status"] == PENDING else [],
        "reviews": [
            {
                "reviewer": f"{r['reviewer_org']}/{r['reviewer_user']}",
                "capacity": r["capacity"],
                "decision": r["decision"],
                "reason": r["reason"],
                "decided_at": _iso(r["decided_at"]),
            }
            for r in reviews
        ],
    }
    if req["kind"] != DATA:
        out |= {"payload": req["payload"], "used_at": _iso(req["used_at"])}
    return out


def _iso(value: dt.datetime | None) -> str | None:
    return aware(value).isoformat() if value else None


def get_request(service, request_id: str, principal: Principal | None = None) -> dict[str, Any]:
    """One request as its viewer may see it (404 when ``principal`` may not)."""
    with service.engine.begin() as con:
        req = _row(con, request_id)
        if req is None or (principal is not None and not can_see(principal, req)):
            raise RequestError(404, "no such request")
        return view(req, _reviews(con, request_id))


def list_requests(
    service, principal: Principal, *, status: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The requests ``principal`` may see, newest first."""
    query = sa.select(requests_table).where(_visible(principal))
    if status is not None:
        query = query.where(requests_table.c.status == status)
    query = query.order_by(requests_table.c.submitted_at.desc()).limit(limit)
    with service.engine.begin() as con:
        rows = list(con.execute(query).mappings())
        reviews = _reviews_of(con, [r["id"] for r in rows])
    now = utc_now()
    return [view(r, reviews.get(r["id"], []), now) for r in rows]


def _reviews_of(con, ids: list[str]) -> dict[str, list]:
    out: dict[str, list] = {}
    if not ids:
        return out
    query = (
        sa.select(reviews_table)
        .where(reviews_table.c.request_id.in_(ids))
        .order_by(reviews_table.c.decided_at)
    )
    for r in con.execute(query).mappings():
        out.setdefault(r["request_id"], []).append(r)
    return out


# --- administrators' operations (the two-person rule, seed §6.1) -------------------------


def open_admin_operation(service, principal: Principal, kind: str, payload: dict) -> str:
    """An administrator asks for an operation another administrator must approve; the
    opener's own approval is the first of the two."""
    if kind not in ADMIN_KINDS:
        raise RequestError(422, f"kind is one of {', '.join(ADMIN_KINDS)}")
    if not principal.has("admin"):
        raise RequestError(403, "only an administrator opens an admin operation")
    if not isinstance(payload, dict) or any(
        not isinstance(v, str | int | float | bool | None) for v in payload.values()
    ):
        raise RequestError(422, "an operation's payload is a mapping of scalars")
    now = utc_now()
    request_id = new_id("op")
    with service.engine.begin() as con:
        con.execute(
            requests_table.insert().values(
                id=request_id,
                kind=kind,
                requester_org=principal.org,
                requester_user=principal.user_id,
                needs=[ADMIN, ADMIN],
                status=PENDING,
                submitted_at=now,
                due_provisional=False,
                payload=payload,
            )
        )
        _record_review(con, request_id, principal, ADMIN, APPROVE, "opened it", now)
    # the names of the parameters only: a changed row filter may hold values of the data
    service.audit.record(
        "admin.open",
        principal.actor,
        request=request_id,
        kind=kind,
        terms=",".join(sorted(payload)),
    )
    return request_id


def two_person_rule_in_force(settings) -> bool:
    """Whether operations on this hub need a second administrator: from ``streethub admin
    init`` on (the share service has administrators). A hub without a share service yet
    (no state database) is not asked, and gets none made by asking."""
    from share_api.principals import count_admins
    from share_api.service import Service

    url = settings.share_db_url or default_url(settings)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if not path or not Path(path).exists():
            return False
    service = Service.open(settings)
    try:
        return count_admins(service) > 0
    finally:
        service.close()


def approved_admin_operation(
    service, request_id: str, kind: str, actor: str = "system", *, expect: dict | None = None
) -> dict[str, Any]:
    """The payload of an admin operation two different administrators approved, marked used
    (once: a second call raises). With ``expect``, the payload must hold those values (the
    operation about to run is the one approved). Raises :class:`RequestError` otherwise."""
    now = utc_now()
    with service.engine.begin() as con:
        req = _row(con, request_id)
        if req is None or req["kind"] != kind:
            raise RequestError(404, f"no {kind} operation with this id")
        if req["status"] != APPROVED:
            raise RequestError(409, f"the operation is {req['status']}, not approved")
        approvers = {
            (r["reviewer_org"], r["reviewer_user"])
            for r in _reviews(con, request_id)
            if r["decision"] == APPROVE and r["capacity"] == ADMIN
        }
        if len(approvers) < 2:
            raise RequestError(409, "the operation lacks a second administrator's approval")
        payload = dict(req["payload"] or {})
        differ = sorted(k for k, v in (expect or {}).items() if payload.get(k) != v)
        if differ:
            raise RequestError(409, f"the approved operation differs in: {', '.join(differ)}")
        claimed = con.execute(
            requests_table.update()
            .where(requests_table.c.id == request_id, requests_table.c.status == APPROVED)
            .values(status=USED, used_at=now, used_by=actor)
        ).rowcount
        if claimed != 1:
            raise RequestError(409, "the operation was used already")
    service.audit.record("admin.use", actor, request=request_id, kind=kind)
    return payload
