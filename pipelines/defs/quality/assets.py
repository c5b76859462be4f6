"""Assets ``staged/<dept>/<dataset>`` (the row gate) and ``marts/quality_scorecard``."""

import datetime as dt

import dagster as dg

from catalog.loader import get_catalogue
from catalog.model import Dataset, Department
from catalog.settings import get_settings
from lakehouse.lake import row_count
from pipelines.defs.sources.assets import LAKE_POOL, dataset_tags, describe, raw_key
from pipelines.ingest.raw import raw_table
from pipelines.ingest.staged import stage_dataset, staged_columns
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


def staged_key(dept: str, dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["staged", dept, dataset])


def build_staged_asset(dept: Department, ds: Dataset) -> dg.AssetsDefinition:
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, kind) for name, kind in staged_columns(ds)]
    )

    @dg.asset(
        key=staged_key(dept.code, ds.code),
        deps=[raw_key(dept.code, ds.code)],
        group_name=dept.code,
        owners=[dept.owner],
        kinds={"duckdb", "pandera"},
        description=describe(
            dept,
            ds,
            "staged",
            "rows that passed the catalogue's row gate, standardised and typed; L3/L4 "
            "columns encrypted; failures in quarantine with source row, field and reason.",
        ),
        tags=dataset_tags(dept, ds, "staged"),
        pool=LAKE_POOL,
        metadata={"dagster/column_schema": schema, "resource_code": ds.resource_code},
    )
    def _staged(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        with lake.open() as con:
            accounts = stage_dataset(con, dept.code, ds, lake.protection())
            rows = row_count(con, "staged", raw_table(dept.code, ds))
        rows_in = sum(a.rows_in for a in accounts)
        passed = sum(a.rows_out for a in accounts)
        context.log.info(f"{ds.code}: {passed}/{rows_in} rows passed the gate")
        repaired: dict[str, int] = {}  # "field: kind" → values the standardisers repaired
        for a in accounts:
            for field, kind, n in a.repairs:
                repaired[f"{field}: {kind}"] = repaired.get(f"{field}: {kind}", 0) + int(n)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": int(rows),
                "deliveries_gated": len(accounts),
                "rows_in": rows_in,
                "rows_passed": passed,
                "rows_quarantined": sum(a.rows_quarantined for a in accounts),
                "rows_skipped": sum(a.rows_skipped for a in accounts),  # copies of staged rows
                "pass_rate": (rows_in - sum(a.rows_quarantined for a in accounts)) / rows_in
                if rows_in
                else 1.0,
                "values_repaired": sum(repaired.values()),
                "repairs": dg.MetadataValue.json(dict(sorted(repaired.items()))),
            }
        )

    return _staged


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
    staged = [build_staged_asset(d, ds) for d, ds in cat.datasets()]
    keys = [staged_key(d.code, ds.code) for d, ds in cat.datasets()]
    return [*staged, build_scorecard_asset(keys)]


@dg.definitions
def quality_assets() -> dg.Definitions:
    automation = dg.AutomationConditionSensorDefinition(
        "quality_scorecard_automation",
        target=dg.AssetSelection.assets(SCORECARD_KEY),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description="Scores again (and scans for leaks) after a run staged new data.",
    )
    return dg.Definitions(assets=all_quality_assets(), sensors=[automation])
