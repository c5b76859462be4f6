"""The main job's marts step (pipelines/marts_run.py) on the marts' session street: every
mart materialised as a Dagster asset with row count, column schema and column lineage; a
second run with nothing new builds nothing and still ends with the governance scorecard,
on the session's mart street (``mart_street`` of tests/conftest.py)."""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import pytest
from rich.console import Console

from catalog.settings import Settings
from pipelines.defs.curated.assets import CURATED_KEYS
from pipelines.defs.marts.assets import DEID_KEY, sql_marts
from pipelines.instance import prepare_dagster_home
from pipelines.marts_run import GOVERNANCE_MART
from tests.mart_street import MartStreet
from tests.streets import copy_home


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


@pytest.fixture(scope="module")
def materialised(mart_street: MartStreet) -> dict[dg.AssetKey, dict]:
    """The newest materialisation's metadata of each marts/* asset in the street's Dagster
    instance (written by the main job's marts step)."""
    prepare_dagster_home(mart_street.settings)
    instance = dg.DagsterInstance.from_config(str(mart_street.settings.dagster_home))
    out = {}
    for key in [_key(n) for n in sql_marts(mart_street.marts)] + [DEID_KEY]:
        event = instance.get_latest_materialization_event(key)
        if event is not None:
            out[key] = event.asset_materialization.metadata
    return out


def test_every_mart_was_materialised_by_the_main_job(mart_street, materialised) -> None:
    built = {n for n in sql_marts(mart_street.marts) if n not in mart_street.errors}
    assert built and {_key(n) for n in built} <= set(materialised)
    assert DEID_KEY in materialised


def test_row_count_and_column_schema_are_the_lake_s(mart_street, materialised) -> None:
    for key, meta in materialised.items():
        name = key.path[-1]
        if key == DEID_KEY:
            continue
        rows = mart_street.query(f'SELECT count(*) AS n FROM marts."{name}"')["n"][0]
        assert meta["dagster/row_count"].value == rows, name
        schema = meta["dagster/column_schema"].value
        assert [c.name for c in schema.columns] == mart_street.marts[name].column_names
        lake = mart_street.query(f'SELECT * FROM marts."{name}" LIMIT 0').columns
        assert [c.name for c in schema.columns] == lake


def test_column_lineage_reaches_the_curated_assets(mart_street, materialised) -> None:
    curated_built = [
        k for k in materialised if k != DEID_KEY and "dagster/column_lineage" in materialised[k]
    ]
    assert _key("elderly_care") in curated_built or _key("age_structure") in curated_built
    for key in curated_built:
        lineage = materialised[key]["dagster/column_lineage"].value
        assert set(lineage.deps_by_column) <= set(mart_street.marts[key.path[-1]].column_names)
        for deps in lineage.deps_by_column.values():
            for dep in deps:
                assert dep.asset_key in CURATED_KEYS or dep.asset_key.path[0] == "marts"
                assert dep.column_name
    # a mart read from curated tables only: every column has its curated sources
    age = materialised.get(_key("age_structure"))
    if age is not None:
        lineage = age["dagster/column_lineage"].value
        assert set(lineage.deps_by_column) == set(mart_street.marts["age_structure"].column_names)


