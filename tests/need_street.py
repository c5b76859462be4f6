"""The need street: the session's one street for the need model's tests (``need_street`` in
``tests/conftest.py``) — a street with history, the main job run on it, then the features of
monthly cut-offs computed and stored in the feature table (``curated.need_features``).

Until the simulator's history (departments/NEEDS.md, ``--history-days``) lands, the street
is a copy of the session's mart street (``mart_street``: the main job on 1,500 residents, its
records reaching about a year back) so no second main job runs; the cut-offs are the first of
each of the last months its records cover. ``NeedStreet.seconds`` is what building it took.
Never write to it: copy the home first (``tests.streets.copy_home``).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from catalog.model import Catalogue
from catalog.settings import Settings
from lakehouse.lake import open_lake
from marts.need_model.features import features_for, monthly_cutoffs
from marts.need_model.store import write_features
from pipelines.protection import Protection
from tests.streets import copy_home

ACTOR = "test:need_model"
MONTHS = 6  # monthly cut-offs whose features the fixture computes and stores


@dataclass
class NeedStreet:
    """A home where the main job ran on a street with history, and its stored features."""

    settings: Settings
    sim_dir: Path
    catalogue: Catalogue
    cutoffs: list[dt.date]
    features: pl.DataFrame  # the features of every cut-off (also in curated.need_features)
    seconds: float  # what building the fixture took (wall)

    @property
    def home(self) -> Path:
        return self.settings.home_abs

    def protection(self, actor: str = ACTOR) -> Protection:
        return Protection.from_settings(self.settings, actor=actor)

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        with open_lake(self.settings, read_only=True) as con:
            return con.execute(sql, params or []).pl()


def last_cutoff(settings: Settings) -> dt.date:
    """The first day of the month of the street's last door or appeal record (its records
    run up to the simulated day)."""
    with open_lake(settings, read_only=True) as con:
        last = con.execute("SELECT max(day) FROM curated.event").fetchone()[0]
    return last.replace(day=1)


def store_features(settings: Settings, cutoffs: list[dt.date]) -> pl.DataFrame:
    """The features of ``cutoffs`` computed and written to the street's feature table."""
    protection = Protection.from_settings(settings, actor=ACTOR)
    with open_lake(settings) as con:
        frame = features_for(con, protection, cutoffs)
        write_features(con, frame, protection.keyring)
    return frame


def make_need_street(mart_street, tmp_path_factory: pytest.TempPathFactory) -> NeedStreet:
    """The session's need street (see the module docstring)."""
    started = time.perf_counter()
    root = tmp_path_factory.mktemp("need")
    settings = copy_home(mart_street.home, root, departments=True)
    cutoffs = monthly_cutoffs(last_cutoff(settings), MONTHS)
    frame = store_features(settings, cutoffs)
    return NeedStreet(
        settings=settings,
        sim_dir=settings.sim_dir_abs,
        catalogue=mart_street.catalogue,
        cutoffs=cutoffs,
        features=frame,
        seconds=time.perf_counter() - started,
    )
