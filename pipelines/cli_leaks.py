"""``streethub leaks``: find unmasked personal information where none may be."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from catalog.settings import get_settings
from pipelines.cli_common import catalogue, cli_actor, console, err, reading_lake

SAMPLES_SHOWN = 20  # sample places (row, column, kind) printed; the tables count them all
leaks_app = typer.Typer(help="Find unmasked personal information where none may be.")


def _kinds(counts) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in sorted(counts.by_kind.items())) or "-"


def _print_places(findings, title: str) -> int:
    """The places with leaks (or problems), and the total of leaks."""
    table = Table(title=title)
    for col in ("area", "place", "cells", "leaks", "kinds"):
        table.add_column(col, justify="right" if col in ("cells", "leaks") else "left")
    shown = 0
    for f in findings:
        if f.leaks or f.problem:
            shown += 1
            table.add_row(f.area, Text(f.place), f"{f.cells:,}", f"{f.leaks:,}",
                          Text(f.problem or _kinds(f.counts)))  # fmt: skip
    if shown:
        console.print(table)
    return sum(f.leaks for f in findings)


@leaks_app.command("scan")
def leaks_scan(
    everything: bool = typer.Option(
        False,
        "--all",
        help="also every file: landing (proven ciphertext), archive, inbox, Dagster's event "
        "logs and run storage, reports, the audit log, the state directory, the model registry",
    ),
    landing_content: bool = typer.Option(
        False,
        "--landing-content",
        help="with --all: also count what the encrypted landed files hold (decrypted for "
        "leak_scan, audited); reported apart, not as leaks",
    ),
) -> None:
    """Scan the lake's tables (every zone) and the reports, or everything with --all; and
    a sample of every data endpoint's responses (each live grant of the share service);
    and every table of the analysts' databases (and their notebook workspaces' copies).

    Exit 1 on any leak, or on a file that cannot be read or proven ciphertext.
    """
    from masking.names import KnownNames
    from pipelines.leak_analysts import scan_analyst_dbs
    from pipelines.leak_marks import lake_mark, write_mark
    from pipelines.leak_responses import scan_responses
    from pipelines.leaks import ScanReport, registry_names, scan_all, scan_lake
    from pipelines.protection import Protection

    settings = get_settings()
    cat = catalogue(None)
    from masking.errors import MaskingError

    # without the keys (a copied home), the registers' names cannot be read: said, exit 1
    with reading_lake(settings, "scanning", MaskingError) as con:
        mark = lake_mark(con)  # every table is read: a clean scan is recorded up to here
        if everything:
            report = scan_all(settings, cat, con, cli_actor(), landing_content=landing_content)
        else:
            report = ScanReport(scan_lake(settings, cat, con, cli_actor()))
        names = registry_names(con, cat, Protection.from_settings(settings, cli_actor()))
    # the share service's data endpoints: a sample of every live grant's responses
    report.findings += scan_responses(settings, cat, KnownNames(names))
    # the analysts' databases and their notebook workspaces' copies, every table
    report.findings += scan_analyst_dbs(settings, cat, KnownNames(names))
    summary = Table(title="leak scan: unmasked personal information, by area")
    for col in ("area", "places", "cells", "bytes", "leaks", "proven ciphertext"):
        summary.add_column(col, justify="left" if col == "area" else "right")
    for area, (places, cells, leaks) in report.by_area().items():
        mine = [f for f in report.findings if f.area == area]
        protected = sum(f.protected for f in mine)
        size = sum(f.size for f in mine)
        summary.add_row(area, f"{places:,}", f"{cells:,}", f"{size:,}" if size else "-",
                        f"{leaks:,}", f"{protected:,}" if protected else "-")  # fmt: skip
    console.print(summary)
    held = [f for f in report.findings if f.held is not None and f.held.total]
    if held:
        n = sum(f.held.total for f in held)
        console.print(f"encrypted landed files hold {n:,} values of personal information "
                      f"in {len(held)} files (protected, not leaks)")  # fmt: skip
    total = _print_places(report.findings, "places with unmasked values or problems")
    samples = [(f.place, *s) for f in report.findings for s in f.counts.samples[:3]]
    for place, row, column, kind in samples[:SAMPLES_SHOWN]:
        err.print(Text(f"{place}: row {row}, column {column}: {kind}", style="red"))
    if len(samples) > SAMPLES_SHOWN:
        err.print(Text(f"… and more in {len([f for f in report.findings if f.leaks])} places"))
    if total or report.problems:
        err.print(f"[red]{total:,} leak(s), {len(report.problems)} place(s) not proven[/red]")
        raise typer.Exit(1)
    write_mark(settings, mark)
    console.print(f"[green]0 leaks in {len(report.findings):,} tables and files[/green]")


@leaks_app.command("scan-home")
def leaks_scan_home(
    home: Annotated[
        Path | None, typer.Argument(help="the folder to scan (default: the home)")
    ] = None,
) -> None:
    """Independent scan of every file under the home for citizen IDs, mobiles, cards.

    Valid citizen IDs, mobiles and card numbers in the clear; Parquet, SQLite and xlsx
    decoded, the rest read as bytes. Exit 1 on any.
    """
    from pipelines.home_scan import scan_home

    folder = home or get_settings().home_abs
    with console.status("scanning every file"):
        result = scan_home(folder)
    console.print(f"{result.files:,} files, {result.bytes:,} bytes scanned")
    for path, kinds in sorted(result.findings.items()):
        found = ", ".join(f"{k} {n:,}" for k, n in sorted(kinds.items()))
        err.print(Text(f"{path}: {found}", style="red"))
    for path in result.unreadable:
        console.print(Text(f"read as bytes (did not decode): {path}"))
    if result.total:
        err.print(
            f"[red]{result.total:,} values in the clear in {len(result.findings)} files[/red]"
        )
        raise typer.Exit(1)
    console.print("[green]0 citizen IDs, mobiles or card numbers in the clear[/green]")
