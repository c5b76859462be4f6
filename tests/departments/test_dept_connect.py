"""What the simulator publishes: its folder beside the home, the connection settings the hub
reads (as it would a real department's), and a manifest that names every delivery by hash."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from catalog.settings import Settings
from departments.connect import connection_env, environment, has_street, simulated_systems


def test_the_simulator_folder_is_the_settings_default(tmp_path):
    from departments.simulate import sim_dir_for

    home = tmp_path / "hub"
    assert sim_dir_for(home) == Settings(home=home).sim_dir_abs == tmp_path / "hub.departments"


def test_serving_or_finding_a_street_imports_no_generator(home, sim):
    """Serving the simulated systems, or the main job finding its street already made, loads
    nothing of the generator (departments.simulate: the writers, openpyxl, the world's
    history); making a street does."""
    probe = (
        "import sys\n"
        "from rich.console import Console\n"
        "from catalog.settings import Settings\n"
        "from departments.connect import simulated_systems\n"
        "from pipelines.main_job import simulate_if_needed\n"
        "settings = Settings(home=sys.argv[1], sim_dir=sys.argv[2])\n"
        "simulate_if_needed(settings, Console(quiet=True))\n"
        "with simulated_systems(settings.sim_dir_abs, fault_rate=0.0):\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('departments.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(home), str(sim)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.strip().splitlines()[-1]
    assert "departments.connect" in loaded and "departments.folder" in loaded
    assert "departments.simulate" not in loaded and "departments.writers" not in loaded


def test_the_api_server_loads_no_generator():
    """The APIs' server reads its datasets' specs (departments.specs) and the served tables,
    not the generator: its writers (polars, openpyxl) were a third of the start a run waits
    for when a pull is due."""
    probe = (
        "import sys\n"
        "import departments.server\n"
        "print(sorted({'departments.simulate', 'departments.writers', 'openpyxl', 'polars'}"
        " & set(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_nothing_of_the_simulator_under_the_home(home, sim):
    under_home = {p.relative_to(home).parts[0] for p in home.rglob("*")}
    assert under_home == {"inbox"}
    assert {p.name for p in sim.iterdir()} == {"api_token", "manifest.json", "systems", "truth"}


def test_manifest_lists_the_sha256_of_every_file_delivery(home, manifest):
    files = 0
    for dept, datasets in manifest["departments"].items():
        for entry in datasets.values():
            if entry["kind"] in ("sql_db", "http_api"):
                assert "sha256" not in entry and entry["system"]
                continue
            assert set(entry["sha256"]) == set(entry["files"])
            for file, digest in entry["sha256"].items():
                data = (home / "inbox" / dept / file).read_bytes()
                assert hashlib.sha256(data).hexdigest() == digest
                files += 1
    assert files >= 12 and "SHA-256" in manifest["matching"]


def test_connection_env_is_what_a_real_hub_would_be_given(sim):
    env = connection_env(sim, "http://127.0.0.1:1")
    assert env["STREETHUB_GAJ_DB_URL"] == f"sqlite:{sim / 'systems' / 'gaj' / 'registry.sqlite'}"
    assert env["STREETHUB_DEPT_API_TOKEN"] == (sim / "api_token").read_text().strip()
    assert env["STREETHUB_DEPT_API_URL"] == "http://127.0.0.1:1"
    assert "STREETHUB_DEPT_API_URL" not in connection_env(sim)
    settings = Settings(home=sim.parent / "hub").connected(env)
    assert settings.db_url("gaj") == env["STREETHUB_GAJ_DB_URL"] and settings.db_url("mzj") is None
    assert settings.dept_api_token == env["STREETHUB_DEPT_API_TOKEN"]
    assert settings.dept_api_url == "http://127.0.0.1:1"


def test_a_copied_street_is_reached_at_its_own_database(sim, manifest, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(sim, copy)
    url = connection_env(copy)["STREETHUB_GAJ_DB_URL"]
    assert url == f"sqlite:{copy / 'systems' / 'gaj' / 'registry.sqlite'}"
    assert url != connection_env(sim)["STREETHUB_GAJ_DB_URL"]
    table = manifest["departments"]["gaj"]["registered_residents"]["system"]["table"]
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:"))) as db:
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0
    # the manifest names no path of where the street was simulated
    assert str(sim) not in (copy / "manifest.json").read_text(encoding="utf-8")


def test_a_street_simulated_before_relative_paths_keeps_its_database_url(tmp_path):
    old = {"gaj": {"r": {"kind": "sql_db", "system": {"db_url": "sqlite:/x/r.sqlite"}}}}
    (tmp_path / "manifest.json").write_text(json.dumps({"departments": old}), encoding="utf-8")
    assert connection_env(tmp_path) == {"STREETHUB_GAJ_DB_URL": "sqlite:/x/r.sqlite"}


def test_settings_read_department_database_urls_from_the_environment(monkeypatch):
    monkeypatch.setenv("STREETHUB_CL_DB_URL", "sqlite:/elsewhere/cl.sqlite")
    assert Settings().db_url("cl") == "sqlite:/elsewhere/cl.sqlite"


def test_a_folder_without_a_street_publishes_nothing(tmp_path):
    assert not has_street(tmp_path) and connection_env(tmp_path) == {}
    with simulated_systems(tmp_path) as env:
        assert env == {}


def test_simulated_systems_serve_and_set_the_environment_for_the_block(sim, monkeypatch):
    monkeypatch.delenv("STREETHUB_GAJ_DB_URL", raising=False)
    monkeypatch.setenv("STREETHUB_DEPT_API_URL", "http://before")
    with simulated_systems(sim, fault_rate=0.0, slow_rate=0.0) as env:
        assert os.environ["STREETHUB_GAJ_DB_URL"] == env["STREETHUB_GAJ_DB_URL"]
        url = os.environ["STREETHUB_DEPT_API_URL"]
        r = httpx.get(
            f"{url}/api/rx/appeals",
            headers={"Authorization": f"Bearer {env['STREETHUB_DEPT_API_TOKEN']}"},
        )
        assert r.status_code == 200 and r.json()["total"] > 0
    assert "STREETHUB_GAJ_DB_URL" not in os.environ
    assert os.environ["STREETHUB_DEPT_API_URL"] == "http://before"


def test_the_simulated_systems_run_apart_from_the_hub(sim):
    """Served from a process of their own, as a real department's are: their tables are not
    in the hub's memory; the process is gone after the block."""
    with simulated_systems(sim, fault_rate=0.0, slow_rate=0.0) as env:
        url = env["STREETHUB_DEPT_API_URL"]
        served_by = httpx.get(f"{url}/health").json()["pid"]
        assert served_by != os.getpid()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")


