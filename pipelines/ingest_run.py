"""The main job's Dagster runs: what to materialise, and what failed.

The main job (``pipelines/main_job.py``) calls :func:`ingest_all`; the summary
reads the :class:`IngestOutcome` it returns.

A run is incremental (:func:`select_work`): it materialises, through Dagster's
asset selection, the assets of the datasets that have something to do and what
depends on them —

- a file dataset whose inbox holds a *new* entry (the one notion landing and the
  inbox sensors share: :func:`pipelines.ingest.inbox.new_entries`) → landing,
  raw and staged;
- a pulled dataset (database, HTTP API) whose pull is *due*: never pulled, or a
  tick of its schedule (the catalogue's update cycle, Dagster's cron) has passed
  since the last pull → landing, raw and staged;
- a dataset whose ledger holds landed deliveries not yet read → raw and staged,
  or read deliveries not yet through the row gate → staged.

The quality scorecard, expectations and the leak scan run when one of those ran,
or when the ledger changed after the last scorecard (a sensor's run, an
acknowledgement), or when no leak scan of the current scorecard is on record.
A run with nothing to do materialises nothing and reports the last leak scan,
which still holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg
import duckdb
from dagster._utils.schedules import get_latest_completed_cron_tick
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalog.errors import StreethubError
from catalog.model import FILE_CONNECTORS, Catalogue, Dataset, Department
from catalog.settings import Settings
from lakehouse.lake import has_table, hold_lake, open_lake
from pipelines.defs.protection.checks import LEAK_CHECK, build_leak_check
from pipelines.defs.quality.assets import (
    SCORECARD_KEY,
    build_scorecard_asset,
    build_staged_asset,
    staged_key,
)
from pipelines.defs.quality.checks import build_contract_check
from pipelines.defs.sources.assets import build_dataset_assets, landing_key, raw_key
from pipelines.defs.sources.checks import build_account_check
from pipelines.defs.sources.jobs import file_datasets
from pipelines.defs.sources.schedules import PULL_TIMEZONE
from pipelines.ingest.inbox import known_keys, new_entries, scan_inbox
from pipelines.ingest.ledger import ensure_ledger, last_change, last_pulls, unprocessed
from pipelines.instance import prepare_dagster_home
from pipelines.recovery import recover, run_tags
from pipelines.resources import LakeResource
from pipelines.summary import Problem


@dataclass
class IngestOutcome:
    """What the main job's Dagster runs did that the summary must tell."""

    steps: list[Problem] = field(default_factory=list)  # failed, blocked or skipped this run
    still_blocked: list[Problem] = field(default_factory=list)  # a check on an older delivery
    leak_check: dg.AssetCheckEvaluation | None = None  # None: the scorecard did not run
    scorecard_ok: bool = False
    selected: dict[str, list[str]] = field(default_factory=dict)  # dept → assets materialised
    scorecard_ran: bool = False  # False: nothing changed, the last scorecard and scan hold


def _step_assets(defs: list) -> dict[str, str]:
    """Step (op) name → what it makes, as ``zone/dept/dataset`` (or ``…:check``)."""
    out = {}
    for d in defs:
        if isinstance(d, dg.AssetChecksDefinition):
            for spec in d.check_specs:
                out[d.node_def.name] = f"{spec.asset_key.to_user_string()}:{spec.name}"
        else:
            out[d.node_def.name] = d.key.to_user_string()
    return out


