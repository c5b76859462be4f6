"""The main job on the embedded default, with a summary.

simulated departments → inbox / department systems → landing → raw, run as
Dagster materialisations in-process (so the runs show up in the Dagster UI
afterwards), department by department with a progress bar. Later issues add
staged → marts → model.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from catalog.errors import StreethubError
from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import Settings
from catalog.street import get_street
from lakehouse.lake import init_lake, open_lake
from masking.audit import AuditLog
from pipelines.defs.protection.checks import LEAK_CHECK, build_leak_check
from pipelines.defs.quality.assets import build_scorecard_asset, build_staged_asset, staged_key
from pipelines.defs.quality.checks import build_contract_check
from pipelines.defs.sources.assets import build_dataset_assets
from pipelines.defs.sources.checks import build_account_check
from pipelines.instance import prepare_dagster_home
from pipelines.recovery import recover, run_tags
from pipelines.resources import LakeResource
from pipelines.summary import print_lake


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


def ingest_all(settings: Settings, cat: Catalogue, console: Console) -> dg.AssetCheckEvaluation:
    """Materialise every landing, raw and staged asset, a department at a time, then the
    quality scorecard and the leak scan; return the leak scan's evaluation."""
    prepare_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    recover(settings, instance)  # dead runs failed, their pool slots freed, lake swept
    depts = list(cat.departments.values())
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("ingesting", total=len(depts) + 1)
        for dept in depts:
            progress.update(task, description=f"ingesting {dept.code} {dept.name_zh}")
            assets = [a for ds in dept.datasets for a in build_dataset_assets(dept, ds)]
            assets += [build_staged_asset(dept, ds) for ds in dept.datasets]
            checks = [build_account_check(dept, ds) for ds in dept.datasets]
            checks += [build_contract_check(dept, ds) for ds in dept.datasets]
            result = dg.materialize(
                [*assets, *checks],
                instance=instance,
                resources={"lake": LakeResource()},
                tags={"streethub/job": "main", "dept": dept.code, **run_tags()},
                # the progress bar and the summary speak here; the full log is in the UI
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                raise_on_error=False,
            )
            if not result.success:
                raise StreethubError(f"ingesting {dept.code} failed; see the Dagster run logs")
            progress.advance(task)
        progress.update(task, description="quality scorecard, expectations, report")
        keys = [staged_key(d.code, ds.code) for d, ds in cat.datasets()]
        result = dg.materialize(
            [build_scorecard_asset(keys), build_leak_check()],
            instance=instance,
            resources={"lake": LakeResource()},
            tags={"streethub/job": "main", **run_tags()},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
        leak_checks = [
            e for e in result.get_asset_check_evaluations() if e.check_name == LEAK_CHECK
        ]
        if leak_checks and not leak_checks[0].passed:
            places = leak_checks[0].metadata["places_with_unmasked_values"].value
            raise StreethubError(
                f"unmasked personal information outside the encrypted zones in {places}: "
                "run `streethub leaks scan` for rows and columns"
            )
        if not result.success or not leak_checks:
            raise StreethubError("the quality scorecard failed; see the Dagster run logs")
        progress.advance(task)
    return leak_checks[0]


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


def ingestion_summary(settings: Settings) -> list[tuple]:
    """(dept, deliveries, rows read, staged, quarantined, failed) from the accounts."""
    with open_lake(settings, read_only=True) as con:
        return con.execute(
            """SELECT a.dept,
                      count(*) FILTER (WHERE a.status = 'loaded'),
                      coalesce(sum(a.rows_read), 0),
                      coalesce(sum(s.rows_out), 0),
                      coalesce(sum(a.rows_quarantined), 0) + coalesce(sum(s.rows_quarantined), 0),
                      count(*) FILTER (WHERE a.status = 'failed')
               FROM landing.delivery_accounts a
               LEFT JOIN landing.stage_accounts s USING (delivery_id)
               GROUP BY a.dept ORDER BY a.dept"""
        ).fetchall()


def print_ingestion(console: Console, settings: Settings, cat: Catalogue) -> bool:
    """The per-department table; True when every delivery is in and balances."""
    rows = {r[0]: r for r in ingestion_summary(settings)}
    expected = expected_rows(settings)
    table = Table(title="ingestion: landing → raw → staged (row gate), per department")
    for col in ("dept", "name", "deliveries", "rows delivered", "staged", "quarantined", "failed"):
        table.add_column(col, justify="right" if col not in ("dept", "name") else "left")
    if expected is not None:
        table.add_column("simulator count", justify="right")
    ok = True
    totals = [0, 0, 0, 0, 0]
    for code, dept in cat.departments.items():
        _, n, read, loaded, quarantined, failed = rows.get(code, (code, 0, 0, 0, 0, 0))
        ok &= failed == 0 and read == loaded + quarantined
        cells = [code, dept.name_zh, f"{n:,}", f"{read:,}", f"{loaded:,}", f"{quarantined:,}"]
        cells.append(f"[red]{failed}[/red]" if failed else "0")
        if expected is not None:
            want = expected.get(code, 0)
            ok &= want == read
            cells.append(f"{want:,}" if want == read else f"[red]{want:,}[/red]")
        table.add_row(*cells)
        for i, v in enumerate((n, read, loaded, quarantined, failed)):
            totals[i] += v
    footer = ["total", "", *(f"{v:,}" for v in totals)]
    if expected is not None:
        footer.append(f"{sum(expected.values()):,}")
    table.add_row(*footer, style="bold")
    console.print(table)
    return ok


def run_main(settings: Settings, console: Console) -> None:
    settings = settings.ensure_dirs()
    cat = load_catalogue(settings.catalog_dir)
    street = get_street(settings.street_file)
    console.print(
        f"catalogue OK: {len(cat.departments)} departments, {len(cat.datasets())} datasets; "
        f"street {street.name} ({street.code}), {len(street.communities)} communities"
    )
    init_lake(settings)
    simulate_if_needed(settings, console)
    with department_apis(settings):
        leak_check = ingest_all(settings, cat, console)
    ok = print_ingestion(console, settings, cat)
    print_quality(console, settings)
    print_lake(console, settings)
    if not ok:
        raise StreethubError("some deliveries failed or do not balance; see the table above")
    cells = leak_check.metadata["cells_scanned"].value
    console.print(
        f"leak scan: 0 unmasked IDs, mobiles, bank cards or names in {cells:,} cells outside "
        "raw/staged"
    )
    audit = AuditLog.from_settings(settings).verify()
    if not audit.ok:
        raise StreethubError("the audit log does not verify: " + "; ".join(audit.problems[:3]))
    console.print(f"audit log: {audit.records:,} records, hash chain and signatures verified")
    console.print("[green]every delivered row is staged or quarantined[/green]")


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
