"""``streethub analyst`` and ``streethub notebook`` (issue 17), run as a user runs them.

The notebook test starts the real command in a subprocess on a copy of the mart street
with an analysts' team (``analyst_street``), waits for JupyterLab to answer on 127.0.0.1,
starts a kernel through the server's REST API, runs code in it (jupyter_client): its
environment holds none of the STREETHUB_* secrets the command was given, ``%%sql`` reads
the workspace's copy with nothing set up, the copy is locked; then shuts the server down
through the API and expects the command to end with 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from jupyter_client import BlockingKernelClient
from typer.testing import CliRunner

from pipelines.cli import app
from share_api.analysts.notebook import DB_ENV, NOTEBOOK_VARS, Workspace, server_info
from tests.share_api.conftest import (  # noqa: F401 - the share service's fixtures
    ANALYST_MARTS,
    analyst_street,
    people,
    service,
    share_db_url,
    share_settings,
)

SECRETS = {  # given to the command; none may reach a kernel
    "STREETHUB_DEPT_API_TOKEN": "dept-token-not-for-kernels",
    "STREETHUB_PKCS11_PIN": "pin-not-for-kernels",
    "AWS_SECRET_ACCESS_KEY": "cloud-secret-not-for-kernels",
}
OWN = {"STREETHUB_NOTEBOOK_TOKEN": "the-analysts-own-token"}  # the notebooks' own: passed
PROBE = """
import json, os
shown = get_ipython().run_cell_magic("sql", "", "SELECT count(*) AS n FROM elderly_care")
try:
    con.execute("SELECT * FROM read_csv('/etc/passwd')")
    refused = None
except Exception as exc:
    refused = type(exc).__name__
print(json.dumps({"env": dict(os.environ), "rows": shown.DataFrame()["n"][0],
                  "refused": refused}, default=int))
"""


def test_analyst_command_builds_then_says_up_to_date(analyst_street) -> None:  # noqa: F811
    runner = CliRunner()
    first = runner.invoke(app, ["analyst", analyst_street.org])
    assert first.exit_code == 0, first.output
    assert "up to date" in first.output  # the fixture built it: nothing changed since
    for mart in ANALYST_MARTS:
        assert mart in first.output
    out = analyst_street.path.parent / "other.duckdb"
    again = runner.invoke(app, ["analyst", analyst_street.org, "--out", str(out)])
    assert again.exit_code == 0 and "built" in again.output and out.is_file()
    wrong = runner.invoke(app, ["analyst", "gaj"])
    assert wrong.exit_code == 1 and "gaj" in wrong.output


def _run_in_kernel(info: dict, ws: Workspace, code: str) -> dict:
    base, auth = info["url"].rstrip("/"), {"Authorization": f"token {info['token']}"}
    started = httpx.post(f"{base}/api/kernels", headers=auth, json={"name": "python3"}, timeout=30)
    assert started.status_code == 201, started.text
    kernel = started.json()["id"]
    client = BlockingKernelClient(connection_file=str(ws.runtime_dir / f"kernel-{kernel}.json"))
    client.load_connection_file()
    # no heartbeat channel: a client not made by a KernelManager judges the kernel dead after
    # one heartbeat missed by 1 s, which a loaded CI machine misses while the kernel imports
    # (a clean-clone CI of c713038: "Kernel died before replying to kernel_info"); whether it
    # lives is asked of the server instead, and wait_for_ready still times out after 60 s
    client.start_channels(hb=False)
    out: list[str] = []

    def hook(msg) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"error {msg['content']['ename']}: {msg['content']['evalue']}")

    try:
        try:
            client.wait_for_ready(timeout=60)
        except RuntimeError as exc:
            state = httpx.get(f"{base}/api/kernels/{kernel}", headers=auth, timeout=30)
            raise AssertionError(
                f"{exc}; the server says: {state.status_code} {state.text}"
            ) from exc
        client.execute_interactive(code, output_hook=hook, timeout=60)
    finally:
        client.stop_channels()
        httpx.delete(f"{base}/api/kernels/{kernel}", headers=auth, timeout=30)
    printed = "".join(out)
    assert printed.strip().startswith("{"), printed
    return json.loads(printed)


def test_notebook_serves_a_kernel_without_secrets(analyst_street, tmp_path: Path) -> None:  # noqa: F811
    settings = analyst_street.service.settings
    workspace = tmp_path / "workspace"
    env = {**os.environ, **SECRETS, **OWN, "STREETHUB_HOME": str(settings.home_abs),
           "STREETHUB_NOTEBOOK_DIR": str(workspace)}  # fmt: skip
    log = (tmp_path / "notebook.log").open("w")
    cmd = [sys.executable, "-m", "pipelines.cli", "notebook", analyst_street.org]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ws = Workspace(workspace / analyst_street.org, Path(), Path(), {})
        info, deadline = None, time.monotonic() + 60
        while info is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            jp = sorted(ws.runtime_dir.glob("jpserver-*.json")) if ws.runtime_dir.exists() else []
            info = server_info(ws, int(jp[0].stem.split("-")[1])) if jp else None
        assert info is not None, (tmp_path / "notebook.log").read_text()
        assert info["url"].startswith("http://127.0.0.1:")
        assert httpx.get(f"{info['url']}api/status").status_code == 403  # the token is kept
        found = _run_in_kernel(info, ws, PROBE)
        stop = httpx.post(f"{info['url']}api/shutdown",
                          headers={"Authorization": f"token {info['token']}"})  # fmt: skip
        assert stop.status_code == 200
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()
        print((tmp_path / "notebook.log").read_text()[-6000:])  # shown by pytest on a failure
    kernel_env = found["env"]
    assert not set(SECRETS) & set(kernel_env)
    assert not [k for k in kernel_env if k.startswith("STREETHUB_") and k != DB_ENV
                and k not in NOTEBOOK_VARS]  # fmt: skip
    assert kernel_env["STREETHUB_NOTEBOOK_TOKEN"] == OWN["STREETHUB_NOTEBOOK_TOKEN"]
    assert kernel_env["STREETHUB_NOTEBOOK_SHARE_URL"] == (
        f"http://{settings.share_host}:{settings.share_port}"
    )
    assert kernel_env["PLOOMBER_STATS_ENABLED"] == "false"
    copy = Path(kernel_env[DB_ENV])
    assert copy.is_relative_to(ws.root) and copy.read_bytes() == analyst_street.path.read_bytes()
    assert found["rows"] > 0  # %%sql read the copy, nothing set up
    assert found["refused"] == "PermissionException"  # the copy is opened locked
    assert (ws.root / "notebooks").is_dir()
    assert not ws.root.is_relative_to(settings.home_abs)


def test_notebook_refuses_a_workspace_inside_the_home(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("STREETHUB_NOTEBOOK_DIR", str(home / "notebooks"))
    refused = CliRunner().invoke(app, ["notebook", "ana"])
    assert refused.exit_code == 1 and "outside the home" in refused.output
    assert not (home / "notebooks").exists()
