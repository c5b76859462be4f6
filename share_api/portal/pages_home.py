"""The start page (``/portal/``): the signed-in person's "what needs attention" list
(:func:`share_api.attention.attention_for`, the list ``GET /attention`` answers), each item
linked to the portal page where it is handled, overdue ones first; a leader's link to the
dashboards; a community worker's count of their worklist."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from share_api import worklist as wl
from share_api.attention import attention_for
from share_api.db import utc_now
from share_api.deps import Principal
from share_api.portal.web import PREFIX, PortalUser, local_time, moment, render
from share_api.service import Service

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# the attention's sections in the order a person handles them, with their Chinese headings
SECTIONS_ZH: dict[str, str] = {
    "overdue": "已超过答复期限的申请",
    "reviews_waiting": "等待您审核的申请",
    "failed_deliveries": "已批准但未能交付的申请",
    "corrections": "待答复的纠错申请",
    "alerts": "待处理的异常告警",
}
KIND_ZH = {
    "request": "数据申请",
    "admin_operation": "管理操作申请",
    "correction": "纠错申请",
    "alert": "异常告警",
}


def _portal_link(item: dict[str, Any], principal: Principal, to_review: set[str]) -> str | None:
    """Where the portal handles an attention item (None: nowhere in the portal): a request
    the person can review now at its review, another at the request's page."""
    kind = item.get("kind")
    if kind in ("request", "admin_operation"):
        if item["id"] in to_review:
            return f"{PREFIX}/reviews/{item['id']}"
        return f"{PREFIX}/requests/{item['id']}"
    if kind == "correction":
        return f"{PREFIX}/feedback"
    if kind == "alert" and principal.has("auditor"):
        return f"{PREFIX}/audit"
    if kind == "alert" and principal.has("requester"):  # about their organisation's reads
        return f"{PREFIX}/grants"
    return None


def _name_zh(service: Service, item: dict[str, Any]) -> str | None:
    """The Chinese name of the dataset a request item is about (None: not a dataset)."""
    if item.get("kind") != "request":
        return None
    try:
        return service.catalogue.dataset(str(item.get("what")))[1].name_zh
    except KeyError:
        return None


def _is_overdue(item: dict[str, Any], now: dt.datetime) -> bool:
    due = moment(item.get("due_at"))
    return bool(item.get("overdue")) or (due is not None and due < now)


def attention_page(service: Service, principal: Principal) -> dict[str, Any]:
    """The attention list as the start page shows it: sections in :data:`SECTIONS_ZH`'s
    order, each item with its portal link and Beijing times, overdue items first, then by
    deadline (the earliest first)."""
    found = attention_for(service, principal)
    now = utc_now()
    to_review = {item["id"] for item in found["sections"]["reviews_waiting"]}
    sections = []
    for name, heading in SECTIONS_ZH.items():
        items = []
        for item in found["sections"][name]:
            due = moment(item.get("due_at"))
            items.append(
                {
                    **item,
                    "kind_zh": KIND_ZH.get(item.get("kind"), item.get("kind")),
                    "what_zh": _name_zh(service, item),
                    "href": _portal_link(item, principal, to_review),
                    "overdue_now": _is_overdue(item, now),
                    "due_local": local_time(due),
                    "due": due,
                    "since_local": local_time(item.get("since")),
                }
            )
        # overdue first, then the earliest deadline; items without one last
        items.sort(key=lambda i: (not i["overdue_now"], i["due"] is None, i["due"] or now))
        sections.append({"name": name, "heading": heading, "items": items})
    return {"sections": sections, "total": sum(found["counts"].values())}


def _worklist_count(service: Service, principal: Principal) -> int | None:
    """How many residents are on the worker's worklist (None: no community assigned)."""
    try:
        return len(wl.worklist(service, principal)["rows"])
    except wl.WorklistError:
        return None


@router.get("/")
async def home(request: Request, principal: PortalUser) -> HTMLResponse:
    service: Service = request.app.state.service
    attention = await run_in_threadpool(attention_page, service, principal)
    worklist_count = None
    if principal.has(wl.ROLE):
        worklist_count = await run_in_threadpool(_worklist_count, service, principal)
    return render(
        request,
        "home.html",
        principal,
        attention=attention,
        is_leader=principal.has("leader"),
        is_worker=principal.has(wl.ROLE),
        worklist_count=worklist_count,
    )
