"""A tiny stand-in for the need model (a scikit-learn classifier per need on a synthetic
frame) behind the trained model's interface: ``save(path)``, ``load(path)``, ``predict``."""

from __future__ import annotations

import datetime as dt
import pickle
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression

from catalog.settings import Settings
from marts.need_model.registry import Registry
from marts.need_model.spec import KEYS, NEEDS
from tests.scratch import scratch_dir

FEATURES = ("age", "lives_alone", "door_drop_pct")


def synthetic_features(n: int = 200, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A features frame and its labels (one row per person and cut-off), made up."""
    rng = np.random.default_rng(seed)
    age = rng.integers(20, 95, n)
    alone = rng.random(n) < 0.3
    drop = rng.random(n) * 80
    risk = (age - 20) / 75 + alone + drop / 80
    keys = {
        "person_id": [f"pp{rng.integers(1 << 40):012x}" for _ in range(n)],
        "cutoff": [dt.date(2026, 6, 30)] * n,
    }
    features = pl.DataFrame({**keys, "age": age, "lives_alone": alone, "door_drop_pct": drop})
    labels = pl.DataFrame({**keys, **{need: rng.random(n) < risk / 4 for need in NEEDS}})
    return features, labels


class StandInModel:
    def __init__(self, models: dict[str, LogisticRegression]) -> None:
        self.models = models

    @classmethod
    def fit(cls, features: pl.DataFrame, labels: pl.DataFrame) -> StandInModel:
        x = features.select(FEATURES).to_numpy().astype(float)
        return cls({need: LogisticRegression().fit(x, labels[need].to_numpy()) for need in NEEDS})

    def predict(self, features: pl.DataFrame) -> pl.DataFrame:
        x = features.select(FEATURES).to_numpy().astype(float)
        scores = {need: m.predict_proba(x)[:, 1] for need, m in self.models.items()}
        return features.select(KEYS).with_columns(**{k: pl.Series(v) for k, v in scores.items()})

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self.models))

    @classmethod
    def load(cls, path: Path) -> StandInModel:
        return cls(pickle.loads(path.read_bytes()))


def fairness_table() -> pl.DataFrame:
    return pl.DataFrame(
        {"group": ["gender=男", "gender=女"], "residents": [96, 104], "pr_auc": [0.41, 0.39]}
    )


def backtest_table() -> pl.DataFrame:
    return pl.DataFrame(
        {"need": list(NEEDS), "pr_auc": [0.4, 0.3, 0.2, 0.1], "rule_pr_auc": [0.2] * 4}
    )


@cache
def _empty_registry_db() -> Path:
    """An MLflow database with its tables made, once per test process (making them runs
    MLflow's migrations: seconds on a busy machine)."""
    home = scratch_dir("mlflow-") / "home"
    Registry(Settings(home=home)).versions()
    return Settings(home=home).models_dir / "mlflow.db"


def fresh_registry(settings: Settings) -> Registry:
    """An empty registry under ``settings``' home, from a copy of the empty database."""
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_empty_registry_db(), settings.models_dir / "mlflow.db")
    return Registry(settings)
