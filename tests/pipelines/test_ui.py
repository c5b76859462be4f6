"""`streethub ui` starts the real Dagster webserver on 127.0.0.1 and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from catalog.loader import load_catalogue

QUERY = "{ assetNodes { assetKey { path } groupName } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_assets_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STREETHUB_HOME": str(tmp_path / "home")}
    exe = Path(sys.executable).parent / "streethub"
    proc = subprocess.Popen(
        [str(exe), "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the UI exited before it served"
            assert time.monotonic() < deadline, "the UI did not come up in 120 s"
            time.sleep(0.5)
        nodes = []
        while time.monotonic() < deadline and not nodes:  # the code location loads after start
            body = httpx.post(f"{base}/graphql", json={"query": QUERY}, timeout=30).json()
            nodes = (body.get("data") or {}).get("assetNodes") or []
            time.sleep(0.5)
        groups = {n["groupName"] for n in nodes}
        cat = load_catalogue()
        assert groups - {"quality"} == set(cat.departments)  # a group per department
        paths = [n["assetKey"]["path"] for n in nodes]
        assert all(["raw", d.code, ds.code] in paths for d, ds in cat.datasets())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the UI ignored SIGTERM") from None
    assert code == 0, f"the UI exited with {code} on SIGTERM, not cleanly"
    # the webserver, daemon and code server all end (the code server within its heartbeat)
    leftover: list[str] = []
    for _ in range(120):
        leftover = subprocess.run(
            ["pgrep", "-s", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        if not leftover:
            break
        time.sleep(0.5)
    assert leftover == [], f"processes left behind: {leftover}"
