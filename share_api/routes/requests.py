"""HTTP routes: requests and reviews (数据申请—审核), and administrators' operations under the
two-person rule. The rules are :mod:`share_api.requests`; here only HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from share_api import requests as rq
from share_api.deps import Principal, PrincipalDep, ServiceDep, require

router = APIRouter(tags=["requests"])

Scalar = (
    Annotated[str, Field(max_length=2000)]
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
    | None
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRequest(_Body):
    resource: str = Field(
        max_length=200, description="<dept>.<dataset> or marts.<name>, as the catalogue lists it"
    )
    columns: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=500, description="the fields asked for; default every field"
    )
    unmasked: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=500,
        description="sensitive fields asked for in clear (an L3/L4 field in clear is reviewed)",
    )
    row_filter: dict[str, Any] | None = Field(
        default=None, description="the row scope, structured (see the grants' row filters)"
    )
    purpose: str = Field(min_length=1, max_length=2000)
    legal_basis: str = Field(
        min_length=1, max_length=2000, description="legal basis or duty item (履职事项)"
    )
    case_reference: str | None = Field(default=None, max_length=200)
    period_end: dt.date | None = Field(default=None, description="the grant ends after this day")


class Decision(_Body):
    decision: Literal["approve", "refuse"]
    reason: str | None = Field(default=None, max_length=2000)


class NewAdminOperation(_Body):
    kind: Literal[rq.ADMIN_KINDS]  # type: ignore[valid-type]
    payload: dict[str, Scalar] = Field(default_factory=dict, max_length=50)


class OperationOpened(BaseModel):
    id: str


def _answer(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except rq.RequestError as exc:
        raise HTTPException(exc.status, str(exc)) from None


@router.post("/requests", status_code=201)
def create_request(
    body: NewRequest,
    service: ServiceDep,
    principal: Annotated[Principal, Depends(require("requester"))],
) -> dict[str, Any]:
    """Ask for a resource: refused at once when not shareable (with the recorded legal
    basis), granted at once when unconditional (sensitive fields masked), else reviewed
    within the answer deadline."""
    return _answer(rq.create_request, service, principal, **body.model_dump())


@router.get("/requests")
def list_requests(
    service: ServiceDep,
    principal: PrincipalDep,
    status: Annotated[
        Literal["pending", "approved", "granted", "refused", "withdrawn", "used"] | None,
        Query(),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """The requests the caller may see: its own organisation's, those for its department's
    data (reviewers), every data request (data officers), admin operations (admins)."""
    return rq.list_requests(service, principal, status=status, limit=limit)


@router.get("/requests/{request_id}")
def get_request(request_id: str, service: ServiceDep, principal: PrincipalDep) -> dict[str, Any]:
    return _answer(rq.get_request, service, request_id, principal)


@router.post("/requests/{request_id}/reviews")
def review_request(
    request_id: str,
    body: Decision,
    service: ServiceDep,
    principal: Annotated[Principal, Depends(require("reviewer", "data_officer", "admin"))],
) -> dict[str, Any]:
    """Approve or refuse (with a reason). L3/L4 fields need the owner department's reviewer
    and a data officer, two different people; an admin operation a second administrator."""
    return _answer(rq.review, service, principal, request_id, body.decision, body.reason)


@router.post("/requests/{request_id}/withdraw")
def withdraw_request(
    request_id: str, service: ServiceDep, principal: PrincipalDep
) -> dict[str, Any]:
    return _answer(rq.withdraw, service, principal, request_id)


@router.post("/requests/{request_id}/deliver")
def retry_delivery(
    request_id: str,
    service: ServiceDep,
    principal: Annotated[Principal, Depends(require("reviewer", "data_officer"))],
) -> dict[str, Any]:
    """Make the grant of an approved request again after its delivery failed."""
    return _answer(rq.retry_delivery, service, principal, request_id)


@router.post("/admin/operations", status_code=201)
def open_admin_operation(
    body: NewAdminOperation,
    service: ServiceDep,
    principal: Annotated[Principal, Depends(require("admin"))],
) -> OperationOpened:
    """Open a key rotation or re-key, a role grant or a change to a grant: a second
    administrator approves it (``POST /requests/{id}/reviews``), then the operation takes
    the approved id once."""
    return OperationOpened(
        id=_answer(rq.open_admin_operation, service, principal, body.kind, body.payload)
    )
