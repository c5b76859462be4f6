"""The Dagster code location: loads, a group per catalogue department, sensors, schedules, a real run."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from catalog.loader import load_catalogue
from catalog.model import FILE_CONNECTORS
from catalog.settings import Settings
from lakehouse.lake import open_lake
from pipelines.defs.curated.assets import CURATED_KEYS
from pipelines.defs.quality.assets import SCORECARD_KEY
from pipelines.deliveries import list_deliveries
from quality.evaluation import manifest_rows

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from pipelines.definitions import defs

    return defs


def test_a_group_per_department_with_both_zones(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    groups = {graph.get(k).group_name for k in keys}
    cat = load_catalogue()
    assert groups == set(cat.departments) | {"quality", "curated", "marts", "need_model"}
    for dept, ds in cat.datasets():
        landing = dg.AssetKey(["landing", dept.code, ds.code])
        raw = dg.AssetKey(["raw", dept.code, ds.code])
        staged = dg.AssetKey(["staged", dept.code, ds.code])
        assert landing in keys and raw in keys and staged in keys
        node = graph.get(raw)
        assert landing in node.parent_keys
        assert raw in graph.get(staged).parent_keys
        assert staged in graph.get(dg.AssetKey(["marts", "quality_scorecard"])).parent_keys
        for key in CURATED_KEYS:  # the curated zone reads every staged dataset
            assert staged in graph.get(key).parent_keys
        assert node.owners == [dept.owner]
        assert ds.name_zh in (node.description or "")


def test_sensors_for_file_departments_schedules_for_pulled(defs: dg.Definitions) -> None:
    cat = load_catalogue()
    sensors = {s.name: s for s in defs.sensors or []}
    file_depts = {d.code for d, ds in cat.datasets() if ds.delivery.kind in FILE_CONNECTORS}
    automation, curating = "quality_scorecard_automation", "curated_automation"
    assert set(sensors) == {f"inbox_{d}" for d in file_depts} | {automation, curating,
                                                                 "marts_automation"}  # fmt: skip
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    graph = defs.resolve_asset_graph()
    targets = sensors[automation].asset_selection.resolve(graph)
    assert targets == {SCORECARD_KEY}  # the scorecard follows new staged data; nothing else
    assert graph.get(SCORECARD_KEY).automation_condition is not None
    # the curated zone follows new staged data too, and the scorecard (with its leak scan)
    # follows the curated zone: its conflicts are scored, its tables scanned
    assert sensors[curating].asset_selection.resolve(graph) == set(CURATED_KEYS)
    assert set(CURATED_KEYS) <= graph.get(SCORECARD_KEY).parent_keys
    pulled = [(d, ds) for d, ds in cat.datasets() if ds.delivery.kind not in FILE_CONNECTORS]
    schedules = {s.name: s for s in defs.schedules or []}
    assert len(schedules) == len(pulled)
    for d, ds in pulled:
        s = schedules[f"pull_{d.code}__{ds.code}_{ds.update_cycle.value}"]
        assert s.cron_schedule == ds.update_cycle.cron


def test_runs_execute_in_one_process_so_the_lake_is_loaded_once(defs: dg.Definitions) -> None:
    cat = load_catalogue()
    dept = next(d for d, ds in cat.datasets() if ds.delivery.kind in FILE_CONNECTORS)
    for job in (
        defs.resolve_job_def(f"ingest_{dept.code}_files"),
        defs.resolve_implicit_global_asset_job_def(),  # what the automation sensor launches
    ):
        assert job.executor_def.name == "in_process"


def test_dg_check_defs_passes() -> None:
    dg_bin = Path(sys.executable).parent / "dg"
    proc = subprocess.run(
        [str(dg_bin), "check", "defs"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_materialising_a_department_through_dagster(tmp_path: Path, monkeypatch) -> None:
    from departments.simulate import simulate
    from pipelines.defs.sources.assets import build_dataset_assets
    from pipelines.defs.sources.checks import ACCOUNT_CHECK
    from pipelines.resources import LakeResource

    home = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    manifest = simulate(home, residents=200, seed=3, days=1, start=dt.date(2026, 11, 1))
    dept = load_catalogue().departments["wjw"]
    assets = [a for ds in dept.datasets for a in build_dataset_assets(dept, ds)]
    assert len(assets) == len(dept.datasets)  # one step a dataset: landing, raw, staged, checks
    result = dg.materialize(
        assets,
        resources={"lake": LakeResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert len(result.get_step_success_events()) == len(dept.datasets)
    checked = result.get_asset_check_evaluations()
    assert {(e.asset_key.path[0], e.check_name) for e in checked} == {
        ("raw", ACCOUNT_CHECK),
        ("staged", "contract"),
    }
    evals = [e for e in checked if e.check_name == ACCOUNT_CHECK]
    assert len(evals) == len(dept.datasets) and all(e.passed for e in evals)
    assert all(e.metadata["deliveries"].value >= 1 for e in evals)  # nothing passed vacuously
    mats = {
        tuple(m.asset_key.path): m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
    }
    raw = mats[("raw", "wjw", dept.datasets[0].code)]
    assert raw["dagster/row_count"].value > 0
    # the run read this home's inbox: every row the simulator delivered read, and loaded
    # into this home's lake (the raw row count as Dagster recorded it)
    delivered = manifest_rows(manifest)
    with open_lake(Settings(home=home), read_only=True) as con:
        rows = list_deliveries(con, dept="wjw")
        loaded = {
            ds.code: con.execute(f'SELECT count(*) FROM raw."wjw__{ds.code}"').fetchone()[0]
            for ds in dept.datasets
        }
    assert {r.status for r in rows} == {"loaded"}
    for ds in dept.datasets:
        mine = [r for r in rows if r.dataset == ds.code]
        assert sum(r.rows_read for r in mine) == delivered[("wjw", ds.code)] > 0, ds.code
        assert loaded[ds.code] == sum(r.rows_loaded for r in mine), ds.code
    assert loaded[dept.datasets[0].code] == raw["dagster/row_count"].value


def test_inbox_sensor_fires_on_new_files_only(tmp_path: Path, monkeypatch) -> None:
    from pipelines.defs.sources.sensors import build_inbox_sensor

    home = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    dept = load_catalogue().departments["mzj"]
    sensor = build_inbox_sensor(dept)
    empty = sensor(dg.build_sensor_context())
    assert isinstance(empty, dg.SkipReason)
    ds = dept.datasets[0]
    inbox = home / "inbox" / "mzj"
    inbox.mkdir(parents=True)
    delivered = inbox / (ds.delivery.pattern or "").replace("*", "20261101")
    delivered.write_bytes(b"x")
    os.utime(delivered, (1e9, 1e9))  # long settled
    first = sensor(dg.build_sensor_context())
    assert isinstance(first, dg.SensorResult) and len(first.run_requests) == 1
    again = sensor(dg.build_sensor_context(cursor=first.cursor))
    assert isinstance(again, dg.SkipReason)


def test_staged_contract_check_blocks_and_reports(tmp_path: Path, monkeypatch) -> None:
    from departments.simulate import simulate
    from pipelines.defs.sources.assets import build_dataset_assets
    from pipelines.resources import LakeResource

    home = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    simulate(home, residents=200, seed=3, days=1, start=dt.date(2026, 11, 1))
    dept = load_catalogue().departments["wjw"]
    ds = dept.datasets[0]
    (step,) = build_dataset_assets(dept, ds)
    staged = dg.AssetKey(["staged", "wjw", ds.code])
    (contract,) = [s for s in step.check_specs if s.name == "contract"]
    assert contract.blocking and contract.asset_key == staged
    result = dg.materialize(
        [step],
        selection=[staged],  # raw and staged can be picked without landing (can_subset)
        resources={"lake": LakeResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    made = {m.asset_key for m in result.get_asset_materialization_events()}
    assert made == {staged}  # nothing landed, nothing read: the gate had nothing to do
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.check_name == "contract"
    assert evaluation.metadata["deliveries"].value == 0
    result = dg.materialize(
        [step], resources={"lake": LakeResource()}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success and len(result.get_step_success_events()) == 1
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.asset_key == staged]
    assert evaluation.passed
    meta = evaluation.metadata
    assert meta["newest_pass_rate"].value >= 0.8
    assert sum(meta["rows_quarantined_by_check"].value.values()) > 0
    assert meta["report"].value.endswith("quality.html")


def test_leak_scan_is_a_blocking_check_on_the_marts(defs: dg.Definitions) -> None:
    from pipelines.defs.protection.checks import LEAK_CHECK

    key = dg.AssetCheckKey(dg.AssetKey(["marts", "quality_scorecard"]), LEAK_CHECK)
    graph = defs.resolve_asset_graph()
    assert key in graph.asset_check_keys
    specs = [s for c in defs.asset_checks or [] for s in c.check_specs if s.key == key]
    assert len(specs) == 1 and specs[0].blocking
