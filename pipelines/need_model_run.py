"""The main job's need-model step: ``need_model/features``, ``need_model/model`` (with its
drift check) and ``marts/need_scores`` materialised in-process, so they show in the Dagster
UI like every other step.

It runs when a version is promoted, or when the lake holds history enough to train one
(:func:`marts.need_model.step.can_train`); otherwise it does nothing and says why (a street
without a year of the outcome datasets). The model is trained only when no version is
promoted (the model asset's rule), and the residents are scored only with a promoted
version: a version waiting for a second administrator's approval scores nothing.

A published mart that still holds is not made again (:func:`kept_marts`): the scores when
the model, the cut-off, the feature definition, the mart's definition and the residents left
out are those it was made from (the digest its materialisation carries) and the feature
table has not changed since; the forecast likewise, when no table the grid counts read
changed since. The model is identified by the registry's file when it is under the home
(unchanged: the same promoted versions, told without starting MLflow), else by the promoted
version and its file digest. With the scores kept the models step is not run either (its
feature table, model and drift check would come out as they are; features of a training
cut-off that became complete wait for the next cut-off's run) and the drift check's last
evaluation is told.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg
from rich.console import Console

from catalog.settings import Settings
from lakehouse.lake import open_lake
from marts.need_model import step
from marts.need_model.registry import Registry
from marts.staleness import last_changed
from pipelines.defs.need_model.assets import (
    FEATURES_KEY,
    FORECAST_KEY,
    SCORES_KEY,
    forecast_inputs,
    grid_count_tables,
    grid_demand_forecast,
    grid_forecaster,
    model_identity,
    need_features,
    need_model,
    need_scores,
    registry_stamp,
    scores_inputs,
    scoring_cutoff,
)
from pipelines.defs.need_model.checks import DRIFT_CHECK, feature_drift_check
from pipelines.ingest_run import last_check, run_problems
from pipelines.instance import dagster_instance
from pipelines.marts_run import QUIET
from pipelines.recovery import run_tags
from pipelines.resources import LakeResource
from pipelines.summary import Problem


@dataclass
class NeedModelOutcome:
    """What the need-model step did."""

    ran: bool = False
    why_not: str = ""
    scored_by: tuple[int, str] | None = None  # the promoted version after the step, its file
    trained: bool = False
    waiting: int | None = None  # a registered version awaiting promotion
    published: dict[str, int] = field(default_factory=dict)  # mart → rows
    kept: list[str] = field(default_factory=list)  # marts that still hold: not made again
    drift_warned: bool = False
    steps: list[Problem] = field(default_factory=list)


def _registry(settings: Settings) -> Registry | None:
    """The registry, when the hub has one (never made just to look)."""
    if settings.model_registry_url is None and not (settings.models_dir / "mlflow.db").exists():
        return None
    return Registry.from_settings(settings)


def _materialise(assets: list, started_at: dt.datetime, outcome: NeedModelOutcome):
    result = dg.materialize(
        assets,
        instance=dagster_instance(),
        resources={"lake": LakeResource()},
        tags={"streethub/job": "main", **run_tags()},
        run_config=QUIET,
        raise_on_error=False,
    )
    outcome.steps += run_problems(result, assets, started_at)[0]
    return result


def _made_from(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    """The metadata of the asset's newest materialisation ({}: none)."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _leave_out(settings: Settings) -> frozenset[str]:
    from share_api.consent import not_to_score
    from share_api.service import Service

    service = Service.open(settings)
    try:
        return not_to_score(service)
    finally:
        service.close()


def kept_marts(
    settings: Settings, scorer: str | None, forecaster: str | None, made: dict[str, dict]
) -> set[str]:
    """The need model's marts that still hold (see the module doc): each made by the model
    ``scorer`` / ``forecaster`` identifies (:func:`model_identity`; None: none promoted)
    from the inputs it would be made from now, as ``made`` (mart → its newest
    materialisation's metadata) records, and written after every lake table it reads last
    changed."""
    cutoff = scoring_cutoff()
    # each digest computed anew only when the mart was made with one
    scores, forecast = made[step.SCORES_MART].get("inputs"), made[step.FORECAST_MART].get("inputs")
    same = {
        step.SCORES_MART: scorer is not None
        and scores is not None
        and scores == scores_inputs(scorer, cutoff, _leave_out(settings)),
        step.FORECAST_MART: forecaster is not None
        and forecast is not None
        and forecast == forecast_inputs(forecaster, cutoff),
    }
    reads = {step.SCORES_MART: {"curated.need_features"}, step.FORECAST_MART: grid_count_tables()}
    if not any(same.values()):
        return set()
    with open_lake(settings, read_only=True) as con:
        changed = last_changed(con)  # live tables only: a dropped mart is not kept
    return {
        mart
        for mart, unchanged in same.items()
        if unchanged
        and (written := changed.get(f"marts.{mart}")) is not None
        and all(changed.get(t, 0) <= written for t in reads[mart])
    }


