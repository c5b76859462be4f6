"""HTTP routes: the consent registry (授权同意登记). The registry is :mod:`share_api.consent`.

A resident's choice comes through a channel: the residents' app (a front-end organisation
signs in and records it), or a data officer at the counter, on the 12345 line, on paper or
with a grid worker. A resident is named by the hub's pseudonym, or by their citizen ID,
which is pseudonymised on arrival and never stored, logged or returned.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from catalog.consent import ConsentCategory
from masking.pseudonym import PSEUDONYM_PATTERN
from share_api import consent as reg
from share_api.deps import OrgKind, Principal, PrincipalDep, ServiceDep

router = APIRouter(tags=["consent"])


class ChoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pseudonym: str | None = Field(
        default=None, pattern=PSEUDONYM_PATTERN, description="the resident's hub pseudonym"
    )
    citizen_id: str | None = Field(
        default=None,
        max_length=32,
        description="or the resident's citizen ID: pseudonymised on arrival, never kept",
    )
    category: ConsentCategory = Field(description="a consent category (not 'none')")
    recipient_kinds: list[OrgKind] = Field(
        default_factory=lambda: list(reg.RECIPIENT_KINDS),
        min_length=1,
        max_length=3,
        description="the kinds of recipient the choice applies to (default: all)",
    )
    choice: reg.Choice
    channel: reg.Channel
    chosen_at: dt.datetime | None = Field(
        default=None, description="when the resident made the choice (default: now)"
    )

    @model_validator(mode="after")
    def _one_resident(self) -> ChoiceIn:
        if (self.pseudonym is None) == (self.citizen_id is None):
            raise ValueError("name the resident by exactly one of pseudonym, citizen_id")
        return self


class ChoiceOut(BaseModel):
    id: str
    pseudonym: str
    category: str
    category_zh: str
    recipient_kind: str
    choice: str
    channel: str
    chosen_at: dt.datetime
    recorded_at: dt.datetime
    recorded_by: str


class ResidentChoices(BaseModel):
    pseudonym: str
    current: list[ChoiceOut]
    history: list[ChoiceOut]


def _allow(service, request: Request, principal: Principal, roles: tuple[str, ...]) -> None:
    """A caller holding one of ``roles`` or signed in for a front end; else 403 (audited)."""
    if principal.has(*roles) or principal.org_kind == "frontend":
        return
    needs = ",".join((*roles, "frontend"))
    service.audit.record(
        "auth.forbidden", principal.actor, path=request.url.path, method=request.method, needs=needs
    )
    raise HTTPException(403, f"this needs the role {' or '.join(roles)}, or a front end")


def _pseudonym_of(service, body: ChoiceIn) -> str:
    if body.pseudonym is not None:
        return body.pseudonym
    try:
        return reg.resident_pseudonym(service, body.citizen_id or "")
    except reg.ConsentError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/consent", response_model=list[ChoiceOut], status_code=201)
def record_consent(
    body: ChoiceIn, request: Request, principal: PrincipalDep, service: ServiceDep
) -> list[dict]:
    """Record a resident's choice for one category and one or more recipient kinds."""
    _allow(service, request, principal, ("data_officer",))
    who = _pseudonym_of(service, body)
    out = []
    for kind in dict.fromkeys(body.recipient_kinds):
        try:
            out.append(
                reg.record_choice(
                    service,
                    pseudonym=who,
                    category=body.category,
                    recipient_kind=kind,
                    choice=body.choice,
                    channel=body.channel,
                    actor=principal.actor,
                    chosen_at=body.chosen_at,
                )
            )
        except reg.ConsentError as exc:
            raise HTTPException(422, str(exc)) from None
    return out


@router.get("/consent/{pseudonym}", response_model=ResidentChoices)
def resident_consent(
    pseudonym: Annotated[str, Path(pattern=PSEUDONYM_PATTERN)],
    request: Request,
    principal: PrincipalDep,
    service: ServiceDep,
) -> dict:
    """A resident's standing choices and every choice recorded (data officers, auditors,
    front ends)."""
    _allow(service, request, principal, ("data_officer", "auditor"))
    service.audit.record("consent.read", principal.actor, pseudonym=pseudonym)
    return {
        "pseudonym": pseudonym,
        "current": reg.current_choices(service, pseudonym),
        "history": reg.history(service, pseudonym),
    }
