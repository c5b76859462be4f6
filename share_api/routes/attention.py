"""HTTP routes: what needs the caller's attention (``GET /attention``); the lists are
:mod:`share_api.attention`'s."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from share_api.attention import attention_for
from share_api.deps import PrincipalDep, ServiceDep

router = APIRouter(tags=["attention"])


@router.get("/attention")
def attention(service: ServiceDep, principal: PrincipalDep) -> dict[str, Any]:
    """Failed deliveries, reviews waiting, overdue requests, correction requests and alerts
    for the caller, by the roles they hold."""
    return attention_for(service, principal)
