"""HTTP routes: administration of organisations, people, roles and tokens.

What raises a privilege takes two administrators (seed §6.1): a role is given only with
an approved ``role.grant`` operation (``POST /admin/operations`` with ``{"user", "role"}``,
approved by a second administrator at ``POST /requests/{id}/reviews``), used once. What
lowers one (taking a role away, disabling a person, revoking a token) takes one. A new
person starts without roles. An administrator hands a new person their first token (once:
afterwards the person makes their own at ``POST /tokens``, so no administrator can sign in
as someone who already has); a lost one is replaced on the server (``streethub admin
token``). Every change is audited by :mod:`share_api.principals`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from share_api import principals as pr
from share_api.db import aware
from share_api.deps import OVERSEERS, ROLES, Principal, ServiceDep, require
from share_api.routes.auth import IssuedTokenOut, NewToken, TokenInfo, token_info

router = APIRouter(prefix="/admin", tags=["admin"])

Admin = Annotated[Principal, Depends(require("admin"))]
Overseer = Annotated[Principal, Depends(require(*OVERSEERS))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Org(BaseModel):
    code: str
    name: str
    kind: str
    created_at: dt.datetime


class NewOrg(_Body):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["frontend", "analyst", "department"]


class Person(BaseModel):
    id: str
    org: str
    org_kind: str
    name: str
    roles: list[str]
    created_at: dt.datetime
    disabled_at: dt.datetime | None = None


class NewPerson(_Body):
    org: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    name: str = Field(min_length=1, max_length=200)
    user_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{1,63}$")


class RoleGrant(_Body):
    role: Literal[ROLES]  # type: ignore[valid-type]
    operation: str = Field(
        max_length=64, description="the id of the approved role.grant operation for this"
    )


def _org(row: dict) -> Org:
    return Org(**{**row, "created_at": aware(row["created_at"])})


def _person(row: dict) -> Person:
    disabled = row.get("disabled_at")
    return Person(
        id=row["id"],
        org=row["org"],
        org_kind=row["org_kind"],
        name=row["name"],
        roles=row["roles"],
        created_at=aware(row["created_at"]),
        disabled_at=aware(disabled) if disabled else None,
    )


def _person_or_404(service, user_id: str) -> dict:
    user = pr.get_user(service, user_id)
    if user is None:
        raise HTTPException(404, "no such person")
    return user


@router.get("/orgs")
def list_orgs(service: ServiceDep, _who: Overseer) -> list[Org]:
    """Every organisation: catalogue departments, front ends, analysts' teams."""
    return [_org(o) for o in pr.list_orgs(service)]


@router.post("/orgs", status_code=201)
def create_org(body: NewOrg, service: ServiceDep, principal: Admin) -> Org:
    """A new organisation (a front end or analysts' team; departments come from the
    catalogue)."""
    pr.create_org(service, body.code, body.name, body.kind, actor=principal.actor)
    return _org(pr.get_org(service, body.code) or {})


@router.get("/users")
def list_users(
    service: ServiceDep,
    _who: Overseer,
    org: Annotated[str | None, Query(max_length=32)] = None,
) -> list[Person]:
    return [_person(u) for u in pr.list_users(service, org)]


@router.post("/users", status_code=201)
def create_user(body: NewPerson, service: ServiceDep, principal: Admin) -> Person:
    """A new person, without roles (roles come by approved operations)."""
    user_id = pr.create_user(
        service, body.org, name=body.name, user_id=body.user_id, actor=principal.actor
    )
    return _person(_person_or_404(service, user_id))


@router.get("/users/{user_id}")
def get_user(user_id: str, service: ServiceDep, _who: Overseer) -> Person:
    return _person(_person_or_404(service, user_id))


@router.post("/users/{user_id}/roles")
def grant_role(user_id: str, body: RoleGrant, service: ServiceDep, principal: Admin) -> Person:
    """Give a role under the two-person rule: the operation named must be an approved
    ``role.grant`` for exactly this person and role, not used before."""
    from share_api.requests import RequestError, approved_admin_operation

    _person_or_404(service, user_id)
    try:
        approved_admin_operation(
            service,
            body.operation,
            "role.grant",
            principal.actor,
            expect={"user": user_id, "role": body.role},
        )
    except RequestError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    pr.add_role(service, user_id, body.role, actor=principal.actor)
    return _person(_person_or_404(service, user_id))


@router.delete("/users/{user_id}/roles/{role}")
def remove_role(
    user_id: str, role: Literal[ROLES], service: ServiceDep, principal: Admin
) -> Person:  # type: ignore[valid-type]
    """Take a role away (one administrator: it only lowers privilege)."""
    _person_or_404(service, user_id)
    pr.remove_role(service, user_id, role, actor=principal.actor)
    return _person(_person_or_404(service, user_id))


@router.post("/users/{user_id}/disable")
def disable_user(user_id: str, service: ServiceDep, principal: Admin) -> Person:
    """The person can no longer sign in; their tokens fail from the next request."""
    _person_or_404(service, user_id)
    if user_id == principal.user_id:
        raise HTTPException(409, "an administrator does not disable themself")
    pr.disable_user(service, user_id, actor=principal.actor)
    return _person(_person_or_404(service, user_id))


@router.post("/users/{user_id}/tokens", status_code=201)
def first_token(
    user_id: str,
    service: ServiceDep,
    principal: Admin,
    body: Annotated[NewToken | None, Body()] = None,
) -> IssuedTokenOut:
    """A new person's first token (once: a person who ever had a token makes their own)."""
    _person_or_404(service, user_id)
    if pr.list_tokens(service, user_id):
        raise HTTPException(409, "the person has had a token: they make their own (POST /tokens)")
    body = body or NewToken()
    ttl = dt.timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    issued = pr.issue_token(service, user_id, ttl=ttl, label=body.label, actor=principal.actor)
    return IssuedTokenOut(
        token_id=issued.token_id, token=issued.token, expires_at=issued.expires_at
    )


@router.get("/users/{user_id}/tokens")
def user_tokens(user_id: str, service: ServiceDep, _who: Overseer) -> list[TokenInfo]:
    _person_or_404(service, user_id)
    return [token_info(t) for t in pr.list_tokens(service, user_id)]


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: str, service: ServiceDep, principal: Admin) -> TokenInfo:
    """Revoke anyone's token at once."""
    if pr.get_token(service, token_id) is None:
        raise HTTPException(404, "no such token")
    pr.revoke_token(service, token_id, actor=principal.actor)
    return token_info(pr.get_token(service, token_id) or {})
