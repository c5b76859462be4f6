"""``streethub leaks``: find unmasked personal information where none may be."""

from __future__ import annotations

import typer
from rich.table import Table

from catalog.settings import get_settings
from pipelines.cli_common import catalogue, cli_actor, console, err, reading_lake

leaks_app = typer.Typer(help="Find unmasked personal information where none may be.")


@leaks_app.command("scan")
def leaks_scan() -> None:
    """Scan every table outside the encrypted zones, and the reports; exit 1 on any leak."""
    from pipelines.leaks import scan_lake

    settings = get_settings()
    cat = catalogue(None)
    with reading_lake(settings, "scanning") as con:
        findings = scan_lake(settings, cat, con, cli_actor())
    table = Table(title="leak scan: unmasked personal information outside the encrypted zones")
    for col in ("place", "cells", "citizen IDs", "mobiles", "bank cards", "names"):
        table.add_column(col, justify="left" if col == "place" else "right")
    total = 0
    for f in findings:
        k = f.counts.by_kind
        total += f.counts.total
        table.add_row(
            f.place, f"{f.cells:,}", *(str(k.get(x, 0)) for x in
            ("citizen_id", "mobile", "bank_card", "person_name"))
        )  # fmt: skip
    console.print(table)
    if total:
        for f in findings:
            for row, column, kind in f.counts.samples[:5]:
                err.print(f"[red]{f.place}: row {row}, column {column}: {kind}[/red]")
        err.print(f"[red]{total} leak(s) found[/red]")
        raise typer.Exit(1)
    console.print(f"[green]0 leaks in {len(findings)} tables and files[/green]")
