"""The need model's assets: the feature table, the registered model (trained only when no
version is promoted, or when asked), the scores published as ``marts.need_scores``.

The work is :mod:`marts.need_model.step`'s; this module wires it. A new version is promoted
here only when the share service has no administrators yet (the two-person rule is not in
force, as for ``keys rotate``); otherwise it waits for ``streethub models promote``.
"""

import datetime as dt
import hashlib
from collections.abc import Callable, Collection
from functools import cache

import dagster as dg
import duckdb

from catalog.days import beijing_day
from catalog.loader import get_catalogue
from catalog.marts import load_marts
from catalog.settings import Settings
from marts.lineage import mart_dependencies
from marts.need_model import step
from marts.need_model.features import SQL_DIR, read_feature_sql
from marts.need_model.forecast import GridForecaster
from marts.need_model.grid import GRID_SQL
from marts.need_model.registry import (
    FAIRNESS,
    MODEL_NAME,
    NO_ADMINS,
    ModelVersion,
    Registry,
    markdown_table,
)
from marts.need_model.store import feature_set_version
from marts.need_model.train import NeedModels
from marts.publish import publish_frame, publish_parts
from pipelines.defs.curated.assets import CURATED_KEYS
from pipelines.defs.marts.assets import mart_key, mart_version, table_key
from pipelines.defs.sources.specs import LAKE_POOL
from pipelines.memory import trim_heap
from pipelines.protection import Protection
from pipelines.resources import LakeResource

GROUP = "need_model"
OWNERS = ["team:data-office"]
FEATURES_KEY = dg.AssetKey(["need_model", "features"])
MODEL_KEY = dg.AssetKey(["need_model", "model"])
FORECASTER_KEY = dg.AssetKey(["need_model", "grid_forecaster"])
FORECAST_KEY = mart_key(step.FORECAST_MART)
SCORES_KEY = mart_key(step.SCORES_MART)
MAIN_JOB = "main job"
SHOWN_METRICS = {"pr_auc_model", "pr_auc_rule", "ratio", "ece", "poisson_deviance", "mae"}
COMMON = {"group_name": GROUP, "owners": OWNERS, "pool": LAKE_POOL}  # every asset here


class ModelConfig(dg.Config):
    retrain: bool = False
    """Train and register a new version even when one is promoted."""


@cache
def grid_count_tables() -> frozenset[str]:
    """The lake tables (``zone.table``) the grid counts' SQL reads (parsed from it)."""
    return frozenset(mart_dependencies({}, GRID_SQL, sql_dir=SQL_DIR))


def grid_count_deps() -> list[dg.AssetKey]:
    """The assets writing the lake tables the grid counts' SQL reads."""
    return sorted({k for k in map(table_key, grid_count_tables()) if k is not None}, key=str)


def scoring_cutoff(now: dt.datetime | None = None) -> dt.date:
    """The cut-off the residents are scored as of: yesterday in the street's days (Beijing),
    the last whole day (today's records are still arriving: a day half recorded reads as a
    drop in activity). Not the machine's date: on a UTC host from 16:00 to 24:00 that is a
    day behind the street's, and the newest whole day of records went unscored."""
    return beijing_day(now) - dt.timedelta(days=1)


