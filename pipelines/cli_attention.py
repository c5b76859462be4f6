"""``streethub attention``: what waits for a person of the share service, by their roles —
failed deliveries, reviews waiting, overdue requests, correction requests, alerts (the same
lists as ``GET /attention``), plus the departments' failed deliveries to the hub that no
data officer has acknowledged yet (``streethub deliveries list --failed``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from catalog.errors import LakeError, shown
from catalog.settings import get_settings
from pipelines.cli_common import console, err

UNREAD = "the lake's delivery accounts cannot be read now (streethub deliveries list --failed)"

TITLES = {
    "failed_deliveries": "failed deliveries",
    "reviews_waiting": "reviews waiting",
    "overdue": "overdue requests",
    "corrections": "correction requests (校核纠错)",
    "alerts": "alerts",
}


def landing_failures(service, principal) -> list[dict[str, Any]]:
    """The departments' failed deliveries to the hub no officer has acknowledged: every one
    for a data officer, its own department's for a reviewer."""
    from lakehouse.lake import open_lake
    from pipelines.deliveries import list_deliveries

    if principal.has("data_officer"):
        dept = None
    elif principal.has("reviewer"):
        dept = principal.org
    else:
        return []
    try:
        with open_lake(service.settings, read_only=True) as con:
            rows = list_deliveries(con, failed=True, dept=dept, acknowledged=False)
    except LakeError:  # a lake never made, or busy: say so, list the rest
        return [{"kind": "delivery_accounts", "id": "-", "what": "lake", "error": UNREAD}]
    return [
        {
            "kind": "delivery",
            "id": r.delivery_id,
            "what": f"{r.dept}.{r.dataset}",
            "since": r.accounted_at.isoformat(),
            "error": shown(r.reason or ""),
            "link": f"streethub deliveries retry {r.delivery_id}",
        }
        for r in rows
    ]


def install_sources(service) -> None:
    """Add the lake's failed deliveries to the attention lists of ``service`` (the CLI does;
    ``streethub serve`` may, so ``GET /attention`` lists them too)."""
    from share_api.attention import add_source

    add_source(service, "failed_deliveries", landing_failures)


def _line(item: dict[str, Any]) -> str:
    extra = [
        f"{k}: {v}"
        for k, v in item.items()
        if k not in ("kind", "id", "what", "since", "link") and v not in (None, [], "")
    ]
    return escape(", ".join(extra))


def attention(
    user: Annotated[str, typer.Option("--user", help="the person (user id) to list for")],
    as_json: Annotated[bool, typer.Option("--json", help="print the lists as JSON")] = False,
) -> None:
    """What needs this person's attention: one list by section, oldest first."""
    from share_api.attention import SECTIONS, attention_for
    from share_api.principals import principal_for_user
    from share_api.service import Service

    service = Service.open(get_settings())
    try:
        principal = principal_for_user(service, user)
        if principal is None:
            err.print(f"[red]no such person: {escape(user)}[/red]")
            raise typer.Exit(1)
        install_sources(service)
        found = attention_for(service, principal)
    finally:
        service.close()
    if as_json:
        console.print_json(json.dumps(found, ensure_ascii=False, default=str))
        return
    console.print(f"{escape(found['person'])} ({', '.join(found['roles'])})")
    for section in SECTIONS:
        items = found["sections"][section]
        if not items:
            console.print(f"[green]{TITLES[section]}: none[/green]")
            continue
        table = Table(title=f"{TITLES[section]}: {len(items)}", box=box.SIMPLE_HEAD)
        for col in ("id", "what", "since", "details"):
            table.add_column(col, overflow="fold")
        for item in items:
            table.add_row(
                escape(str(item.get("id", ""))),
                escape(str(item.get("what", item.get("kind", "")))),
                escape(str(item.get("since", item.get("opened_at", "")))),
                _line(item),
            )
        console.print(table)
