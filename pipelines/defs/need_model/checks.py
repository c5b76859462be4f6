"""The need model's drift check: the population stability of each input between the
features of the promoted version's latest training cut-off and today's
(:mod:`marts.need_model.drift`, :data:`~marts.need_model.drift.REFERENCE_CUTOFFS`),
a check that warns — drift calls for a look and a retraining, not for stopping the scores."""

import dagster as dg

from marts.need_model import step
from marts.need_model.drift import ALARM, WARN
from marts.need_model.features import load_feature_set
from marts.need_model.registry import Registry, markdown_table
from pipelines.defs.need_model.assets import FEATURES_KEY, MODEL_KEY, scoring_cutoff
from pipelines.resources import LakeResource

DRIFT_CHECK = "feature_drift"


@dg.asset_check(
    asset=FEATURES_KEY,
    name=DRIFT_CHECK,
    additional_deps=[MODEL_KEY],  # after the model step: against the version it left promoted
    description=(
        f"Warns when an input's population stability index (PSI) between the promoted "
        f"version's latest training cut-off and today's features reaches {WARN} (a shift "
        f"worth a look; {ALARM} and above: retrain). Per-feature PSI in the metadata, no value."
    ),
)
def feature_drift_check(lake: LakeResource) -> dg.AssetCheckResult:
    settings = lake.settings()
    promoted = Registry.from_settings(settings).promoted()
    if promoted is None:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"note": "no promoted version yet: nothing to compare with"},
        )
    with lake.open(read_only=True) as con:
        table = step.drift(con, lake.protection(), promoted, scoring_cutoff(),
                           load_feature_set().inputs)  # fmt: skip
    shifted = table.filter(table["psi"] >= WARN)
    return dg.AssetCheckResult(
        passed=shifted.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "model_version": promoted.version,
            "features_shifted": shifted.height,
            "largest_psi": float(table["psi"].max() or 0.0),
            "psi_by_feature": dg.MetadataValue.md(markdown_table(table)),
        },
    )


@dg.definitions
def need_model_checks() -> dg.Definitions:
    return dg.Definitions(asset_checks=[feature_drift_check])
