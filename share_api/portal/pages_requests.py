"""Asking for data and answering (数据申请—审核) in the portal, through the functions the
API's ``/requests`` routes call (``share_api.requests``): one rule, two front doors.

- ``/portal/requests/new?resource=…``: the request form — fields, sensitive fields asked
  in clear, a row scope (one condition, or the API's structured filter as JSON), purpose,
  legal basis, case reference, period — posted to ``create_request``; errors are shown on
  the form in Chinese, naming the field.
- ``/portal/requests`` (我的申请): the person's organisation's requests with status and
  answer deadline; ``/portal/requests/{id}``: one request and its history.
- ``/portal/reviews`` (审核队列): pending requests the reviewer may see;
  ``/portal/reviews/{id}``: what the requester would see if approved (each field under the
  masking the grant would get, ``requests.grant_masking``; the row scope), approve or
  refuse (a reason required). ``requests.review`` applies the two-person rule.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from catalog.days import beijing_day
from catalog.model import Level, MaskingRule
from share_api import requests as rq
from share_api.catalogue import Entry
from share_api.deps import Principal
from share_api.portal.pages_catalogue import LEVEL_ZH, MASKING_ZH
from share_api.portal.web import PREFIX, form_of, local_time, needs, redirect, render
from share_api.principals import get_org
from share_api.rowfilter import AGE_OPS, LIST_OPS, NULL_OPS, OPS
from share_api.service import Service

router = APIRouter(prefix=PREFIX, include_in_schema=False)

Reviewer = Annotated[Principal, Depends(needs("reviewer", "data_officer"))]
Requester = Annotated[Principal, Depends(needs("requester"))]

STATUS_ZH = {
    rq.PENDING: "待审核",
    rq.APPROVED: "已批准（授权生成中）",
    rq.GRANTED: "已授权",
    rq.REFUSED: "未通过",
    rq.WITHDRAWN: "已撤回",
    rq.USED: "已执行",
}
PATH_ZH = {
    rq.UNCONDITIONAL: "无条件共享（即时授权）",
    rq.CONDITIONAL: "有条件共享（需审核）",
    rq.NOT_SHAREABLE: "不予共享",
}
CAPACITY_ZH = {rq.OWNER: "数据提供部门审核人", rq.OFFICER: "数据专员", rq.ADMIN: "管理员"}
DECISION_ZH = {rq.APPROVE: "批准", rq.REFUSE: "不予批准"}
OP_ZH = {
    "eq": "等于",
    "ne": "不等于",
    "lt": "小于",
    "le": "不大于",
    "gt": "大于",
    "ge": "不小于",
    "in": "属于（多个值用逗号分隔）",
    "not_in": "不属于（多个值用逗号分隔）",
    "between": "介于（两个值用逗号分隔，含两端）",
    "is_null": "为空",
    "not_null": "不为空",
    "prefix": "以……开头",
    "age_ge": "年龄不小于（周岁）",
    "age_lt": "年龄小于（周岁）",
}
assert set(OP_ZH) == set(OPS)
FIELD_ZH = {  # the form's fields, as errors name them
    "columns": "申请字段",
    "unmasked": "申请明文的敏感字段",
    "scope": "行范围",
    "purpose": "用途",
    "legal_basis": "法律依据或履职事项",
    "case_reference": "案件或事项编号",
    "period_end": "使用期限",
}
# what share_api.requests answers, in Chinese, by the start of its message
REVIEW_ERRORS_ZH = {
    "nobody reviews their own request": "申请人不能审核自己的申请。",
    "this person has already reviewed": "您已审核过这项申请；第二次批准须由另一个人完成（两人审核）。",
    "this request needs no review of this person's role": "这项申请目前不需要您这一角色审核。",
    "the request is ": "这项申请已不在待审核状态。",
    "no such request": "没有这项申请，或您无权查看。",
}
NUMBER_TYPES = {"integer", "decimal"}
SEPARATORS = re.compile(r"[,，、;；\s]+")


def _entry(service: Service, resource: str) -> Entry:
    try:
        return rq.describe(service, resource)
    except rq.RequestError:
        raise HTTPException(404, "数据目录中没有这项资源") from None


def _name(service: Service, resource: str | None) -> str:
    try:
        return rq.describe(service, resource or "").name_zh
    except rq.RequestError:
        return resource or ""


# -- the row scope --------------------------------------------------------------------------


def _typed_value(text: str, kind: str) -> Any:
    text = text.strip()
    if kind in NUMBER_TYPES:
        try:
            return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
        except ValueError:
            raise ValueError("取值应为数字") from None
    return text


def scope_of(form, entry: Entry) -> dict | None:
    """The row filter the form describes: the JSON of the advanced box, else the one
    condition (field, operator, value) typed by the field's catalogue type; None for all
    rows. ValueError (Chinese) when it cannot be read."""
    raw = str(form.get("scope_json") or "").strip()
    if raw:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError("结构化条件不是有效的 JSON") from None
        if not isinstance(parsed, dict):
            raise ValueError("结构化条件应为一个 JSON 对象")
        return parsed
    name = str(form.get("scope_field") or "")
    if not name:
        return None
    op = str(form.get("scope_op") or "")
    if op not in OPS:
        raise ValueError("请选择条件")
    try:
        kind = entry.field(name).type
    except KeyError:
        raise ValueError("所选字段不属于这项资源") from None
    text = str(form.get("scope_value") or "")
    if op in NULL_OPS:
        return {"field": name, "op": op}
    if not text.strip():
        raise ValueError("请填写条件的取值")
    if op in AGE_OPS:
        if not text.strip().isdigit():
            raise ValueError("年龄应为整数周岁")
        return {"field": name, "op": op, "value": int(text)}
    if op in LIST_OPS or op == "between":
        values = [_typed_value(v, kind) for v in SEPARATORS.split(text.strip()) if v]
        if op == "between" and len(values) != 2:
            raise ValueError("“介于”需要两个值")
        return {"field": name, "op": op, "value": values}
    return {"field": name, "op": op, "value": _typed_value(text, kind)}


def describe_scope(node: dict | None, labels: dict[str, str]) -> str:
    """A row filter in Chinese words (全部行 for none)."""
    if not node:
        return "全部行"
    if "and" in node:
        return "（" + " 并且 ".join(describe_scope(n, labels) for n in node["and"]) + "）"
    if "or" in node:
        return "（" + " 或者 ".join(describe_scope(n, labels) for n in node["or"]) + "）"
    if "not" in node:
        return "并非" + describe_scope(node["not"], labels)
    field = labels.get(node.get("field"), node.get("field"))
    op = OP_ZH.get(node.get("op"), node.get("op")).split("（")[0]
    if "value" not in node:
        return f"{field}{op}"
    value = node["value"]
    shown = "、".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{field} {op} {shown}"


# -- the request form -----------------------------------------------------------------------


def _form_context(service: Service, entry: Entry, values: dict, errors: dict) -> dict:
    return {
        "entry": entry,
        "values": values,
        "errors": errors,
        "field_zh": FIELD_ZH,
        "level_zh": LEVEL_ZH,
        "masking_zh": MASKING_ZH,
        "ops": list(OP_ZH.items()),
        "sensitive": {f.name for f in entry.fields if Level(f.level).sensitive},
        "maskable": {
            f.name
            for f in entry.fields
            if entry.kind == "dataset" and f.masking != MaskingRule.none.value
        },
        "today": beijing_day(dt.datetime.now(dt.UTC)).isoformat(),
        "default_days": rq.DEFAULT_PERIOD_DAYS,
        "max_days": rq.MAX_PERIOD_DAYS,
    }


@router.get("/requests/new")
def request_form(request: Request, principal: Requester, resource: str = "") -> HTMLResponse:
    service: Service = request.app.state.service
    entry = _entry(service, resource)
    values = {"columns": [f.name for f in entry.fields], "unmasked": []}
    return render(
        request,
        "requests/new.html",
        principal,
        **_form_context(service, entry, values, {}),
    )


def _creation_error(exc: rq.RequestError) -> tuple[str, str]:
    """(form field, Chinese message) of what ``create_request`` refused."""
    text = str(exc)
    if text.startswith("row filter"):
        return "scope", f"行范围无法使用（{text}）"
    if text.startswith("period_end"):
        return "period_end", f"使用期限须为今天或以后，且不超过 {rq.MAX_PERIOD_DAYS} 天"
    if text.startswith("not fields of"):
        return "columns", f"所选字段不属于这项资源（{text}）"
    if text.startswith(("asked unmasked", "not masked", "a mart is published masked")):
        return "unmasked", f"明文申请只能针对已勾选且按规则脱敏的敏感字段（{text}）"
    if text.startswith("a request states"):
        return "purpose", "请填写用途和法律依据"
    return "form", f"申请未能提交（{text}）"


@router.post("/requests/new")
async def submit_request(request: Request, principal: Requester) -> Response:
    service: Service = request.app.state.service
    form = await form_of(request)
    entry = _entry(service, str(form.get("resource") or ""))
    names = [f.name for f in entry.fields]
    values: dict[str, Any] = {
        "columns": [c for c in form.getlist("columns") if c in names],
        "unmasked": [c for c in form.getlist("unmasked") if c in names],
        **{
            k: str(form.get(k) or "").strip()
            for k in (
                "purpose",
                "legal_basis",
                "case_reference",
                "period_end",
                "scope_field",
                "scope_op",
                "scope_value",
                "scope_json",
            )
        },
    }
    errors: dict[str, str] = {}
    if not values["columns"]:
        errors["columns"] = "请至少勾选一个申请字段"
    for key in ("purpose", "legal_basis"):
        if not values[key]:
            errors[key] = f"请填写{FIELD_ZH[key]}"
        elif len(values[key]) > 2000:
            errors[key] = f"{FIELD_ZH[key]}不超过 2000 字"
    period = None
    if values["period_end"]:
        try:
            period = dt.date.fromisoformat(values["period_end"])
        except ValueError:
            errors["period_end"] = "使用期限应为日期（年-月-日）"
    scope = None
    try:
        scope = scope_of(form, entry)
    except ValueError as exc:
        errors["scope"] = str(exc)
    if not errors:
        try:
            made = await run_in_threadpool(
                rq.create_request,
                service,
                principal,
                resource=entry.resource,
                purpose=values["purpose"],
                legal_basis=values["legal_basis"],
                columns=values["columns"],
                unmasked=values["unmasked"],
                row_filter=scope,
                case_reference=values["case_reference"][:200] or None,
                period_end=period,
            )
        except rq.RequestError as exc:
            field, message = _creation_error(exc)
            errors[field] = message
        else:
            status = STATUS_ZH.get(made["status"], made["status"])
            return redirect("/requests", f"申请已提交（{made['id']}）：{status}")
    return render(
        request,
        "requests/new.html",
        principal,
        status_code=422,
        **_form_context(service, entry, values, errors),
    )


# -- my requests ----------------------------------------------------------------------------


def _org_name(service: Service, code: str) -> str:
    org = get_org(service, code)
    return org["name"] if org else code


def _row(service: Service, r: dict) -> dict:
    return {
        **r,
        "name_zh": _name(service, r["resource"]),
        "requester_org_name": _org_name(service, r["requester_org"]),
        "status_zh": STATUS_ZH.get(r["status"], r["status"]),
        "submitted": local_time(r["submitted_at"]),
        "due": local_time(r["due_at"]),
        "decided": local_time(r["decided_at"]),
    }


@router.get("/requests")
def my_requests(request: Request, principal: Requester) -> HTMLResponse:
    service: Service = request.app.state.service
    mine = [
        _row(service, r)
        for r in rq.list_requests(service, principal)
        if r["requester_org"] == principal.org
    ]
    return render(request, "requests/mine.html", principal, rows=mine)


def _history(shown: dict) -> list[tuple[str, str]]:
    """(when, what) of a request, oldest first."""
    events = [(local_time(shown["submitted_at"]), f"{shown['requester_user']} 提交申请")]
    for r in shown["reviews"]:
        what = f"{r['reviewer']}（{CAPACITY_ZH.get(r['capacity'], r['capacity'])}）"
        what += DECISION_ZH.get(r["decision"], r["decision"])
        if r["reason"]:
            what += f"：{r['reason']}"
        events.append((local_time(r["decided_at"]), what))
    if shown["status"] != rq.PENDING and shown["decided_at"]:
        what = f"结果：{STATUS_ZH.get(shown['status'], shown['status'])}"
        if shown["status"] == rq.REFUSED and shown["refusal_basis"]:
            what += f"（{shown['refusal_basis']}）"
        events.append((local_time(shown["decided_at"]), what))
    return events


def _shown(service: Service, request_id: str, principal: Principal) -> dict:
    try:
        return rq.get_request(service, request_id, principal)
    except rq.RequestError:
        raise HTTPException(404, "没有这项申请，或您无权查看") from None


def _detail_context(service: Service, shown: dict) -> dict:
    entry = _entry(service, shown["resource"])
    labels = {f.name: f.label_zh for f in entry.fields}
    masking = rq.grant_masking(service, shown)
    return {
        "r": _row(service, shown),
        "entry": entry,
        "path_zh": PATH_ZH,
        "capacity_zh": CAPACITY_ZH,
        "history": _history(shown),
        "scope_zh": describe_scope(shown["row_filter"], labels),
        "fields": [
            {
                "name": c,
                "label": labels.get(c, c),
                "level": LEVEL_ZH[entry.field(c).level],
                "sensitive": Level(entry.field(c).level).sensitive,
                "masking": MASKING_ZH.get(masking.get(c, ""), masking.get(c, "")),
            }
            for c in shown["columns"]
        ],
    }


@router.get("/requests/{request_id}")
def request_page(request: Request, principal: Requester, request_id: str) -> HTMLResponse:
    service: Service = request.app.state.service
    shown = _shown(service, request_id, principal)
    return render(
        request, "requests/detail.html", principal, **_detail_context(service, shown), review=None
    )


@router.post("/requests/{request_id}/withdraw")
async def withdraw(request: Request, principal: Requester, request_id: str) -> Response:
    service: Service = request.app.state.service
    await form_of(request)
    try:
        await run_in_threadpool(rq.withdraw, service, principal, request_id)
    except rq.RequestError as exc:
        return redirect(f"/requests/{request_id}", _review_error(exc))
    return redirect(f"/requests/{request_id}", "申请已撤回")


# -- reviews --------------------------------------------------------------------------------


def _review_error(exc: rq.RequestError) -> str:
    text = str(exc)
    for start, message in REVIEW_ERRORS_ZH.items():
        if text.startswith(start):
            return message
    return f"操作未完成（{text}）"


@router.get("/reviews")
def review_queue(request: Request, principal: Reviewer) -> HTMLResponse:
    service: Service = request.app.state.service
    pending = rq.list_requests(service, principal, status=rq.PENDING)
    rows = [
        {**_row(service, r), "mine": rq.can_review(principal, r), "awaiting_zh": "、".join(
            CAPACITY_ZH.get(a, a) for a in r["awaiting"])}
        for r in pending
        if r["kind"] == rq.DATA
    ]  # fmt: skip
    rows.sort(key=lambda r: (not r["mine"], r["due_at"] or ""))
    return render(request, "requests/queue.html", principal, rows=rows)


def _review_page(
    request: Request, principal: Principal, shown: dict, *, error: str | None = None, **extra
) -> HTMLResponse:
    service: Service = request.app.state.service
    can = rq.can_review(principal, shown)
    why_not = None
    if not can:
        if shown["status"] != rq.PENDING:
            why_not = "这项申请已不在待审核状态。"
        elif (shown["requester_org"], shown["requester_user"]) == (
            principal.org,
            principal.user_id,
        ):
            why_not = REVIEW_ERRORS_ZH["nobody reviews their own request"]
        elif any(r["reviewer"] == principal.actor for r in shown["reviews"]):
            why_not = REVIEW_ERRORS_ZH["this person has already reviewed"]
        else:
            why_not = REVIEW_ERRORS_ZH["this request needs no review of this person's role"]
    return render(
        request,
        "requests/review.html",
        principal,
        status_code=422 if error or extra.get("reason_error") else 200,
        **_detail_context(service, shown),
        review={"can": can, "why_not": why_not, "error": error, **extra},
    )


@router.get("/reviews/{request_id}")
def review_page(request: Request, principal: Reviewer, request_id: str) -> HTMLResponse:
    service: Service = request.app.state.service
    return _review_page(request, principal, _shown(service, request_id, principal))


@router.post("/reviews/{request_id}")
async def decide(request: Request, principal: Reviewer, request_id: str) -> Response:
    service: Service = request.app.state.service
    form = await form_of(request)
    decision = str(form.get("decision") or "")
    reason = str(form.get("reason") or "").strip()[:2000] or None
    try:
        done = await run_in_threadpool(rq.review, service, principal, request_id, decision, reason)
    except rq.RequestError as exc:
        shown = _shown(service, request_id, principal)
        if str(exc).startswith("a refusal states its reason"):
            return _review_page(
                request, principal, shown, reason_error="不予批准时必须填写理由", reason=""
            )
        return _review_page(request, principal, shown, error=_review_error(exc), reason=reason)
    if done["status"] == rq.GRANTED:
        message = "已批准，授权已生成（申请人可在“我的授权”查看）"
    elif done["status"] == rq.PENDING:
        message = "已批准；还需另一位审核人批准（两人审核）"
    else:
        message = f"已处理：{STATUS_ZH.get(done['status'], done['status'])}"
    return redirect("/reviews", message)
