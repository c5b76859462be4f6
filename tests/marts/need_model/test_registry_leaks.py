"""The model registry is an area of ``streethub leaks scan --all``: its MLflow database and
artifacts are scanned like every file, hold no value in the clear after a registration, and
a citizen ID planted in an artifact is found there."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from catalog.settings import Settings
from marts.need_model.booster_doc import booster_document, booster_text
from marts.need_model.registry import MODEL_DIR, MODEL_FILE, PACKED_FILE, sha256_of
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


TEXT = "tree\nversion=v4\ninternal_count=10034 1808 229 138 1579 1033 91 979\nshrinkage=1\n"


class TextModel:
    """Saves LightGBM's model text as it is: node counts separated by spaces."""

    def save(self, path: Path) -> None:
        path.write_text(TEXT, encoding="utf-8")


class DocumentModel:
    """Saves the same text as the need models do (``booster_document``)."""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"booster": booster_document(TEXT)}), encoding="utf-8")


def test_the_registry_hides_nothing_and_a_model_document_scans_clean(settings: Settings):
    # the registry stores a model's file as saved: the scanner reads all of it. (It once
    # stored it gzip-compressed, which hid the text, and whose bytes at times read as an
    # e-mail address: the default street's first run failed its leak check on them.)
    assert cell_kinds("internal_count=10034 1808 229 138 1579 1033 91 979")
    registry = fresh_registry(settings)
    protection = Protection.from_settings(settings)
    plain = registry.register(TextModel(), metrics={}, features=FEATURES, lake_snapshot=1,
                              fairness=fairness_table())  # fmt: skip
    mv = registry.register(DocumentModel(), metrics={}, features=FEATURES, lake_snapshot=1,
                           fairness=fairness_table())  # fmt: skip
    findings = scan_files(settings, KnownNames(), protection, areas=("models",))
    files = {
        run: [f for f in findings if f.place.endswith(f"{run}/artifacts/{MODEL_DIR}/{MODEL_FILE}")]
        for run in (plain.run_id, mv.run_id)
    }
    assert [f.leaks > 0 for f in files[plain.run_id]] == [True]  # seen, as a scanner sees it
    assert [f.leaks for f in files[mv.run_id]] == [0]  # read whole, and nothing in it
    assert [f.place for f in findings if f.leaks] == [files[plain.run_id][0].place]
    _, loaded = registry.load(mv.version, loader=lambda path: json.loads(path.read_text()))
    assert booster_text(loaded["booster"]) == TEXT  # byte for byte


def test_a_version_registered_packed_still_loads(settings: Settings):
    registry = fresh_registry(settings)
    mv = registry.register(TextModel(), metrics={}, features=FEATURES, lake_snapshot=1,
                           fairness=fairness_table())  # fmt: skip
    [stored] = settings.models_dir.rglob(f"{mv.run_id}/**/{MODEL_FILE}")
    packed = stored.with_name(PACKED_FILE)  # as a version of before 2026-12-01 lies
    packed.write_bytes(gzip.compress(stored.read_bytes(), mtime=0))
    stored.unlink()
    registry.client.set_model_version_tag(mv.name, str(mv.version), "sha256", sha256_of(packed))
    _, loaded = registry.load(mv.version, loader=lambda path: path.read_text(encoding="utf-8"))
    assert loaded == TEXT
