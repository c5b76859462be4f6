"""The resident-consent page (``/portal/consent``) a community worker fills in WITH the
resident: record a choice — a consent category (``automated_assessment``, the refusal of
need scoring and alert lists, included), the kinds of recipient, declined or allowed, the
channel — and read the resident's standing choices.

The resident is named as the API names them (``routes/consent.py``): by the hub pseudonym,
or by their citizen ID, pseudonymised on arrival by :func:`share_api.consent.resident_pseudonym`
and never stored, logged, put in a URL or shown again. Choices are recorded by
:func:`share_api.consent.record_choice` (audited ``consent.set``), read by
:func:`share_api.consent.current_choices` / :func:`~share_api.consent.history` (audited
``consent.read``), as the API does. A community worker registers and reads the residents
of their own community only (:func:`share_api.worklist.resident_of`, audited when refused).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from catalog.consent import PERSONAL_CATEGORIES, ConsentCategory
from masking.pseudonym import looks_like_pseudonym
from share_api import consent as reg
from share_api import worklist as wl
from share_api.deps import Principal
from share_api.portal.pages_worklist import PersonId, Worker, answer
from share_api.portal.web import PREFIX, form_of, local_time, redirect, render
from share_api.service import Service

router = APIRouter(prefix=PREFIX, include_in_schema=False)

RECIPIENT_KINDS_ZH = {
    "department": "政府部门",
    "frontend": "居民服务应用（前端）",
    "analyst": "数据分析人员",
    "street": "街道办事处",
    "community": "社区居委会",
}
CHOICES_ZH = {reg.Choice.declined: "不同意共享", reg.Choice.allowed: "同意共享"}
ASSESSMENT_CHOICES_ZH = {
    reg.Choice.declined: "拒绝自动化评估",
    reg.Choice.allowed: "接受自动化评估",
}


def _choice_zh(category: str, choice: str) -> str:
    labels = (
        ASSESSMENT_CHOICES_ZH if category == ConsentCategory.automated_assessment else CHOICES_ZH
    )
    return labels[reg.Choice(choice)]


def _form_context() -> dict[str, Any]:
    return {
        "categories": [(c.value, c.label_zh) for c in PERSONAL_CATEGORIES],
        "kinds": [(k, RECIPIENT_KINDS_ZH.get(k, k)) for k in reg.RECIPIENT_KINDS],
        "choices": [(c.value, CHOICES_ZH[c]) for c in reg.Choice],
        "channels": [(c.value, label) for c, label in reg.CHANNEL_LABELS_ZH.items()],
        "default_channel": reg.Channel.grid_worker.value,
    }


@router.get("/consent")
def consent_page(request: Request, principal: Worker) -> HTMLResponse:
    return render(request, "consent/form.html", principal, resident=None, **_form_context())


def _who(service: Service, form: FormData) -> str:
    """The resident's pseudonym from the form: the pseudonym given, or the citizen ID's
    (422 when neither or both, or not valid — the ID is never echoed)."""
    given = str(form.get("pseudonym") or "").strip()
    citizen_id = str(form.get("citizen_id") or "")
    if bool(given) == bool(citizen_id.strip()):
        raise HTTPException(422, "请填写居民编号或身份证号码，二者选一。")
    if given:
        if not looks_like_pseudonym(given):
            raise HTTPException(422, "居民编号格式不正确（20位小写十六进制字符）。")
        return given
    try:
        return reg.resident_pseudonym(service, citizen_id)
    except reg.ConsentError:
        raise HTTPException(422, "身份证号码不正确（GB 11643-1999 校验未通过）。") from None


def _record(service: Service, principal: Principal, who: str, form: FormData) -> int:
    """Record the form's choice for each recipient kind it names (the resident first
    checked to live in the worker's community); how many choices were recorded."""
    wl.resident_of(service, principal, who)
    kinds = [str(k) for k in form.getlist("recipient_kinds")] or list(reg.RECIPIENT_KINDS)
    done = 0
    for kind in dict.fromkeys(kinds):
        try:
            reg.record_choice(
                service,
                pseudonym=who,
                category=str(form.get("category") or ""),
                recipient_kind=kind,
                choice=str(form.get("choice") or ""),
                channel=str(form.get("channel") or ""),
                actor=principal.actor,
            )
        except reg.ConsentError as exc:
            raise HTTPException(422, f"登记未完成：{exc.field} 填写有误。") from None
        done += 1
    return done


@router.post("/consent")
async def record_consent(request: Request, principal: Worker) -> Response:
    form = await form_of(request)
    service: Service = request.app.state.service
    who = await run_in_threadpool(_who, service, form)
    done = await answer(_record, service, principal, who, form)
    return redirect(f"/consent/{who}", f"已登记居民的选择（{done} 项）")


@router.post("/consent/lookup")
async def lookup(request: Request, principal: Worker) -> Response:
    """Find a resident by pseudonym or citizen ID (POSTed: an ID never goes in a URL)."""
    form = await form_of(request)
    service: Service = request.app.state.service
    who = await run_in_threadpool(_who, service, form)
    await answer(wl.resident_of, service, principal, who)
    return redirect(f"/consent/{who}")


def _resident(service: Service, principal: Principal, who: str) -> dict[str, Any]:
    wl.resident_of(service, principal, who)
    service.audit.record("consent.read", principal.actor, pseudonym=who)

    def shown(r: dict) -> dict:
        return {
            **r,
            "kind_zh": RECIPIENT_KINDS_ZH.get(r["recipient_kind"], r["recipient_kind"]),
            "choice_zh": _choice_zh(r["category"], r["choice"]),
            "channel_zh": reg.CHANNEL_LABELS_ZH[reg.Channel(r["channel"])],
            "chosen_local": local_time(r["chosen_at"]),
        }

    return {
        "pseudonym": who,
        "current": [shown(r) for r in reg.current_choices(service, who)],
        "history": [shown(r) for r in reg.history(service, who)],
    }


@router.get("/consent/{pseudonym}")
async def resident_page(request: Request, pseudonym: PersonId, principal: Worker) -> HTMLResponse:
    service: Service = request.app.state.service
    resident = await answer(_resident, service, principal, pseudonym)
    return render(request, "consent/form.html", principal, resident=resident, **_form_context())
