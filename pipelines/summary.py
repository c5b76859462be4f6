"""Printing what the lake holds and what a run did (for the CLI and the main job)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

from catalog.errors import shown
from catalog.model import Catalogue
from catalog.settings import Settings, shown_url
from lakehouse.lake import ZONES, open_lake
from lakehouse.snapshots import list_snapshots, list_tables
from pipelines.deliveries import DeliveryRow, noted_in_run, split_by_run


def print_lake(console: Console, settings: Settings, *, last_snapshots: int = 5) -> None:
    """Zones with their tables and rows, then the newest snapshots."""
    with open_lake(settings, read_only=True) as con:
        tables = list_tables(con)
        snaps = list_snapshots(con)
    table = Table(title=f"lake {shown_url(settings.lake_metadata)}")
    for col in ("zone", "tables", "rows"):
        table.add_column(col)
    for zone in ZONES:
        mine = [t for t in tables if t[0] == zone]
        table.add_row(zone, str(len(mine)), f"{sum(t[2] for t in mine):,}")
    console.print(table)
    if snaps:
        s = Table(
            title=f"snapshots ({len(snaps)} in all, newest {min(last_snapshots, len(snaps))})"
        )
        for col in ("id", "time (UTC)", "changes"):
            s.add_column(col)
        for snap in snaps[-last_snapshots:]:
            changes = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in snap.changes.items())
            s.add_row(str(snap.snapshot_id), f"{snap.time:%Y-%m-%d %H:%M:%S}", changes[:100])
        console.print(s)


@dataclass(frozen=True)
class Problem:
    """Something that went wrong, in the officer's words: where (an asset key or a delivery
    id) and what (a reason, a check, an exception's class — never a value)."""

    where: str
    what: str


@dataclass
class RunReport:
    """What one run of the main job added, and what older trouble is still open."""

    failed_deliveries: list[DeliveryRow] = field(default_factory=list)  # accounted this run
    steps: list[Problem] = field(default_factory=list)  # steps failed or blocked this run
    unbalanced: list[Problem] = field(default_factory=list)  # an account that does not add up
    older: list[DeliveryRow] = field(default_factory=list)  # failed before, not acknowledged
    still_blocked: list[Problem] = field(default_factory=list)  # a check on an older delivery
    noted: list[DeliveryRow] = field(default_factory=list)  # read this run, with a note

    @property
    def failed(self) -> bool:
        """The run fails for what it added, and for any account that does not balance; never
        for older failures (listed until acknowledged) or older blocked checks."""
        return bool(self.failed_deliveries or self.steps or self.unbalanced)


def unbalanced(rows: list[DeliveryRow], expected: dict[str, int] | None = None) -> list[Problem]:
    """Deliveries whose rows do not add up, and departments that read fewer rows than the
    simulator delivered with no failed or waiting delivery to explain it (rows lost)."""
    out = [
        Problem(r.delivery_id, "rows delivered ≠ staged + quarantined + skipped")
        for r in rows
        if not r.balances
    ]
    for dept, want in (expected or {}).items():
        mine = [r for r in rows if r.dept == dept]
        if any(r.failed or r.awaiting_gate for r in mine):
            continue
        read = sum(r.rows_read for r in mine)
        if read < want:  # more than it delivered: files dropped in besides (shown in red)
            out.append(Problem(dept, f"{read:,} rows read, the simulator delivered {want:,}"))
    return out


def run_report(
    rows: list[DeliveryRow],
    started_at: dt.datetime,
    *,
    steps: list[Problem] = (),
    still_blocked: list[Problem] = (),
    expected: dict[str, int] | None = None,
) -> RunReport:
    """Decide what this run added (it fails for that) from every delivery's account."""
    this_run, older = split_by_run(rows, started_at)
    return RunReport(
        this_run,
        list(steps),
        unbalanced(rows, expected),
        older,
        list(still_blocked),
        noted_in_run(rows, started_at),
    )


def _text(value: str | None) -> Text:
    """A name or reason as a cell: control characters escaped, no console markup."""
    return Text(shown(value)) if value else Text("—", style="dim")


def print_ingestion(
    console: Console, cat: Catalogue, rows: list[DeliveryRow], expected: dict[str, int] | None
) -> None:
    """Per department: deliveries, rows delivered = staged + quarantined + skipped, failed."""
    table = Table(title="ingestion: landing → raw → staged (row gate), per department")
    cols = ("dept", "name", "deliveries", "rows delivered", "staged", "quarantined", "skipped",
            "failed")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col in ("dept", "name") else "right")
    if expected is not None:
        table.add_column("simulator count", justify="right")
    totals = [0] * 6
    for code, dept in cat.departments.items():
        mine = [r for r in rows if r.dept == code]
        loaded = [r for r in mine if not r.failed]
        failed = [r for r in mine if r.failed]
        open_ = [r for r in failed if not r.acknowledged]
        n = (
            len(loaded),
            sum(r.rows_read for r in loaded),
            sum(r.rows_staged or 0 for r in loaded),
            sum(r.rows_quarantined for r in loaded),
            sum(r.rows_skipped or 0 for r in loaded),
            len(failed),
        )
        cells = [code, dept.name_zh, *(f"{v:,}" for v in n[:5])]
        cells.append(f"[red]{n[5]}[/red]" if open_ else str(n[5]))
        if expected is not None:
            want = expected.get(code, 0)
            cells.append(f"{want:,}" if want == n[1] else f"[red]{want:,}[/red]")
        table.add_row(*cells)
        totals = [t + v for t, v in zip(totals, n, strict=True)]
    footer = ["total", "", *(f"{v:,}" for v in totals)]
    if expected is not None:
        footer.append(f"{sum(expected.values()):,}")
    table.add_row(*footer, style="bold")
    console.print(table)
    waiting = [r for r in rows if r.awaiting_gate]
    if waiting:
        console.print(
            f"{len(waiting)} deliveries ({sum(r.rows_read for r in waiting):,} rows) are in raw "
            "but not yet through the row gate: the next run gates them"
        )


