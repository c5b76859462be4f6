"""The need street: the session's one street for the need model's tests (``need_street`` in
``tests/conftest.py``) — the simulator with a history (departments/NEEDS.md: 2,000
residents, the 365 days ending on ``LAST_DAY``, seed 16), the main job run on it (its
need-model step stores the features of the monthly training cut-offs and trains a first
version), then the features of every monthly cut-off the tests use made sure of in the feature
table (``curated.need_features``: computed only where the main job did not).

``NeedStreet.seconds`` is what building it took. A developer iterating may set
``STREETHUB_TEST_NEED_STREET`` to a home where this was built (its simulator folder beside it)
and ``STREETHUB_TEST_NEED_KEYS`` to the config folder holding its master key: the home is
copied, nothing is run again. Never write to it: copy the home first
(``tests.streets.copy_home``). ``python -m tests.need_street FOLDER`` builds one so: the home
in ``FOLDER/home``, its key in ``FOLDER/config``.
"""

from __future__ import annotations

import datetime as dt
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from catalog.errors import StreethubError
from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import Settings
from lakehouse.lake import close_idle, open_lake
from marts.need_model.labels import labels as need_labels
from marts.need_model.spec import KEYS
from marts.need_model.step import ensure_features
from pipelines.protection import Protection
from tests.streets import ready_street

ACTOR = "test:need_model"
RESIDENTS, SEED, HISTORY_DAYS = 2_000, 16, 365
LAST_DAY = dt.date(2026, 11, 30)
CUTOFFS = [dt.date(2026, m, 1) for m in range(6, 12)]  # the 1st of June … November
# (door activity has its 180-day baseline from June on; labels are complete through September)


@dataclass
class NeedStreet:
    """A home where the main job ran on a street with history, and its stored features."""

    settings: Settings
    sim_dir: Path
    catalogue: Catalogue
    cutoffs: list[dt.date]
    features: pl.DataFrame  # the features of ``cutoffs`` (as stored in curated.need_features)
    seconds: float  # what building the fixture took (wall)

    @property
    def home(self) -> Path:
        return self.settings.home_abs

    def protection(self, actor: str = ACTOR) -> Protection:
        return Protection.from_settings(self.settings, actor=actor)

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        with open_lake(self.settings, read_only=True) as con:
            return con.execute(sql, params or []).pl()

    def labels(self) -> pl.DataFrame:
        """The labels frame of the features' keys (the outcome datasets in the lake)."""
        with open_lake(self.settings, read_only=True) as con:
            return need_labels(con, self.features.select(KEYS))

    def truth(self, name: str) -> pl.DataFrame:
        """The simulator's need truth (``probabilities``, ``events``, ``elderly_events``,
        ``grid_expected``: departments/NEEDS.md)."""
        return pl.read_parquet(self.sim_dir / "truth" / "needs" / f"{name}.parquet")


def run_street(home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The simulator with history, then the main job on it (quietly)."""
    from departments.simulate import simulate
    from pipelines.main_job import run_main

    for name, value in {
        "STREETHUB_HOME": str(home),
        "STREETHUB_SIM_RESIDENTS": str(RESIDENTS),
        "STREETHUB_SIM_SEED": str(SEED),
        "STREETHUB_SIM_DAYS": "1",
        "STREETHUB_SETTLE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings().ensure_dirs()
    simulate(settings.home_abs, residents=RESIDENTS, seed=SEED, days=1, start=LAST_DAY,
             history_days=HISTORY_DAYS, sim_dir=settings.sim_dir_abs)  # fmt: skip
    try:
        run_main(settings, Console(quiet=True))
    except StreethubError as exc:  # a step's failure is that step's tests' to report
        warnings.warn(f"the main job on the need street: {exc}", stacklevel=1)
    return settings


def make_need_street(tmp_path_factory: pytest.TempPathFactory) -> NeedStreet:
    """The session's need street (see the module docstring)."""
    started = time.perf_counter()
    root = tmp_path_factory.mktemp("need")
    with pytest.MonkeyPatch.context() as mp:
        ready = ready_street("STREETHUB_TEST_NEED_STREET", "STREETHUB_TEST_NEED_KEYS", root)
        settings = ready or run_street(root / "home", mp)
        protection = Protection.from_settings(settings, actor=ACTOR)
        with open_lake(settings) as con:
            frame = ensure_features(con, protection, CUTOFFS)
    close_idle()
    return NeedStreet(
        settings=settings,
        sim_dir=settings.sim_dir_abs,
        catalogue=load_catalogue(settings.catalog_dir),
        cutoffs=CUTOFFS,
        features=frame,
        seconds=time.perf_counter() - started,
    )


def build(folder: Path) -> Settings:
    """A need street built for reuse (see the module docstring): the home in
    ``folder/home``, its master key in ``folder/config``, every cut-off's features stored."""
    import os

    os.environ["XDG_CONFIG_HOME"] = str(folder / "config")
    with pytest.MonkeyPatch.context() as mp:
        settings = run_street(folder / "home", mp)
        with open_lake(settings) as con:
            ensure_features(con, Protection.from_settings(settings, actor=ACTOR), CUTOFFS)
    close_idle()
    return settings


if __name__ == "__main__":
    import sys

    started = time.perf_counter()
    built = build(Path(sys.argv[1]).resolve())  # a failed step warns: its tests report it
    print(f"the need street: {built.home_abs} in {time.perf_counter() - started:.1f} s")