def run_problems(
    result: dg.ExecuteInProcessResult, defs: list, started_at: dt.datetime
) -> tuple[list[Problem], list[Problem]]:
    """(problems this run added, checks still blocking on a delivery gated before the run)
    from one materialisation: steps that raised (by exception class: messages may quote
    data), blocking checks that failed, and assets skipped because of either."""
    names = _step_assets(defs)
    this_run: list[Problem] = []
    older: list[Problem] = []
    for event in result.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
            continue  # told below from the check's own evaluation
        cause = error.cause if error is not None and error.cause is not None else error
        what = f"step failed ({cause.cls_name if cause else 'unknown error'})"
        this_run.append(Problem(names.get(event.step_key, event.step_key), what))
    for e in result.get_asset_check_evaluations():
        if e.passed or not e.blocking:
            continue
        meta = {k: v.value for k, v in e.metadata.items()}
        where = f"{e.asset_key.to_user_string()}:{e.check_name}"
        what = "blocking check failed"
        if "newest_pass_rate" in meta:
            what += f": newest delivery {meta['newest_pass_rate']:.0%} passed the row gate"
        if meta.get("unbalanced"):
            what += f"; {len(meta['unbalanced'])} unbalanced deliveries"
        staged_at = meta.get("newest_staged_at")
        before = bool(staged_at) and dt.datetime.fromisoformat(staged_at) < started_at
        (older if before and not meta.get("unbalanced") else this_run).append(Problem(where, what))
    made = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    failed = {p.where for p in this_run}
    for d in defs:
        if isinstance(d, dg.AssetChecksDefinition):
            continue
        key = d.key.to_user_string()
        if key not in made and key not in failed:
            this_run.append(Problem(key, "not materialised: what it depends on failed"))
    return this_run, older


def pull_due(ds: Dataset, last_pulled: dt.datetime | None, now: dt.datetime) -> bool:
    """Never pulled, or a tick of the dataset's pull schedule has passed since the last
    pull (the schedules' own cron, evaluated by Dagster's cron iterator)."""
    if last_pulled is None:
        return True
    tick = get_latest_completed_cron_tick(ds.update_cycle.cron, now, PULL_TIMEZONE)
    return tick > last_pulled


def select_work(
    settings: Settings, cat: Catalogue, con: duckdb.DuckDBPyConnection, now: dt.datetime
) -> dict[str, list[dg.AssetKey]]:
    """Department → the assets with work of their own (materialised with what depends on
    them); a department with nothing to do is absent."""
    unread, ungated = unprocessed(con)
    pulled = last_pulls(con)
    work: dict[str, list[dg.AssetKey]] = {}
    for dept in cat.departments.values():
        files = file_datasets(dept)
        fresh: set[str] = set()
        if files:
            scan = scan_inbox(settings, dept.code, files)
            fresh = {e.dataset for e in new_entries(scan, known_keys(con, dept.code))}
        keys = []
        for ds in dept.datasets:
            if ds.delivery.kind in FILE_CONNECTORS:
                land_now = ds.code in fresh
            else:
                land_now = pull_due(ds, pulled.get((dept.code, ds.code)), now)
            if land_now:
                keys.append(landing_key(dept.code, ds.code))
            elif (dept.code, ds.code) in unread:
                keys.append(raw_key(dept.code, ds.code))
            elif (dept.code, ds.code) in ungated:
                keys.append(staged_key(dept.code, ds.code))
        if keys:
            work[dept.code] = keys
    return work


def scorecard_stale(con: duckdb.DuckDBPyConnection) -> bool:
    """No scorecard yet, or the ledger changed after the last one was computed."""
    if not has_table(con, "marts", "quality_scorecard"):
        return True
    scored = con.execute("SELECT max(computed_at) FROM marts.quality_scorecard").fetchone()[0]
    changed = last_change(con)
    return scored is None or (changed is not None and changed > scored)


def last_leak_scan(instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation | None:
    """The newest evaluation of the leak scan on record (None: none, or it did not finish)."""
    check = dg.AssetCheckKey(SCORECARD_KEY, LEAK_CHECK)
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check]).get(check)
    event = record.event if record is not None else None
    data = event.dagster_event.event_specific_data if event and event.dagster_event else None
    return data if isinstance(data, dg.AssetCheckEvaluation) else None


def department_defs(dept: Department) -> list:
    """Every asset and check of one department (what a selection picks from)."""
    defs = [a for ds in dept.datasets for a in build_dataset_assets(dept, ds)]
    defs += [build_staged_asset(dept, ds) for ds in dept.datasets]
    defs += [build_account_check(dept, ds) for ds in dept.datasets]
    defs += [build_contract_check(dept, ds) for ds in dept.datasets]
    return defs


