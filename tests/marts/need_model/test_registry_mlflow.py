"""The need model's MLflow registry: versions with their metrics, features, snapshot,
fairness table and model card; the file's SHA-256 checked on every load; nothing per person
kept; telemetry off before mlflow is imported."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from catalog.settings import Settings
from marts.need_model.registry import (
    BACKTEST,
    CARD,
    FAIRNESS,
    MODEL_DIR,
    MODEL_FILE,
    Registry,
    RegistryError,
    sha256_of,
)
from tests.marts.need_model.registry_standin import (
    FEATURES,
    StandInModel,
    backtest_table,
    fairness_table,
    fresh_registry,
    synthetic_features,
)


@pytest.fixture(scope="module")
def trained() -> tuple[StandInModel, pl.DataFrame]:
    features, labels = synthetic_features()
    return StandInModel.fit(features, labels), features


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return fresh_registry(Settings(home=tmp_path / "home"))


def register(registry: Registry, model: StandInModel, snapshot: int = 41):
    return registry.register(
        model,
        metrics={"pr_auc_home_care": 0.4, "ece_home_care": 0.03},
        features=FEATURES,
        lake_snapshot=snapshot,
        fairness=fairness_table(),
        backtest=backtest_table(),
        training_cutoffs=[dt.date(2026, 5, 31), dt.date(2026, 4, 30)],
    )


def model_file(registry: Registry, run_id: str) -> Path:
    found = list(registry.settings.models_dir.rglob(f"{run_id}/**/{MODEL_DIR}/{MODEL_FILE}"))
    assert len(found) == 1
    return found[0]


def test_a_version_keeps_metrics_features_snapshot_fairness_and_card(registry, trained):
    model, _ = trained
    first = register(registry, model, snapshot=41)
    second = register(registry, model, snapshot=42)
    assert [v.version for v in registry.versions()] == [1, 2]
    assert first.metrics == {"pr_auc_home_care": 0.4, "ece_home_care": 0.03}
    assert (first.lake_snapshot, second.lake_snapshot) == ("41", "42")
    assert registry.features(1) == list(FEATURES)
    assert second.training_cutoffs == (dt.date(2026, 4, 30), dt.date(2026, 5, 31))
    assert registry.table(1, FAIRNESS).equals(fairness_table())
    assert registry.table(2, BACKTEST).equals(backtest_table())
    card = registry.text(1, CARD)
    for heading in ("Purpose", "Data", "Metrics", "Fairness", "Limits", "Rights (PIPL art. 24)"):
        assert f"## {heading}" in card
    assert "gender=女" in card and "never an automatic decision" in card
    assert first.sha256 == sha256_of(model_file(registry, first.run_id))
    assert registry.promoted() is None and not any(v.promoted for v in registry.versions())


def test_promoted_version_loads_and_predicts_like_the_trained_model(registry, trained):
    model, features = trained
    register(registry, model)
    register(registry, model)
    done = registry.promote(2, actor="cli:ann", approval="op-1")
    assert (done.promoted, done.promoted_by, done.approval) == (True, "cli:ann", "op-1")
    assert [v.version for v in registry.versions() if v.promoted] == [2]
    mv, loaded = registry.load(loader=StandInModel.load)
    assert mv.version == 2
    assert loaded.predict(features).equals(model.predict(features))
    registry.promote(1, actor="cli:ben", approval="op-2")
    assert registry.promoted().version == 1


def test_a_changed_model_file_refuses_to_load_naming_the_version(registry, trained):
    model, _ = trained
    mv = register(registry, model)
    path = model_file(registry, mv.run_id)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(RegistryError, match="version 1: the model file's SHA-256") as exc:
        registry.load(1, loader=StandInModel.load)
    assert "refused to load" in str(exc.value)
    with pytest.raises(RegistryError, match="version 1"):  # nor is it promoted
        registry.promote(1, actor="cli:ann", approval="op-1")
    assert registry.promoted() is None


def test_a_moved_home_loads_its_versions_and_registers_new_ones_in_its_own_place(
    registry, trained, tmp_path
):
    model, features = trained
    register(registry, model)
    registry.promote(1, actor="cli:ann", approval="op-1")
    old = registry.settings.home_abs
    new = tmp_path / "elsewhere" / "home"
    new.parent.mkdir()
    shutil.move(old, new)
    moved = Registry(Settings(home=new))
    mv, loaded = moved.load(loader=StandInModel.load)  # MLflow recorded the old place
    assert mv.version == 1 and loaded.predict(features).equals(model.predict(features))
    assert "## Purpose" in moved.text(1, CARD) and moved.table(1, FAIRNESS) is not None
    second = register(moved, model)  # its artifacts under the home as it is now
    assert second.version == 2 and model_file(moved, second.run_id).is_relative_to(new)
    assert moved.load(2, loader=StandInModel.load)[0].sha256 == second.sha256
    assert not old.exists()  # nothing written where the home used to be


def test_a_class_outside_streethub_is_not_imported_from_a_tag(registry, trained):
    model, _ = trained
    register(registry, model)
    with pytest.raises(RegistryError, match="pass a loader"):
        registry.load(1)


def test_nothing_per_person_is_kept_no_input_example(registry, trained):
    model, features = trained
    mv = register(registry, model)
    files = [p for p in registry.settings.models_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "mlflow.db" in names and MODEL_FILE in names
    assert not any("input_example" in n or "serving_input" in n for n in names)
    stored = b"".join(p.read_bytes() for p in files)
    pseudonyms = features["person_id"].to_list()
    assert not [p for p in pseudonyms if p.encode() in stored]
    with pytest.raises(RegistryError, match="per-person column"):
        registry.register(model, metrics={}, features=FEATURES, lake_snapshot=1,
                          fairness=features.head(3))  # fmt: skip
    assert [v.version for v in registry.versions()] == [mv.version]


def test_telemetry_is_off_before_mlflow_is_imported(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, sys\n"
        "os.environ.pop('MLFLOW_DISABLE_TELEMETRY', None)\n"
        "import marts.need_model.registry\n"
        "print('mlflow' in sys.modules, os.environ.get('MLFLOW_DISABLE_TELEMETRY'))\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "print(is_telemetry_disabled())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, cwd=Path(__file__).parents[3], check=True)  # fmt: skip
    assert out.stdout.split() == ["False", "true", "True"]
