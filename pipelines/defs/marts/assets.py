"""The marts in the Dagster UI: an asset ``marts/<name>`` per ``marts/sql/<name>.sql``.

Each is downstream of the lake tables its SQL reads (``marts.build.mart_dependencies``:
parsed, never written by hand) — the curated assets, other marts, the quality scorecard,
``marts/catalogue_resources`` (the catalogue as tables, ``marts.catalogue_tables``) and
``marts/deidentification`` (what the published marts hold, ``marts.deidentification``).
Freshness follows the catalogue's update cycle; declarative automation rebuilds a mart after
what it reads changed (a new delivery → staged → curated → marts), and the catalogue tables
when the catalogue changes. Each materialisation records row count, column schema (with
level and masking rule) and column lineage (``dagster/column_lineage``) back to the curated
columns.
"""

import hashlib
from collections.abc import Mapping

import dagster as dg

from catalog.marts import Mart, load_marts
from catalog.model import Catalogue, UpdateCycle
from marts.build import build_mart, mart_dependencies
from marts.catalogue_tables import (
    MART_SOURCES_TABLE,
    RESOURCES_TABLE,
    marts_for,
    write_catalogue_tables,
)
from marts.deidentification import TABLE as DEID_TABLE
from marts.deidentification import measure_deidentification
from marts.lineage import read_sql
from pipelines.automation import automation_sensor
from pipelines.defs.curated.assets import CURATED_KEYS, PERSON_KEY
from pipelines.defs.quality.assets import SCORECARD_KEY
from pipelines.defs.sources.specs import LAKE_POOL
from pipelines.resources import LakeResource

GROUP = "marts"
OWNERS = ["team:data-office"]
CATALOGUE_KEYS = [
    dg.AssetKey(["marts", RESOURCES_TABLE]),
    dg.AssetKey(["marts", MART_SOURCES_TABLE]),
]
DEID_KEY = dg.AssetKey(["marts", DEID_TABLE])
# tables the quality run writes besides the scorecard (one asset: ``marts/quality_scorecard``)
QUALITY_TABLES = {"quality_scorecard", "quality_expectations", "quality_state"}
# after what it reads changed (once) or its SQL / catalogue entry changed; not while anything
# upstream runs. Not when merely missing: the main job builds what is missing, and the UI
# started after `make run` queues nothing (tests/pipelines/test_ui.py)
MART_AUTOMATION = (
    (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        | dg.AutomationCondition.code_version_changed()
    )
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after what it reads changed")
CATALOGUE_AUTOMATION = dg.AutomationCondition.code_version_changed().with_label(
    "after the catalogue changed"
)


def mart_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


def table_key(table: str) -> dg.AssetKey | None:
    """The asset that writes a lake table ``zone.name`` (None: no asset, e.g. ``landing.*``,
    the ledger the ingest steps keep). Curated tables without an asset of their own are the
    master index's (``curated/person``: one step builds the curated zone)."""
    zone, _, name = table.partition(".")
    if zone == "curated":
        key = dg.AssetKey(["curated", name])
        return key if key in CURATED_KEYS else PERSON_KEY
    if zone == "marts":
        if name in QUALITY_TABLES:
            return SCORECARD_KEY
        return mart_key(name)
    return None


def mart_deps(marts: Mapping[str, Mart], name: str) -> list[dg.AssetKey]:
    keys = {table_key(t) for t in mart_dependencies(marts, name)}
    return sorted((k for k in keys if k is not None), key=lambda k: k.to_user_string())


def column_schema(mart: Mart) -> dg.TableSchema:
    """The catalogue's columns, tagged with level and the masking rule they are published with."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                str(c.type),
                description=f"{c.label_zh}: {c.description}" if c.description else c.label_zh,
                tags={"level": str(c.level.value), "masking": str(c.masking.value)},
            )
            for c in mart.columns
        ]
    )


def column_lineage(lineage: Mapping[str, list]) -> dg.TableColumnLineage:
    """Each column's source columns (curated, or another mart's) as Dagster column lineage,
    one dep per asset and column (a source read twice counts once); a curated table without
    an asset of its own names its column ``table.column`` under the asset that writes it."""
    deps: dict[str, dict[tuple[dg.AssetKey, str], dg.TableColumnDep]] = {}
    for column, sources in lineage.items():
        for s in sources:
            key = table_key(s.table)
            if key is None:
                continue
            own = key.path[-1] == s.table.partition(".")[2]
            name = s.column if own else f"{s.table.partition('.')[2]}.{s.column}"
            deps.setdefault(column, {})[(key, name)] = dg.TableColumnDep(
                asset_key=key, column_name=name
            )
    return dg.TableColumnLineage(deps_by_column={c: list(d.values()) for c, d in deps.items()})


def freshness(mart: Mart) -> dg.FreshnessPolicy:
    """Stale after the catalogue's allowance for its update cycle (``UpdateCycle.max_age``)."""
    return dg.FreshnessPolicy.time_window(fail_window=UpdateCycle(mart.update_cycle).max_age)


