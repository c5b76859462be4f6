"""反馈与纠错 (``/portal/feedback``): the last step of the share loop, by the functions of
the API's feedback routes (:mod:`share_api.feedback`) with the signed-in person.

- a grantee rates the data of a grant its organisation holds (1–5, a remark) and files a
  correction request (校核纠错) on one record's field — the record named as its data shows
  it (a pseudonym, or an L1/L2 value shown in clear: ``feedback.check_record_ref`` decides);
- everyone sees the corrections their organisation filed, with the owner's answer;
- the owner department's reviewers (and data officers) see those addressed to them, each
  open one with its answer form: accepted, or rejected with a reason.

Remarks and answers are scrubbed of identifiers before they are stored (the API's rule).
A refused form is shown again with what was wrong (never a value).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from share_api import feedback as fb
from share_api import grants
from share_api.deps import Principal, ServiceDep
from share_api.portal.pages_grants import grant_terms
from share_api.portal.web import PREFIX, PortalUser, form_of, local_time, redirect, render
from share_api.service import Service

router = APIRouter(prefix=PREFIX, include_in_schema=False)

SCORES_ZH = {5: "5 分：完全满足用途", 4: "4 分：基本满足", 3: "3 分：一般", 2: "2 分：较差",
             1: "1 分：无法使用"}  # fmt: skip
DECISIONS_ZH = {fb.ACCEPTED: "接受（将在下次交付中更正）", fb.REJECTED: "不予采纳（须说明理由）"}
STATUS_ZH = {fb.OPEN: "待答复", fb.ANSWERED: "已答复"}


def held_grants(service: Service, principal: Principal) -> list[grants.Grant]:
    """Grants the person's organisation holds or held (feedback is about data received)."""
    return grants.list_grants(service, principal.org)


def _page(
    request: Request,
    service: Service,
    principal: Principal,
    grant_id: str | None,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    held = held_grants(service, principal)
    chosen = next((g for g in held if g.id == grant_id), None)
    corrections = [_timed(c) for c in fb.list_corrections(service, principal, limit=200)]
    filed = [c for c in corrections if c["requester_org"] == principal.org]
    to_answer = [c for c in corrections if fb.can_answer(principal, c)]
    ratings = [_timed(r) for r in fb.list_ratings(service, principal, chosen.id)] if chosen else []
    return render(
        request,
        "feedback/page.html",
        principal,
        status_code=status_code,
        title="反馈与纠错",
        error=error,
        held=[grant_terms(service, g) for g in held],
        chosen=_chosen(service, chosen),
        ratings=ratings,
        filed=filed,
        to_answer=to_answer,
        problems=fb.PROBLEMS,
        scores=SCORES_ZH,
        decisions=DECISIONS_ZH,
        status_zh=STATUS_ZH,
        max_note=fb.MAX_NOTE,
    )


def _timed(item: dict[str, Any]) -> dict[str, Any]:
    """A correction or rating with its times in Beijing time (``*_local``)."""
    times = ("filed_at", "due_at", "answered_at", "rated_at")
    return {**item, **{k.replace("_at", "_local"): local_time(item[k]) for k in times if k in item}}


def _chosen(service: Service, grant: grants.Grant | None) -> dict[str, Any] | None:
    """The grant the forms are about: its terms, and the column a record is named by by
    default (the first the grant pseudonymises)."""
    if grant is None:
        return None
    terms = grant_terms(service, grant)
    pseudonymised = [c for c in grant.columns if grant.masking.get(c) == "pseudonymise"]
    return {**terms, "record_default": pseudonymised[0] if pseudonymised else None}


@router.get("/feedback")
def feedback_page(
    request: Request, service: ServiceDep, principal: PortalUser, grant: str | None = None
) -> HTMLResponse:
    return _page(request, service, principal, grant)


async def _act(request: Request, service: Service, principal: Principal, grant_id, call):
    """Run ``call`` (a feedback function) off the loop; a refusal shows the page again
    with its reason (422/404/409 …, audited by the app as any 4xx)."""
    try:
        await run_in_threadpool(call)
    except HTTPException as refused:
        detail = refused.detail if isinstance(refused.detail, str) else "提交有误"
        status = refused.status_code
        return await run_in_threadpool(
            lambda: _page(request, service, principal, grant_id, error=detail, status_code=status)
        )
    return None


def _text(form, name: str) -> str:
    return str(form.get(name) or "").strip()


@router.post("/feedback/ratings")
async def rate(request: Request, service: ServiceDep, principal: PortalUser) -> Response:
    form = await form_of(request)
    grant_id = _text(form, "grant_id")
    try:
        score = int(_text(form, "score"))
    except ValueError:
        score = 0
    refused = await _act(
        request, service, principal, grant_id,
        lambda: fb.rate(service, principal, grant_id, score, _text(form, "note") or None),
    )  # fmt: skip
    return refused or redirect(f"/feedback?grant={grant_id}", "评价已提交，谢谢。")


@router.post("/feedback/corrections")
async def file_correction(request: Request, service: ServiceDep, principal: PortalUser) -> Response:
    form = await form_of(request)
    grant_id = _text(form, "grant_id")
    refused = await _act(
        request, service, principal, grant_id,
        lambda: fb.file_correction(
            service, principal, grant_id, record_column=_text(form, "record_column"),
            record=_text(form, "record"), field=_text(form, "field"),
            problem=_text(form, "problem"), note=_text(form, "note") or None,
        ),
    )  # fmt: skip
    return refused or redirect(
        f"/feedback?grant={grant_id}", "纠错申请已提交，数据提供部门将在答复期限内答复。"
    )


@router.post("/feedback/corrections/{correction_id}/answer")
async def answer(
    request: Request, correction_id: str, service: ServiceDep, principal: PortalUser
) -> Response:
    form = await form_of(request)
    refused = await _act(
        request, service, principal, None,
        lambda: fb.answer_correction(
            service, principal, correction_id, _text(form, "decision"),
            _text(form, "answer") or None,
        ),
    )  # fmt: skip
    return refused or redirect("/feedback", "答复已提交。")
