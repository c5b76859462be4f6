"""HTTP routes: community workers' worklist (社区走访工作清单) — the elderly alert of their
community, reveals, explanations and visit outcomes. The rules are :mod:`share_api.worklist`;
here only HTTP."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from masking.pseudonym import PSEUDONYM_PATTERN
from share_api import worklist as wl
from share_api.deps import Principal, PrincipalDep, ServiceDep, require

router = APIRouter(tags=["worklist"])
T = TypeVar("T")

PersonId = Annotated[str, Path(pattern=PSEUDONYM_PATTERN, description="the hub pseudonym")]
UserId = Annotated[str, Path(max_length=64)]


class VisitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: wl.Outcome = Field(
        description="; ".join(f"{k.value}: {v}" for k, v in wl.OUTCOME_LABELS_ZH.items())
    )
    needs_found: list[str] = Field(
        default_factory=list,
        max_length=wl.MAX_NEEDS,
        description="need codes found (marts.need_scores' need), with need_found only",
    )
    visited_at: dt.datetime | None = Field(default=None, description="default: now")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    community_code: str = Field(pattern=r"^\d{12}$", description="a community of this street")


async def _answer(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call`` in the thread pool, a refusal answered with its status."""
    try:
        return await run_in_threadpool(call, *args, **kwargs)
    except wl.WorklistError as exc:
        raise HTTPException(exc.status, exc.message) from None


@router.get("/worklist")
async def read_worklist(principal: PrincipalDep, service: ServiceDep) -> dict[str, Any]:
    """Your community's elderly alert: who to visit and why, with the last visit's outcome
    (residents who refused automated assessment are never on it)."""
    return await _answer(wl.worklist, service, principal)


@router.post("/worklist/residents/{person_id}/reveal")
async def reveal(person_id: PersonId, principal: PrincipalDep, service: ServiceDep) -> dict:
    """Name, phone and address of a resident of your community, to visit them (audited)."""
    return await _answer(wl.reveal, service, principal, person_id)


@router.get("/worklist/residents/{person_id}/explanation")
async def explain(person_id: PersonId, principal: PrincipalDep, service: ServiceDep) -> dict:
    """Why a resident of your community is scored or alerted: each need's probability with
    its model version, cut-off and top factors in Chinese (audited). Advice, not a decision."""
    return await _answer(wl.explanation, service, principal, person_id)


@router.post("/worklist/residents/{person_id}/visits", status_code=201)
async def record_visit(
    person_id: PersonId, body: VisitIn, principal: PrincipalDep, service: ServiceDep
) -> dict[str, Any]:
    """Record a visit's outcome for a resident of your community (audited)."""
    return await _answer(
        wl.record_visit,
        service,
        principal,
        person_id,
        body.outcome,
        needs_found=body.needs_found,
        visited_at=body.visited_at,
    )


@router.get("/worklist/visits")
async def list_visits(principal: PrincipalDep, service: ServiceDep) -> list[dict[str, Any]]:
    """The visit outcomes of your community, oldest first."""
    community = await _answer(wl.community_of, service, principal)
    return await run_in_threadpool(wl.visits, service, community)


@router.put("/worklist/workers/{user_id}")
async def assign(
    user_id: UserId,
    body: AssignIn,
    service: ServiceDep,
    principal: Annotated[Principal, Depends(require(*wl.ASSIGNERS))],
) -> dict[str, Any]:
    """Assign a community worker their community (administrators and data officers)."""
    return await _answer(
        wl.assign_community, service, user_id, body.community_code, actor=principal.actor
    )
