"""What needs attention (待办): one list per person, by the roles they hold — what a data
officer opens each morning. ``GET /attention`` and ``streethub attention`` show it.

Sections, each a list of items, oldest first (``kind``, ``id``, ``what``, ``since``, ``link``,
and what the item is — never a value of the data):

- ``failed_deliveries``: approved requests whose grant could not be made (the requester's,
  the owner's reviewers', every one for data officers), and whatever an installed source
  adds (the CLI adds the departments' failed deliveries to the hub, which ``pipelines``
  accounts; share_api does not import pipelines);
- ``reviews_waiting``: pending requests this person can approve or refuse now (the owner
  department's reviewers, data officers, a second administrator for admin operations);
- ``overdue``: pending requests past the owner's answer deadline that this person asked
  for, answers, or oversees;
- ``corrections``: open correction requests (校核纠错) to this person's department (every
  one for data officers);
- ``alerts``: open alerts about this person's organisation (every one for data officers,
  auditors and administrators).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from share_api import requests as rq
from share_api.deps import Principal

SECTIONS = ("failed_deliveries", "reviews_waiting", "overdue", "corrections", "alerts")

# an added source: (service, principal) -> items for a section
Source = Callable[[Any, Principal], list[dict[str, Any]]]
SOURCES_KEY = "attention.sources"

OVERSEERS = ("data_officer", "auditor", "admin")  # see every organisation's alerts


def add_source(service, section: str, source: Source) -> None:
    """Add what ``source`` lists to ``section`` of everyone's attention (once per source)."""
    if section not in SECTIONS:
        raise ValueError(f"section is one of {', '.join(SECTIONS)}")
    sources = service.extra.setdefault(SOURCES_KEY, {}).setdefault(section, [])
    if source not in sources:
        sources.append(source)


def _request_item(req: dict[str, Any], **extra: Any) -> dict[str, Any]:
    what = req["resource"] if req["kind"] == rq.DATA else req["kind"]
    return {
        "kind": "request" if req["kind"] == rq.DATA else "admin_operation",
        "id": req["id"],
        "what": what,
        "requester": f"{req['requester_org']}/{req['requester_user']}",
        "status": req["status"],
        "since": req["submitted_at"],
        "due_at": req["due_at"],
        "link": f"/requests/{req['id']}",
        **extra,
    }


def _from_requests(service, principal: Principal) -> dict[str, list[dict[str, Any]]]:
    pending = rq.list_requests(service, principal, status=rq.PENDING, limit=1000)
    approved = rq.list_requests(service, principal, status=rq.APPROVED, limit=1000)
    return {
        "failed_deliveries": [
            _request_item(r, error=r["delivery_error"])
            for r in approved
            if r["kind"] == rq.DATA and r["delivery_error"]
        ],
        "reviews_waiting": [
            _request_item(r, awaiting=r["awaiting"], overdue=r["overdue"])
            for r in pending
            if rq.can_review(principal, r)
        ],
        "overdue": [
            _request_item(r, working_days_overdue=r["working_days_overdue"])
            for r in pending
            if r["overdue"]
        ],
    }


def _corrections(service, principal: Principal) -> list[dict[str, Any]]:
    from share_api.feedback import open_corrections

    if principal.has("data_officer"):
        return open_corrections(service, None)
    if principal.has("reviewer"):
        return open_corrections(service, principal.org)
    return []


def _alerts(service, principal: Principal) -> list[dict[str, Any]]:
    from share_api.alerts import open_alerts

    found = open_alerts(service, None if principal.has(*OVERSEERS) else principal.org)
    return [
        {
            "kind": "alert",
            "id": a["id"],
            "what": a["kind"],
            "since": a["opened_at"],
            "subject": a["subject"],
            "summary": a["summary"],
            "count": a["count"],
            "link": "/alerts",
        }
        for a in found
    ]


def attention_for(service, principal: Principal) -> dict[str, Any]:
    """Everything that waits for ``principal``, by section, with counts."""
    sections = _from_requests(service, principal)
    sections["corrections"] = _corrections(service, principal)
    sections["alerts"] = _alerts(service, principal)
    for section, sources in service.extra.get(SOURCES_KEY, {}).items():
        for source in sources:
            sections[section].extend(source(service, principal))
    for items in sections.values():
        items.sort(key=lambda item: str(item.get("since") or ""))  # oldest first
    return {
        "person": principal.actor,
        "roles": sorted(principal.roles),
        "counts": {s: len(sections[s]) for s in SECTIONS},
        "sections": {s: sections[s] for s in SECTIONS},
    }