def print_failures(console: Console, title: str, rows: list[DeliveryRow]) -> None:
    """Failed deliveries, a block each: the id to act on, the file as delivered and the
    reason (both escaped), who acknowledged it. Blocks, not a table: ids stay whole."""
    console.print(title)
    for r in rows:
        console.print(Text(f"  {r.delivery_id}  {r.dept}.{r.dataset}  failed "
                           f"{r.accounted_at:%Y-%m-%d %H:%M} UTC"))  # fmt: skip
        console.print(Text(f"    file: {shown(r.file_name or '(nothing landed)')}"))
        console.print(Text(f"    reason: {shown(r.reason or '')}"))
        if r.acknowledged:
            by = f"{r.acked_by} {r.acked_at:%Y-%m-%d %H:%M} UTC: {r.ack_reason or ''}"
            console.print(Text(f"    acknowledged by {shown(by)}"))


def print_notes(console: Console, title: str, rows: list[DeliveryRow]) -> None:
    """Deliveries read with a note on what the file said against the catalogue (another
    encoding, tabs, a header under a title, compressed …), a block each: the catalogue is
    the officer's to correct, the file was read."""
    console.print(title)
    for r in rows:
        console.print(Text(f"  {r.delivery_id}  {r.dept}.{r.dataset}"))
        console.print(Text(f"    file: {shown(r.file_name or '')}"))
        for note in (r.notes or "").split("; "):
            console.print(Text(f"    {shown(note)}"))


