"""HTTP routes: grants — list and show the caller's grants, make standing grants on
published marts (front ends), revoke at once."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from share_api import grants
from share_api.deps import Principal, PrincipalDep, ServiceDep, require

router = APIRouter(tags=["grants"])

OVERSEERS = ("data_officer", "admin", "auditor")  # who sees every organisation's grants


class StandingGrant(BaseModel):
    """A standing grant: a front end (or any organisation) reads a published mart."""

    model_config = ConfigDict(extra="forbid")

    grantee_org: str = Field(min_length=2, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")
    resource: str = Field(max_length=160, pattern=r"^marts\.[a-z][a-z0-9_]*$")
    columns: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=500, description="default: every column of the mart"
    )
    row_filter: dict[str, Any] | None = None
    masking: dict[str, str] = Field(default_factory=dict)
    expires_at: dt.datetime | None = None
    rate_per_minute: int | None = Field(default=None, gt=0, le=grants.MAX_RATE_PER_MINUTE)


class Change(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=40)


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=400)


def _visible(principal: Principal, grant: grants.Grant) -> bool:
    return principal.has(*OVERSEERS) or grant.grantee_org == principal.org


@router.get("/grants")
def list_my_grants(principal: PrincipalDep, service: ServiceDep) -> list[dict[str, Any]]:
    """The caller's organisation's grants (a data officer, admin or auditor: every one)."""
    org = None if principal.has(*OVERSEERS) else principal.org
    return [g.as_dict() for g in grants.list_grants(service, org)]


@router.post("/grants", status_code=201)
def create_standing_grant(
    body: StandingGrant,
    service: ServiceDep,
    principal: Annotated[Principal, Depends(require("data_officer", "admin"))],
) -> dict[str, Any]:
    """A standing grant on a published mart (a data officer or an admin makes it)."""
    columns = body.columns
    if columns is None:
        from share_api.views import resolve

        try:
            columns = list(resolve(service.catalogue, body.resource).columns)
        except KeyError:
            raise grants.GrantError(404, "no such resource in the catalogue") from None
    grant_id = grants.create_grant(
        service,
        grantee_org=body.grantee_org,
        resource=body.resource,
        columns=columns,
        row_filter=body.row_filter,
        masking=body.masking,
        expires_at=body.expires_at,
        request_id=None,
        standing=True,
        rate_per_minute=body.rate_per_minute,
        actor=principal.actor,
    )
    return grants.get_grant(service, grant_id).as_dict()


@router.get("/grants/{grant_id}")
def show_grant(grant_id: str, principal: PrincipalDep, service: ServiceDep) -> dict[str, Any]:
    """One grant's terms and status (the grantee's own, or any for an overseer)."""
    grant = grants.get_grant(service, grant_id)
    if grant is None or not _visible(principal, grant):
        raise grants.GrantError(404, "no such grant")
    out = grant.as_dict()
    out["reads"] = len(grants.reads_of(service, grant_id))
    return out


@router.post("/grants/{grant_id}/revoke")
def revoke(
    grant_id: str,
    body: Revocation,
    service: ServiceDep,
    principal: Annotated[Principal, Depends(require(*grants.REVOKERS))],
) -> dict[str, Any]:
    """Revoke now: the next read of the grant is refused. A data officer or admin, or a
    reviewer of the grantee's or the owner's department (``grants.may_revoke``)."""
    grant = grants.get_grant(service, grant_id)
    if grant is None or not grants.may_revoke(principal, grant):
        raise grants.GrantError(404, "no such grant")
    return grants.revoke_grant(service, grant_id, principal.actor, body.reason).as_dict()


@router.post("/grants/{grant_id}/change")
def change(
    grant_id: str,
    body: Change,
    service: ServiceDep,
    principal: Annotated[Principal, Depends(require("admin"))],
) -> dict[str, Any]:
    """Apply a change of a grant's terms that two administrators approved (a ``grant.change``
    operation of ``POST /admin/operations``: columns, row filter, masking, expiry, rate)."""
    return grants.change_grant(service, grant_id, body.request_id, principal.actor).as_dict()
