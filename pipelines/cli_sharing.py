"""``streethub sharing``: the sharing figures from the share service's own records."""

from __future__ import annotations

import typer
from rich.table import Table

from catalog.settings import get_settings
from pipelines.cli_common import catalogue, cli_actor, console, writing_lake

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
