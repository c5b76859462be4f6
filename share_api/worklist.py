"""Community workers' worklist (社区走访工作清单): the elderly alert of their own community,
revealing whom to visit, the reasons of a score, and the visit's outcome.

A person holding the role ``community_worker`` is assigned one community
(:data:`worker_communities`, by an administrator or data officer: :func:`assign_community`)
and then, only for that community:

- reads its worklist (:func:`worklist`): the rows of ``marts.elderly_alert`` of the
  community, without the residents who refused automated assessment
  (``share_api.consent.excluded_residents``, the same anti-join every grant's read makes),
  each with the latest visit outcome recorded;
- reveals a resident's name, phone and address (:func:`reveal`) — only a resident of the
  community (``marts.resident_profile``'s community): the golden record's ciphertexts are
  decrypted for the purpose ``community_visit`` (one ``decrypt`` record per column) and the
  reveal itself is audited (``worklist.reveal``) on the signed audit log;
- reads the explanation of a resident's scores and alert (:func:`explanation`: the need
  model's phrases, its version and cut-off; audited ``worklist.explain``): a score is advice
  to the worker who acts on it, never a decision (PIPL art. 24);
- records a visit's outcome (:func:`record_visit`; audited ``worklist.visit``): the measure
  of the alert's precision on a real street (``marts.alert_quality.against_visits``).

Errors are :class:`WorklistError` with the HTTP status a route answers with; messages name
fields, never a value. Residents are named by the hub's pseudonym only.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import polars as pl
import sqlalchemy as sa

from catalog.street import load_street
from lakehouse.lake import has_table
from masking.crypto import ciphertext_suite, decrypt_series
from masking.pseudonym import looks_like_pseudonym
from share_api.consent import excluded_residents
from share_api.db import aware, metadata, new_id, utc_now
from share_api.deps import Principal
from share_api.views import CryptoAudit, lake_reader

if TYPE_CHECKING:
    from share_api.service import Service

ROLE = "community_worker"
ASSIGNERS = ("admin", "data_officer")
PURPOSE = "community_visit"  # masking.crypto.DECRYPT_PURPOSES
ALERT, SCORES, PROFILE = "elderly_alert", "need_scores", "resident_profile"
# what a reveal shows: its name → the person concepts whose golden attribute holds it (the
# first one with a value); a golden attribute is the column named after the concept
REVEALED = {
    "name": ("person.name",),
    "phone": ("person.mobile",),
    "address": ("person.residence_address", "person.registered_address"),
}
PERSON_TABLE = "curated.person"
# the needs a visit found: need codes as marts.need_scores names them (home_care …)
NEED_CODE = re.compile(r"[a-z][a-z0-9_]{1,39}")
MAX_NEEDS = 8


class Outcome(StrEnum):
    """A visit's outcome (走访结果)."""

    need_found = "need_found"  # 发现需求（已转介）
    no_need = "no_need"  # 已走访，无需求
    not_home = "not_home"  # 未遇
    refused = "refused"  # 居民拒绝走访
    moved = "moved"  # 已不在此居住

    @property
    def visited(self) -> bool:
        """The resident was seen: the outcome says whether the alert was right."""
        return self in (Outcome.need_found, Outcome.no_need)


OUTCOME_LABELS_ZH = {
    Outcome.need_found: "发现需求",
    Outcome.no_need: "已走访，无需求",
    Outcome.not_home: "未遇",
    Outcome.refused: "拒绝走访",
    Outcome.moved: "已不在此居住",
}

worker_communities = sa.Table(
    "worker_communities",
    metadata,
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("community_code", sa.String(12), nullable=False),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("assigned_by", sa.Text, nullable=False),
)

