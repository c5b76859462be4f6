"""One small simulated street for the whole reliability suite, built once per session.

Tests copy it (``fresh_home``) before they change anything. The departments'
HTTP APIs are served without random faults (``calm_apis``) so that two runs
over the same street are comparable row for row.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from catalog.model import Department
from catalog.settings import Settings

START = dt.date(2026, 11, 20)
RESIDENTS = 300
SEED = 23


@pytest.fixture(scope="session")
def reliability_street(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(home, manifest) of a 300-resident street over 2 days; never modify it in place."""
    from departments.simulate import simulate

    home = tmp_path_factory.mktemp("reliability_street")
    manifest = simulate(home, residents=RESIDENTS, seed=SEED, days=2, start=START)
    return home, manifest


def fresh_home(
    street: tuple[Path, dict], target: Path, *, catalog_dir: Path | None = None
) -> Settings:
    """A private copy of the session street at ``target`` (and of the simulator's folder
    beside it: its systems and truth), ready to ingest; ``catalog_dir``: a catalogue other
    than the shipped one (:func:`sub_catalogue`)."""
    from departments.simulate import sim_dir_for

    src, _ = street
    shutil.copytree(src, target)
    settings = (
        Settings(home=target)
        if catalog_dir is None
        else Settings(home=target, catalog_dir=catalog_dir)
    )
    shutil.copytree(sim_dir_for(src), settings.sim_dir_abs)
    return settings.ensure_dirs()


def fewest_per_kind(departments: Mapping[str, Department]) -> tuple[str, ...]:
    """For each kind of delivery among ``departments``, the department delivering it with the
    fewest datasets (then the first by code): the smallest catalogue that still goes
    through every connector (a run costs per dataset, not per row)."""
    kinds = {ds.delivery.kind.value for d in departments.values() for ds in d.datasets}
    kept = []
    for kind in sorted(kinds):
        having = [
            code
            for code, dept in departments.items()
            if kind in {ds.delivery.kind.value for ds in dept.datasets}
        ]
        kept.append(min(having, key=lambda code: (len(departments[code].datasets), code)))
    return tuple(dict.fromkeys(kept))


def sub_catalogue(target: Path, departments: tuple[str, ...]) -> Path:
    """A catalogue folder with only ``departments`` of the shipped one (their YAML files as
    shipped, but for related resources of departments left out)."""
    import yaml

    from catalog.loader import load_catalogue
    from catalog.settings import CATALOG_DIR

    shipped = load_catalogue(CATALOG_DIR)
    kept = {ds.resource_code for code in departments for ds in shipped.departments[code].datasets}
    target.mkdir(parents=True)
    for code in departments:
        doc = yaml.safe_load((CATALOG_DIR / f"{code}.yaml").read_text(encoding="utf-8"))
        for ds in doc["datasets"]:
            ds["related_resources"] = [r for r in ds.get("related_resources", []) if r in kept]
        (target / f"{code}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    assert set(load_catalogue(target).departments) == set(departments)
    return target


@pytest.fixture
def calm_apis() -> Iterator[callable]:
    """``start(settings) -> url``: the departments' APIs for a home, with no faults."""
    from contextlib import ExitStack

    from departments.server import running_server

    with ExitStack() as stack:

        def start(settings: Settings) -> str:
            return stack.enter_context(
                running_server(settings.sim_dir_abs, fault_rate=0.0, slow_rate=0.0)
            )

        yield start
