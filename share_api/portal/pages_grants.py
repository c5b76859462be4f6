"""我的授权 (``/portal/grants``): the organisation's live grants — what ``GET /grants``
shows the person — each with its terms (columns, their levels and masking, rows, expiry),
its downloads and, for those who may, its revocation.

- **Downloads** read the grant as the API does: Parquet through the data route's own read
  (``routes.data.read_as``: live grant, rate, the grant's prepared file or its view, the
  ``data.read`` record durable before a byte leaves); CSV is the same view (the same rows,
  masked as the grant says) written by the portal's CSV rule (:mod:`share_api.portal.csv`),
  recorded as a read in ``csv`` with the SHA-256 of the file's bytes.
- **The Delta Sharing profile**: the protocol's own issue (``sharing.app.profile_download``),
  bounded by the session's token as a profile asked with an API token is.
- **Revoke** (撤销): ``grants.may_revoke`` decides — a data officer or admin, or a reviewer of
  the grantee's or the owner's department — after a confirmation form; a revoked grant
  leaves the list at once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from share_api import catalogue as cat
from share_api import grants
from share_api.db import fixed_revisions
from share_api.deps import Principal, ServiceDep
from share_api.portal.csv import csv_chunks, csv_response
from share_api.portal.pages_catalogue import LEVEL_ZH, MASKING_ZH
from share_api.portal.web import PREFIX, PortalUser, form_of, local_time, needs, redirect, render
from share_api.principals import client_of
from share_api.routes.data import read_as
from share_api.routes.grants import OVERSEERS, list_my_grants
from share_api.service import Service
from share_api.sharing.app import profile_download
from share_api.views import grant_view

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# who opens the page: those the navigation shows it to, and who may revoke or oversee
Viewer = Annotated[Principal, Depends(needs("requester", *grants.REVOKERS, *OVERSEERS))]
PROFILE_LABEL = "门户下载"


def grant_terms(service: Service, grant: grants.Grant) -> dict[str, Any]:
    """What the page shows of a grant: the resource's name and provider, each column's
    Chinese label, level and masking, the rows, the dates — never data."""
    try:
        entry = cat.lookup(service, grant.resource)
    except KeyError:  # dropped from the catalogue since: the grant's own names
        entry = None
    columns = []
    for name in grant.columns:
        try:
            field = entry.field(name) if entry else None
        except KeyError:
            field = None
        rule = grant.masking.get(name, "none")
        columns.append(
            {
                "name": name,
                "label": field.label_zh if field else name,
                "level": LEVEL_ZH.get(field.level, field.level) if field else "",
                "masking": MASKING_ZH.get(rule, rule),
                "masked": rule != "none",
            }
        )
    return {
        "id": grant.id,
        "resource": grant.resource,
        "name": entry.name_zh if entry else grant.resource,
        "provider": entry.provider_zh if entry else "",
        "grantee": grant.grantee_org,
        "columns": columns,
        "rows": json.dumps(grant.row_filter, ensure_ascii=False) if grant.row_filter else None,
        "created": local_time(grant.created_at),
        "expires": local_time(grant.expires_at) or None,
        "standing": grant.standing,
        "status": grant.status(),
        "request_id": grant.request_id,
    }


def live_grants(service: Service, principal: Principal) -> list[grants.Grant]:
    """The live grants ``GET /grants`` shows ``principal``, newest first."""
    shown = list_my_grants(principal, service)
    found = (grants.get_grant(service, g["id"]) for g in shown if g["status"] == "live")
    return [g for g in found if g is not None]


@router.get("/grants")
def grants_page(request: Request, service: ServiceDep, principal: Viewer) -> HTMLResponse:
    rows = [
        {
            **grant_terms(service, g),
            "mine": g.grantee_org == principal.org,
            "may_revoke": grants.may_revoke(principal, g),
        }
        for g in live_grants(service, principal)
    ]
    return render(request, "grants/list.html", principal, title="我的授权", grants=rows)


@router.get("/grants/{grant_id}/download.parquet")
def download_parquet(
    request: Request, grant_id: str, service: ServiceDep, principal: PortalUser
) -> Response:
    """The grant's whole view as Parquet: the data route's read, for the signed-in person."""
    return read_as(service, principal, grant_id, "parquet", client=client_of(request))


def _digest(chunks) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    for chunk in chunks:
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


@router.get("/grants/{grant_id}/download.csv")
async def download_csv(
    request: Request, grant_id: str, service: ServiceDep, principal: PortalUser
) -> Response:
    """The grant's whole view (the rows and masking of every other read) as CSV. The read is
    recorded, with the SHA-256 of exactly the bytes sent, before the first byte leaves: the
    file is written twice from the same table (once to hash it, once to send it), never held
    whole in memory."""

    def prepare():
        with fixed_revisions(service):
            grant = grants.live_grant(service, grant_id, principal)
            grants.check_rate(service, grant, principal)
            view = grant_view(service, grant, recipient_kind=principal.org_kind)
            table = view.page()
            digest, nbytes = _digest(csv_chunks(table))
        return grants.Read(grant, principal, view.snapshot, "csv", 0, table.num_rows, nbytes,
                           digest, client_of(request)), table  # fmt: skip

    read, table = await run_in_threadpool(prepare)
    record = await grants.record_read_async(service, read)
    grant, digest = read.grant, read.digest
    return csv_response(
        table,
        filename=f"{grant.id}-{read.snapshot}.csv",
        headers={
            "X-Lake-Snapshot": str(read.snapshot),
            "X-Total-Rows": str(read.rows),
            "X-Content-SHA256": digest,
            "X-Audit-Seq": str(record.get("seq", "")),
        },
    )


@router.post("/grants/profile")
async def download_profile(
    request: Request, service: ServiceDep, principal: PortalUser
) -> Response:
    """A Delta Sharing profile file for the signed-in person (share = their organisation)."""
    await form_of(request)
    return await run_in_threadpool(
        profile_download, service, request, principal, label=PROFILE_LABEL
    )


def _revocable(service: Service, principal: Principal, grant_id: str) -> grants.Grant:
    """The live grant ``principal`` may revoke; 404 otherwise (as the API answers)."""
    grant = grants.get_grant(service, grant_id)
    if grant is None or grant.status() != "live" or not grants.may_revoke(principal, grant):
        raise grants.GrantError(404, "没有可由您撤销的这项授权")
    return grant


@router.get("/grants/{grant_id}/revoke")
def revoke_page(
    request: Request, grant_id: str, service: ServiceDep, principal: Viewer
) -> HTMLResponse:
    grant = _revocable(service, principal, grant_id)
    return render(
        request, "grants/revoke.html", principal, title="撤销授权", g=grant_terms(service, grant)
    )


@router.post("/grants/{grant_id}/revoke")
async def revoke(request: Request, grant_id: str, service: ServiceDep, principal: Viewer):
    form = await form_of(request)
    reason = str(form.get("reason") or "").strip()

    def run() -> None:
        _revocable(service, principal, grant_id)
        grants.revoke_grant(service, grant_id, principal.actor, reason)

    await run_in_threadpool(run)
    return redirect("/grants", "授权已撤销，下一次读取即被拒绝。")
