"""The main job's Dagster runs: what to materialise, and what failed.

The main job (``pipelines/main_job.py``) calls :func:`ingest_all`; the summary
reads the :class:`IngestOutcome` it returns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalog.errors import StreethubError
from catalog.model import Catalogue
from catalog.settings import Settings
from pipelines.defs.protection.checks import LEAK_CHECK, build_leak_check
from pipelines.defs.quality.assets import (
    SCORECARD_KEY,
    build_scorecard_asset,
    build_staged_asset,
    staged_key,
)
from pipelines.defs.quality.checks import build_contract_check
from pipelines.defs.sources.assets import build_dataset_assets
from pipelines.defs.sources.checks import build_account_check
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


def ingest_all(
    settings: Settings, cat: Catalogue, console: Console, started_at: dt.datetime
) -> IngestOutcome:
    """Materialise every landing, raw and staged asset, a department at a time, then the
    quality scorecard and the leak scan over what is staged. A failed or blocked dataset
    stops what depends on it (Dagster skips its downstream) and nothing else: every
    department is ingested, and what failed is collected for the summary. A leak is
    raised: the run must fail on it."""
    prepare_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    recover(settings, instance)  # dead runs failed, their pool slots freed, lake swept
    outcome = IngestOutcome()
    depts = list(cat.departments.values())
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # the progress bar and the summary speak here; the full log is in the UI
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("ingesting", total=len(depts) + 1)
        for dept in depts:
            progress.update(task, description=f"ingesting {dept.code} {dept.name_zh}")
            defs = [a for ds in dept.datasets for a in build_dataset_assets(dept, ds)]
            defs += [build_staged_asset(dept, ds) for ds in dept.datasets]
            defs += [build_account_check(dept, ds) for ds in dept.datasets]
            defs += [build_contract_check(dept, ds) for ds in dept.datasets]
            result = dg.materialize(
                defs,
                instance=instance,
                resources={"lake": LakeResource()},
                tags={"streethub/job": "main", "dept": dept.code, **run_tags()},
                run_config=quiet,
                raise_on_error=False,
            )
            steps, blocked = run_problems(result, defs, started_at)
            outcome.steps += steps
            outcome.still_blocked += blocked
            progress.advance(task)
        progress.update(task, description="quality scorecard, expectations, report")
        keys = [staged_key(d.code, ds.code) for d, ds in cat.datasets()]
        defs = [build_scorecard_asset(keys), build_leak_check()]
        result = dg.materialize(
            defs,
            instance=instance,
            resources={"lake": LakeResource()},
            tags={"streethub/job": "main", **run_tags()},
            run_config=quiet,
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
        outcome.leak_check = leak_checks[0] if leak_checks else None
        outcome.scorecard_ok = SCORECARD_KEY in {
            m.asset_key for m in result.get_asset_materialization_events()
        }
        steps, _ = run_problems(result, defs, started_at)
        outcome.steps += steps
        progress.advance(task)
    return outcome
