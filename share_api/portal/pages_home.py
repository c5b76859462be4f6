"""The start page (``/portal/``): the signed-in person's "what needs attention" list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from share_api.portal.web import PREFIX, PortalUser, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/")
def home(request: Request, principal: PortalUser) -> HTMLResponse:
    return render(request, "home.html", principal)