def test_with_nothing_changed_no_mart_is_built_and_make_run_ends_with_the_scorecard(
    mart_street,
    tmp_path,
    monkeypatch,
) -> None:
    from pipelines.main_job import run_main
    from pipelines.marts_run import run_marts

    settings = copy_home(mart_street.home, tmp_path)
    shutil.copytree(mart_street.sim_dir, settings.sim_dir_abs)
    for name, value in {"STREETHUB_HOME": str(settings.home), "STREETHUB_SETTLE_SECONDS": "0",
                        "STREETHUB_SIM_AUTO": "false"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    prepare_dagster_home(settings)
    idle = run_marts(settings, mart_street.catalogue, dt.datetime.now(dt.UTC), changed=False)
    assert not idle.ran and idle.built == []  # every mart in the lake: nothing to build
    console = Console(record=True, width=200)
    before = mart_street.query(f"SELECT * FROM marts.{GOVERNANCE_MART}")
    try:
        run_main(Settings(), console)
    except Exception as exc:  # a run that fails still prints the scorecard last
        pytest.fail(f"the second run failed: {type(exc).__name__}")
    lines = [line for line in console.export_text().splitlines() if line.strip()]
    tail = "\n".join(lines[-(before.height + 6) :])
    assert "governance scorecard" in tail
    for r in before.iter_rows(named=True):
        assert f"{r['name_zh']} {r['figure']}" in tail  # every figure is printed, last
    assert lines[-1].startswith("└")  # the scorecard's table closes the output


def test_after_a_change_to_events_only_the_marts_reading_them_are_stale(
    mart_street: MartStreet, tmp_path
) -> None:
    """Freshly built, no mart is stale; one event changed, the marts whose SQL names
    curated.event are, with the marts reading them; the age structure is not."""
    import re

    from lakehouse.lake import open_lake
    from marts.lineage import read_sql
    from marts.staleness import stale_marts

    marts = {n: m for n, m in mart_street.marts.items() if n in mart_street.builds}
    settings = copy_home(mart_street.home, tmp_path)
    with open_lake(settings) as con:
        assert stale_marts(con, marts) == set()
        con.execute(
            "UPDATE curated.event SET status = status "
            "WHERE event_id = (SELECT min(event_id) FROM curated.event)"
        )
        stale = stale_marts(con, marts)

    def names(name: str) -> set[str]:  # tables named in the SQL text, comments aside
        text = re.sub(r"--[^\n]*", "", read_sql(name))
        return {f"{z}.{t}" for z, t in re.findall(r"\b(curated|marts)\.\"?([a-z_]+)", text)}

    want = {n for n in marts if "curated.event" in names(n)}
    while more := {n for n in marts if n not in want and {f"marts.{w}" for w in want} & names(n)}:
        want |= more
    assert want and stale == want
    assert "age_structure" not in stale and "appeal_sla" in stale


def test_a_failed_mart_stops_only_itself_and_the_measures_run_after_it(
    mart_street: MartStreet, tmp_path, monkeypatch
) -> None:
    """The marts and the measures are one Dagster run; a mart that fails makes Dagster skip
    the measures depending on it, so they run in a second (one broken mart never hides the
    governance scorecard), and the problem listed is that mart's alone."""
    import pipelines.defs.marts.assets as assets
    import pipelines.marts_run as marts_run
    from pipelines.marts_run import run_marts

    settings = copy_home(mart_street.home, tmp_path)
    monkeypatch.setenv("STREETHUB_HOME", str(settings.home))
    prepare_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    broken = "appeal_sla"  # the governance scorecard and the de-identification read it
    real = assets.build_mart

    def build(con, catalogue, marts, name, *args, **kwargs):
        if name == broken:
            raise RuntimeError("planted")
        return real(con, catalogue, marts, name, *args, **kwargs)

    monkeypatch.setattr(assets, "build_mart", build)
    monkeypatch.setattr(marts_run, "stale_marts", lambda con, marts, also: {broken})
    runs = instance.get_runs_count()
    out = run_marts(settings, mart_street.catalogue, dt.datetime.now(dt.UTC))
    assert [(p.where, p.what) for p in out.steps] == [
        (f"marts/{broken}", "step failed (RuntimeError)")
    ]
    assert broken not in out.built and out.built[-1] == GOVERNANCE_MART
    assert instance.get_runs_count() == runs + 2
    newest = instance.get_runs(limit=1)[0].run_id
    for key in (DEID_KEY, _key(GOVERNANCE_MART)):
        assert instance.get_latest_materialization_event(key).run_id == newest
