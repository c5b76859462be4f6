"""Finding data (数据目录): ``/portal/catalogue`` searches the catalogue with filters
(department, share type, level, update cycle) through the API's own route function
(``share_api.routes.catalogue.list_catalogue``: the same search, the same results, the same
``catalogue.read`` audit), and ``/portal/catalogue/{resource}`` shows one dataset or mart:
its fields with their Chinese labels and levels, the quality score, its lineage as the
catalogue records it, and — for unconditional data (无条件共享) only — a few masked rows
read through a live grant the viewer's organisation holds by the data route's own read
(``data.read`` record, a ``grant_reads`` row). The way to ask for it is the request form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from catalog.model import Level, ShareType, UpdateCycle
from share_api import catalogue as cat
from share_api import grants
from share_api.deps import Principal
from share_api.portal.web import PREFIX, PortalUser, render
from share_api.principals import client_of
from share_api.routes.catalogue import SHARE_TYPE_ZH, catalogue_entry, list_catalogue
from share_api.routes.data import read_as
from share_api.service import Service

router = APIRouter(prefix=PREFIX, include_in_schema=False)

SAMPLE_ROWS = 5  # rows of an unconditional dataset's sample
HIDDEN = "（敏感字段，不展示）"  # shown instead of an L3/L4 value a grant would give in clear

LEVEL_ZH = {"L1": "L1 公开", "L2": "L2 内部", "L3": "L3 敏感", "L4": "L4 高度敏感"}
UPDATE_CYCLE_ZH = {
    "realtime": "实时",
    "hourly": "每小时",
    "daily": "每日",
    "weekly": "每周",
    "monthly": "每月",
    "quarterly": "每季度",
    "yearly": "每年",
}
MASKING_ZH = {
    "none": "不脱敏（明文）",
    "pseudonymise": "假名化（接收方专用密钥）",
    "encrypt": "加密（仅授权可读）",
    "suppress": "不提供（置空）",
    "mask_id": "证件号遮盖（110105********002X）",
    "mask_document": "证件号遮盖",
    "mask_mobile": "手机号遮盖（138****5678）",
    "mask_name": "姓名遮盖（张*）",
    "mask_address": "地址截至社区",
    "mask_bank_card": "银行卡号遮盖",
    "mask_email": "邮箱遮盖",
    "mask_plate": "车牌遮盖",
    "generalise_age": "年龄分段",
    "generalise_year": "日期泛化到年",
    "generalise_month": "日期泛化到月",
    "generalise_grid": "坐标泛化到网格",
    "generalise_flag": "仅标示是否具有",
    "scrub_text": "自由文本去标识",
}
QUALITY_DIMENSION_ZH = {
    "completeness": "完整性",
    "validity": "有效性",
    "uniqueness": "唯一性",
    "consistency": "一致性",
    "timeliness": "及时性",
    "accuracy": "准确性",
}


def departments(service: Service) -> list[tuple[str, str]]:
    """(code, Chinese name) of every providing department, in catalogue order."""
    found = {e.owner_org: e.provider_zh for e in cat.entries(service) if e.owner_org}
    return list(found.items())


def _choice(value: str | None, allowed) -> str | None:
    """A filter's value if it is one of ``allowed`` (anything else: no filter)."""
    return value if value in allowed else None


@router.get("/catalogue")
def catalogue_page(
    request: Request,
    principal: PortalUser,
    q: str | None = None,
    dept: str | None = None,
    share_type: str | None = None,
    level: str | None = None,
    update_cycle: str | None = None,
) -> HTMLResponse:
    service: Service = request.app.state.service
    depts = departments(service)
    chosen = {
        "q": (q or "").strip()[:200],
        "dept": _choice(dept, {code for code, _ in depts}),
        "share_type": _choice(share_type, {t.value for t in ShareType}),
        "level": _choice(level, {v.value for v in Level}),
        "update_cycle": _choice(update_cycle, {c.value for c in UpdateCycle}),
    }
    found = list_catalogue(
        principal,
        service,
        q=chosen["q"] or None,
        kind=None,
        share_type=ShareType(chosen["share_type"]) if chosen["share_type"] else None,
        consent_category=None,
        owner_org=chosen["dept"],
        max_level=Level(chosen["level"]) if chosen["level"] else None,
        update_cycle=UpdateCycle(chosen["update_cycle"]) if chosen["update_cycle"] else None,
        offset=0,
        limit=500,
    )
    return render(
        request,
        "catalogue/search.html",
        principal,
        chosen=chosen,
        found=found,
        depts=depts,
        share_types=[(t.value, SHARE_TYPE_ZH[t]) for t in ShareType],
        levels=list(LEVEL_ZH.items()),
        cycles=list(UPDATE_CYCLE_ZH.items()),
        cycle_zh=UPDATE_CYCLE_ZH,
        level_zh=LEVEL_ZH,
    )


