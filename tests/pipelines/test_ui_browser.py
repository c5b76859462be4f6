"""The Dagster UI in a real browser (issue 18: the data officers' tool). `streethub ui` on a
home where a bad delivery of 城管 landed (every case with a status the catalogue does not
allow: the newest delivery's rows all quarantined) shows every department group of the
catalogue in its asset lineage and the delivery's failing contract check, and asks for
nothing outside 127.0.0.1 — the ``context`` guard of the portal's browser tests fails the
test on any such request. Its "Join the Dagster community" dialog, whose form would send a
person's e-mail address to Dagster, is off (``nux: enabled: false`` in dagster.yaml). The
same UI then passes test_ui.py's checks (every asset in its group over GraphQL; SIGTERM
ends it and all its processes cleanly): one UI start for both."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import httpx
import pytest
from playwright.sync_api import Page
from test_incremental import DEPT, OLD, deliver
from test_ui import assert_serves_the_assets, free_port, stop_cleanly, wait_until_serving

from catalog.loader import load_catalogue
from catalog.settings import Settings
from lakehouse.lake import init_lake
from pipelines.defs.quality.checks import CONTRACT_CHECK
from pipelines.defs.sources.assets import build_dataset_assets
from pipelines.instance import prepare_dagster_home
from pipelines.resources import LakeResource
from tests.share_api.portal.conftest import browser, context, outside, page, shot  # noqa: F401

BAD_STATUS = "状态不明"
STARTUP_SECONDS = 240  # the webserver, then its code location (the whole catalogue's assets)


@pytest.fixture
def bad_delivery_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A home with the shipped catalogue whose only delivery, 城管's, failed its contract
    check (recorded on the home's Dagster instance, as a run of the dataset's step)."""
    home = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    monkeypatch.delenv("STREETHUB_CATALOG_DIR", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))  # restored after the test
    settings = Settings(home=home).ensure_dirs()
    init_lake(settings)
    prepare_dagster_home(settings)
    dept = load_catalogue().departments[DEPT]
    (ds,) = dept.datasets
    status = next(f for f in ds.fields if f.name == "status")
    assert BAD_STATUS not in status.allowed_values
    path = deliver(settings, f"{ds.code}_20261101.csv", 0, 20)
    text = path.read_bytes().decode("utf-8-sig")
    path.write_bytes(text.replace(",处理中,", f",{BAD_STATUS},").encode("utf-8-sig"))
    os.utime(path, (OLD, OLD))
    instance = dg.DagsterInstance.get()
    try:
        result = dg.materialize(
            build_dataset_assets(dept, ds),
            resources={"lake": LakeResource()},
            instance=instance,
            raise_on_error=False,
        )
    finally:
        instance.dispose()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks[CONTRACT_CHECK] is False
    return settings


def start_ui(settings: Settings) -> tuple[subprocess.Popen, str]:
    """`streethub ui` on ``settings``' home, on a free port: the process and its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "streethub"), "ui", "--port", str(port)],
        env={**os.environ, "STREETHUB_HOME": str(settings.home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def test_the_dagster_ui_shows_every_department_and_the_failing_check(
    bad_delivery_home: Settings,
    page: Page,  # noqa: F811 (the fixture imported above)
) -> None:
    cat = load_catalogue()
    (ds,) = cat.departments[DEPT].datasets
    proc, base = start_ui(bad_delivery_home)
    try:
        wait_until_serving(proc, base, STARTUP_SECONDS)
        page.goto(f"{base}/asset-groups")  # the global asset lineage, its groups listed beside
        groups = page.locator("button:has([aria-label='asset_group']) [title]")
        groups.nth(len(cat.departments) - 1).wait_for(timeout=STARTUP_SECONDS * 1000)
        shown = {groups.nth(i).get_attribute("title") for i in range(groups.count())}
        assert set(cat.departments) <= shown, sorted(set(cat.departments) - shown)
        nux = httpx.post(f"{base}/graphql", json={"query": "{ shouldShowNux }"}, timeout=30)
        assert nux.json()["data"]["shouldShowNux"] is False  # dagster.yaml: nux off
        assert page.get_by_text("Join the Dagster community").count() == 0
        shot(page, "dagster-ui-lineage")

        page.goto(f"{base}/assets/staged/{DEPT}/{ds.code}?view=checks")
        failed = page.locator("span", has=page.locator(f"[title='{CONTRACT_CHECK}']"))
        failed.filter(has_text="Failed").first.wait_for(timeout=60_000)
        shot(page, "dagster-ui-failing-check")
        assert_serves_the_assets(base)  # every asset in its group, to the UI's own API
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    stop_cleanly(proc)
