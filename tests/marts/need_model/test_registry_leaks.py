"""The model registry is an area of ``streethub leaks scan --all``: its MLflow database and
artifacts are scanned like every file, hold no value in the clear after a registration, and
a citizen ID planted in an artifact is found there."""

from __future__ import annotations

from pathlib import Path

from catalog.settings import Settings
from marts.need_model.registry import MODEL_FILE
from masking.leaks import cell_kinds
from masking.names import KnownNames
from pipelines.leaks import AREAS, area_dirs, scan_files
from pipelines.protection import Protection
from tests.marts.need_model.registry_standin import (
    FEATURES,
    StandInModel,
    backtest_table,
    fairness_table,
    fresh_registry,
    synthetic_features,
)

PLANTED = "11010519491231002X"  # GB 11643-1999's own example: a valid check character


def test_the_registry_is_scanned_clean_and_a_planted_id_is_found(settings: Settings):
    assert "models" in AREAS and area_dirs(settings)["models"] == settings.models_dir
    registry = fresh_registry(settings)
    mv = registry.register(StandInModel.fit(*synthetic_features(n=60)), metrics={"m": 1.0},
                           features=FEATURES, lake_snapshot=3, fairness=fairness_table(),
                           backtest=backtest_table())  # fmt: skip
    protection = Protection.from_settings(settings)
    findings = scan_files(settings, KnownNames(), protection, areas=("models",))
    places = {f.place for f in findings}
    assert "models/mlflow.db" in places and any(p.endswith(MODEL_FILE) for p in places)
    assert sum(f.leaks for f in findings) == 0 and not [f for f in findings if f.problem]
    [card] = settings.models_dir.rglob(f"{mv.run_id}/**/model_card.md")
    card.write_text(card.read_text() + f"\n身份证号{PLANTED}\n", encoding="utf-8")
    found = scan_files(settings, KnownNames(), protection, areas=("models",))
    leaking = {f.place: f.leaks for f in found if f.leaks}
    assert list(leaking) == [str(card.relative_to(settings.home_abs))]


class CountsModel:
    """Saves what LightGBM's model text holds: node counts separated by spaces."""

    def save(self, path: Path) -> None:
        path.write_text("tree=0\ninternal_count=10034 1808 229 138 1579 1033 91 979\n")


def test_a_model_text_that_reads_like_numbers_is_stored_packed(settings: Settings):
    text = "internal_count=10034 1808 229 138 1579 1033 91 979"
    assert cell_kinds(text)  # the scanner would flag the text itself
    registry = fresh_registry(settings)
    mv = registry.register(CountsModel(), metrics={}, features=FEATURES, lake_snapshot=1,
                           fairness=fairness_table())  # fmt: skip
    protection = Protection.from_settings(settings)
    findings = scan_files(settings, KnownNames(), protection, areas=("models",))
    assert sum(f.leaks for f in findings) == 0
    _, loaded = registry.load(mv.version, loader=lambda path: path.read_text())
    assert text in loaded
