"""The main job's marts step: the ``marts/*`` assets materialised in one Dagster run.

After the ingest and curated runs (``pipelines/ingest_run.py``), one Dagster run: the
catalogue tables and the marts that are stale (``marts.staleness``: a table the SQL reads
changed after the mart was written, or its SQL or catalogue entry changed: the asset's code
version) with what reads them, in dependency order (Dagster orders the steps by the
dependencies ``marts.build.mart_dependencies`` parsed); then the de-identification measure
and the governance scorecard over what the lake publishes (in a second run when a failed
step made Dagster skip them). It runs when the curated step or the scorecard ran in this
run (something changed) or a mart's table is missing; otherwise the marts in the lake still
hold and nothing is built.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from catalog.marts import load_marts
from catalog.model import Catalogue
from catalog.settings import Settings
from lakehouse.lake import has_table, open_lake
from marts.catalogue_tables import marts_for
from marts.staleness import stale_marts
from pipelines.defs.marts.assets import (
    CATALOGUE_KEYS,
    DEID_KEY,
    all_mart_assets,
    mart_key,
    mart_version,
    reads_catalogue,
    sql_marts,
)
from pipelines.ingest_run import run_problems
from pipelines.instance import dagster_instance
from pipelines.recovery import run_tags
from pipelines.resources import LakeResource
from pipelines.share_records import copy_share_records
from pipelines.summary import Problem

GOVERNANCE_MART = "governance_scorecard"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class MartsOutcome:
    """What the marts step did: the marts built, and steps that failed."""

    ran: bool = False
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # nothing they read changed
    steps: list[Problem] = field(default_factory=list)


def marts_missing(settings: Settings, names: list[str]) -> bool:
    with open_lake(settings, read_only=True) as con:
        return any(not has_table(con, "marts", n) for n in names)


def run_marts(
    settings: Settings, cat: Catalogue, started_at: dt.datetime, *, changed: bool = True
) -> MartsOutcome:
    """When ``changed`` or a mart is missing: the stale marts, then the measures (see the
    module doc); a failed mart stops what depends on it and is listed, never raised."""
    outcome = MartsOutcome()
    catalogued = load_marts()
    # nothing changed and every mart in the lake: done, without parsing any SQL (a no-op
    # run stays cheap); a mart this hub's catalogue cannot build does not count as missing
    if not changed and not marts_missing(settings, sql_marts(catalogued)):
        return outcome
    marts = marts_for(cat, catalogued)
    if not changed and not marts_missing(settings, sql_marts(marts)):
        return outcome
    copy_share_records(settings)  # the share service's records, for the sharing metrics
    instance = dagster_instance()
    built = sql_marts(marts)
    code_changed = {
        n for n in built if built_version(instance, mart_key(n)) != mart_version(marts[n])
    }
    with open_lake(settings, read_only=True) as con:
        stale = stale_marts(con, marts, code_changed)
    # the catalogue tables are written every time (two small tables), so what reads them too
    stale |= {n for n in built if reads_catalogue(marts, n)}
    defs = all_mart_assets(cat, marts)
    # the measures run even when a mart failed: they read what the lake publishes (a mart
    # refused now still holds its last build), so one broken mart does not hide the scorecard.
    # One Dagster run for all (a run costs ~0.1 s of creation and planned events); Dagster
    # skips what depends on a failed step, so then the measures it skipped run in a second
    measures = {DEID_KEY, mart_key(GOVERNANCE_MART)}
    wanted = {mart_key(n) for n in stale} | set(CATALOGUE_KEYS) | measures
    outcome.skipped = sorted(n for n in built if n not in stale and n != GOVERNANCE_MART)
    part = [d for d in defs if set(d.keys) & wanted]
    result = _materialize(part, instance)
    done = {m.asset_key for m in result.get_asset_materialization_events()}
    failed = {e.step_key for e in result.get_step_failure_events()}
    again = [d for d in part if set(d.keys) & measures and not set(d.keys) <= done
             and d.node_def.name not in failed]  # fmt: skip
    outcome.steps += run_problems(result, [d for d in part if d not in again], started_at)[0]
    if again:
        result = _materialize(again, instance)
        done |= {m.asset_key for m in result.get_asset_materialization_events()}
        outcome.steps += run_problems(result, again, started_at)[0]
    made = {k.path[-1] for k in done if k.path[-1] in marts}
    last = {k.path[-1] for k in measures}  # listed after the marts they measure, as they ran
    outcome.built = sorted(made - last) + sorted(made & last)
    outcome.ran = True
    return outcome


def _materialize(
    part: list[dg.AssetsDefinition], instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        part,
        instance=instance,
        resources={"lake": LakeResource()},
        tags={"streethub/job": "main", **run_tags()},
        run_config=QUIET,
        raise_on_error=False,
    )


def built_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The code version the asset's newest materialisation was made with (None: never)."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return event.asset_materialization.tags.get("dagster/code_version")


def governance_scorecard(settings: Settings) -> pl.DataFrame | None:
    """The governance scorecard as the lake holds it (None: never built)."""
    with open_lake(settings, read_only=True) as con:
        if not has_table(con, "marts", GOVERNANCE_MART):
            return None
        return con.execute(f"SELECT * FROM marts.{GOVERNANCE_MART}").pl()
