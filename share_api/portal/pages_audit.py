"""The auditor's view (``/portal/audit``): the audit trail — the newest records first,
filtered by action, actor and date (Beijing days), paged — its verification status (the
whole-log check ``streethub audit verify`` runs: hash chain, every MAC, the signed head,
the checkpoint signatures and the witness; :meth:`masking.audit.AuditLog.verify`), and a
receipt checker (a read receipt pasted as JSON, checked with the service's exported public
keys alone — :func:`masking.audit.verify_receipt`, as ``streethub audit receipt`` does).

Auditors only; reading the trail, verifying it and checking a receipt are audited
themselves (``audit.trail``, ``audit.verify``, ``audit.receipt_check``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from catalog.days import BEIJING
from masking.audit import public_keys_from, verify_receipt
from share_api.deps import Principal
from share_api.portal.web import PREFIX, form_of, local_time, needs, render
from share_api.service import Service

router = APIRouter(prefix=PREFIX, include_in_schema=False)

Auditor = Annotated[Principal, Depends(needs("auditor"))]
PAGE_SIZE = 50
MAX_RECEIPT_CHARS = 64_000
# what every record carries; the rest are its details (scalars, never a value of the data)
ENVELOPE = ("seq", "ts", "action", "actor", "hash", "prev", "mac", "kv", "suite", "v")

RECEIPT_PROBLEMS_ZH = {
    "not a streethub audit receipt": "这不是本平台的审计回执。",
    "the receipt is not readable": "回执内容无法读取（字段缺失或格式不对）。",
    "the record does not match its hash: changed": "回执中的记录与其哈希值不符：记录已被改动。",
    "the signature does not verify under the exported public key": "签名与本平台公布的公钥不符。",
}


@dataclass(frozen=True)
class TrailFilter:
    """Which records the trail shows: ``action`` (the action or its family: ``worklist``
    matches ``worklist.reveal``), ``actor`` (a part of it), Beijing days ``since`` and
    ``until`` (inclusive)."""

    action: str = ""
    actor: str = ""
    since: dt.date | None = None
    until: dt.date | None = None

    def keeps(self, record: dict[str, Any]) -> bool:
        action = str(record.get("action", ""))
        if self.action and not (action == self.action or action.startswith(self.action + ".")):
            return False
        if self.actor and self.actor not in str(record.get("actor", "")):
            return False
        if self.since or self.until:
            day = dt.datetime.fromisoformat(str(record["ts"])).astimezone(BEIJING).date()
            if (self.since and day < self.since) or (self.until and day > self.until):
                return False
        return True


def trail(
    service: Service, keep: TrailFilter, before: int | None = None, size: int = PAGE_SIZE
) -> dict[str, Any]:
    """The newest ``size`` records ``keep`` keeps numbered below ``before`` (None: the
    newest), how many it keeps in all, and whether older ones remain. Paged by record
    number, not by position: records written meanwhile do not shift the next page."""
    found = [r for r in service.audit.log.records() if keep.keeps(r)]
    older = [r for r in found if before is None or r["seq"] < before]
    shown = older[::-1][:size]
    return {
        "total": len(found),
        "more": len(older) > size,
        "records": [
            {
                "seq": r["seq"],
                "ts_local": local_time(r["ts"]),
                "action": r["action"],
                "actor": r["actor"],
                "details": {k: v for k, v in r.items() if k not in ENVELOPE},
            }
            for r in shown
        ],
    }


def verification(service: Service, principal: Principal, *, whole: bool) -> dict[str, Any]:
    """The log verified (audited ``audit.verify``): ``whole`` — every record, what
    ``streethub audit verify`` checks; otherwise from the newest checkpoint the witness
    holds on (its signature and the record it signed checked: the per-run check, whose time
    does not grow with the log)."""
    result = service.audit.log.verify(since_witnessed=not whole)
    service.audit.record("audit.verify", principal.actor, ok=result.ok, records=result.records,
                         from_record=result.from_record, via="portal")  # fmt: skip
    return {
        "ok": result.ok,
        "records": result.records,
        "from_record": result.from_record,
        "checkpoints": result.checkpoints,
        "problems": result.problems,
        "first_bad": result.first_bad,
        "witnessed": result.witnessed.seq if result.witnessed else None,
    }


def _read_trail(
    service: Service, principal: Principal, keep: TrailFilter, before: int | None
) -> dict[str, Any]:
    found = trail(service, keep, before)
    service.audit.record("audit.trail", principal.actor, before=before or 0, rows=found["total"])
    return found


def _page_link(keep: TrailFilter, before: int | None) -> str:
    query = {
        "action": keep.action,
        "actor": keep.actor,
        "since": keep.since.isoformat() if keep.since else "",
        "until": keep.until.isoformat() if keep.until else "",
        "before": before or "",
    }
    return f"{PREFIX}/audit?" + urlencode({k: v for k, v in query.items() if v})


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


async def _audit_page(
    request: Request, principal: Principal, keep: TrailFilter, before: int | None, *, whole: bool
) -> HTMLResponse:
    service: Service = request.app.state.service
    found = await run_in_threadpool(_read_trail, service, principal, keep, before)
    status = await run_in_threadpool(verification, service, principal, whole=whole)
    return render(
        request,
        "audit/trail.html",
        principal,
        keep=keep,
        trail=found,
        status=status,
        newest=_page_link(keep, None) if before else None,
        older=_page_link(keep, found["records"][-1]["seq"]) if found["more"] else None,
    )


@router.get("/audit")
async def audit_page(
    request: Request,
    principal: Auditor,
    action: Annotated[str, Query(max_length=64)] = "",
    actor: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    before: Annotated[int | None, Query(ge=1, le=2**53)] = None,
) -> HTMLResponse:
    keep = TrailFilter(action.strip(), actor.strip(), _date(since), _date(until))
    return await _audit_page(request, principal, keep, before, whole=False)


@router.post("/audit/verify")
async def verify_whole(request: Request, principal: Auditor) -> HTMLResponse:
    """The whole log verified, every record from the first (``streethub audit verify``)."""
    await form_of(request)
    return await _audit_page(request, principal, TrailFilter(), None, whole=True)


def check_receipt(service: Service, text: str) -> dict[str, Any]:
    """Whether the receipt ``text`` (JSON) verifies with the service's public keys alone:
    ``ok``, the problems in Chinese, and the record it names."""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return {"ok": False, "problems": ["粘贴的内容不是 JSON 格式的回执。"], "record": None}
    problems = verify_receipt(doc, public_keys_from(service.audit.public_keys()))
    record = doc.get("record") if isinstance(doc.get("record"), dict) else None
    return {
        "ok": not problems,
        "problems": [
            RECEIPT_PROBLEMS_ZH.get(p, "回执所用的密钥不在本平台公布的公钥中。")
            if p.startswith("no public key")
            else RECEIPT_PROBLEMS_ZH.get(p, p)
            for p in problems
        ],
        "record": record
        and {
            "seq": record.get("seq"),
            "action": record.get("action"),
            "actor": record.get("actor"),
            "ts_local": local_time(record.get("ts")),
        },
        "alg": doc.get("alg"),
        "key_id": doc.get("key_id"),
    }


def _check(service: Service, principal: Principal, text: str) -> dict[str, Any]:
    result = check_receipt(service, text)
    seq = (result["record"] or {}).get("seq")
    where = {"record": seq} if isinstance(seq, int) else {}
    service.audit.record("audit.receipt_check", principal.actor, ok=result["ok"], **where)
    return result


@router.post("/audit/receipt")
async def receipt_check(request: Request, principal: Auditor) -> HTMLResponse:
    form = await form_of(request)
    service: Service = request.app.state.service
    text = str(form.get("receipt") or "")[:MAX_RECEIPT_CHARS]
    result = await run_in_threadpool(_check, service, principal, text)
    return render(request, "audit/receipt.html", principal, receipt=result)
