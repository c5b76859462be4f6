"""The need model's assets: the feature table, the registered model (trained only when no
version is promoted, or when asked), the scores published as ``marts.need_scores``.

The work is :mod:`marts.need_model.step`'s; this module wires it. A new version is promoted
here only when the share service has no administrators yet (the two-person rule is not in
force, as for ``keys rotate``); otherwise it waits for ``streethub models promote``.
"""

import datetime as dt

import dagster as dg

from catalog.loader import get_catalogue
from catalog.settings import Settings
from marts.need_model import step
from marts.need_model.registry import (
    FAIRNESS,
    NO_ADMINS,
    ModelVersion,
    Registry,
    markdown_table,
)
from marts.need_model.train import NeedModels
from marts.publish import publish_frame
from pipelines.defs.curated.assets import CURATED_KEYS
from pipelines.defs.marts.assets import mart_key
from pipelines.defs.sources.specs import LAKE_POOL
from pipelines.resources import LakeResource

GROUP = "need_model"
OWNERS = ["team:data-office"]
FEATURES_KEY = dg.AssetKey(["need_model", "features"])
MODEL_KEY = dg.AssetKey(["need_model", "model"])
SCORES_KEY = mart_key(step.SCORES_MART)
MAIN_JOB = "main job"
COMMON = {"group_name": GROUP, "owners": OWNERS, "pool": LAKE_POOL}  # every asset here


class ModelConfig(dg.Config):
    retrain: bool = False
    """Train and register a new version even when one is promoted."""


def scoring_cutoff() -> dt.date:
    """The cut-off the residents are scored as of: today (what the hub knew by its end)."""
    return dt.date.today()


def promote_without_admins(settings: Settings, registry: Registry, version: int) -> bool:
    """Promote ``version`` when the two-person rule is not in force (no administrators yet);
    whether it was."""
    from share_api.requests import two_person_rule_in_force

    if two_person_rule_in_force(settings):
        return False
    registry.promote(version, actor=MAIN_JOB, approval=NO_ADMINS)
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
            if ".ratio" in k or ".pr_auc" in k
        },
    }


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
        frame = step.ensure_features(con, lake.protection(), cutoffs)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "cutoffs": ", ".join(str(c) for c in sorted(set(cutoffs))),
            "residents_latest": frame.filter(frame["cutoff"] == scoring_cutoff()).height,
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
    settings = lake.settings()
    registry = Registry.from_settings(settings)
    promoted = registry.promoted()
    if promoted is not None and not config.retrain:
        context.log.info(f"version {promoted.version} is promoted: not retrained")
        return dg.MaterializeResult(
            metadata={"trained": False, **version_metadata(registry, promoted)}
        )
    waiting = [v for v in registry.versions() if not v.promoted and not v.promoted_at]
    if promoted is None and waiting and not config.retrain:
        mv = waiting[-1]
    else:
        with lake.open() as con:
            cutoffs = step.training_cutoffs(con)
            if not step.can_train(cutoffs):
                raise dg.Failure(
                    f"{len(cutoffs)} monthly cut-off(s) with complete 90-day labels in the lake: "
                    "too few to backtest and train (the hub needs about a year of history)"
                )
            mv = step.train_and_register(con, lake.protection(), registry, cutoffs=cutoffs).version
    if promoted is None and promote_without_admins(settings, registry, mv.version):
        mv = registry.version(mv.version)
    elif not mv.promoted:
        context.log.warning(
            f"version {mv.version} awaits promotion: `streethub models promote {mv.version} "
            "--request <id>` once a second administrator approved it"
        )
    return dg.MaterializeResult(metadata={"trained": True, **version_metadata(registry, mv)})


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
        features = step.ensure_features(con, lake.protection(), [cutoff])
        frame = step.score_frame(model, mv, features, leave_out)
        published = publish_frame(con, get_catalogue(settings.catalog_dir), step.SCORES_MART,
                                  frame, leave_out=leave_out)  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": published.build.rows,
            "model_version": mv.version,
            "cutoff": str(cutoff),
            "residents_opted_out": len(leave_out),
        }
    )


@dg.definitions
def need_model_assets() -> dg.Definitions:
    return dg.Definitions(assets=[need_features, need_model, need_scores])
