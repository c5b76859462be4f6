"""The asset ``marts/quality_scorecard`` (``staged/<dept>/<dataset>``, the row gate, is
materialised in each dataset's ingest step: ``pipelines/defs/sources/assets.py``)."""

import datetime as dt

import dagster as dg

from catalog.loader import get_catalogue
from catalog.settings import get_settings
from pipelines.automation import automation_sensor
from pipelines.defs.curated.assets import CURATED_KEYS
from pipelines.defs.sources.specs import LAKE_POOL
from pipelines.defs.sources.specs import staged_key as staged_key  # where callers look
from pipelines.killpoints import SCORECARD_BEFORE_WRITE, SCORECARD_WRITTEN, kill_point
from pipelines.quality_run import compute_quality, load_inputs, write_quality, write_report
from pipelines.resources import LakeResource

SCORECARD_KEY = dg.AssetKey(["marts", "quality_scorecard"])
# In the UI (the daemon), the scorecard — with its leak scan — follows new staged data: a
# sensor's run that stages a delivery is followed by one scorecard run; nothing new, no run.
# (Not `eager()`: that waits while any dataset has never been staged, and one that has
# never delivered anything never will be.)
SCORECARD_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after new staged data")


def build_scorecard_asset(staged_keys: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=SCORECARD_KEY,
        deps=staged_keys,
        group_name="quality",
        owners=["team:data-office"],
        kinds={"duckdb", "greatexpectations"},
        description=(
            "质量评分 quality scorecard: six dimensions (completeness, validity, uniqueness, "
            "consistency, timeliness, accuracy) per dataset and department, Great "
            "Expectations results per dataset, cross-department disagreements, the "
            "correction-loop issues (校核纠错), and the HTML report."
        ),
        pool=LAKE_POOL,
        automation_condition=SCORECARD_AUTOMATION,
    )
    def _scorecard(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        settings = lake.settings()
        cat = get_catalogue(settings.catalog_dir)
        # computed_at is taken before reading: a delivery gated meanwhile leaves it stale
        started = dt.datetime.now(dt.UTC)
        with lake.open(read_only=True) as con:  # staged tables are read as they are scored
            inputs = load_inputs(con, cat, lake.protection())
            out = compute_quality(settings, cat, inputs, started)
        kill_point(SCORECARD_BEFORE_WRITE)
        with lake.open() as con:
            write_quality(con, out)
        kill_point(SCORECARD_WRITTEN)
        report = write_report(settings, inputs, out)
        failed = (
            out.expectations.filter(~out.expectations["success"]).height
            if len(out.expectations)
            else 0
        )
        meta: dict = {
            "dagster/row_count": out.scorecard.height,
            "report": dg.MetadataValue.path(str(report)),
            "expectations_failed": failed,
            "disagreements": out.disagreements.height,
            "open_issues": int((out.issues["status"] == "open").sum()) if out.issues.height else 0,
        }
        return dg.MaterializeResult(metadata=meta)

    return _scorecard


def all_quality_assets() -> list[dg.AssetsDefinition]:
    cat = get_catalogue(get_settings().catalog_dir)
    keys = [staged_key(d.code, ds.code) for d, ds in cat.datasets()]
    return [build_scorecard_asset(keys + CURATED_KEYS)]  # after the curated zone (its conflicts)


@dg.definitions
def quality_assets() -> dg.Definitions:
    automation = automation_sensor(
        "quality_scorecard_automation",
        dg.AssetSelection.assets(SCORECARD_KEY),
        "Scores again (and scans for leaks) after a run staged new data.",
    )
    return dg.Definitions(assets=all_quality_assets(), sensors=[automation])
