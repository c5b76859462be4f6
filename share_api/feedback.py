"""Feedback (反馈): the last step of the share loop (数据申请—审核—使用—反馈).

A grantee rates the data it received under a grant (1–5, an optional remark), and files
correction requests (校核纠错) on a specific record and field of it: what is wrong
(:data:`PROBLEMS`), a remark. A correction reaches the department that owns the data (a
mart's go to the data officers): it is listed in their attention (:func:`open_corrections`)
with the answer deadline in working days that conditional requests have
(``share_api.requests.answer_working_days``), and the owner answers it — accepted (the
record will be corrected in the next delivery) or rejected, with a reason. The grantee sees
the answer on the correction.

A record is named as the grantee's data shows it: ``record_column`` (a granted column) and
``record`` (its value in that row). Only values that are no personal information in the
clear may name a record: a pseudonym (a column the grant pseudonymises, under the
grantee's own key) or a column the grant shows unmasked and the catalogue files L1/L2 (a
case number). A sensitive value, or a display mask (``138****5678`` names no one record), is
refused. Remarks and answers are scrubbed of identifiers before they are stored
(``masking.text.scrub``). The quality loop takes the corrections in from the lake
(``pipelines/share_records.py`` copies them; ``quality/share_corrections.py`` turns those on
department datasets into disputes of ``quarantine.issues``).

Every rating, correction and answer is audited (``feedback.create``, ``feedback.answer``):
ids, resource, field, problem, never a value.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from fastapi import HTTPException

from catalog.model import Level, MaskingRule
from masking.pseudonym import looks_like_pseudonym
from masking.text import scrub
from share_api import calendar
from share_api.db import aware, metadata, new_id, utc_now

if TYPE_CHECKING:
    from share_api.deps import Principal
    from share_api.service import Service

# what a correction says is wrong with the value (校核纠错 问题类型)
PROBLEMS = {
    "wrong": "数据错误",
    "missing": "数据缺失",
    "outdated": "数据过期",
    "duplicate": "重复记录",
    "other": "其他",
}
OPEN, ANSWERED = "open", "answered"
ACCEPTED, REJECTED = "accepted", "rejected"
DECISIONS = (ACCEPTED, REJECTED)
MAX_NOTE = 1000

ratings_table = sa.Table(
    "feedback_ratings",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("grant_id", sa.String(40), nullable=False, index=True),
    sa.Column("resource", sa.String(160), nullable=False, index=True),
    sa.Column("org", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(80), nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("note", sa.Text),  # scrubbed
    sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
)

corrections_table = sa.Table(
    "feedback_corrections",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("grant_id", sa.String(40), nullable=False, index=True),
    sa.Column("resource", sa.String(160), nullable=False),
    sa.Column("owner_org", sa.String(64), index=True),  # None: a mart (data officers answer)
    sa.Column("requester_org", sa.String(64), nullable=False, index=True),
    sa.Column("requester_user", sa.String(80), nullable=False),
    sa.Column("record_column", sa.String(64), nullable=False),
    sa.Column("record", sa.String(128), nullable=False),  # a pseudonym or an L1/L2 value
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("problem", sa.String(20), nullable=False),
    sa.Column("note", sa.Text),  # scrubbed
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decision", sa.String(20)),
    sa.Column("answer", sa.Text),  # scrubbed
    sa.Column("answered_by", sa.String(160)),
    sa.Column("answered_at", sa.DateTime(timezone=True)),
    sa.Index("ix_feedback_corrections_status", "status"),
)


class FeedbackError(HTTPException):
    """Feedback that cannot be taken: a status and a message naming fields, never values."""


def _iso(t: dt.datetime | None) -> str | None:
    t = aware(t)
    return t.isoformat() if t is not None else None


def scrubbed(text: str | None) -> str | None:
    """A remark as stored and shown: stripped, identifiers masked (never kept in clear)."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_NOTE:
        raise FeedbackError(422, f"note: at most {MAX_NOTE} characters")
    return scrub(text.strip())[0]


def owner_of(service: Service, resource: str) -> str | None:
    """The department that answers for a resource (None for a mart: the data officers)."""
    from share_api.catalogue import lookup

    try:
        return lookup(service, resource).owner_org
    except KeyError:  # a resource the catalogue dropped since the grant: the data officers
        return None


def _held_grant(service: Service, grant_id: str, principal: Principal):
    """The grant, held by the caller's organisation (revoked or expired ones too: feedback
    is about data received). 404 when there is none the caller may see."""
    from share_api.grants import get_grant

    grant = get_grant(service, grant_id)
    if grant is None or grant.grantee_org != principal.org:
        raise FeedbackError(404, "no such grant held by your organisation")
    return grant


