"""HTTP routes: catalogue browsing and Chinese full-text search (目录浏览与检索).

What may be asked for — names, summary, share type with its conditions or legal basis,
consent category, fields with their levels and masking rules, update cycle, quality score —
never a value of the data. Every call is audited (``catalogue.read``); a search query is not
recorded (a person may type anything into it), only its length and the number of hits.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from catalog.consent import ConsentCategory
from catalog.model import Level, ShareType, UpdateCycle
from share_api import catalogue as cat
from share_api.deps import PrincipalDep, ServiceDep

router = APIRouter(tags=["catalogue"])

SHARE_TYPE_ZH = {
    ShareType.unconditional: "无条件共享",
    ShareType.conditional: "有条件共享",
    ShareType.not_shareable: "不予共享",
}


class FieldOut(BaseModel):
    name: str
    label_zh: str
    type: str
    level: str
    masking: str


class QualityOut(BaseModel):
    score: float
    dimensions: dict[str, float]
    computed_at: str | None


class EntryOut(BaseModel):
    resource: str
    kind: Literal["dataset", "mart"]
    resource_code: str | None
    name_zh: str
    name_en: str | None
    summary: str
    owner_org: str | None
    provider_zh: str
    share_type: str
    share_type_zh: str
    share_conditions: str | None
    legal_basis: str | None
    consent_category: str
    consent_category_zh: str
    level: str
    update_cycle: str
    grade: str
    entity: str | None
    field_count: int
    quality: QualityOut | None
    score: float | None = None  # a search hit's relevance
    matched_fields: list[str] = []


class EntryDetail(EntryOut):
    fields: list[FieldOut]
    consumers: list[str]


class CataloguePage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[EntryOut]


class CategoryOut(BaseModel):
    code: str
    label_zh: str
    personal: bool


def _out(entry: cat.Entry, quality: dict[str, cat.Quality], hit: cat.Hit | None = None) -> dict:
    q = quality.get(entry.resource)
    return {
        "resource": entry.resource,
        "kind": entry.kind,
        "resource_code": entry.resource_code,
        "name_zh": entry.name_zh,
        "name_en": entry.name_en,
        "summary": entry.summary,
        "owner_org": entry.owner_org,
        "provider_zh": entry.provider_zh,
        "share_type": entry.share_type.value,
        "share_type_zh": SHARE_TYPE_ZH[entry.share_type],
        "share_conditions": entry.share_conditions,
        "legal_basis": entry.legal_basis,
        "consent_category": entry.consent_category.value,
        "consent_category_zh": entry.consent_category.label_zh,
        "level": entry.level.value,
        "update_cycle": entry.update_cycle,
        "grade": entry.grade,
        "entity": entry.entity,
        "field_count": len(entry.fields),
        "quality": None if q is None else QualityOut(**q.__dict__),
        "score": None if hit is None else hit.score,
        "matched_fields": [] if hit is None else list(hit.matched_fields),
    }


@router.get("/catalogue", response_model=CataloguePage)
def list_catalogue(
    principal: PrincipalDep,
    service: ServiceDep,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="全文检索: words of names, summaries and field labels (all must match)",
        ),
    ] = None,
    kind: Literal["dataset", "mart"] | None = None,
    share_type: ShareType | None = None,
    consent_category: ConsentCategory | None = None,
    owner_org: Annotated[str | None, Query(max_length=40)] = None,
    max_level: Level | None = None,
    update_cycle: UpdateCycle | None = None,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict:
    """Datasets and marts, filtered; with ``q``, the search hits best first."""
    hits = cat.search(service, q) if q and q.strip() else None
    found = (
        [(h.entry, h) for h in hits]
        if hits is not None
        else [(e, None) for e in cat.entries(service)]
    )
    found = [
        (e, h)
        for e, h in found
        if (kind is None or e.kind == kind)
        and (share_type is None or e.share_type is share_type)
        and (consent_category is None or e.consent_category is consent_category)
        and (owner_org is None or e.owner_org == owner_org)
        and (max_level is None or e.level.rank <= max_level.rank)
        and (update_cycle is None or e.update_cycle == update_cycle.value)
    ]
    quality = cat.quality_scores(service)
    page = found[offset : offset + limit]
    service.audit.record(
        "catalogue.read",
        principal.actor,
        view="search" if hits is not None else "list",
        query_chars=len(q or ""),
        results=len(found),
    )
    return {
        "total": len(found),
        "offset": offset,
        "limit": limit,
        "items": [_out(e, quality, h) for e, h in page],
    }


@router.get("/catalogue/consent-categories", response_model=list[CategoryOut])
def consent_categories(principal: PrincipalDep) -> list[dict]:
    """The closed list of consent categories (授权同意类别) with their Chinese labels."""
    return [
        {"code": c.value, "label_zh": c.label_zh, "personal": c.personal} for c in ConsentCategory
    ]


@router.get("/catalogue/{resource}", response_model=EntryDetail)
def catalogue_entry(resource: str, principal: PrincipalDep, service: ServiceDep) -> dict:
    """One dataset (``dept.dataset`` or its resource code) or mart (``marts.<name>``), with
    its fields."""
    try:
        entry = cat.lookup(service, resource)
    except KeyError:
        service.audit.record("catalogue.read", principal.actor, view="entry", found=False)
        raise HTTPException(404, "no such resource in the catalogue") from None
    service.audit.record("catalogue.read", principal.actor, view="entry", resource=entry.resource)
    return {
        **_out(entry, cat.quality_scores(service)),
        "fields": [FieldOut(**f.__dict__) for f in entry.fields],
        "consumers": list(entry.consumers),
    }