def _digest(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") + b"\x1f")
    return digest.hexdigest()[:16]


def registry_stamp(settings: Settings) -> str | None:
    """The registry under the home as its files stand (size and time of change of the
    SQLite file and its write-ahead log): an equal stamp, the same registry — every version,
    alias and file digest — told without starting MLflow. None: no such file (none yet, or
    a registry elsewhere: ``model_registry_url``)."""
    if settings.model_registry_url is not None:
        return None
    stats = [
        (path.name, path.stat())
        for path in (settings.models_dir / "mlflow.db", settings.models_dir / "mlflow.db-wal")
        if path.exists()
    ]
    return ";".join(f"{name}:{st.st_size}:{st.st_mtime_ns}" for name, st in stats) or None


def model_identity(settings: Settings, mv: ModelVersion) -> str:
    """What identifies the model a mart is made by: the local registry's stamp (an
    unchanged registry, the same promoted versions), else the version and its file."""
    return registry_stamp(settings) or f"{mv.name}/{mv.version}:{mv.sha256}"


def scores_inputs(model: str, cutoff: dt.date, leave_out: Collection[str]) -> str:
    """A digest of all ``need_scores`` is made from besides the lake: the model
    (:func:`model_identity`), the cut-off, the feature definition, the mart's SQL and
    catalogue entry and the residents left out. The features of a cut-off are stored once
    and never computed again (:func:`marts.need_model.step.ensure_features`), so equal
    digests and a feature table unchanged since: the same scores
    (``pipelines/need_model_run.py``)."""
    mart = mart_version(load_marts()[step.SCORES_MART])
    return _digest(model, str(cutoff), feature_set_version(), mart, *sorted(leave_out))


def forecast_inputs(model: str, cutoff: dt.date) -> str:
    """A digest of all ``grid_demand_forecast`` is made from besides the lake tables the
    grid counts read (:func:`grid_count_tables`): the model, the cut-off, the SQL."""
    mart = mart_version(load_marts()[step.FORECAST_MART])
    return _digest(model, str(cutoff), feature_set_version(), mart, read_feature_sql(GRID_SQL))


def promote_without_admins(settings: Settings, registry: Registry, mv: ModelVersion) -> bool:
    """Promote ``mv`` when the two-person rule is not in force (no administrators yet);
    whether it was."""
    from share_api.requests import two_person_rule_in_force

    if two_person_rule_in_force(settings):
        return False
    audit = Protection.from_settings(settings).audit
    registry.promote(mv.version, actor=MAIN_JOB, approval=NO_ADMINS, name=mv.name, audit=audit)
    return True


def version_metadata(registry: Registry, mv: ModelVersion) -> dict:
    """A version's record as metadata: its number, file digest, snapshot, fairness table."""
    fairness = registry.table(mv.version, FAIRNESS, mv.name)
    return {
        "model_version": mv.version,
        "promoted": mv.promoted,
        "sha256": mv.sha256,
        "lake_snapshot": mv.lake_snapshot,
        "training_cutoffs": ", ".join(str(c) for c in mv.training_cutoffs),
        **(
            {"fairness": dg.MetadataValue.md(markdown_table(fairness))}
            if fairness is not None
            else {}
        ),
        **{
            k: dg.MetadataValue.float(v)
            for k, v in sorted(mv.metrics.items())
            if k.rpartition(".")[2] in SHOWN_METRICS
        },
    }


def use_or_train(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    registry: Registry,
    name: str,
    retrain: bool,
    train: Callable[[duckdb.DuckDBPyConnection], ModelVersion],
) -> dg.MaterializeResult:
    """The promoted version of ``name`` as it is; else (or with ``retrain``) a version
    trained and registered by ``train`` — unless one already waits for promotion — and
    promoted when the two-person rule is not in force yet."""
    promoted = registry.promoted(name)
    if promoted is not None and not retrain:
        context.log.info(f"{name} version {promoted.version} is promoted: not retrained")
        return dg.MaterializeResult(
            metadata={"trained": False, **version_metadata(registry, promoted)}
        )
    waiting = [v for v in registry.versions(name) if not v.promoted_at]
    trained = retrain or promoted is not None or not waiting
    if trained:
        with lake.open() as con:
            mv = train(con)
    else:
        mv = waiting[-1]
    if promoted is None and promote_without_admins(lake.settings(), registry, mv):
        mv = registry.version(mv.version, name)
    elif not mv.promoted:
        context.log.warning(
            f"{name} version {mv.version} awaits promotion: `streethub models promote "
            f"{mv.version} --model {name} --request <id>` once a second administrator approved it"
        )
    return dg.MaterializeResult(metadata={"trained": trained, **version_metadata(registry, mv)})


@dg.asset(
    key=FEATURES_KEY,
    deps=CURATED_KEYS,
    **COMMON,
    kinds={"duckdb", "polars"},
    description=(
        "The feature table (curated.need_features, L3, sensitive columns encrypted): one row "
        "per resident pseudonym and cut-off — the monthly training cut-offs whose 90-day "
        "labels are complete, and today's for scoring. Nothing after a cut-off is read."
    ),
)
def need_features(lake: LakeResource) -> dg.MaterializeResult:
    with lake.open() as con:
        cutoffs = [*step.training_cutoffs(con), scoring_cutoff()]
        # nothing read back; the heap trimmed before each cut-off's query
        rows = step.feature_rows(con, lake.protection(), cutoffs, between=trim_heap)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(rows.values()),
            "cutoffs": ", ".join(str(c) for c in sorted(set(cutoffs))),
            "residents_latest": rows[scoring_cutoff()],
        }
    )


