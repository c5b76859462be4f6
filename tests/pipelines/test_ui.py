"""`streethub ui` starts the real Dagster webserver on 127.0.0.1 and stops cleanly on SIGTERM
(the browser test, test_ui_browser.py, starts one and checks both with the helpers here:
one UI start for both); after the main job its sensors queue no run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from catalog.loader import load_catalogue

QUERY = "{ assetNodes { assetKey { path } groupName } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(proc: subprocess.Popen, base: str, seconds: float) -> None:
    """Until the UI at ``base`` (started as ``proc``) answers /server_info."""
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=2) as client:  # one client (and TLS context) for every try
        while True:
            try:
                if client.get(f"{base}/server_info").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the UI exited before it served"
            assert time.monotonic() < deadline, f"the UI did not come up in {seconds:.0f} s"
            time.sleep(0.5)


def assert_serves_the_assets(base: str, seconds: float = 120) -> None:
    """The UI at ``base`` lists every asset of the definitions, in their groups (the code
    location loads after the webserver answers: asked again until it has)."""
    deadline = time.monotonic() + seconds
    nodes = []
    with httpx.Client(timeout=30) as client:  # one client (and TLS context) for every try
        while True:
            body = client.post(f"{base}/graphql", json={"query": QUERY}).json()
            nodes = (body.get("data") or {}).get("assetNodes") or []
            if nodes or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    groups = {n["groupName"] for n in nodes}
    cat = load_catalogue()
    # a group per department, the scorecard's, the curated zone's and the marts'
    assert groups == set(cat.departments) | {"quality", "curated", "marts", "need_model"}
    paths = [n["assetKey"]["path"] for n in nodes]
    assert all(["raw", d.code, ds.code] in paths for d, ds in cat.datasets())
    assert ["curated", "person"] in paths
    assert ["marts", "governance_scorecard"] in paths


def stop_cleanly(proc: subprocess.Popen) -> None:
    """SIGTERM to the UI: it exits 0, and its webserver, daemon and code server all end
    (the code server within its heartbeat); killed, and the test failed, if it ignores it."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the UI ignored SIGTERM") from None
    assert code == 0, f"the UI exited with {code} on SIGTERM, not cleanly"
    leftover: list[str] = []
    for _ in range(120):
        leftover = subprocess.run(
            ["pgrep", "-s", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        if not leftover:
            break
        time.sleep(0.5)
    assert leftover == [], f"processes left behind: {leftover}"


SENSOR_TICKS = """{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
  ... on RepositoryLocation { repositories { sensors { name
    sensorState { status ticks(limit: 20) { status runIds } } } } } } } } } }"""
RUNS = """{ runsOrError { ... on Runs { results { runId tags { key value } } } } }"""


def test_ui_after_the_main_job_queues_no_run_for_what_it_landed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run`, then `streethub ui`: the inbox sensor ticks and finds nothing new, and
    no other sensor (the scorecard's automation) queues a run either."""
    from test_incremental import deliver, one_department_home, run

    settings = one_department_home(tmp_path, monkeypatch)
    home, catalog = settings.home, settings.catalog_dir
    deliver(settings, "violation_cases_20261101.csv", 0, 30)
    deliver(settings, "violation_cases_20261102.csv", 30, 5)
    (settings.inbox_dir / "cgj" / "readme.txt").write_text("not a delivery")
    first = run(settings)
    assert first.selected and first.leak_check is not None and first.leak_check.passed
    port = free_port()
    env = {**os.environ, "STREETHUB_HOME": str(home), "STREETHUB_CATALOG_DIR": str(catalog)}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "streethub"), "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ticks: list[dict] = []
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)  # one for all
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # the daemon evaluates the sensor once it runs
            try:
                body = client.post("/graphql", json={"query": SENSOR_TICKS})
                sensors = [
                    s
                    for e in body.json()["data"]["workspaceOrError"]["locationEntries"]
                    for r in (e["locationOrLoadError"] or {}).get("repositories", [])
                    for s in r["sensors"]
                ]
                ticks = next(s for s in sensors if s["name"] == "inbox_cgj")["sensorState"]["ticks"]
            except (httpx.TransportError, KeyError, TypeError, StopIteration, ValueError):
                ticks = []
            if any(t["status"] in {"SKIPPED", "SUCCESS", "FAILURE"} for t in ticks):
                break
            assert proc.poll() is None, "the UI exited"
            time.sleep(1)
        time.sleep(5)  # a run the tick (or the automation sensor) asked for is queued by now
        runs = client.post("/graphql", json={"query": RUNS}).json()
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = [t for t in ticks if t["status"] != "STARTED"]  # a tick may be under way
    assert finished, "the inbox sensor did not tick within 240 s"
    assert all(t["status"] == "SKIPPED" and t["runIds"] == [] for t in finished), ticks
    launched = [
        r["runId"]
        for r in runs["data"]["runsOrError"]["results"]
        if {"key": "streethub/job", "value": "main"} not in r["tags"]
    ]
    assert launched == []  # only the main job's own runs: none queued by a sensor
