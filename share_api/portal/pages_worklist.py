"""Community workers' worklist (``/portal/worklist``): the elderly alert of the worker's own
community with each resident's reasons, a resident's page (the need model's explanation, the
visits recorded), "显示联系方式" — name, phone and address of one resident, revealed by a
POST and shown once on the page it answers with (never in a URL) — and the visit-outcome
form. Every rule and every audit record is :mod:`share_api.worklist`'s, the functions the
``/worklist`` API routes call; a resident of another community is refused there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from catalog.days import BEIJING
from catalog.street import get_street
from share_api import worklist as wl
from share_api.deps import Principal
from share_api.portal.web import PREFIX, form_of, local_time, needs, redirect, render
from share_api.service import Service

router = APIRouter(prefix=PREFIX, include_in_schema=False)
T = TypeVar("T")

Worker = Annotated[Principal, Depends(needs(wl.ROLE))]
# checked by share_api.worklist.resident_of (a malformed one: its 404, as a page)
PersonId = Annotated[str, Path(max_length=64)]
PHRASE_SEPARATORS = ("；", ";")

# the worklist's refusals in Chinese, by the message share_api.worklist gives
REFUSALS_ZH = {
    "no community is assigned to this community worker": "尚未为您分配社区，请联系管理员或数据专员。",
    "the resident does not live in your community": "该居民不在您负责的社区，无权查看或登记。",
    "person_id is not a hub pseudonym": "居民编号格式不正确。",
    "no golden record of this resident": "未找到该居民的档案。",
}


def refusal_zh(exc: wl.WorklistError) -> HTTPException:
    """A worklist refusal as the portal's error page shows it (Chinese, the same status)."""
    return HTTPException(exc.status, REFUSALS_ZH.get(exc.message, f"未能完成：{exc.message}"))


async def answer(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call`` in the thread pool, a worklist refusal answered as an error page."""
    try:
        return await run_in_threadpool(call, *args, **kwargs)
    except wl.WorklistError as exc:
        raise refusal_zh(exc) from None


def community_name(service: Service, code: str) -> str:
    """The community's name (光华里社区) from the street file; its code if not there."""
    street = get_street(service.settings.street_file)
    return next((c.name + "社区" for c in street.communities if c.code == code), code)


def phrases(text: str | None) -> list[str]:
    """The reasons of an explanation ('独居；近30天门禁出入次数下降62%'), one a phrase."""
    found = [text or ""]
    for sep in PHRASE_SEPARATORS:
        found = [part.strip() for piece in found for part in piece.split(sep)]
    return [p for p in found if p]


def _worklist_rows(service: Service, principal: Principal) -> dict[str, Any]:
    found = wl.worklist(service, principal)
    rows = [
        {
            **r,
            "phrases": phrases(r.get("explanation")),
            "last_outcome_zh": wl.OUTCOME_LABELS_ZH[wl.Outcome(r["last_outcome"])]
            if r.get("last_outcome")
            else "尚未走访",
        }
        for r in found["rows"]
    ]
    rows.sort(key=lambda r: (-(r.get("drop_pct") or 0), r["person_id"]))
    return {
        "community_code": found["community_code"],
        "community_name": community_name(service, found["community_code"]),
        "rows": rows,
    }


@router.get("/worklist")
async def worklist_page(request: Request, principal: Worker) -> HTMLResponse:
    service: Service = request.app.state.service
    found = await answer(_worklist_rows, service, principal)
    return render(request, "worklist/list.html", principal, **found)


def _resident(service: Service, principal: Principal, person_id: str) -> dict[str, Any]:
    """What the resident's page shows: the explanation (audited by the worklist) and the
    visits recorded for the resident in the worker's community."""
    why = wl.explanation(service, principal, person_id)
    community = wl.community_of(service, principal)
    alert = why["alert"]
    scores = sorted(why["scores"], key=lambda s: -(s.get("probability") or 0))
    return {
        "person_id": person_id,
        "community_code": community,
        "alert": alert,
        "alert_phrases": phrases(alert.get("explanation")) if alert else [],
        "scores": [
            {
                **s,
                "phrases": phrases(s.get("explanation")),
                "percent": round(100 * s["probability"]),
            }
            for s in scores
        ],
        "visits": [
            {**v, "visited_local": local_time(v["visited_at"])}
            for v in wl.visits(service, community)
            if v["person_id"] == person_id
        ],
        "outcomes": wl.OUTCOME_LABELS_ZH,
    }


@router.get("/worklist/{person_id}")
async def resident_page(request: Request, person_id: PersonId, principal: Worker) -> HTMLResponse:
    service: Service = request.app.state.service
    found = await answer(_resident, service, principal, person_id)
    return render(request, "worklist/resident.html", principal, revealed=None, **found)


@router.post("/worklist/{person_id}/reveal")
async def reveal(request: Request, person_id: PersonId, principal: Worker) -> HTMLResponse:
    """Name, phone and address of the resident (audited ``worklist.reveal``), shown once on
    this answer — never in a URL, never kept by the page."""
    await form_of(request)
    service: Service = request.app.state.service
    revealed = await answer(wl.reveal, service, principal, person_id)
    found = await answer(_resident, service, principal, person_id)
    return render(request, "worklist/resident.html", principal, revealed=revealed, **found)


def _visited_at(text: str) -> dt.datetime | None:
    """A ``datetime-local`` value (Beijing time) as an aware time; None when left empty."""
    if not text.strip():
        return None
    try:
        return dt.datetime.fromisoformat(text.strip()).replace(tzinfo=BEIJING)
    except ValueError:
        raise HTTPException(422, "走访时间格式不正确。") from None


@router.post("/worklist/{person_id}/visits")
async def record_visit(request: Request, person_id: PersonId, principal: Worker) -> Response:
    form = await form_of(request)
    service: Service = request.app.state.service
    outcome = str(form.get("outcome") or "")
    if outcome not in {o.value for o in wl.Outcome}:
        raise HTTPException(422, "请选择走访结果。")
    await answer(
        wl.record_visit,
        service,
        principal,
        person_id,
        outcome,
        # the needs found count with the outcome "need found" only (the form says so)
        needs_found=[str(n) for n in form.getlist("needs_found")]
        if outcome == wl.Outcome.need_found
        else [],
        visited_at=_visited_at(str(form.get("visited_at") or "")),
    )
    label = wl.OUTCOME_LABELS_ZH[wl.Outcome(outcome)]
    return redirect(f"/worklist/{person_id}", f"已记录走访结果：{label}")
