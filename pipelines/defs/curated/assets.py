"""The curated zone in the Dagster UI: ``curated/person``, ``curated/household``,
``curated/house``, ``curated/thing`` and ``curated/event``, downstream of every staged
dataset, built in one step (``pipelines.curated_run``: the index first, then what reads
it), incrementally: a run re-links only the datasets whose staged rows changed."""

import dagster as dg

from catalog.loader import get_catalogue
from catalog.settings import get_settings
from catalog.street import get_street
from pipelines.automation import automation_sensor
from pipelines.curated_run import build_curated
from pipelines.defs.sources.specs import LAKE_POOL, staged_key
from pipelines.resources import LakeResource

GROUP = "curated"
OWNERS = ["team:data-office"]
PERSON_KEY = dg.AssetKey(["curated", "person"])
HOUSEHOLD_KEY = dg.AssetKey(["curated", "household"])
HOUSE_KEY = dg.AssetKey(["curated", "house"])
THING_KEY = dg.AssetKey(["curated", "thing"])
EVENT_KEY = dg.AssetKey(["curated", "event"])
CURATED_KEYS = [PERSON_KEY, HOUSEHOLD_KEY, HOUSE_KEY, THING_KEY, EVENT_KEY]
# like the scorecard: after new staged data, once; not while anything upstream runs
CURATED_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after new staged data")

DESCRIPTIONS = {
    PERSON_KEY: (
        "人 master resident index and golden records: one person across departments "
        "(exact on the citizen-ID pseudonym, Splink for records without one, ambiguous "
        "candidates to the review queue: `streethub persons review`), each attribute from "
        "its authoritative department with source, as-of date and history; conflicts "
        "between departments; the re-collection metric. No plain identifier."
    ),
    HOUSEHOLD_KEY: "户 households of the registry: members by person id, the house they live in.",
    HOUSE_KEY: (
        "房 housing units from the house register; every address of a person in any "
        "department linked to its unit (normalised down to building, entrance and room)."
    ),
    THING_KEY: (
        "物 things: the datasets the catalogue files as things (registered businesses by "
        "unified social credit code, then name and address; facilities, sensors, hazard "
        "points), placed in their grid cell."
    ),
    EVENT_KEY: (
        "事 the records of every event dataset in the catalogue (door access summarised per "
        "person and day): when, what, which grid cell, which person and house."
    ),
}


def build_curated_assets(staged_keys: list[dg.AssetKey]) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(
            key,
            deps=staged_keys,
            group_name=GROUP,
            owners=OWNERS,
            kinds={"duckdb", "splink"} if key == PERSON_KEY else {"duckdb"},
            description=DESCRIPTIONS[key],
            automation_condition=CURATED_AUTOMATION,
        )
        for key in CURATED_KEYS
    ]

    @dg.multi_asset(specs=specs, name="curated", pool=LAKE_POOL)
    def _curated(context: dg.AssetExecutionContext, lake: LakeResource):
        settings = lake.settings()
        cat = get_catalogue(settings.catalog_dir)
        with lake.open() as con:
            build = build_curated(con, cat, lake.protection(), get_street())
        if build.skipped:
            context.log.info("curated: no staged table changed since the last build")
        scope = "full" if build.full else f"{len(build.changed)} dataset(s) changed"
        common = {"build": scope, "seconds": round(build.total_seconds, 2)}
        persons = build.counts.get("persons", {})
        yield dg.MaterializeResult(
            asset_key=PERSON_KEY,
            metadata={
                **common,
                **{f"links_{k}": v for k, v in persons.items()},
                "review_queue": persons.get("review", 0),
                **{f"golden_{k}": v for k, v in build.counts.get("golden", {}).items()},
                **(
                    {"recollection_avoidable_share": round(build.avoidable, 4)}
                    if build.avoidable is not None
                    else {}
                ),
            },
        )
        for key, part in (
            (HOUSEHOLD_KEY, "households"),
            (HOUSE_KEY, "houses"),
            (THING_KEY, "things"),
            (EVENT_KEY, "events"),
        ):
            yield dg.MaterializeResult(
                asset_key=key, metadata={**common, **build.counts.get(part, {})}
            )

    return _curated


def all_curated_assets() -> list[dg.AssetsDefinition]:
    cat = get_catalogue(get_settings().catalog_dir)
    return [build_curated_assets([staged_key(d.code, ds.code) for d, ds in cat.datasets()])]


@dg.definitions
def curated_assets() -> dg.Definitions:
    automation = automation_sensor(
        "curated_automation",
        dg.AssetSelection.assets(*CURATED_KEYS),
        "Links and curates again after a run staged new data.",
    )
    return dg.Definitions(assets=all_curated_assets(), sensors=[automation])
