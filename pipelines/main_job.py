"""The main job on the embedded default, with a summary.

simulated departments → inbox / department systems → landing → raw, run as
Dagster materialisations in-process (so the runs show up in the Dagster UI
afterwards), department by department with a progress bar. Later issues add
staged → marts → model.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table

from catalog.errors import StreethubError
from catalog.loader import load_catalogue
from catalog.settings import Settings
from catalog.street import get_street
from lakehouse.lake import init_lake, open_lake
from masking.audit import AuditLog
from pipelines.deliveries import list_deliveries
from pipelines.ingest_run import ingest_all
from pipelines.summary import print_ingestion, print_lake, print_run_report, run_report


def inbox_is_empty(settings: Settings) -> bool:
    inbox = settings.inbox_dir
    return not inbox.exists() or not any(p.is_file() for p in inbox.rglob("*"))


def simulate_if_needed(settings: Settings, console: Console) -> None:
    if not inbox_is_empty(settings):
        console.print(f"inbox has deliveries already: {settings.inbox_dir} (not simulating)")
        return
    from departments.simulate import simulate

    console.print(
        f"simulating one street: {settings.sim_residents:,} residents, seed {settings.sim_seed}, "
        f"{settings.sim_days} days …"
    )
    with console.status("simulating departments") as status:
        simulate(
            settings.home_abs,
            residents=settings.sim_residents,
            seed=settings.sim_seed,
            days=settings.sim_days,
            progress=lambda msg: status.update(f"simulating: {msg}"),
        )


@contextlib.contextmanager
def department_apis(settings: Settings) -> Iterator[None]:
    """Run the simulated departments' HTTP APIs for the length of the block."""
    from departments.server import running_server

    with running_server(settings.home_abs, fault_rate=settings.sim_api_fault_rate) as url:
        old = os.environ.get("STREETHUB_DEPT_API_URL")
        os.environ["STREETHUB_DEPT_API_URL"] = url
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("STREETHUB_DEPT_API_URL", None)
            else:
                os.environ["STREETHUB_DEPT_API_URL"] = old


def manifest_rows(manifest: dict) -> dict[tuple[str, str], int]:
    """Rows delivered per (dept, dataset) by the simulator's own count."""
    return {
        (dept, code): sum(int(n) for n in entry.get("rows", {}).values())
        for dept, datasets in manifest.get("departments", {}).items()
        for code, entry in datasets.items()
    }


def expected_rows(settings: Settings) -> dict[str, int] | None:
    """Rows per department by the simulator's own count (None if it did not simulate)."""
    path = settings.truth_dir / "manifest.json"
    if not path.exists():
        return None
    out: dict[str, int] = {}
    for (dept, _), n in manifest_rows(json.loads(path.read_text(encoding="utf-8"))).items():
        out[dept] = out.get(dept, 0) + n
    return out


def run_main(settings: Settings, console: Console) -> None:
    """The main job and its summary; a StreethubError when this run added a failure (a
    delivery, a dataset step, an account that does not balance) or found a leak."""
    settings = settings.ensure_dirs()
    cat = load_catalogue(settings.catalog_dir)
    street = get_street(settings.street_file)
    console.print(
        f"catalogue OK: {len(cat.departments)} departments, {len(cat.datasets())} datasets; "
        f"street {street.name} ({street.code}), {len(street.communities)} communities"
    )
    init_lake(settings)
    simulate_if_needed(settings, console)
    started_at = dt.datetime.now(dt.UTC)
    with department_apis(settings):
        outcome = ingest_all(settings, cat, console, started_at)
    with open_lake(settings, read_only=True) as con:
        rows = list_deliveries(con)
    expected = expected_rows(settings)
    print_ingestion(console, cat, rows, expected)
    report = run_report(
        rows, started_at, steps=outcome.steps, still_blocked=outcome.still_blocked,
        expected=expected,
    )  # fmt: skip
    if outcome.scorecard_ok:
        print_quality(console, settings)
    print_lake(console, settings)
    print_run_report(console, report)
    if outcome.leak_check is not None:
        cells = outcome.leak_check.metadata["cells_scanned"].value
        console.print(
            f"leak scan: 0 unmasked IDs, mobiles, bank cards or names in {cells:,} cells "
            "outside raw/staged"
        )
    else:
        console.print("[red]leak scan: not run (the quality scorecard failed)[/red]")
    audit = AuditLog.from_settings(settings).verify()
    if not audit.ok:
        raise StreethubError("the audit log does not verify: " + "; ".join(audit.problems[:3]))
    console.print(f"audit log: {audit.records:,} records, hash chain and signatures verified")
    if report.failed or outcome.leak_check is None:
        n = len(report.failed_deliveries) + len(report.steps) + len(report.unbalanced)
        raise StreethubError(
            f"this run added {n} failure(s) (see the tables above; "
            "`streethub deliveries list --failed`)"
        )
    waiting = (
        f"; {len(report.older)} older failed deliveries wait for an officer" if report.older else ""
    )
    console.print(
        f"[green]every row of every delivery read is staged, quarantined or skipped[/green]{waiting}"
    )


def print_quality(console: Console, settings: Settings) -> None:
    """The department scorecard, the figures against ground truth, where the report is."""
    from pipelines.quality_run import read_truth
    from quality.report import scorecard_text

    with open_lake(settings, read_only=True) as con:
        scorecard = con.execute("SELECT * FROM marts.quality_scorecard").pl()
        truth, problems = read_truth(con)
    console.print(scorecard_text(scorecard.filter(scorecard["dataset"] == "*")))
    print_truth(console, truth, problems)
    console.print(f"quality report: {settings.home_abs / 'reports' / 'quality.html'}")


def print_truth(console: Console, totals: dict[str, float] | None, problems: list[str]) -> None:
    """Cleaning figures against the simulator's ground truth (when it simulated)."""
    if totals is None:
        return
    table = Table(title="the row gate against the simulator's ground truth")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    wrong = totals.get("wrong_values", 0.0)
    gate = totals.get("wrong_values_quarantined", 0.0)
    flagged = totals.get("wrong_values_flagged", 0.0)
    rows = [
        ("rows delivered", f"{totals['rows']:,.0f}", ""),
        ("dirty rows", f"{totals['dirty_rows']:,.0f}", "≥ 5 %"),
        ("repaired to the true value", f"{totals['repaired']:,.0f}", ""),
        ("quarantined", f"{totals['quarantined']:,.0f}", ""),
        ("cleaning rate (repaired ÷ recoverable)", f"{totals['cleaning_rate']:.2%}", "≥ 98 %"),
        ("repaired citizen IDs equal to the truth", f"{totals['citizen_id_exact']:.2%}", "100 %"),
        ("clean rows wrongly quarantined", f"{totals['clean_rows_quarantined']:,.0f}", "0"),
        ("defects neither repaired nor quarantined", f"{totals['defects_missed']:,.0f}", "0"),
        ("valid-but-wrong values (disagree with the authoritative source)", f"{wrong:,.0f}", ""),
        ("  … quarantined: the row's own citizen ID contradicts them", f"{gate:,.0f}", ""),
        ("  … flagged by consistency / accuracy", f"{flagged:,.0f}", ""),
        (
            "  … not checkable (no person key, or not in the registry)",
            f"{wrong - gate - flagged:,.0f}",
            "",
        ),
    ]
    for r in rows:
        table.add_row(*r)
    console.print(table)
    for p in problems:
        console.print(f"[red]target missed: {p}[/red]")