visit_outcomes = sa.Table(
    "visit_outcomes",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("person_id", sa.String(64), nullable=False, index=True),
    sa.Column("community_code", sa.String(12), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("needs_found", sa.JSON, nullable=False),
    sa.Column("on_alert", sa.Boolean, nullable=False),
    sa.Column("alert_as_of", sa.Date),
    sa.Column("visited_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False),
)


class WorklistError(Exception):
    """A worklist operation refused: ``status`` for the route; the message names fields."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- who works where ----------------------------------------------------------------------------
def assign_community(service: Service, user_id: str, community_code: str, *, actor: str) -> dict:
    """Assign a community worker their one community (replacing any earlier; audited
    ``worklist.assign``)."""
    from share_api.principals import get_user

    if community_code not in load_street(service.settings.street_file).community_codes:
        raise WorklistError(422, "community_code is not a community of this street")
    user = get_user(service, user_id)
    if user is None:
        raise WorklistError(404, "no person with this user_id")
    if ROLE not in user["roles"]:
        raise WorklistError(409, f"the person does not hold the role {ROLE}")
    row = {"user_id": user_id, "community_code": community_code, "assigned_at": utc_now(),
           "assigned_by": actor}  # fmt: skip
    with service.engine.begin() as con:
        con.execute(worker_communities.delete().where(worker_communities.c.user_id == user_id))
        con.execute(worker_communities.insert().values(**row))
    service.audit.record("worklist.assign", actor, user=user_id, community=community_code)
    return row


def community_of(service: Service, principal: Principal) -> str:
    """The community the caller works for (403 without the role or an assignment)."""
    if not principal.has(ROLE):
        raise WorklistError(403, f"this needs the role {ROLE}")
    q = sa.select(worker_communities.c.community_code).where(
        worker_communities.c.user_id == principal.user_id
    )
    with service.engine.connect() as con:
        found = con.execute(q).scalar()
    if found is None:
        raise WorklistError(403, "no community is assigned to this community worker")
    return found


# -- reading the lake -----------------------------------------------------------------------------
def _query(service: Service, sql: str, params: list) -> pl.DataFrame:
    cur = lake_reader(service).cursor()
    try:
        return cur.execute(sql, params).pl()
    finally:
        cur.close()


def _mart(service: Service, name: str, where: str, params: list) -> pl.DataFrame:
    """Rows of ``marts.<name>`` meeting ``where`` (empty when the mart is not built yet)."""
    cur = lake_reader(service).cursor()
    try:
        if not has_table(cur, "marts", name):
            return pl.DataFrame()
        return cur.execute(f'SELECT * FROM marts."{name}" WHERE {where}', params).pl()
    finally:
        cur.close()


def _without_refusals(service: Service, principal: Principal, name: str, frame: pl.DataFrame):
    """``frame`` (rows of ``marts.<name>``) without the residents its grants leave out."""
    if frame.is_empty():
        return frame
    exclusion = excluded_residents(service, f"marts.{name}", principal.org_kind)
    return pl.from_arrow(exclusion.filter_arrow(frame.to_arrow()))


def resident_of(service: Service, principal: Principal, person_id: str) -> str:
    """The caller's community, once the resident is known to live in it (404 for a
    malformed pseudonym, 403 for a resident of another community or none: audited)."""
    community = community_of(service, principal)
    if not looks_like_pseudonym(person_id):
        raise WorklistError(404, "person_id is not a hub pseudonym")
    found = _mart(service, PROFILE, "person_id = ?", [person_id])
    if found.is_empty() or found["community_code"][0] != community:
        service.audit.record("worklist.refused", principal.actor, person=person_id,
                             community=community)  # fmt: skip
        raise WorklistError(403, "the resident does not live in your community")
    return community


def _latest_visits(service: Service, community: str) -> dict[str, dict]:
    rows = visits(service, community)
    return {r["person_id"]: r for r in rows}  # oldest first: the latest wins


# -- the worklist ---------------------------------------------------------------------------------
def worklist(service: Service, principal: Principal) -> dict[str, Any]:
    """The elderly alert of the caller's community (see the module doc); audited."""
    community = community_of(service, principal)
    alert = _mart(service, ALERT, "community_code = ?", [community])
    alert = _without_refusals(service, principal, ALERT, alert)
    latest = _latest_visits(service, community)
    rows = [
        {**r, "last_outcome": (latest.get(r["person_id"]) or {}).get("outcome")}
        for r in alert.iter_rows(named=True)
    ]
    service.audit.record("worklist.read", principal.actor, community=community, rows=len(rows))
    return {"community_code": community, "rows": rows}


def _plain(
    service: Service, principal: Principal, record: pl.DataFrame, column: str, person_id: str
) -> str:
    """The golden record's ``column`` of one resident in clear (decrypted for
    ``community_visit`` when it is ciphertext: one ``decrypt`` audit record)."""
    value = record[column][0]
    if ciphertext_suite(value) is None:
        return value
    return decrypt_series(
        record[column],
        service.keyring,
        column=f"{PERSON_TABLE}.{column}",
        purpose=PURPOSE,
        actor=principal.actor,
        audit=CryptoAudit(service),
        rows=[person_id],
    )[0]


def reveal(service: Service, principal: Principal, person_id: str) -> dict[str, Any]:
    """Name, phone and address of a resident of the caller's community (audited)."""
    resident_of(service, principal, person_id)
    columns = _query(service, f"DESCRIBE {PERSON_TABLE}", [])["column_name"].to_list()
    wanted = {c.partition(".")[2] for cs in REVEALED.values() for c in cs} & set(columns)
    record = _query(
        service,
        f"SELECT {', '.join(sorted(wanted))} FROM {PERSON_TABLE} WHERE person_id = ?",
        [person_id],
    )
    if record.is_empty():
        raise WorklistError(404, "no golden record of this resident")
    shown: dict[str, str | None] = dict.fromkeys(REVEALED)
    for what, concepts in REVEALED.items():  # the first attribute holding a value, only it
        held = [c for c in (x.partition(".")[2] for x in concepts) if c in wanted
                and record[c][0] is not None]  # fmt: skip
        if held:
            shown[what] = _plain(service, principal, record, held[0], person_id)
    service.audit.record("worklist.reveal", principal.actor, person=person_id,
                         fields=",".join(k for k, v in shown.items() if v))  # fmt: skip
    return {"person_id": person_id, **shown}


def explanation(service: Service, principal: Principal, person_id: str) -> dict[str, Any]:
    """Why a resident of the caller's community is scored or alerted: each need's
    probability with the model version, cut-off and the top factors in Chinese, and the
    alert's reason (audited ``worklist.explain``)."""
    resident_of(service, principal, person_id)
    scores = _without_refusals(
        service, principal, SCORES, _mart(service, SCORES, "person_id = ?", [person_id])
    )
    alert = _without_refusals(
        service, principal, ALERT, _mart(service, ALERT, "person_id = ?", [person_id])
    )
    service.audit.record("worklist.explain", principal.actor, person=person_id,
                         scores=scores.height, alerted=not alert.is_empty())  # fmt: skip
    return {
        "person_id": person_id,
        "alert": None if alert.is_empty() else alert.row(0, named=True),
        "scores": list(scores.iter_rows(named=True)),
    }


# -- visits ---------------------------------------------------------------------------------------
def record_visit(
    service: Service,
    principal: Principal,
    person_id: str,
    outcome: Outcome | str,
    *,
    needs_found: list[str] | None = None,
    visited_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Record a visit's outcome for a resident of the caller's community (audited)."""
    community = resident_of(service, principal, person_id)
    outcome = Outcome(outcome)
    needs = sorted(set(needs_found or []))
    if len(needs) > MAX_NEEDS or not all(NEED_CODE.fullmatch(n) for n in needs):
        raise WorklistError(422, f"needs_found: at most {MAX_NEEDS} need codes (snake_case)")
    if needs and outcome is not Outcome.need_found:
        raise WorklistError(422, "needs_found: only with the outcome need_found")
    now = utc_now()
    visited_at = aware(visited_at).astimezone(dt.UTC) if visited_at else now
    if visited_at > now + dt.timedelta(minutes=5):
        raise WorklistError(422, "visited_at lies in the future")
    alert = _without_refusals(
        service, principal, ALERT, _mart(service, ALERT, "person_id = ?", [person_id])
    )
    row = {
        "id": new_id("visit"),
        "person_id": person_id,
        "community_code": community,
        "outcome": outcome.value,
        "needs_found": needs,
        "on_alert": not alert.is_empty(),
        "alert_as_of": None if alert.is_empty() else alert["as_of"][0],
        "visited_at": visited_at,
        "recorded_at": now,
        "recorded_by": principal.actor,
    }
    with service.engine.begin() as con:
        con.execute(visit_outcomes.insert().values(**row))
    service.audit.record("worklist.visit", principal.actor, visit_id=row["id"], person=person_id,
                         outcome=outcome.value, on_alert=row["on_alert"])  # fmt: skip
    return _visit(row)


def _visit(r) -> dict[str, Any]:
    return {**r, "outcome_zh": OUTCOME_LABELS_ZH[Outcome(r["outcome"])],
            "visited_at": aware(r["visited_at"]), "recorded_at": aware(r["recorded_at"])}  # fmt: skip


def visits(service: Service, community: str | None = None) -> list[dict[str, Any]]:
    """Visit outcomes (of one community, or all), oldest first."""
    q = sa.select(visit_outcomes).order_by(visit_outcomes.c.visited_at, visit_outcomes.c.id)
    if community is not None:
        q = q.where(visit_outcomes.c.community_code == community)
    with service.engine.connect() as con:
        return [_visit(r._mapping) for r in con.execute(q)]


def visit_frame(service: Service) -> pl.DataFrame:
    """Every visit outcome as a frame: person_id, on_alert, alert_as_of, outcome,
    visited_at, and whether someone was seen (``visited``) and a need found — the input of
    ``marts.alert_quality.against_visits``, which the caller (``streethub models backtest``)
    hands it to (share_api does not import marts)."""
    rows = [
        {**{k: r[k] for k in ("person_id", "on_alert", "alert_as_of", "outcome", "visited_at")},
         "visited": Outcome(r["outcome"]).visited,
         "need_found": r["outcome"] == Outcome.need_found}
        for r in visits(service)
    ]  # fmt: skip
    return pl.DataFrame(
        rows,
        schema={
            "person_id": pl.String,
            "on_alert": pl.Boolean,
            "alert_as_of": pl.Date,
            "outcome": pl.String,
            "visited_at": pl.Datetime("us", "UTC"),
            "visited": pl.Boolean,
            "need_found": pl.Boolean,
        },
    )


__all__ = [
    "OUTCOME_LABELS_ZH",
    "ROLE",
    "Outcome",
    "WorklistError",
    "assign_community",
    "community_of",
    "explanation",
    "record_visit",
    "resident_of",
    "reveal",
    "visit_frame",
    "visit_outcomes",
    "visits",
    "worker_communities",
    "worklist",
]
