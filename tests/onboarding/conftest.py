"""A hub that onboarded 残联 (cl) from a YAML file and a delivery file, nothing else.

The catalogue is a copy of the shipped one plus ``cl.yaml``; the home's inbox gets one
generated CSV in ``inbox/cl/``; no simulated street. The only other source is the police
registry (the catalogue's authority for persons), so that 残联 is scored against it. Then
the whole street is driven once (land → raw → staged for every catalogued dataset, the
scorecard), as the reliability tests drive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from catalog.loader import load_catalogue
from catalog.model import Catalogue, Dataset
from catalog.settings import Settings
from catalog.street import get_street
from tests.onboarding.delivery import Delivery, build_delivery
from tests.onboarding.registry import registry_dept, write_registry
from tests.streets import catalogue_with, deliver_settled

HERE = Path(__file__).resolve().parent
DEPT = "cl"
DATASET = "disability_certificates"
FILE_NAME = "disability_certificates_202611.csv"
UNREGISTERED = 4  # source row of a holder the registry does not know (moved in last month)
RENAMED = 5  # source row of a holder registered under another name


@dataclass(frozen=True)
class Onboarded:
    settings: Settings
    cat: Catalogue
    dataset: Dataset
    delivery: Delivery
    escaped: dict[str, str]
    registry_dept: str


def write_catalogue(target: Path) -> Path:
    """The shipped department YAMLs and ``cl.yaml``, in a folder of their own."""
    return catalogue_with(target, HERE / "cl.yaml")


@pytest.fixture(scope="session")
def onboarded(tmp_path_factory: pytest.TempPathFactory) -> Onboarded:
    from tests.reliability.driver import ingest_street

    root = tmp_path_factory.mktemp("onboarding")
    catalogue = write_catalogue(root / "catalogue")
    cat = load_catalogue(catalogue)
    street = get_street()
    delivery = build_delivery(street.community_names)
    police = registry_dept(cat)
    systems = root / "department_systems"  # the outside world: not under the home
    systems.mkdir()
    url = write_registry(
        systems / "registry.sqlite", cat, street, delivery, unregistered=UNREGISTERED,
        renamed=RENAMED,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as env:
        env.setenv(f"STREETHUB_{police.upper()}_DB_URL", url)
        settings = Settings(
            home=root / "home",
            catalog_dir=catalogue,
            sim_dir=root / "no_simulator",
            settle_seconds=0,
        ).ensure_dirs()
        deliver_settled(settings.inbox_dir / DEPT, FILE_NAME, delivery.text)
        outcome = ingest_street(settings)
    _, ds = cat.dataset(f"{DEPT}.{DATASET}")
    return Onboarded(settings, cat, ds, delivery, outcome.escaped, police)