def print_run_report(console: Console, report: RunReport) -> None:
    """This run's failures (the run fails for them), then older open ones (it does not);
    first, the deliveries read with a note (the run does not fail for them)."""
    if report.noted:
        print_notes(
            console,
            "deliveries read in this run where the file said otherwise than the catalogue "
            "(read as the file says; correct the catalogue):",
            report.noted,
        )
    if report.failed_deliveries:
        print_failures(console, "[red]deliveries that failed in this run[/red]",
                       report.failed_deliveries)  # fmt: skip
    for title, problems in (
        ("[red]datasets that failed or were blocked in this run[/red]", report.steps),
        ("[red]accounts that do not balance[/red]", report.unbalanced),
        ("checks still blocking on an older delivery (not failing this run)",
         report.still_blocked),
    ):  # fmt: skip
        if problems:
            table = Table(title=title, title_justify="left")
            table.add_column("where")
            table.add_column("what")
            for p in problems:
                table.add_row(_text(p.where), _text(p.what))
            console.print(table)
    if report.older:
        print_failures(
            console,
            f"older failures not yet acknowledged ({len(report.older)}, not failing this run): "
            "`streethub deliveries ack ID --reason …` or `… retry ID`",
            report.older,
        )


def print_curated(console: Console, summary: dict | None) -> None:
    """The curated zone: persons linked across departments, review queue, houses, events,
    and the re-collection figure per department (counts only, never a value)."""
    if summary is None:
        console.print("curated zone: not built yet")
        return
    methods = ", ".join(f"{n:,} {m}" for m, n in sorted(summary["methods"].items()))
    console.print(
        f"curated ({summary['last_build']} build, {summary['last_build_seconds']:.1f} s): "
        f"{summary['persons']:,} persons from {summary['mentions']:,} records ({methods}); "
        f"{summary['review']:,} candidate link(s) wait in review (`streethub persons review`)"
    )
    linked = summary["house_mentions_linked"]
    console.print(
        f"  {summary['households']:,} households, {summary['houses']:,} houses "
        f"({linked:,} of {summary['house_mentions']:,} addresses linked to a unit), "
        f"{summary['things']:,} things, {summary['events']:,} events"
    )
    by_dept = summary["recollection"]
    if by_dept is None or not by_dept.height:
        return
    table = Table(title="re-collection: values departments type in that the authority holds")
    for col in ("dept", "concepts", "values collected", "readable from the authority", "share"):
        table.add_column(col, justify="left" if col == "dept" else "right")
    for r in by_dept.iter_rows(named=True):
        share = r["readable_share"]
        table.add_row(
            r["dept"], str(r["concepts"]), f"{r['rows_collected']:,}", f"{r['rows_readable']:,}",
            "—" if share is None else f"{share:.1%}",
        )  # fmt: skip
    console.print(table)
    if summary["avoidable"] is not None:
        console.print(
            f"  duplicate entry avoidable: {summary['avoidable']:.1%} of re-collected values "
            "could be read from their authoritative source (一次采集、多方复用)"
        )


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.2%}" if unit == "share" else f"{value:,.2f} h"


def _goal(goal: float | None, unit: str) -> str:
    if goal is None:
        return ""
    return f"≥ {goal:.0%}" if unit == "share" else f"≤ {goal:g} h"


def print_governance(console: Console, scorecard: pl.DataFrame | None) -> None:
    """The street's governance scorecard (``marts.governance_scorecard``): each headline
    figure with its numerator / denominator, goal and whether it is met (formulas:
    marts/README.md "Figures")."""
    if scorecard is None or not scorecard.height:
        console.print("governance scorecard: not built yet")
        return
    table = Table(title="街道数据治理记分卡 governance scorecard (marts.governance_scorecard)")
    for col in ("figure", "value", "of", "goal", "met"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for r in scorecard.iter_rows(named=True):
        of = (
            f"{r['numerator']:,.0f} / {r['denominator']:,.0f}"
            if r["numerator"] is not None and r["denominator"] is not None
            else (f"{r['denominator']:,.0f} measured" if r["denominator"] is not None else "")
        )
        met = {True: "[green]yes[/green]", False: "[red]no[/red]"}.get(r["meets_goal"], "—")
        table.add_row(
            Text(f"{r['name_zh']} {r['figure']}"), _figure(r["value"], r["unit"]), of,
            _goal(r["goal"], r["unit"]), met,
        )  # fmt: skip
    console.print(table)
