"""The main job on the embedded default, with a summary.

deliveries (inbox, department systems) → landing → raw → staged → scorecard, run as
Dagster materialisations in-process (so the runs show up in the Dagster UI afterwards):
one run with a step per dataset that has work, then one for the scorecard and the leak
scan (``pipelines/ingest_run.py``), with a progress bar.

The simulated departments are the outside world: the main job makes a street only when
asked (``streethub run --simulate``) or on a newcomer's first run (``sim_auto``) when the
simulator's folder holds none; while that folder holds a street, its systems are served
and reached through the same connection settings as real ones. With no simulator folder
nothing of ``departments`` is imported; the ground-truth figures (``quality.evaluation``)
are printed only for deliveries the simulator made.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table

from catalog.errors import StreethubError
from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import API_URL_ENV, Settings
from catalog.street import get_street
from lakehouse.lake import drop_file_cache, hold_lake, open_lake, renew_hold
from lakehouse.snapshots import list_tables
from pipelines.curated_run import curated_summary
from pipelines.custody import Custody, close_run
from pipelines.deliveries import list_deliveries
from pipelines.ingest_run import ingest_all
from pipelines.instance import shared_instance
from pipelines.marts_run import MartsOutcome, governance_scorecard, run_marts
from pipelines.memory import HighWater
from pipelines.need_model_run import print_need_model, run_need_model
from pipelines.resources import ledger_ready
from pipelines.summary import (
    print_curated,
    print_governance,
    print_ingestion,
    print_lake,
    print_run_report,
    run_report,
)
from pipelines.truth_run import evaluate_against_truth
from quality.evaluation import Evaluation, expected_rows, read_manifest


def simulate_if_needed(settings: Settings, console: Console, *, force: bool = False) -> None:
    """Simulate one street into the inbox and the simulator's folder when asked (``force``)
    or, with ``sim_auto``, when that folder holds no street yet — never because the inbox
    is empty (it empties as deliveries land)."""
    if not force and not settings.sim_auto:
        return
    from departments.connect import has_street

    if not force and has_street(settings.sim_dir_abs):
        console.print(
            f"simulated departments: {settings.sim_dir_abs} (`streethub run --simulate` makes "
            "a new street)"
        )
        return
    from departments.simulate import simulate  # the generator: only when it generates

    console.print(
        f"simulating one street: {settings.sim_residents:,} residents, seed {settings.sim_seed}, "
        f"{settings.sim_days} days"
        + (f", {settings.sim_history_days} days of history" if settings.sim_history_days else "")
        + " …"
    )
    with console.status("simulating departments") as status:
        simulate(
            settings.home_abs,
            residents=settings.sim_residents,
            seed=settings.sim_seed,
            days=settings.sim_days,
            progress=lambda msg: status.update(f"simulating: {msg}"),
            sim_dir=settings.sim_dir_abs,
            history_days=settings.sim_history_days or None,
        )


@contextlib.contextmanager
def simulated_systems(settings: Settings) -> Iterator[Settings]:
    """While the simulator's folder exists: its APIs served and its connection settings
    (database URLs, API URL and token) set in this process, as a real department's would
    be given; yields the settings with them. Without that folder: the settings as they are.
    Where ``STREETHUB_DEPT_API_URL`` is set, the APIs are served already, apart from the
    hub as a real department's are (``streethub simulate serve``): they are reached there
    and no server is started."""
    if not settings.sim_dir_abs.exists():
        yield settings
        return
    from departments.connect import connection_env, environment
    from departments.connect import simulated_systems as serve

    if os.environ.get(API_URL_ENV):
        env = connection_env(settings.sim_dir_abs, settings.dept_api_url)
        with environment(env):  # as serving them sets it (the steps read the environment)
            yield settings.connected(env)
        return

    with serve(settings.sim_dir_abs, fault_rate=settings.sim_api_fault_rate) as env:
        yield settings.connected(env)


# A street from which the need model gets a new DuckDB instance (lakehouse.lake.renew_hold):
# the old one kept C heap for every statement of the ingest and the marts, ~50 MB whatever
# the street's size (47 MB at 1,000 residents, 57 at 200,000: it follows the statements, not
# the rows), given back with it. That matters where the need model's memory nears the run's
# peak, on large streets; a new instance costs ~0.28 CPU s (its extensions' load), 4 % of
# a 1,000-resident street's need model. ~27,000 residents and up.
RENEW_AT_STAGED_ROWS = 400_000


def renews(settings: Settings) -> bool:
    """Whether the need model gets a new instance: the lake's staged rows reach
    :data:`RENEW_AT_STAGED_ROWS` (counted from DuckLake's catalogue, one read)."""
    with open_lake(settings, read_only=True) as con:
        rows = sum(n for zone, _, n in list_tables(con) if zone == "staged")
    return rows >= RENEW_AT_STAGED_ROWS


def run_main(settings: Settings, console: Console, *, simulate: bool = False) -> None:
    """The main job and its summary; a StreethubError when this run added a failure (a
    delivery, a dataset step, an account that does not balance) or found a leak.
    ``simulate``: make a new simulated street first."""
    settings = settings.ensure_dirs()
    cat = load_catalogue(settings.catalog_dir)
    street = get_street(settings.street_file)
    console.print(
        f"catalogue OK: {len(cat.departments)} departments, {len(cat.datasets())} datasets; "
        f"street {street.name} ({street.code}), {len(street.communities)} communities"
    )
    # the writer's hold creates the lake when it is new (its zones) and is the one attach
    # of the whole run: the ingest (ingest_all's own hold is the same one), the marts, the
    # summary's reads and custody's writes are cursors of it (custody's writer attach, which
    # loads the lake's catalogue anew, was ~2 % of a daily delivery's run at 20,000 residents)
    # one Dagster instance for all the runs (opening one opens its three storages)
    with hold_lake(settings), shared_instance(settings):
        simulate_if_needed(settings, console, force=simulate)
        started_at = dt.datetime.now(dt.UTC)
        # the simulated systems are served only when a pull is due (a no-op run imports none)
        memory = HighWater()  # where the run's peak is, said at its end
        outcome = ingest_all(
            settings, cat, console, started_at, systems=simulated_systems, memory=memory
        )
        memory.mark("the curated build, scorecard and leak scan")
        with open_lake(settings, read_only=True) as con:
            drop_file_cache(con)  # what follows keeps no Parquet page it read
        with ledger_ready(settings):  # ensured by ingest_all in this hold: writers skip it
            with console.status("marts: catalogue, marts, de-identification, governance scorecard"):
                marts = run_marts(settings, cat, started_at, changed=outcome.scorecard_ran)
            memory.mark("the marts")
            if (outcome.selected or marts.ran) and renews(settings):
                renew_hold(settings)  # the C heap the old instance kept goes with it
                with open_lake(settings, read_only=True) as con:
                    drop_file_cache(con)  # the new instance's cache too
            with console.status("need model: features, model (only when none is promoted), scores"):
                need = run_need_model(settings, started_at)
            memory.mark("the need model")
        with open_lake(settings, read_only=True) as con:
            rows = list_deliveries(con)
        # the simulator's counts for the departments this catalogue describes
        expected = expected_rows(settings.sim_dir_abs, cat.departments)
        print_ingestion(console, cat, rows, expected)
        report = run_report(
            rows, started_at, steps=outcome.steps + marts.steps + need.steps,
            still_blocked=outcome.still_blocked,
            expected=expected,
        )  # fmt: skip
        if outcome.scorecard_ok:
            print_quality(console, settings, cat, evaluate=outcome.scorecard_ran)
        with open_lake(settings, read_only=True) as con:
            print_curated(console, curated_summary(con))
        print_lake(console, settings)
        print_run_report(console, report)
        if outcome.leak_check is not None:
            cells = outcome.leak_check.metadata["cells_scanned"].value
            console.print(
                f"leak scan of the lake: no personal information in the clear in {cells:,} cells "
                "(sensitive raw and staged columns are encrypted)"
            )
        else:
            console.print("[red]leak scan: not run (the quality scorecard failed)[/red]")
        print_custody(console, close_run(settings, cat, started_at))
        print_marts(console, marts)
        print_need_model(console, need)
        memory.mark("the summary, truth evaluation and custody")
        console.print(memory.sentence())
        console.print(memory.timing())
        if report.failed or outcome.leak_check is None:
            print_governance(console, governance_scorecard(settings))
            n = len(report.failed_deliveries) + len(report.steps) + len(report.unbalanced)
            raise StreethubError(
                f"this run added {n} failure(s) (see the tables above; "
                "`streethub deliveries list --failed`)"
            )
        waiting = (
            f"; {len(report.older)} older failed deliveries wait for an officer"
            if report.older
            else ""
        )
        console.print(
            f"[green]every row of every delivery read is staged, quarantined or skipped[/green]{waiting}"
        )
        print_governance(console, governance_scorecard(settings))  # make run ends with it


def print_marts(console: Console, marts: MartsOutcome) -> None:
    """Which marts this run built (nothing changed: the marts in the lake still hold)."""
    if not marts.ran:
        console.print("marts: nothing new since they were built; they still hold")
        return
    kept = f"; {len(marts.skipped)} unchanged (nothing they read changed)" if marts.skipped else ""
    console.print(f"marts built: {len(marts.built)} ({', '.join(marts.built)}){kept}")


def print_custody(console: Console, custody: Custody) -> None:
    """Where the master key is, what retention removed, the scan of what this run changed,
    and the audit checkpoint's receipt."""
    if custody.migration:
        console.print(f"[yellow]{custody.migration}[/yellow]")
    console.print(f"master key: {custody.keys} (never under the home)")
    if custody.landed_removed or custody.expired.snapshots:
        console.print(
            f"retention: {custody.landed_removed:,} landed file(s) removed, "
            f"{custody.expired.snapshots:,} lake snapshot(s) expired "
            f"({custody.expired.files:,} file(s) deleted)"
        )
    places = len(custody.scan.findings)
    cells = sum(f.cells for f in custody.scan.findings)
    console.print(
        f"leak scan of what this run changed: 0 values in the clear in {places:,} places "
        f"({cells:,} cells and lines; landed files proven ciphertext)"
    )
    console.print(f"audit log: {custody.audit_records:,} records verified")
    if custody.receipt:
        console.print(custody.receipt, soft_wrap=True)


def print_quality(
    console: Console, settings: Settings, cat: Catalogue, *, evaluate: bool = True
) -> None:
    """The department scorecard, the figures against ground truth (when the scorecard ran
    in this run: nothing new, nothing to evaluate again), where the report is."""
    from quality.report import scorecard_text

    with open_lake(settings, read_only=True) as con:
        scorecard = con.execute("SELECT * FROM marts.quality_scorecard").pl()
    console.print(scorecard_text(scorecard.filter(scorecard["dataset"] == "*")))
    if evaluate:
        print_truth(console, evaluate_against_truth(settings, cat))
    elif read_manifest(settings.sim_dir_abs) is not None:
        console.print(
            "ground truth: nothing staged since the last run "
            "(`streethub quality report` evaluates again)"
        )
    console.print(f"quality report: {settings.home_abs / 'reports' / 'quality.html'}")


def print_truth(console: Console, evaluation: Evaluation | None) -> None:
    """Cleaning figures against the simulator's ground truth (for its deliveries only)."""
    if evaluation is None:
        return
    totals, problems = evaluation.totals, evaluation.problems
    table = Table(
        title=f"the row gate against the simulator's ground truth "
        f"({evaluation.deliveries} of its deliveries landed)"
    )
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
    for line in evaluation.link_lines():  # the master index's links, once it is built
        console.print(line)
    for p in problems:
        console.print(f"[red]target missed: {p}[/red]")
