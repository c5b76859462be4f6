"""FastAPI dependencies shared by every router: the service and the signed-in principal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from share_api.service import Service

# community_worker: one community's worklist (share_api.worklist: the community assigned);
# leader: a street leader, who reads the dashboards (share_api.portal) and nothing more
ROLES = (
    "requester",
    "reviewer",
    "data_officer",
    "auditor",
    "admin",
    "community_worker",
    "leader",
)
OVERSEERS = ("data_officer", "auditor", "admin")  # who may look across organisations
# street: the street office (街道办事处); community: one of its communities (社区居委会)
OrgKind = Literal["department", "frontend", "analyst", "street", "community"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a person (``user_id``) of an organisation (``org``: a catalogue
    department code, or a front end's / analysts' code), with roles, signed in with
    ``token_id``."""

    user_id: str
    org: str
    org_kind: OrgKind
    roles: frozenset[str]
    token_id: str

    @property
    def actor(self) -> str:
        """How audit records name the caller."""
        return f"{self.org}/{self.user_id}"

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


async def get_service(request: Request) -> Service:
    # async: no blocking work, so no hop to the thread pool for every route
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


# declares the bearer scheme in the OpenAPI spec; the token is checked by principals
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="an API token `<token id>.<secret>` (POST /tokens, or from an administrator)",
)


def current_principal(
    request: Request,
    service: ServiceDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The caller of this request, authenticated by its bearer token (audited either way)."""
    from share_api.principals import authenticate_request

    return authenticate_request(service, request)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(*roles: str):
    """A dependency: the caller, who must hold one of ``roles`` (403 otherwise, audited).
    Async: the check itself blocks nothing (only a refusal's audit record goes to the
    thread pool), so a permitted call costs no extra hop."""

    async def _check(
        request: Request,
        principal: PrincipalDep,
        service: ServiceDep,
    ) -> Principal:
        if not principal.has(*roles):
            await run_in_threadpool(
                service.audit.record,
                "auth.forbidden",
                principal.actor,
                path=request.url.path,
                method=request.method,
                needs=",".join(roles),
            )
            request.state.refusal_audited = True  # the app's 4xx audit need not add another
            raise HTTPException(403, f"this needs the role {' or '.join(roles)}")
        return principal

    return _check
