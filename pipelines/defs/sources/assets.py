"""Assets ``landing/<dept>/<dataset>`` and ``raw/<dept>/<dataset>``, built from the catalogue.

No dataset-specific code: one factory makes both assets of every dataset,
grouped by department, with owners, kinds and docstrings from the catalogue.
Lake writes go through the ``lake`` pool (limit 1 in dagster.yaml).
"""

import dagster as dg

from catalog.errors import shown
from catalog.loader import get_catalogue
from catalog.model import FILE_CONNECTORS, ConnectorKind, Dataset, Department
from catalog.settings import get_settings
from lakehouse.lake import row_count
from pipelines.ingest.landing import land
from pipelines.ingest.ledger import record_pull
from pipelines.ingest.raw import load_raw, raw_table
from pipelines.resources import LakeResource

LAKE_POOL = "lake"

SOURCE_KIND = {
    ConnectorKind.sql_db: "sqlite",
    ConnectorKind.excel: "excel",
    ConnectorKind.csv: "csv",
    ConnectorKind.json: "json",
    ConnectorKind.jsonl: "json",
    ConnectorKind.parquet: "parquet",
    ConnectorKind.http_api: "api",
}


def landing_key(dept: str, dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["landing", dept, dataset])


def raw_key(dept: str, dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", dept, dataset])


def column_schema(dataset: Dataset) -> dg.TableSchema:
    cols = [
        dg.TableColumn("_delivery_id", "VARCHAR", description="landed delivery"),
        dg.TableColumn("_source_row", "BIGINT", description="row number in the delivered file"),
        dg.TableColumn("_loaded_at", "TIMESTAMPTZ"),
    ]
    cols += [
        dg.TableColumn(
            f.name,
            "VARCHAR",
            description=f"{f.label_zh} ({f.type.value}, {f.level.value}"
            + (f", PII {f.pii.value}" if f.pii.value != "none" else "")
            + ")",
            tags={"level": f.level.value, "pii": f.pii.value},
        )
        for f in dataset.fields
    ]
    return dg.TableSchema(columns=cols)


def describe(dept: Department, ds: Dataset, zone: str, detail: str = "") -> str:
    """An asset's description: the dataset, its zone (and what that zone holds), provider."""
    return (
        f"{ds.name_zh} / {ds.name_en} ({ds.resource_code}) — {zone} zone"
        f"{': ' + detail if detail else '.'}\n\n{ds.summary}\n\n"
        f"Provider: {dept.name_zh} ({dept.code}). Delivered as {ds.delivery.kind.value}, "
        f"updated {ds.update_cycle.value}; share type {ds.share_type.value}."
    )


def dataset_tags(dept: Department, ds: Dataset, zone: str) -> dict[str, str]:
    return {
        "dept": dept.code,
        "zone": zone,
        "share_type": ds.share_type.value,
        "level": ds.max_level.value,
    }


def build_dataset_assets(dept: Department, ds: Dataset) -> list[dg.AssetsDefinition]:

    @dg.asset(
        key=landing_key(dept.code, ds.code),
        group_name=dept.code,
        owners=[dept.owner],
        kinds={SOURCE_KIND[ds.delivery.kind], "duckdb"},
        description=describe(dept, ds, "landing"),
        tags=dataset_tags(dept, ds, "landing"),
        pool=LAKE_POOL,
        metadata={"resource_code": ds.resource_code, "delivery": ds.delivery.kind.value},
    )
    def _landing(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        settings = lake.settings()
        with lake.open() as con:
            # a run right after a delivery waits for files still settling; a later run
            # (the sensor's) lands what was still changing then
            result = land(con, settings, dept.code, ds, wait_for_settle=True)
            if ds.delivery.kind not in FILE_CONNECTORS:  # the next pull is due a cycle later
                record_pull(
                    con, dept.code, ds.code, landed=len(result.landed), failed=len(result.failed)
                )
            total = con.execute(
                "SELECT count(*) FROM landing.deliveries WHERE dept=? AND dataset=?",
                [dept.code, ds.code],
            ).fetchone()[0]
        for reason in result.failed:  # file names in reasons are already shown escaped
            context.log.warning(f"delivery failed: {reason}")
        if result.unmatched_total:
            more = result.unmatched_total - len(result.unmatched)
            context.log.warning(
                f"inbox/{dept.code}/ holds {result.unmatched_total} file(s) no dataset's "
                f"pattern matches (not landed): {', '.join(result.unmatched)}"
                + (f" … and {more} more" if more else "")
            )
        if result.waiting:
            context.log.info(
                f"{ds.code}: {len(result.waiting)} file(s) still being written, left for a "
                f"later run: {', '.join(result.waiting)}"
            )
        context.log.info(
            f"{ds.code}: {len(result.landed)} new deliveries, {result.skipped} seen before"
        )
        return dg.MaterializeResult(
            metadata={
                "new_deliveries": len(result.landed),
                "skipped_seen_before": result.skipped,
                "failed_pulls": len(result.failed) - result.refused,
                "refused_files": result.refused,
                "waiting_files": dg.MetadataValue.json(result.waiting),
                "unmatched_files": result.unmatched_total,
                "unmatched_names": dg.MetadataValue.json(result.unmatched),
                "deliveries_total": int(total),
                "new_files": dg.MetadataValue.json([shown(d.file_name) for d in result.landed]),
            }
        )

    @dg.asset(
        key=raw_key(dept.code, ds.code),
        deps=[landing_key(dept.code, ds.code)],
        group_name=dept.code,
        owners=[dept.owner],
        kinds={"duckdb", "parquet"},
        description=describe(dept, ds, "raw"),
        tags=dataset_tags(dept, ds, "raw"),
        pool=LAKE_POOL,
        metadata={"dagster/column_schema": column_schema(ds), "resource_code": ds.resource_code},
    )
    def _raw(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        with lake.open() as con:
            accounts = load_raw(con, dept.code, ds, lake.protection().protect)
            table = raw_table(dept.code, ds)
            rows = row_count(con, "raw", table)
        for a in accounts:
            if a.status == "failed":
                context.log.warning(f"delivery {shown(a.file_name)} failed: {a.reason}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": int(rows),
                "deliveries_loaded": sum(a.status == "loaded" for a in accounts),
                "deliveries_failed": sum(a.status == "failed" for a in accounts),
                "rows_read": sum(a.rows_read for a in accounts),
                "rows_loaded": sum(a.rows_loaded for a in accounts),
                "rows_quarantined": sum(a.rows_quarantined for a in accounts),
                "table": f"lake.raw.{table}",
            }
        )

    return [_landing, _raw]


def all_source_assets() -> list[dg.AssetsDefinition]:
    cat = get_catalogue(get_settings().catalog_dir)
    return [a for dept, ds in cat.datasets() for a in build_dataset_assets(dept, ds)]


@dg.definitions
def source_assets() -> dg.Definitions:
    return dg.Definitions(assets=all_source_assets())