def _drift_warned() -> bool:
    """The drift check's last evaluation warned (the features and version it compared are
    those the kept scores were made from)."""
    drift = last_check(dagster_instance(), dg.AssetCheckKey(FEATURES_KEY, DRIFT_CHECK))
    return drift is not None and not drift.passed


def run_need_model(settings: Settings, started_at: dt.datetime) -> NeedModelOutcome:
    """The step (see the module doc); a failed asset is listed, never raised."""
    outcome = NeedModelOutcome()
    instance = dagster_instance()
    made = {mart: _made_from(instance, key) for mart, key in ((step.SCORES_MART, SCORES_KEY),
                                                              (step.FORECAST_MART, FORECAST_KEY))}  # fmt: skip
    stamp = registry_stamp(settings)  # a registry under the home: told without MLflow
    if stamp is not None and {step.SCORES_MART, step.FORECAST_MART} == (
        kept := kept_marts(settings, stamp, stamp, made)
    ):
        outcome.ran, outcome.kept, outcome.drift_warned = True, sorted(kept), _drift_warned()
        scores = made[step.SCORES_MART]
        outcome.scored_by = (int(scores["model_version"]), str(scores["model_sha256"]))
        return outcome
    registry = _registry(settings)
    promoted = registry.promoted() if registry is not None else None
    if promoted is None:
        with open_lake(settings, read_only=True) as con:
            cutoffs = step.training_cutoffs(con)
        if not step.can_train(cutoffs):
            outcome.why_not = (
                f"{len(cutoffs)} monthly cut-off(s) with complete 90-day labels: too few to "
                "train (about a year of history is needed)"
            )
            return outcome
    outcome.ran = True
    forecaster = registry.promoted(step.FORECAST_MODEL) if registry is not None else None
    if stamp is None:  # a registry elsewhere: its versions identify the models
        kept = kept_marts(
            settings,
            model_identity(settings, promoted) if promoted else None,
            model_identity(settings, forecaster) if forecaster else None,
            made,
        )
    if step.SCORES_MART in kept and forecaster is not None:  # no model to train either
        outcome.drift_warned = _drift_warned()
    else:
        models = [need_features, need_model, feature_drift_check, grid_forecaster]
        result = _materialise(models, started_at, outcome)
        outcome.trained = any(
            m.asset_key == need_model.key and m.materialization.metadata["trained"].value
            for m in result.get_asset_materialization_events()
        )
        outcome.drift_warned = any(not e.passed for e in result.get_asset_check_evaluations())
        kept.discard(step.SCORES_MART)  # features may have been added: scored again
    outcome.kept = sorted(kept)
    registry = registry or _registry(settings)
    versions = registry.versions() if registry is not None else []
    promoted = next((v for v in versions if v.promoted), None)
    outcome.scored_by = (promoted.version, promoted.sha256) if promoted is not None else None
    outcome.waiting = next((v.version for v in reversed(versions) if not v.promoted_at), None)
    forecast = registry.promoted(step.FORECAST_MODEL) if registry is not None else None
    publish = [need_scores] * (promoted is not None and step.SCORES_MART not in kept) + [
        grid_demand_forecast
    ] * (bool(forecast) and step.FORECAST_MART not in kept)
    if publish:
        made = _materialise(publish, started_at, outcome).get_asset_materialization_events()
        outcome.published = {
            m.asset_key.path[-1]: int(m.materialization.metadata["dagster/row_count"].value)
            for m in made
        }
    return outcome


def print_need_model(console: Console, outcome: NeedModelOutcome) -> None:
    """One or two lines: what the step did, or why it did nothing."""
    if not outcome.ran:
        console.print(f"need model: not run — {outcome.why_not}")
        return
    trained = "trained and registered a version; " if outcome.trained else ""
    if outcome.scored_by is None:
        console.print(
            f"need model: {trained}version {outcome.waiting} awaits promotion (`streethub models "
            f"promote {outcome.waiting} --request <id>`, a second administrator approving): "
            "nothing scored"
        )
    else:
        console.print(
            f"need model: {trained}scores by promoted version {outcome.scored_by[0]} (file "
            f"sha256 {outcome.scored_by[1][:12]}…)"
        )
    for mart, rows in sorted(outcome.published.items()):
        console.print(f"need model: marts.{mart} published, {rows:,} rows")
    if outcome.kept:
        shown = ", ".join(f"marts.{m}" for m in outcome.kept)
        console.print(
            f"need model: {shown} still hold (made from what they would be made from now)"
        )
    if outcome.drift_warned:
        console.print(
            "[yellow]need model: features drifted from the training data (the feature_drift "
            "check warns: `streethub models show`, retrain)[/yellow]"
        )