def selected_defs(defs: list, selection: dg.AssetSelection) -> list:
    """The assets a selection resolves to among ``defs``, with their checks."""
    assets = [d for d in defs if not isinstance(d, dg.AssetChecksDefinition)]
    keys = selection.resolve(assets)
    chosen = []
    for d in defs:
        if isinstance(d, dg.AssetChecksDefinition):
            if all(spec.asset_key in keys for spec in d.check_specs):
                chosen.append(d)
        elif d.key in keys:
            chosen.append(d)
    return chosen


def ingest_all(
    settings: Settings, cat: Catalogue, console: Console, started_at: dt.datetime
) -> IngestOutcome:
    """Materialise the landing, raw and staged assets with work to do (:func:`select_work`)
    and what depends on them, a department at a time, then — if anything changed — the
    quality scorecard and the leak scan over what is staged. A failed or blocked dataset
    stops what depends on it (Dagster skips its downstream) and nothing else: every
    department with work is ingested, and what failed is collected for the summary. A
    leak is raised: the run must fail on it."""
    prepare_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    recover(settings, instance)  # dead runs failed, their pool slots freed, lake swept
    outcome = IngestOutcome()
    with open_lake(settings) as con:
        ensure_ledger(con)
        work = select_work(settings, cat, con, started_at)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # the progress bar and the summary speak here; the full log is in the UI
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("ingesting", total=len(work) + 1)
        for code, roots in work.items():
            dept = cat.departments[code]
            progress.update(task, description=f"ingesting {dept.code} {dept.name_zh}")
            selection = dg.AssetSelection.assets(*roots).downstream()
            defs = department_defs(dept)
            chosen = selected_defs(defs, selection)
            outcome.selected[code] = [
                d.key.to_user_string()
                for d in chosen
                if not isinstance(d, dg.AssetChecksDefinition)
            ]
            with hold_lake(settings):  # attached once for the run's steps and checks
                result = dg.materialize(
                    defs,
                    selection=selection,
                    instance=instance,
                    resources={"lake": LakeResource()},
                    tags={"streethub/job": "main", "dept": dept.code, **run_tags()},
                    run_config=quiet,
                    raise_on_error=False,
                )
            steps, blocked = run_problems(result, chosen, started_at)
            outcome.steps += steps
            outcome.still_blocked += blocked
            progress.advance(task)
        previous = last_leak_scan(instance)
        with open_lake(settings, read_only=True) as con:
            stale = scorecard_stale(con)
        if not work and not stale and previous is not None:
            progress.update(task, description="nothing new: the last scorecard and scan hold")
            outcome.leak_check, outcome.scorecard_ok = previous, True
            _raise_on_leak(previous)
            progress.advance(task)
            return outcome
        progress.update(task, description="quality scorecard, expectations, report")
        keys = [staged_key(d.code, ds.code) for d, ds in cat.datasets()]
        defs = [build_scorecard_asset(keys), build_leak_check()]
        with hold_lake(settings):
            result = dg.materialize(
                defs,
                instance=instance,
                resources={"lake": LakeResource()},
                tags={"streethub/job": "main", **run_tags()},
                run_config=quiet,
                raise_on_error=False,
            )
        outcome.scorecard_ran = True
        leak_checks = [
            e for e in result.get_asset_check_evaluations() if e.check_name == LEAK_CHECK
        ]
        if leak_checks:
            _raise_on_leak(leak_checks[0])
        outcome.leak_check = leak_checks[0] if leak_checks else None
        outcome.scorecard_ok = SCORECARD_KEY in {
            m.asset_key for m in result.get_asset_materialization_events()
        }
        steps, _ = run_problems(result, defs, started_at)
        outcome.steps += steps
        progress.advance(task)
    return outcome


def _raise_on_leak(leak_check: dg.AssetCheckEvaluation) -> None:
    if not leak_check.passed:
        places = leak_check.metadata["places_with_unmasked_values"].value
        raise StreethubError(
            f"unmasked personal information outside the encrypted zones in {places}: "
            "run `streethub leaks scan` for rows and columns"
        )