def mart_version(mart: Mart) -> str:
    """A digest of the mart's SQL and catalogue entry: its Dagster code version (a change
    rebuilds it: the automation, and the main job's marts step)."""
    text = read_sql(mart.name) + repr(mart.model_dump(mode="json"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_mart_asset(
    catalogue: Catalogue, marts: Mapping[str, Mart], name: str
) -> dg.AssetsDefinition:
    """The asset of one mart, built with the catalogue its definitions were made from (the
    same objects as the run's: the mart's parsed analysis is kept for them,
    ``marts.lineage.analyse_mart``)."""
    mart = marts[name]
    schema = column_schema(mart)

    @dg.asset(
        key=mart_key(name),
        deps=mart_deps(marts, name) + (CATALOGUE_KEYS if reads_catalogue(marts, name) else []),
        group_name=GROUP,
        owners=OWNERS if not mart.owner.startswith("team:") else [mart.owner],
        kinds={"duckdb", "sql"},
        description=f"{mart.name_zh} — {mart.summary}",
        metadata={
            "dagster/column_schema": schema,
            "level": str(mart.level.value),
            "share_type": str(mart.share_type.value),
        },
        tags={"level": str(mart.level.value)},
        freshness_policy=freshness(mart),
        automation_condition=MART_AUTOMATION,
        code_version=mart_version(mart),
        pool=LAKE_POOL,
    )
    def _mart(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        with lake.open() as con:
            built = build_mart(con, catalogue, marts, name, lake.protection())
        context.log.info(f"marts.{name}: {built.rows:,} rows in {built.seconds:.2f} s")
        metadata: dict = {
            "dagster/row_count": built.rows,
            "dagster/column_schema": schema,
            "seconds": round(built.seconds, 3),
        }
        lineage = column_lineage(built.lineage)
        if lineage.deps_by_column:
            metadata["dagster/column_lineage"] = lineage
        return dg.MaterializeResult(metadata=metadata)

    return _mart


def reads_catalogue(marts: Mapping[str, Mart], name: str) -> bool:
    return bool({f"marts.{t}" for t in (RESOURCES_TABLE, MART_SOURCES_TABLE)}
                & mart_dependencies(marts, name))  # fmt: skip


def catalogue_version(catalogue: Catalogue, marts: Mapping[str, Mart]) -> str:
    """A digest of the department catalogue and the marts' catalogue: the tables' code version."""
    text = repr(catalogue.as_dict()) + repr(
        {n: m.model_dump(mode="json") for n, m in sorted(marts.items())}
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_catalogue_asset(catalogue: Catalogue, marts: Mapping[str, Mart]) -> dg.AssetsDefinition:
    version = catalogue_version(catalogue, marts)
    specs = [
        dg.AssetSpec(
            key,
            group_name=GROUP,
            owners=OWNERS,
            kinds={"duckdb", "yaml"},
            description=description,
            code_version=version,
            automation_condition=CATALOGUE_AUTOMATION,
        )
        for key, description in zip(
            CATALOGUE_KEYS,
            (
                "目录资源 the catalogue's datasets and marts as a table: share type, level, "
                "update cycle, planned consumers (read by the sharing metrics).",
                "mart columns and the department fields they come from (parsed lineage), with "
                "level and masking rule.",
            ),
            strict=True,
        )
    ]

    @dg.multi_asset(specs=specs, name="marts_catalogue", pool=LAKE_POOL)
    def _catalogue(lake: LakeResource):
        with lake.open() as con:
            counts = write_catalogue_tables(con, catalogue, marts)
        for key in CATALOGUE_KEYS:
            yield dg.MaterializeResult(
                asset_key=key, metadata={"dagster/row_count": counts[key.path[-1]]}
            )

    return _catalogue


def build_deidentification_asset(marts: Mapping[str, Mart]) -> dg.AssetsDefinition:
    measured = [n for n in sorted(marts)
                if DEID_KEY not in mart_deps(marts, n) and marts[n].history_of is None]  # fmt: skip

    @dg.asset(
        key=DEID_KEY,
        deps=[mart_key(n) if n not in QUALITY_TABLES else SCORECARD_KEY for n in measured],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb"},
        description=(
            "去标识化 per published mart column filed L3/L4: values published and values "
            "carrying their masking rule (read by the governance scorecard)."
        ),
        automation_condition=MART_AUTOMATION,
        pool=LAKE_POOL,
    )
    def _deidentification(lake: LakeResource) -> dg.MaterializeResult:
        with lake.open() as con:
            frame = measure_deidentification(con, marts)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "sensitive_values": int(frame["sensitive_values"].sum()),
                "carrying_rule": int(frame["carrying_rule"].sum()),
            }
        )

    return _deidentification


def sql_marts(marts: Mapping[str, Mart]) -> list[str]:
    """The marts built from their SQL here (the quality scorecard is built by its own asset,
    a mart made from a frame in Python — ``made_from``, the need model's scores — by its
    maker's, through ``marts.publish.publish_frame``; a history mart — ``history_of`` — by
    the build of the mart it keeps)."""
    return [n for n in sorted(marts) if n not in QUALITY_TABLES
            and marts[n].made_from is None and marts[n].history_of is None]  # fmt: skip


def all_mart_assets(catalogue: Catalogue, marts: Mapping[str, Mart]) -> list[dg.AssetsDefinition]:
    """The catalogue tables, every mart this catalogue can build (``marts_for``) and the
    de-identification measure."""
    marts = marts_for(catalogue, marts)
    return [
        build_catalogue_asset(catalogue, marts),
        *(build_mart_asset(catalogue, marts, n) for n in sql_marts(marts)),
        build_deidentification_asset(marts),
    ]


def load_mart_assets() -> list[dg.AssetsDefinition]:
    from catalog.loader import get_catalogue
    from catalog.settings import get_settings

    return all_mart_assets(get_catalogue(get_settings().catalog_dir), load_marts())


@dg.definitions
def mart_assets() -> dg.Definitions:
    automation = automation_sensor(
        "marts_automation",
        dg.AssetSelection.groups(GROUP),
        "Builds a mart again after what it reads changed (new delivery → curated).",
    )
    return dg.Definitions(assets=load_mart_assets(), sensors=[automation])