@dataclass(frozen=True)
class Sample:
    """A few rows of an unconditional resource as the viewer's grant gives them."""

    grant_id: str | None  # None: the organisation holds no live grant on it
    columns: list[str]
    rows: list[list[Any]]
    total: int = 0
    error: str | None = None  # why the grant gave no rows now (its status and kind only)


def _held_grant(service: Service, principal: Principal, resource: str) -> grants.Grant | None:
    """A live grant of the viewer's organisation on ``resource`` (a standing one first)."""
    live = [
        g
        for g in grants.list_grants(service, principal.org)
        if g.resource == resource and g.status() == "live"
    ]
    live.sort(key=lambda g: not g.standing)
    return live[0] if live else None


def read_sample(
    service: Service, principal: Principal, entry: cat.Entry, client: str | None
) -> Sample | None:
    """The first :data:`SAMPLE_ROWS` rows of an unconditional resource through the viewer's
    organisation's live grant, read by the data route's own read (``routes.data.read_as``:
    the grant checked live and within its rate, its view masked as the grant says, a
    durable ``data.read`` record and ``grant_reads`` row). None for other share types; no
    rows without a grant. An L3/L4 value a grant gives in clear is not shown here."""
    if entry.share_type is not ShareType.unconditional:
        return None
    grant = _held_grant(service, principal, entry.resource)
    if grant is None:
        return Sample(None, [], [])
    try:
        answer = read_as(service, principal, grant.id, "json", 0, SAMPLE_ROWS, client=client)
    except grants.GrantError as exc:  # refused or not in the lake now: the page stays
        return Sample(grant.id, [], [], error=f"样例暂时无法读取（{exc.status_code}）")
    page = orjson.loads(answer.body)
    clear = {
        c
        for c in grant.columns
        if grant.masking.get(c) == "none" and Level(entry.field(c).level).sensitive
    }
    columns = list(grant.columns)
    shown = [[HIDDEN if c in clear else row.get(c) for c in columns] for row in page["rows"]]
    return Sample(grant.id, columns, shown, page["total"])


def lineage(service: Service, entry: cat.Entry) -> dict[str, list[tuple[str, str]]]:
    """What the catalogue records of where a resource comes from and goes: a mart's source
    datasets (its ``sources``), a dataset's marts (those naming it among theirs), each as
    (resource, Chinese name)."""
    marts = cat.marts_of(service)
    if entry.kind == "mart":
        mart = marts[entry.resource.removeprefix(cat.MART_PREFIX)]
        refs = dict.fromkeys(ref for refs in mart.sources.values() for ref in refs)
        return {"from": [(r, _name(service, r)) for r in refs], "to": []}
    feeds = [
        (cat.MART_PREFIX + m.name, m.name_zh)
        for m in marts.values()
        if any(entry.resource in refs for refs in m.sources.values())
    ]
    return {"from": [], "to": feeds}


def _name(service: Service, ref: str) -> str:
    try:
        return cat.lookup(service, ref).name_zh
    except KeyError:
        return ref


@router.get("/catalogue/{resource}")
def dataset_page(request: Request, principal: PortalUser, resource: str) -> HTMLResponse:
    service: Service = request.app.state.service
    try:
        detail = catalogue_entry(resource, principal, service)  # audited either way
    except HTTPException:
        raise HTTPException(404, "数据目录中没有这项资源") from None
    entry = cat.lookup(service, detail["resource"])
    sample = read_sample(service, principal, entry, client_of(request))
    labels = {f.name: f.label_zh for f in entry.fields}
    return render(
        request,
        "catalogue/dataset.html",
        principal,
        d=detail,
        sample=sample,
        labels=labels,
        lineage=lineage(service, entry),
        level_zh=LEVEL_ZH,
        masking_zh=MASKING_ZH,
        cycle_zh=UPDATE_CYCLE_ZH,
        dimension_zh=QUALITY_DIMENSION_ZH,
        can_request=principal.has("requester") and entry.share_type is not ShareType.not_shareable,
        sensitive=[f.name for f in entry.fields if Level(f.level).sensitive],
    )