@dg.asset(
    key=MODEL_KEY,
    deps=[FEATURES_KEY],
    **COMMON,
    kinds={"lightgbm", "mlflow"},
    description=(
        "The need model in the MLflow registry under the home: one LightGBM classifier per "
        "need, calibrated, backtested against the street's rule (80+ and living alone), with "
        "its fairness table per group and a model card. Trained only when no version is "
        "promoted (or with retrain); promotion is `streethub models promote` under the "
        "two-person rule."
    ),
)
def need_model(
    context: dg.AssetExecutionContext, lake: LakeResource, config: ModelConfig
) -> dg.MaterializeResult:
    def train(con) -> ModelVersion:
        cutoffs = step.training_cutoffs(con)
        if not step.can_train(cutoffs):
            raise dg.Failure(
                f"{len(cutoffs)} monthly cut-off(s) with complete 90-day labels in the lake: "
                "too few to backtest and train (the hub needs about a year of history)"
            )
        return step.train_and_register(
            con, lake.protection(), registry, cutoffs=cutoffs, between=trim_heap
        ).version

    registry = Registry.from_settings(lake.settings())
    return use_or_train(context, lake, registry, MODEL_NAME, config.retrain, train)


@dg.asset(
    key=SCORES_KEY,
    deps=[MODEL_KEY, FEATURES_KEY],
    **COMMON,
    kinds={"duckdb", "lightgbm"},
    description=(
        "居民需求预测评分: the promoted version's probability of each need in the next 90 "
        "days per resident pseudonym, with its model version, cut-off and top factors in "
        "Chinese. Advice to a community worker, never an automatic decision (PIPL art. 24): "
        "residents who refused automated assessment are not scored."
    ),
)
def need_scores(lake: LakeResource) -> dg.MaterializeResult:
    from share_api.consent import not_to_score
    from share_api.service import Service

    settings = lake.settings()
    registry = Registry.from_settings(settings)
    mv, model = registry.load(loader=NeedModels.load)  # the promoted version, its file checked
    service = Service.open(settings)
    try:
        leave_out = not_to_score(service)
    finally:
        service.close()
    cutoff = scoring_cutoff()
    with lake.open() as con:
        # the scores published a part at a time as they are made: the features are held by
        # the parts' maker alone, let go once the last part is made (before the lake write)
        parts = step.score_parts(
            model, mv, step.ensure_features(con, lake.protection(), [cutoff]), leave_out
        )
        published = publish_parts(con, get_catalogue(settings.catalog_dir), step.SCORES_MART,
                                  parts, leave_out=leave_out)  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": published.build.rows,
            "model_version": mv.version,
            "cutoff": str(cutoff),
            "residents_opted_out": len(leave_out),
            "model_sha256": mv.sha256,
            "inputs": scores_inputs(model_identity(settings, mv), cutoff, leave_out),
        }
    )


@dg.asset(
    key=FORECASTER_KEY,
    deps=grid_count_deps(),
    **COMMON,
    kinds={"lightgbm", "mlflow"},
    description=(
        "The grid forecast model in the MLflow registry: a Poisson LightGBM over lag and "
        "season features of the weekly appeal count per cell and category, backtested against "
        "naive and seasonal-naive (52 weeks) by Poisson deviance and MAE. Trained only when "
        "no version is promoted (or with retrain)."
    ),
)
def grid_forecaster(
    context: dg.AssetExecutionContext, lake: LakeResource, config: ModelConfig
) -> dg.MaterializeResult:
    registry = Registry.from_settings(lake.settings())
    return use_or_train(
        context, lake, registry, step.FORECAST_MODEL, config.retrain,
        lambda con: step.train_forecaster(con, registry, scoring_cutoff()),
    )  # fmt: skip


@dg.asset(
    key=FORECAST_KEY,
    deps=[FORECASTER_KEY],
    **COMMON,
    kinds={"duckdb", "lightgbm"},
    description=(
        "网格诉求需求预测: the promoted grid forecast's expected appeal count per grid cell and "
        "category in the week after the cut-off, with its model version and cut-off. Counts "
        "only, no person."
    ),
)
def grid_demand_forecast(lake: LakeResource) -> dg.MaterializeResult:
    settings = lake.settings()
    registry = Registry.from_settings(settings)
    mv, model = registry.load(loader=GridForecaster.load, name=step.FORECAST_MODEL)
    cutoff = scoring_cutoff()
    with lake.open() as con:
        frame = step.forecast_frame(con, model, mv, cutoff)
        published = publish_frame(
            con, get_catalogue(settings.catalog_dir), step.FORECAST_MART, frame
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": published.build.rows,
            "model_version": mv.version,
            "cutoff": str(cutoff),
            "inputs": forecast_inputs(model_identity(settings, mv), cutoff),
        }
    )


@dg.definitions
def need_model_assets() -> dg.Definitions:
    return dg.Definitions(
        assets=[need_features, need_model, need_scores, grid_forecaster, grid_demand_forecast]
    )