def _column_level(service: Service, resource: str, column: str) -> Level | None:
    """The catalogue's level of a resource's column (None: not a column of it)."""
    from share_api.catalogue import lookup

    try:
        return Level(lookup(service, resource).field(column).level)
    except KeyError:
        return None


def check_record_ref(service: Service, grant, column: str, record: str) -> None:
    """422 unless ``record`` (the value of ``column`` in the row, as the grant shows it) may
    name a record: see the module doc."""
    if column not in grant.columns:
        raise FeedbackError(422, "record_column: not a column of the grant")
    rule = grant.masking.get(column, MaskingRule.none.value)
    if rule == MaskingRule.pseudonymise.value:
        if not looks_like_pseudonym(record):
            raise FeedbackError(422, "record: give the pseudonym your data shows in that column")
        return
    level = _column_level(service, grant.resource, column)
    if rule != MaskingRule.none.value or level is None or level.sensitive:
        raise FeedbackError(
            422,
            "record_column: name the record by a pseudonymised column or an L1/L2 column "
            "shown in clear",
        )


def rate(
    service: Service, principal: Principal, grant_id: str, score: int, note: str | None = None
) -> dict[str, Any]:
    """Record the caller's rating of a grant's data (1–5)."""
    if not 1 <= score <= 5:
        raise FeedbackError(422, "score: 1 to 5")
    grant = _held_grant(service, grant_id, principal)
    row = {
        "id": new_id("rat"),
        "grant_id": grant.id,
        "resource": grant.resource,
        "org": principal.org,
        "user_id": principal.user_id,
        "score": score,
        "note": scrubbed(note),
        "rated_at": utc_now(),
    }
    with service.engine.begin() as con:
        con.execute(ratings_table.insert().values(**row))
    service.audit.record(
        "feedback.create", principal.actor, kind="rating", id=row["id"], grant=grant.id,
        resource=grant.resource, score=score,
    )  # fmt: skip
    return _rating_view(row)


def _rating_view(row: Any) -> dict[str, Any]:
    m = row if isinstance(row, dict) else row._mapping
    return {
        "id": m["id"],
        "grant_id": m["grant_id"],
        "resource": m["resource"],
        "org": m["org"],
        "score": m["score"],
        "note": m["note"],
        "rated_at": _iso(m["rated_at"]),
    }


def file_correction(
    service: Service,
    principal: Principal,
    grant_id: str,
    *,
    record_column: str,
    record: str,
    field: str,
    problem: str,
    note: str | None = None,
) -> dict[str, Any]:
    """File a correction request on one record's field of a grant's data."""
    from share_api.requests import answer_working_days

    if problem not in PROBLEMS:
        raise FeedbackError(422, f"problem: one of {', '.join(PROBLEMS)}")
    grant = _held_grant(service, grant_id, principal)
    if field not in grant.columns:
        raise FeedbackError(422, "field: not a column of the grant")
    check_record_ref(service, grant, record_column, record)
    now = utc_now()
    row = {
        "id": new_id("cor"),
        "grant_id": grant.id,
        "resource": grant.resource,
        "owner_org": owner_of(service, grant.resource),
        "requester_org": principal.org,
        "requester_user": principal.user_id,
        "record_column": record_column,
        "record": record,
        "field": field,
        "problem": problem,
        "note": scrubbed(note),
        "status": OPEN,
        "filed_at": now,
        "due_at": calendar.answer_due(now, answer_working_days(service.settings)),
    }
    with service.engine.begin() as con:
        con.execute(corrections_table.insert().values(**row))
    service.audit.record(
        "feedback.create", principal.actor, kind="correction", id=row["id"], grant=grant.id,
        resource=grant.resource, field=field, problem=problem, owner=row["owner_org"] or "marts",
    )  # fmt: skip
    return correction_view(row)


def can_answer(principal: Principal, correction: dict[str, Any]) -> bool:
    """The owner department's reviewers answer its corrections; data officers any."""
    if principal.has("data_officer"):
        return True
    owner = correction["owner_org"]
    return owner is not None and principal.org == owner and principal.has("reviewer")


def can_see(principal: Principal, correction: dict[str, Any]) -> bool:
    return principal.org == correction["requester_org"] or can_answer(principal, correction)