def _hub(tmp_path: Path, sim: Path, block: str) -> tuple[list[str], dict[str, str]]:
    """A hub process's command and environment: it serves ``sim``'s systems and runs
    ``block`` (indented) while they are served (``url``: theirs)."""
    hub = tmp_path / "hub.py"
    hub.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from departments.connect import connection_env, server_process\n"
        "with server_process(Path(sys.argv[1]), fault_rate=0.0, slow_rate=0.0) as url:\n" + block
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return [sys.executable, str(hub), str(sim)], env


def test_the_hub_imports_no_web_framework_for_the_systems(sim, tmp_path):
    """Reaching and serving the systems imports FastAPI and uvicorn in the server's process
    only: the hub's connection code does not load them."""
    cmd, env = _hub(
        tmp_path,
        sim,
        "    env = connection_env(Path(sys.argv[1]), url)\n"
        "print(sorted(env), sorted({'fastapi', 'uvicorn', 'departments.server'} & set(sys.modules)))\n",
    )
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    assert "STREETHUB_DEPT_API_URL" in out and out.rstrip().endswith("[]")


def test_a_killed_hub_leaves_no_server_behind(sim, tmp_path):
    cmd, env = _hub(tmp_path, sim, "    print(url, flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    url = proc.stdout.readline().strip()
    assert httpx.get(f"{url}/health").json()["pid"] not in (os.getpid(), proc.pid)
    proc.kill()  # no finally block runs: the server must notice on its own
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=1)
        except httpx.ConnectError:
            return
        except (httpx.ReadError, httpx.RemoteProtocolError):
            pass  # a connection reset while the server goes down: ask again until it is gone
        time.sleep(0.2)
    pytest.fail("the department API server outlived the process that started it")


def test_environment_restores_what_was_there(monkeypatch):
    monkeypatch.setenv("STREETHUB_X_DB_URL", "old")
    with environment({"STREETHUB_X_DB_URL": "new", "STREETHUB_Y_DB_URL": "y"}):
        assert os.environ["STREETHUB_X_DB_URL"] == "new"
    assert os.environ["STREETHUB_X_DB_URL"] == "old" and "STREETHUB_Y_DB_URL" not in os.environ


@pytest.mark.parametrize("name", ["registry.sqlite", "api_token"])
def test_no_system_file_in_the_inbox(home, name: str):
    assert not list(Path(home).rglob(name))


def test_the_main_job_reaches_apis_served_apart_without_serving_its_own(home, sim, monkeypatch):
    # `streethub simulate serve` (or a real department) serves the APIs apart from the hub:
    # with STREETHUB_DEPT_API_URL set the main job reaches them there and starts no server
    from departments import connect
    from pipelines.main_job import simulated_systems as main_job_systems

    def no_server(*args, **kwargs):
        raise AssertionError("the main job started a server of its own")

    monkeypatch.setattr(connect, "server_process", no_server)
    monkeypatch.setenv("STREETHUB_DEPT_API_URL", "http://127.0.0.1:1")
    settings = Settings(home=home, sim_dir=sim)
    with main_job_systems(settings) as connected:
        assert connected.dept_api_url == "http://127.0.0.1:1"
        assert connected.dept_api_token == (sim / "api_token").read_text().strip()
        assert connected.db_url("gaj") == f"sqlite:{sim / 'systems' / 'gaj' / 'registry.sqlite'}"
        # and in the environment, which the steps read, as serving them sets it
        assert os.environ["STREETHUB_DEPT_API_TOKEN"] == connected.dept_api_token
        assert os.environ["STREETHUB_GAJ_DB_URL"] == connected.db_url("gaj")
    assert "STREETHUB_GAJ_DB_URL" not in os.environ
    monkeypatch.delenv("STREETHUB_DEPT_API_URL")
    unset = main_job_systems(Settings(home=home, sim_dir=sim))
    with pytest.raises(AssertionError, match="a server of its own"), unset:  # it serves them
        pass
