"""HTTP routes: who am I (``/me``) and my own API tokens (``/tokens``).

A signed-in person may make more tokens of their own, each living no longer than the
token it was made with (a stolen token cannot mint a longer-lived one), list them (never a
secret or hash) and revoke any of them at once. Administrators manage other people's
tokens under ``/admin``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from share_api import principals as pr
from share_api.db import aware, utc_now
from share_api.deps import PrincipalDep, ServiceDep

router = APIRouter(tags=["auth"])


class Me(BaseModel):
    user_id: str
    name: str
    org: str
    org_name: str
    org_kind: str
    roles: list[str]
    token_id: str
    token_expires_at: dt.datetime


class TokenInfo(BaseModel):
    id: str
    label: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None = None
    live: bool


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=366 * 24 * 3600,
        description="the token's life; at most the remaining life of the token used to ask",
    )
    label: str = Field(default="", max_length=200, description="what the token is for")


class IssuedTokenOut(BaseModel):
    token_id: str
    token: str = Field(description="`<token id>.<secret>`: shown this once, store it safely")
    expires_at: dt.datetime


def token_info(row: dict[str, Any], now: dt.datetime | None = None) -> TokenInfo:
    now = now or utc_now()
    expires = aware(row["expires_at"])
    revoked = aware(row["revoked_at"]) if row["revoked_at"] else None
    return TokenInfo(
        id=row["id"],
        label=row["label"] or "",
        created_at=aware(row["created_at"]),
        expires_at=expires,
        revoked_at=revoked,
        live=revoked is None and expires > now,
    )


@router.get("/me")
def me(service: ServiceDep, principal: PrincipalDep) -> Me:
    """The signed-in person: organisation, roles, and when the token used expires."""
    user = pr.get_user(service, principal.user_id)
    org = pr.get_org(service, principal.org)
    token = pr.get_token(service, principal.token_id)
    if user is None or org is None or token is None:  # removed since sign-in
        raise HTTPException(404, "no such person")
    return Me(
        user_id=principal.user_id,
        name=user["name"],
        org=principal.org,
        org_name=org["name"],
        org_kind=principal.org_kind,
        roles=sorted(principal.roles),
        token_id=principal.token_id,
        token_expires_at=aware(token["expires_at"]),
    )


@router.get("/tokens")
def my_tokens(service: ServiceDep, principal: PrincipalDep) -> list[TokenInfo]:
    """The caller's tokens, newest first (ids and times only)."""
    now = utc_now()
    return [token_info(t, now) for t in pr.list_tokens(service, principal.user_id)]


@router.post("/tokens", status_code=201)
def new_token(
    service: ServiceDep,
    principal: PrincipalDep,
    body: Annotated[NewToken | None, Body()] = None,
) -> IssuedTokenOut:
    """Another token of the caller's own, living at most as long as the one used."""
    body = body or NewToken()
    current = pr.get_token(service, principal.token_id)
    if current is None:
        raise HTTPException(404, "no such token")
    remaining = aware(current["expires_at"]) - utc_now()
    ttl = remaining if body.ttl_seconds is None else dt.timedelta(seconds=body.ttl_seconds)
    if ttl > remaining:
        raise HTTPException(422, "ttl_seconds: longer than the remaining life of this token")
    issued = pr.issue_token(
        service,
        principal.user_id,
        ttl=min(ttl, pr.token_ttl(service)),
        label=body.label,
        actor=principal.actor,
        not_after=aware(current["expires_at"]),
    )
    return IssuedTokenOut(
        token_id=issued.token_id, token=issued.token, expires_at=issued.expires_at
    )


@router.delete("/tokens/{token_id}")
def revoke_my_token(token_id: str, service: ServiceDep, principal: PrincipalDep) -> TokenInfo:
    """Revoke one of the caller's tokens (the one in use too): it fails from its next use."""
    token = pr.get_token(service, token_id)
    if token is None or token["user_id"] != principal.user_id:
        raise HTTPException(404, "no such token")
    pr.revoke_token(service, token_id, actor=principal.actor)
    return token_info(pr.get_token(service, token_id) or token)