def answer_correction(
    service: Service,
    principal: Principal,
    correction_id: str,
    decision: str,
    answer: str | None = None,
) -> dict[str, Any]:
    """The owner's answer: ``accepted`` or ``rejected`` (a rejection gives its reason)."""
    if decision not in DECISIONS:
        raise FeedbackError(422, f"decision: one of {', '.join(DECISIONS)}")
    text = scrubbed(answer)
    if decision == REJECTED and text is None:
        raise FeedbackError(422, "answer: a rejection gives its reason")
    found = get_correction(service, correction_id, principal)
    if not can_answer(principal, found):
        raise FeedbackError(403, "only the owner department's reviewers or a data officer answer")
    now = utc_now()
    with service.engine.begin() as con:
        done = con.execute(
            corrections_table.update()
            .where(corrections_table.c.id == correction_id, corrections_table.c.status == OPEN)
            .values(status=ANSWERED, decision=decision, answer=text,
                    answered_by=principal.actor, answered_at=now)
        ).rowcount  # fmt: skip
    if not done:
        raise FeedbackError(409, "this correction was answered already")
    service.audit.record(
        "feedback.answer", principal.actor, id=correction_id, grant=found["grant_id"],
        resource=found["resource"], field=found["field"], decision=decision,
    )  # fmt: skip
    return get_correction(service, correction_id, principal)


def correction_view(row: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """What the API shows of a correction (the record as the grantee named it)."""
    m = row if isinstance(row, dict) else row._mapping
    due = aware(m["due_at"])
    overdue = m["status"] == OPEN and due is not None and due <= (now or utc_now())
    return {
        "id": m["id"],
        "grant_id": m["grant_id"],
        "resource": m["resource"],
        "owner_org": m["owner_org"],
        "requester_org": m["requester_org"],
        "requester_user": m["requester_user"],
        "record_column": m["record_column"],
        "record": m["record"],
        "field": m["field"],
        "problem": m["problem"],
        "problem_zh": PROBLEMS[m["problem"]],
        "note": m["note"],
        "status": m["status"],
        "filed_at": _iso(m["filed_at"]),
        "due_at": _iso(due),
        "overdue": overdue,
        "decision": m.get("decision"),
        "answer": m.get("answer"),
        "answered_by": m.get("answered_by"),
        "answered_at": _iso(m.get("answered_at")),
    }


def get_correction(
    service: Service, correction_id: str, principal: Principal | None = None
) -> dict[str, Any]:
    """One correction (404 when absent or not the caller's to see)."""
    with service.engine.connect() as con:
        row = con.execute(
            corrections_table.select().where(corrections_table.c.id == correction_id)
        ).first()
    if row is None:
        raise FeedbackError(404, "no such correction")
    shown = correction_view(row)
    if principal is not None and not can_see(principal, shown):
        raise FeedbackError(404, "no such correction")
    return shown


def list_corrections(
    service: Service, principal: Principal, *, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The corrections the caller filed or answers (a data officer: all), newest first."""
    t = corrections_table
    query = t.select().order_by(t.c.filed_at.desc()).limit(limit)
    if status is not None:
        query = query.where(t.c.status == status)
    if not principal.has("data_officer"):
        mine = t.c.requester_org == principal.org
        if principal.has("reviewer"):
            mine = sa.or_(mine, t.c.owner_org == principal.org)
        query = query.where(mine)
    with service.engine.connect() as con:
        return [correction_view(r) for r in con.execute(query)]


def list_ratings(service: Service, principal: Principal, grant_id: str) -> list[dict[str, Any]]:
    """The ratings of a grant the caller's organisation holds."""
    grant = _held_grant(service, grant_id, principal)
    t = ratings_table
    with service.engine.connect() as con:
        rows = con.execute(t.select().where(t.c.grant_id == grant.id).order_by(t.c.rated_at))
        return [_rating_view(r) for r in rows]


def open_corrections(service: Service, org: str | None) -> list[dict[str, Any]]:
    """Open correction requests to ``org`` (a department; None: every one, marts' too) as
    attention items: kind, id, what, since, due, link — never a value of the data."""
    t = corrections_table
    query = t.select().where(t.c.status == OPEN).order_by(t.c.filed_at)
    if org is not None:
        query = query.where(t.c.owner_org == org)
    now = utc_now()
    with service.engine.connect() as con:
        rows = [correction_view(r, now) for r in con.execute(query)]
    return [
        {
            "kind": "correction",
            "id": c["id"],
            "what": f"{c['resource']}.{c['field']}",
            "problem": c["problem"],
            "requester": f"{c['requester_org']}/{c['requester_user']}",
            "since": c["filed_at"],
            "due_at": c["due_at"],
            "overdue": c["overdue"],
            "link": f"/corrections/{c['id']}",
        }
        for c in rows
    ]
