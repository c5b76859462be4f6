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
  or read deliveries not yet through the row gate → staged;
- a dataset whose staged table lacks a ``_pid_`` column its dataset has now (a home from
  before them) → staged, which adds and fills them
  (:func:`pipelines.ingest.staged.staged_without_pids`).

The quality scorecard, expectations and the leak scan run when one of those ran,
or when the ledger changed after the last scorecard (a sensor's run, an
acknowledgement), or when no leak scan of the current scorecard is on record.
A run with nothing to do materialises nothing and reports the last leak scan,
which still holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import dagster as dg
import duckdb
from dagster._utils.schedules import get_latest_completed_cron_tick
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalog.errors import StreethubError
from catalog.model import FILE_CONNECTORS, Catalogue, Dataset
from catalog.settings import Settings
from lakehouse.lake import has_table, hold_lake, open_lake
from masking.text_names import release_dictionaries
from pipelines.curated_run import last_build
from pipelines.defs.curated.assets import CURATED_KEYS, build_curated_assets
from pipelines.defs.protection.checks import LEAK_CHECK, build_leak_check
from pipelines.defs.quality.assets import SCORECARD_KEY, build_scorecard_asset
from pipelines.defs.sources.assets import build_dataset_assets
from pipelines.defs.sources.jobs import file_datasets
from pipelines.defs.sources.schedules import PULL_TIMEZONE
from pipelines.defs.sources.specs import landing_key, raw_key, staged_key
from pipelines.ingest.inbox import known_keys_by_dept, new_entries, scan_inbox
from pipelines.ingest.ledger import ensure_ledger, last_change, last_pulls, unprocessed
from pipelines.ingest.prefetch import read_ahead, serving
from pipelines.ingest.staged import staged_without_pids
from pipelines.instance import dagster_instance, prepare_dagster_home
from pipelines.memory import HighWater
from pipelines.recovery import recover, run_tags
from pipelines.resources import LakeResource, ledger_ready
from pipelines.summary import Problem

# the departments' systems connected for a block: settings with their connection settings
Systems = Callable[[Settings], AbstractContextManager[Settings]]


@dataclass
class IngestOutcome:
    """What the main job's Dagster runs did that the summary must tell."""

    steps: list[Problem] = field(default_factory=list)  # failed, blocked or skipped this run
    still_blocked: list[Problem] = field(default_factory=list)  # a check on an older delivery
    leak_check: dg.AssetCheckEvaluation | None = None  # None: the scorecard did not run
    scorecard_ok: bool = False
    selected: dict[str, list[str]] = field(default_factory=dict)  # dept → assets materialised
    scorecard_ran: bool = False  # False: nothing changed, the last scorecard and scan hold


def _in_order(d: dg.AssetsDefinition) -> list[dg.AssetKey]:
    """A step's assets, each after those it depends on inside the step."""
    deps = d.asset_deps
    order: list[dg.AssetKey] = []

    def visit(key: dg.AssetKey) -> None:
        if key in order:
            return
        for dep in sorted(deps.get(key, set()) & d.keys):
            visit(dep)
        order.append(key)

    for key in sorted(d.keys):
        visit(key)
    return order


def run_problems(
    result: dg.ExecuteInProcessResult,
    defs: list,
    started_at: dt.datetime,
    selected: set[dg.AssetKey] | None = None,
) -> tuple[list[Problem], list[Problem]]:
    """(problems this run added, checks still blocking on a delivery gated before the run)
    from one materialisation of ``defs`` (``selected``: the assets it was asked for; all by
    default): steps that raised (by exception class: messages may quote data) named by
    the first of their assets they did not make, blocking checks that failed, and assets
    skipped because of either."""
    steps = {d.node_def.name: d for d in defs}
    made = {m.asset_key for m in result.get_asset_materialization_events()}

    def asked(d: dg.AssetsDefinition) -> list[dg.AssetKey]:
        return [k for k in _in_order(d) if selected is None or k in selected]

    this_run: list[Problem] = []
    older: list[Problem] = []
    failed: set[str] = set()
    for event in result.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
            continue  # told below from the check's own evaluation
        cause = error.cause if error is not None and error.cause is not None else error
        what = f"step failed ({cause.cls_name if cause else 'unknown error'})"
        d = steps.get(event.step_key)
        if isinstance(d, dg.AssetChecksDefinition):
            where = ", ".join(
                f"{spec.asset_key.to_user_string()}:{spec.name}" for spec in d.check_specs
            )
        elif d is not None:
            keys = asked(d)
            unmade = [k for k in keys if k not in made] or keys[-1:]
            where = unmade[0].to_user_string() if unmade else event.step_key
        else:
            where = event.step_key
        failed.add(where)
        this_run.append(Problem(where, what))
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
    for d in defs:
        if isinstance(d, dg.AssetChecksDefinition):
            continue
        for key in asked(d):
            shown_key = key.to_user_string()
            if key not in made and shown_key not in failed:
                this_run.append(Problem(shown_key, "not materialised: what it depends on failed"))
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
    ungated |= staged_without_pids(con, cat)  # a staged table from before its _pid_ columns
    pulled = last_pulls(con)
    known = known_keys_by_dept(con)
    work: dict[str, list[dg.AssetKey]] = {}
    for dept in cat.departments.values():
        files = file_datasets(dept)
        fresh: set[str] = set()
        if files:
            scan = scan_inbox(settings, dept.code, files)
            fresh = {e.dataset for e in new_entries(scan, known.get(dept.code, set()))}
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


