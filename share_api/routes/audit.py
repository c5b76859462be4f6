"""HTTP routes: the audit trail a caller may see — receipts of its own reads, the public
verification key, and the anomaly alerts (``GET /alerts``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path

from share_api import alerts as alerts_module
from share_api.deps import Principal, PrincipalDep, ServiceDep, require

router = APIRouter()

OVERSEERS = ("auditor", "data_officer", "admin")  # see every alert and every receipt


@router.get("/audit/public-key", tags=["audit"])
def public_key(service: ServiceDep) -> dict[str, Any]:
    """The audit log's public verification keys (no secret; exported freely): enough to
    check a read receipt or the log's signed checkpoints."""
    return service.audit.public_keys()


@router.get("/audit/receipts/{seq}", tags=["audit"])
def receipt(
    seq: Annotated[int, Path(ge=1, le=2**53)],
    principal: PrincipalDep,
    service: ServiceDep,
) -> dict[str, Any]:
    """A signed receipt of one of the caller's department's reads (its audit record
    ``seq``), verifiable with ``GET /audit/public-key`` alone."""
    record = service.audit.find(seq)
    mine = record is not None and (
        str(record.get("actor", "")).split("/", 1)[0] == principal.org or principal.has("auditor")
    )
    if record is None or record.get("action") != "data.read" or not mine:
        service.audit.record("audit.receipt", principal.actor, record=seq, found=False)
        raise HTTPException(404, f"no read of yours is audit record {seq}")
    service.audit.record("audit.receipt", principal.actor, record=seq, found=True)
    return service.audit.receipt(record)


@router.get("/alerts", tags=["audit"])
def list_alerts(principal: PrincipalDep, service: ServiceDep) -> list[dict[str, Any]]:
    """The open anomaly alerts: all of them for an auditor, data officer or admin; those
    about the caller's own organisation for anyone else."""
    org = None if principal.has(*OVERSEERS) else principal.org
    found = alerts_module.open_alerts(service, org)
    service.audit.record("alert.list", principal.actor, alerts=len(found))
    return found


@router.post("/alerts/{alert_id}/close", tags=["audit"])
def close_alert(
    alert_id: Annotated[str, Path(max_length=64)],
    principal: Annotated[Principal, Depends(require(*OVERSEERS))],
    service: ServiceDep,
) -> dict[str, Any]:
    """Close an alert once looked into (audited)."""
    closed = alerts_module.close_alert(service, alert_id, principal.actor)
    if closed is None:
        raise HTTPException(404, "no open alert has this id")
    return closed
