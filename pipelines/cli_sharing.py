"""``streethub sharing``: the sharing figures from the share service's own records, and Delta
Sharing profiles handed over on the server (``sharing profile``, ``sharing revoke-profile``)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from catalog.settings import get_settings
from pipelines.cli_common import catalogue, cli_actor, console, err, writing_lake

sharing_app = typer.Typer(help="The sharing figures from the share service's records.")
MARTS = ("sharing_metrics", "governance_scorecard")


@sharing_app.command("refresh")
def sharing_refresh() -> None:
    """Copy the share service's records into the lake (landing.share_*), take its
    correction requests into the quality loop, rebuild the sharing metrics and the
    governance scorecard, and print the figures (the main job does the same in its marts
    step; this is for a day without deliveries)."""
    from catalog.marts import load_marts
    from marts.build import build_mart
    from pipelines.marts_run import governance_scorecard
    from pipelines.protection import Protection
    from pipelines.share_records import copy_share_records
    from pipelines.summary import print_governance

    settings = get_settings()
    cat = catalogue(None)
    with writing_lake(settings, "copying the share service's records") as con:
        counts = copy_share_records(settings, con)
        protection = Protection.from_settings(settings, cli_actor())
        marts = load_marts()
        for name in MARTS:
            build_mart(con, cat, marts, name, protection)
        months = con.execute(
            "SELECT resource, month, requests, first_bytes_measured, "
            "median_hours_to_first_byte, median_seconds_unconditional "
            "FROM marts.sharing_metrics WHERE kind = 'department_month' ORDER BY 2, 1"
        ).fetchall()
    copied = Table(title="share records copied (landing.share_*)")
    for col in ("table", "rows"):
        copied.add_column(col, justify="left" if col == "table" else "right")
    for table, n in counts.items():
        copied.add_row(table, f"{n:,}")
    console.print(copied)
    if months:
        waits = Table(title="request → first byte, per requesting department and month")
        for col in ("department", "month", "requests", "timed", "median h", "uncond. median s"):
            waits.add_column(col, justify="left" if col in ("department", "month") else "right")
        for dept, month, asked, timed, hours, seconds in months:
            waits.add_row(dept, month, f"{asked:,}", f"{timed:,}",
                          "—" if hours is None else f"{hours:,.2f}",
                          "—" if seconds is None else f"{seconds:,.1f}")  # fmt: skip
        console.print(waits)
    print_governance(console, governance_scorecard(settings))


# -- Delta Sharing profiles (issue 15) --------------------------------------------------------


def _sharing_service():
    from share_api.principals import sync_departments
    from share_api.service import Service

    service = Service.open(get_settings())
    sync_departments(service, actor=cli_actor())
    return service


@sharing_app.command("profile")
def sharing_profile(
    user: Annotated[str, typer.Option("--user", help="the person (user id) it is for")],
    out: Annotated[
        Path | None, typer.Option("--out", help="write the profile here (0600), not to stdout")
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(help="the protocol's URL as recipients reach it (default: share_host/port)"),
    ] = None,
    ttl_days: Annotated[float | None, typer.Option(help="its token's life in days")] = None,
) -> None:
    """A Delta Sharing profile for a person of a recipient organisation (on the server: an
    administrator hands it over; audited with the operator's name). Its bearer token is
    good for the protocol only and is shown once."""
    from share_api.sharing.app import PREFIX
    from share_api.sharing.errors import SharingError
    from share_api.sharing.tokens import issue_profile

    settings = get_settings()
    base = endpoint or f"http://{settings.share_host}:{settings.share_port}{PREFIX}"
    service = _sharing_service()
    try:
        ttl = dt.timedelta(days=ttl_days) if ttl_days else None
        issued = issue_profile(
            service, user, base, ttl=ttl, label="issued on the server", actor=cli_actor()
        )
    except SharingError as exc:
        err.print(f"[red]sharing profile: {escape(exc.message)}[/red]")
        raise typer.Exit(1) from None
    finally:
        service.close()
    text = json.dumps(issued.profile, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    console.print(f"{escape(user)}: profile {issued.token_id} written to {escape(str(out))}")


@sharing_app.command("revoke-profile")
def sharing_revoke_profile(
    token_id: Annotated[str, typer.Argument(help="the profile token's id (dsp-…)")],
) -> None:
    """Revoke a Delta Sharing profile at once: its next call and its file URLs fail."""
    from share_api.sharing.errors import SharingError
    from share_api.sharing.tokens import revoke_profile

    service = _sharing_service()
    try:
        done = revoke_profile(service, token_id, actor=cli_actor())
    except SharingError as exc:
        err.print(f"[red]sharing revoke-profile: {escape(exc.message)}[/red]")
        raise typer.Exit(1) from None
    finally:
        service.close()
    console.print(f"{escape(token_id)}: {'revoked' if done else 'was revoked already'}")
