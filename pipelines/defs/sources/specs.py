"""What a dataset's three assets are: keys, groups, owners, kinds, descriptions, schemas.

``landing/<dept>/<dataset>`` → ``raw/<dept>/<dataset>`` → ``staged/<dept>/<dataset>``,
from the catalogue only. One Dagster step materialises all three (``assets.py``); the specs
keep them three assets in the UI, with their lineage, group (the department) and schema.
"""

import dagster as dg

from catalog.model import ConnectorKind, Dataset, Department
from pipelines.ingest.staged import staged_columns

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


def staged_key(dept: str, dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["staged", dept, dataset])


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


def dataset_specs(dept: Department, ds: Dataset) -> list[dg.AssetSpec]:
    """The dataset's landing, raw and staged assets, in that order (each depends on the
    one before)."""
    common = {"group_name": dept.code, "owners": [dept.owner]}
    landing = dg.AssetSpec(
        landing_key(dept.code, ds.code),
        kinds={SOURCE_KIND[ds.delivery.kind], "duckdb"},
        description=describe(dept, ds, "landing"),
        tags=dataset_tags(dept, ds, "landing"),
        metadata={"resource_code": ds.resource_code, "delivery": ds.delivery.kind.value},
        **common,
    )
    raw = dg.AssetSpec(
        raw_key(dept.code, ds.code),
        deps=[landing.key],
        kinds={"duckdb", "parquet"},
        description=describe(dept, ds, "raw"),
        tags=dataset_tags(dept, ds, "raw"),
        metadata={"dagster/column_schema": column_schema(ds), "resource_code": ds.resource_code},
        **common,
    )
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, kind) for name, kind in staged_columns(ds)]
    )
    staged = dg.AssetSpec(
        staged_key(dept.code, ds.code),
        deps=[raw.key],
        kinds={"duckdb", "pandera"},
        description=describe(
            dept,
            ds,
            "staged",
            "rows that passed the catalogue's row gate, standardised and typed; L3/L4 "
            "columns encrypted; failures in quarantine with source row, field and reason.",
        ),
        tags=dataset_tags(dept, ds, "staged"),
        metadata={"dagster/column_schema": schema, "resource_code": ds.resource_code},
        **common,
    )
    return [landing, raw, staged]
