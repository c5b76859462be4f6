"""How the hub reaches the simulated systems: as it would reach real ones, by settings.

The simulator publishes its systems in its own folder (the manifest's ``system``
entries and the API token). :func:`connection_env` turns them into the environment a
real hub would be given — ``STREETHUB_<DEPT>_DB_URL`` per department database,
``STREETHUB_DEPT_API_URL`` and ``STREETHUB_DEPT_API_TOKEN`` for the HTTP APIs — and
:func:`simulated_systems` serves the APIs (a process of their own) and sets those variables in this process for
the length of a block (the main job, ``streethub simulate``); ``streethub ui`` sets them
for the Dagster processes it starts. The APIs' own module (``departments.server``: FastAPI,
uvicorn) is imported only by the process that serves them (:func:`server_process` starts
it), not by the hub: ~0.4 s CPU of a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from departments.folder import ensure_token, read_manifest

API_URL_ENV = "STREETHUB_DEPT_API_URL"
TOKEN_ENV = "STREETHUB_DEPT_API_TOKEN"


def db_url_env(dept: str) -> str:
    """The environment variable that holds a department database's URL."""
    return f"STREETHUB_{dept.upper()}_DB_URL"


def has_street(sim_dir: Path) -> bool:
    """Whether the simulator's folder holds a street (its manifest is written last)."""
    return read_manifest(sim_dir) is not None


def connection_env(sim_dir: Path, api_url: str | None = None) -> dict[str, str]:
    """The connection settings of the simulated systems in ``sim_dir`` (empty when it holds
    no street): database URLs, the API token, and ``api_url`` if the APIs are served.
    A database is named in the manifest by its path in the folder, so a street copied or
    moved elsewhere is reached at its new place (its URLs are absolute)."""
    manifest = read_manifest(sim_dir)
    if manifest is None:
        return {}
    env: dict[str, str] = {}
    api = False
    for dept, datasets in manifest.get("departments", {}).items():
        for entry in datasets.values():
            system = entry.get("system") or {}
            if "database" in system:  # relative to the folder, wherever it is now
                env[db_url_env(dept)] = f"sqlite:{Path(sim_dir).absolute() / system['database']}"
            elif "db_url" in system:  # a street simulated before paths were relative
                env[db_url_env(dept)] = system["db_url"]
            api = api or "endpoint" in system
    if api:
        env[TOKEN_ENV] = api_token(sim_dir)
        if api_url:
            env[API_URL_ENV] = api_url
    return env


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in this process (inherited by the processes it starts); restore after."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def simulated_systems(sim_dir: Path, **faults) -> Iterator[dict[str, str]]:
    """Serve the simulated APIs of ``sim_dir`` (from a process of their own, as a real
    department's systems are apart from the hub) and set the connection environment for the
    block; yield that environment (empty, serving nothing, when the folder holds no street)."""
    if not has_street(sim_dir):
        yield {}
        return
    with server_process(sim_dir, **faults) as url:
        env = connection_env(sim_dir, url)
        with environment(env):
            yield env


def api_token(sim_dir: Path) -> str:
    """The bearer token: env STREETHUB_DEPT_API_TOKEN, else the simulator's ``api_token``."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env
    return ensure_token(Path(sim_dir))  # read, or made on first use


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    """Whether a server answers at ``url`` (any HTTP status counts: a ``down`` server
    answers 503)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def server_process(sim_dir: Path, token: str | None = None, **faults) -> Iterator[str]:
    """Serve the APIs of the simulator's folder ``sim_dir`` from a process of their own on
    a free port, as a real department's systems run apart from the hub (their memory, CPU
    and interpreter lock are not the hub's: the thread of ``departments.server.running_server`` held the
    served tables in the hub's process and competed with its ingest); yield the base URL;
    stop it on exit. The token goes to the process by its environment, never its command
    line."""
    host, port = "127.0.0.1", free_port()
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, TOKEN_ENV: token or api_token(Path(sim_dir))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "departments.server", str(sim_dir), "--port", str(port),
           "--faults", json.dumps(faults), "--parent", str(os.getpid())]  # fmt: skip
    url = f"http://{host}:{port}"
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 60
            while not _answers(f"{url}/health"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    tail = err.read()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"department API server did not start: {tail}")
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