def last_check(
    instance: dg.DagsterInstance, check: dg.AssetCheckKey
) -> dg.AssetCheckEvaluation | None:
    """The newest evaluation of ``check`` on record (None: none, or it did not finish)."""
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check]).get(check)
    event = record.event if record is not None else None
    data = event.dagster_event.event_specific_data if event and event.dagster_event else None
    return data if isinstance(data, dg.AssetCheckEvaluation) else None


def work_defs(cat: Catalogue, work: dict[str, list[dg.AssetKey]]) -> list:
    """The ingest steps of the datasets with work (each a step of landing, raw and staged
    with their checks), department by department."""
    return [
        a
        for code, roots in work.items()
        for ds in cat.departments[code].datasets
        if {landing_key(code, ds.code), raw_key(code, ds.code), staged_key(code, ds.code)}
        & set(roots)
        for a in build_dataset_assets(cat.departments[code], ds)
    ]


def ingest_all(
    settings: Settings,
    cat: Catalogue,
    console: Console,
    started_at: dt.datetime,
    systems: Systems | None = None,
    memory: HighWater | None = None,
) -> IngestOutcome:
    """Materialise the landing, raw and staged assets with work to do (:func:`select_work`)
    and what depends on them in one Dagster run (a step per dataset), then — if anything
    changed — the quality scorecard and the leak scan over what is staged in a second. A
    failed or blocked dataset stops what depends on it (Dagster skips its downstream; its
    own step stops at the zone that failed) and nothing else: every dataset with work is
    ingested, and what failed is collected for the summary. A leak is raised: the run must
    fail on it. The lake is attached once for all of it (:func:`hold_lake`). ``systems``:
    what connects the departments' systems (settings with their connection settings),
    entered only when the run pulls from one. ``memory``: marked when the departments'
    datasets are ingested, before the curated build and the scorecard."""
    prepare_dagster_home(settings)
    instance = dagster_instance()  # the main job's shared one
    with hold_lake(settings):  # every open below, the runs' steps included, is a cursor of it
        recover(settings, instance)  # dead runs failed, their pool slots freed, lake swept
        with open_lake(settings) as con:
            ensure_ledger(con)
        with ledger_ready(settings):  # ensured once: the steps' opens skip it
            return _ingest_held(settings, cat, console, started_at, instance, systems, memory)


def _ingest_held(
    settings: Settings,
    cat: Catalogue,
    console: Console,
    started_at: dt.datetime,
    instance: dg.DagsterInstance,
    systems: Systems | None,
    memory: HighWater | None = None,
) -> IngestOutcome:
    outcome = IngestOutcome()
    with open_lake(settings) as con:
        work = select_work(settings, cat, con, started_at)
        # what each dataset's step reads of the ledger before it writes, for all at once
        ahead = read_ahead(con, settings) if work else None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # the progress bar and the summary speak here; the full log is in the UI
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("ingesting", total=2 if work else 1)
        if work:
            defs = work_defs(cat, work)
            selection = dg.AssetSelection.assets(*(k for r in work.values() for k in r))
            keys = selection.downstream().resolve(defs)
            for code in work:
                outcome.selected[code] = [
                    k.to_user_string()
                    for d in defs
                    for k in _in_order(d)
                    if k in keys and k.path[1] == code
                ]
            datasets = sum(len(v) for v in work.values())
            progress.update(
                task,
                description=f"ingesting {datasets} dataset(s) of {len(work)} department(s): "
                + " ".join(work),
            )
            pulls = any(
                k.path[0] == "landing"
                and cat.dataset(f"{k.path[1]}.{k.path[2]}")[1].delivery.kind not in FILE_CONNECTORS
                for k in keys
            )
            with (
                systems(settings) if pulls and systems else contextlib.nullcontext(settings),
                serving(ahead),
            ):
                result = dg.materialize(
                    defs,
                    selection=list(keys),
                    instance=instance,
                    resources={"lake": LakeResource()},
                    tags={"streethub/job": "main", "depts": ",".join(work), **run_tags()},
                    run_config=quiet,
                    raise_on_error=False,
                )
            steps, blocked = run_problems(result, defs, started_at, keys)
            outcome.steps += steps
            outcome.still_blocked += blocked
            release_dictionaries()  # the deliveries' free text is masked: no scan needs them
            progress.advance(task)
        previous = last_check(instance, dg.AssetCheckKey(SCORECARD_KEY, LEAK_CHECK))
        with open_lake(settings, read_only=True) as con:
            stale = scorecard_stale(con) or last_build(con) is None
        if not work and not stale and previous is not None:
            progress.update(task, description="nothing new: the last scorecard and scan hold")
            outcome.leak_check, outcome.scorecard_ok = previous, True
            _raise_on_leak(previous)
            progress.advance(task)
            return outcome
        if memory is not None:
            memory.mark("the departments' ingest")
        progress.update(task, description="quality scorecard, expectations, report")
        keys = [staged_key(d.code, ds.code) for d, ds in cat.datasets()]
        # curated first: the scorecard reads its conflicts and the leak scan its tables
        defs = [
            build_curated_assets(keys),
            build_scorecard_asset(keys + CURATED_KEYS),
            build_leak_check(),
        ]
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
