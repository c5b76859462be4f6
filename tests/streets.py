"""A small simulated street ingested and staged directly (no Dagster, no main job): the
setup several test modules share, in one place.

The session builds one such street (``staged_street`` in ``tests/conftest.py``, every
dataset of the shipped catalogue, ``SESSION_RESIDENTS`` residents, ``SESSION_SEED``); a
module that changes a lake builds on its own copy (``copy_home``)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from bench.streets import copy_home as bench_copy_home
from catalog.model import Catalogue
from catalog.settings import CATALOG_DIR, Settings
from departments.connect import connection_env
from departments.server import running_server
from departments.simulate import simulate
from lakehouse.lake import open_lake
from lakehouse.snapshots import current_snapshot
from pipelines.connectors.http_api import RetryPolicy
from pipelines.ingest import ingest_dataset
from pipelines.ingest.ledger import ensure_ledger
from pipelines.ingest.staged import stage_dataset
from pipelines.protection import Protection

FAST = RetryPolicy(attempts=12, base_delay_s=0.01, max_delay_s=0.05, timeout_s=5)
START = dt.date(2026, 11, 20)
SESSION_RESIDENTS, SESSION_SEED = 600, 7


def ingest_and_stage(home: Path, cat: Catalogue, *, residents: int, seed: int) -> Settings:
    """Simulate one day of a street under ``home``, land, read and stage every dataset of
    ``cat`` (the simulated APIs served without faults); the settings of the street."""
    simulate(home, residents=residents, seed=seed, days=1, start=START)
    settings = Settings(home=home).ensure_dirs()
    with running_server(settings.sim_dir_abs, fault_rate=0.0) as url:
        settings = settings.connected(connection_env(settings.sim_dir_abs, url))
        protection = Protection.from_settings(settings)
        with open_lake(settings) as con:
            ensure_ledger(con)
            for dept, ds in cat.datasets():
                ingest_dataset(con, settings, dept.code, ds, policy=FAST)
                stage_dataset(con, dept.code, ds, protection)
    return settings


def copy_home(street: Path, dest: Path, *, departments: bool = False) -> Settings:
    """A staged street's home (``ingest_and_stage``'s) and its audit witness (kept outside
    the home) copied to ``dest/home``, for a test that changes it; the copy's settings.
    ``departments``: the simulator's folder (systems and truth) is copied beside it too."""
    settings = Settings(home=bench_copy_home(street, dest / "home"))
    if departments:
        shutil.copytree(Settings(home=street).sim_dir_abs, settings.sim_dir_abs)
    return settings


def ready_street(street_env: str, keys_env: str, root: Path) -> Settings | None:
    """A copy, under ``root``, of the ready street the environment variable ``street_env``
    names (a home where the fixture's main job already ran, its simulator folder beside
    it), its master key copied from the config folder ``keys_env`` names into this
    session's; None when ``street_env`` is unset."""
    ready = os.environ.get(street_env)
    if not ready:
        return None
    keys = Path(os.environ[keys_env]) / "streethub"
    shutil.copytree(keys, Path(os.environ["XDG_CONFIG_HOME"]) / "streethub", dirs_exist_ok=True)
    return copy_home(Path(ready), root, departments=True)


def lake_snapshot(settings: Settings) -> int:
    """The lake's current snapshot id (it moves with every committed change)."""
    with open_lake(settings, read_only=True) as con:
        return current_snapshot(con)


def catalogue_with(target: Path, *extra: Path) -> Path:
    """A catalogue folder ``target``: the shipped department YAMLs and the ``extra`` ones
    (a department onboarded by its YAML file alone)."""
    target.mkdir(parents=True)
    for path in [*sorted(CATALOG_DIR.glob("*.yaml")), *extra]:
        shutil.copy(path, target / path.name)
    return target


def deliver_settled(inbox: Path, name: str, text: str) -> Path:
    """A delivery file written into the department's ``inbox`` folder as UTF-8, dated a
    minute ago (settled: a run lands it at once)."""
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_text(text, encoding="utf-8")
    past = path.stat().st_mtime - 60
    os.utime(path, (past, past))
    return path
