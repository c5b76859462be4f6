"""The marts in Dagster: an asset per mart downstream of what its SQL reads, freshness from
the update cycle, declarative automation (and its sensor running), column schema."""

from __future__ import annotations

import re

import dagster as dg
import pytest

from catalog.loader import load_catalogue
from catalog.marts import load_marts
from catalog.model import UpdateCycle
from marts.catalogue_tables import marts_for
from marts.lineage import read_sql
from pipelines.defs.curated.assets import CURATED_KEYS, EVENT_KEY, PERSON_KEY
from pipelines.defs.marts.assets import (
    CATALOGUE_KEYS,
    DEID_KEY,
    GROUP,
    all_mart_assets,
    sql_marts,
)
from pipelines.resources import LakeResource

MARTS = load_marts()
SQL_MARTS = sql_marts(MARTS)
# a lake table named in the SQL text (the oracle here is a regular expression, not sqlglot)
TABLE_REF = re.compile(r"\b(curated|marts)\.\"?([a-z_][a-z0-9_]*)")


@pytest.fixture(scope="module")
def graph():
    from pipelines.definitions import defs

    return defs.resolve_asset_graph()


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


def _tables_in_text(name: str) -> set[tuple[str, str]]:
    sql = "\n".join(
        line.split("--", 1)[0] for line in read_sql(name).splitlines()
    )  # comments name tables too
    return set(TABLE_REF.findall(sql))


def test_every_mart_sql_file_is_an_asset_of_the_marts_group(graph) -> None:
    assert SQL_MARTS, "no marts catalogued"
    keys = graph.get_all_asset_keys()
    for name in SQL_MARTS:
        assert _key(name) in keys
        node = graph.get(_key(name))
        assert node.group_name == GROUP
        assert MARTS[name].name_zh in (node.description or "")
    assert set(CATALOGUE_KEYS) | {DEID_KEY} <= keys


@pytest.mark.parametrize("name", SQL_MARTS)
def test_a_mart_is_downstream_of_every_table_its_sql_reads(graph, name: str) -> None:
    parents = graph.get(_key(name)).parent_keys
    for zone, table in _tables_in_text(name):
        if zone == "curated":
            key = dg.AssetKey(["curated", table])
            assert (key if key in CURATED_KEYS else PERSON_KEY) in parents, table
        elif table.startswith("quality_"):
            assert dg.AssetKey(["marts", "quality_scorecard"]) in parents
        else:
            assert _key(table) in parents, table
    # and of nothing it does not read (deps are parsed, not a blanket "every curated table")
    named = {k for z, t in _tables_in_text(name) for k in [dg.AssetKey([z, t])]}
    for parent in parents:
        if parent.path[0] == "curated" and parent != PERSON_KEY:
            assert parent in named, parent


def test_the_governance_scorecard_follows_what_it_measures(graph) -> None:
    parents = graph.get(_key("governance_scorecard")).parent_keys
    assert {_key("sharing_metrics"), DEID_KEY, _key("appeal_sla")} <= parents
    # the de-identification measure reads every other mart, not the scorecard (no cycle)
    measured = graph.get(DEID_KEY).parent_keys
    assert _key("governance_scorecard") not in measured
    assert {_key(n) for n in SQL_MARTS if n != "governance_scorecard"} <= measured
    assert set(CATALOGUE_KEYS) <= graph.get(_key("sharing_metrics")).parent_keys


@pytest.mark.parametrize("name", SQL_MARTS)
def test_freshness_follows_the_update_cycle(graph, name: str) -> None:
    policy = graph.get(_key(name)).freshness_policy
    assert isinstance(policy, dg.FreshnessPolicy)
    want = UpdateCycle(MARTS[name].update_cycle).max_age
    assert policy.fail_window.to_timedelta() == want


def test_automation_is_declared_with_its_sensor_running() -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    for name in SQL_MARTS:
        assert graph.get(_key(name)).automation_condition is not None
    sensor = next(s for s in defs.sensors if s.name == "marts_automation")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    targeted = sensor.asset_selection.resolve(graph)
    assert {_key(n) for n in SQL_MARTS} | {DEID_KEY} <= targeted


def test_column_schema_is_the_catalogue_s_with_level_and_masking(graph) -> None:
    for name in SQL_MARTS:
        schema = graph.get(_key(name)).metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == MARTS[name].column_names
        for col, spec in zip(schema.columns, MARTS[name].columns, strict=True):
            assert col.tags == {"level": spec.level.value, "masking": spec.masking.value}


def test_a_new_delivery_refreshes_the_marts_that_read_it_and_no_other() -> None:
    """curated/event materialised again (a delivery reached it) → the event marts are
    requested once; the resident marts, which do not read events, are not."""
    defs_ = all_mart_assets(load_catalogue(), MARTS)
    upstream = {k for d in defs_ for k in d.dependency_keys} - {k for d in defs_ for k in d.keys}
    defs = dg.Definitions(
        assets=[*defs_, *(dg.AssetSpec(k) for k in upstream)], resources={"lake": LakeResource()}
    )
    instance = dg.DagsterInstance.ephemeral()
    for key in upstream | {k for d in defs_ for k in d.keys}:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))

    watched = {_key(n) for n in SQL_MARTS} | {DEID_KEY}

    def requested(cursor=None) -> tuple[set[dg.AssetKey], object]:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        return {k for k in watched if result.get_requested_partitions(k) != set()}, result.cursor

    asked, cursor = requested()
    assert not asked  # everything built: nothing to do
    instance.report_runless_asset_event(dg.AssetMaterialization(EVENT_KEY))
    asked, cursor = requested(cursor)
    readers = {_key(n) for n in SQL_MARTS if ("curated", "event") in _tables_in_text(n)}
    assert readers and readers <= asked
    # marts that read curated tables only, none of them events: not asked
    untouched = {
        _key(n)
        for n in SQL_MARTS
        if _tables_in_text(n)
        and all(z == "curated" and t != "event" for z, t in _tables_in_text(n))
    }
    assert untouched and not asked & untouched
    asked, cursor = requested(cursor)
    assert not asked & readers  # asked once, not again while nothing changes


def test_every_shipped_mart_is_built_with_the_shipped_catalogue() -> None:
    assert set(marts_for(load_catalogue(), MARTS)) == set(MARTS)


def test_a_hub_without_a_mart_s_departments_leaves_that_mart_out(tmp_path) -> None:
    """A hub of the urban-management department alone: marts reading residents' birth dates
    (the police register's) cannot be built there and get no asset; the marts over the
    catalogue and the run's own records still do."""
    from tests.reliability.conftest import sub_catalogue

    cat = load_catalogue(sub_catalogue(tmp_path / "catalogue", ("cgj",)))
    kept = marts_for(cat, MARTS)
    assert "sharing_metrics" in kept and "quality_scorecard" in kept
    assert "age_structure" not in kept and "resident_profile" not in kept
    assert "elderly_care" not in kept  # it reads resident_profile
    keys = {k for d in all_mart_assets(cat, MARTS) for k in d.keys}
    assert _key("sharing_metrics") in keys and _key("age_structure") not in keys
