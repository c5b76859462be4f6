"""The mart street: the main job run on a small simulated street (1,500 residents, seed 7,
one day), then every catalogued mart built on it — the session fixture ``mart_street`` of
``tests/conftest.py`` (any folder's tests use it: the marts', the share service's).

``mart_street`` gives its settings, its simulator folder (the truth: ``truth/<dept>/<dataset>/
clean.parquet`` with ``_person``, ``_unit``, ``_merchant`` …), the catalogue, the marts and
what each build published — or why it was refused, so one mart's broken SQL fails that
mart's tests only. Tests that change the lake copy the home first
(``tests.streets.copy_home(street.settings.home, tmp_path)``).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
import sqlglot
from rich.console import Console
from sqlglot import exp

from catalog.errors import StreethubError
from catalog.loader import load_catalogue
from catalog.marts import MARTS_DIR, Mart, load_mart
from catalog.model import Catalogue
from catalog.settings import Settings
from lakehouse.lake import close_idle, open_lake
from marts.build import MartBuild, MartError, build_mart, build_order, run_day
from marts.lineage import read_sql
from pipelines.protection import Protection
from tests.streets import ready_street

RESIDENTS, SEED = 1_500, 7
ACTOR = "test:marts"


@dataclass
class MartStreet:
    """A home where the main job ran, its simulator folder and its marts."""

    settings: Settings
    sim_dir: Path
    catalogue: Catalogue
    marts: dict[str, Mart]
    builds: dict[str, MartBuild] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    built_on: dt.date = field(default_factory=run_day)  # set by build_all: the street's day
    # (Beijing) the marts were built on, getvariable('run_date') in their SQL and their
    # history rows' day — not the session's UTC date, a day behind from 16:00 UTC on

    @property
    def home(self) -> Path:
        return self.settings.home_abs

    def build(self, name: str) -> MartBuild:
        """The mart's build on this street; fails the calling test with the reason it was
        refused."""
        if name in self.errors:
            pytest.fail(f"mart {name} was not built: {self.errors[name]}")
        if name not in self.builds:
            pytest.fail(f"mart {name} is not catalogued (catalog/marts/{name}.yaml)")
        return self.builds[name]

    def table(self, name: str) -> pl.DataFrame:
        """``marts.<name>`` as published (the build must have succeeded)."""
        self.build(name)
        return self.query(f'SELECT * FROM marts."{name}"')

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        with open_lake(self.settings, read_only=True) as con:
            return con.execute(sql, params or []).pl()

    def truth(self, dept: str, dataset: str) -> pl.DataFrame:
        """The simulator's clean rows of a dataset (source columns as text, ``_person`` …)."""
        return pl.read_parquet(self.sim_dir / "truth" / dept / dataset / "clean.parquet")

    def protection(self, actor: str = ACTOR) -> Protection:
        return Protection.from_settings(self.settings, actor=actor)


def run_street(home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The main job on a new simulated street under ``home`` (quietly)."""
    from pipelines.main_job import run_main

    for name, value in {
        "STREETHUB_HOME": str(home),
        "STREETHUB_SIM_RESIDENTS": str(RESIDENTS),
        "STREETHUB_SIM_SEED": str(SEED),
        "STREETHUB_SIM_DAYS": "1",
        "STREETHUB_SETTLE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    try:
        run_main(settings, Console(quiet=True), simulate=True)
    except StreethubError as exc:  # e.g. a mart refused in the main job's marts step, after
        # the street is built: build_all records each mart's refusal for its own tests
        warnings.warn(f"the main job on the mart street: {exc}", stacklevel=1)
    return settings


def load_each(street: MartStreet) -> None:
    """Every mart YAML of the catalogue, one at a time: a file with problems is recorded as
    its mart's error (the others still build)."""
    for path in sorted(MARTS_DIR.glob("*.yaml")):
        mart, problems = load_mart(path)
        if problems or mart is None:
            street.errors[path.stem] = "; ".join(str(p) for p in problems)
        else:
            street.marts[mart.name] = mart


def reads_inputs(name: str) -> list[str]:
    """The relations a mart's SQL reads that are no lake table (unqualified, not its CTEs):
    frames its own pipeline step hands the build (the quality scorecard's scores)."""
    tree = sqlglot.parse_one(read_sql(name), read="duckdb")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    return sorted({t.name for t in tree.find_all(exp.Table) if not t.db} - ctes)


def build_all(street: MartStreet) -> None:
    """Build every catalogued mart in dependency order, recording each refusal (a mart that
    reads a refused one is refused too). A mart built from input frames (its own pipeline
    step gives them) is left as the main job built it."""
    protection = street.protection()
    with open_lake(street.settings) as con:
        street.built_on = run_day()  # one day for every mart, however long the builds take
        for name in build_order(street.marts):
            inputs = reads_inputs(name)
            if inputs:
                street.errors[name] = (
                    f"built by its own pipeline step from {', '.join(inputs)} (the main job "
                    "built it; read marts.<name> with query)"
                )
                continue
            try:
                street.builds[name] = build_mart(
                    con, street.catalogue, street.marts, name, protection,
                    run_date=street.built_on,
                )  # fmt: skip
            except MartError as exc:
                street.errors[name] = str(exc)


def make_mart_street(tmp_path_factory: pytest.TempPathFactory) -> MartStreet:
    """The session's mart street (``mart_street``). A developer iterating on mart SQL may set
    ``STREETHUB_TEST_MART_STREET`` to a home where this main job already ran (its simulator
    folder beside it) and ``STREETHUB_TEST_MART_KEYS`` to the config folder holding its
    master key: the home is copied and only the marts are built."""
    root = tmp_path_factory.mktemp("marts")
    with pytest.MonkeyPatch.context() as mp:
        ready = ready_street("STREETHUB_TEST_MART_STREET", "STREETHUB_TEST_MART_KEYS", root)
        settings = ready or run_street(root / "home", mp)
        street = MartStreet(
            settings=settings,
            sim_dir=settings.sim_dir_abs,
            catalogue=load_catalogue(settings.catalog_dir),
            marts={},
        )
        load_each(street)
        build_all(street)
    close_idle()
    return street
