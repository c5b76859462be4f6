"""How the hub reaches the simulated systems: as it would reach real ones, by settings.

The simulator publishes its systems in its own folder (the manifest's ``system``
entries and the API token). :func:`connection_env` turns them into the environment a
real hub would be given — ``STREETHUB_<DEPT>_DB_URL`` per department database,
``STREETHUB_DEPT_API_URL`` and ``STREETHUB_DEPT_API_TOKEN`` for the HTTP APIs — and
:func:`simulated_systems` serves the APIs (a process of their own) and sets those variables in this process for
the length of a block (the main job, ``streethub simulate``); ``streethub ui`` sets them
for the Dagster processes it starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from departments.server import TOKEN_ENV, api_token, server_process
from departments.simulate import read_manifest

API_URL_ENV = "STREETHUB_DEPT_API_URL"


def db_url_env(dept: str) -> str:
    """The environment variable that holds a department database's URL."""
    return f"STREETHUB_{dept.upper()}_DB_URL"


def has_street(sim_dir: Path) -> bool:
    """Whether the simulator's folder holds a street (its manifest is written last)."""
    return read_manifest(sim_dir) is not None


def connection_env(sim_dir: Path, api_url: str | None = None) -> dict[str, str]:
    """The connection settings of the simulated systems in ``sim_dir`` (empty when it holds
    no street): database URLs, the API token, and ``api_url`` if the APIs are served."""
    manifest = read_manifest(sim_dir)
    if manifest is None:
        return {}
    env: dict[str, str] = {}
    api = False
    for dept, datasets in manifest.get("departments", {}).items():
        for entry in datasets.values():
            system = entry.get("system") or {}
            if "db_url" in system:
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
