"""The notebooks' workspace (分析工作区) and the environment their kernels start in.

A notebook kernel runs arbitrary Python, so it never works on the home: ``streethub
notebook`` copies the analyst's database into a workspace of its own (``notebook_dir``,
outside the home) and starts JupyterLab there with an environment made from nothing but
an allow-list (:data:`PASSED`): no ``STREETHUB_*`` setting or secret (master key, tokens,
database URLs), no ``XDG_CONFIG_HOME`` (where a master key file may sit) — only
:data:`DB_ENV` naming the copy, the notebooks' own :data:`NOTEBOOK_VARS` (the share
service's address, the analyst's own token) when set, ``PLOOMBER_STATS_ENABLED=false``
(JupySQL's usage statistics off) and the workspace's own Jupyter/IPython folders.

Layout of a workspace ``<notebook_dir>/<analyst>/``::

    data/<analyst>.duckdb      the copy the kernels read (renamed into place whole)
    notebooks/*.ipynb          the example notebooks (copied when missing: edits are kept)
    ipython/profile_default/startup/00-streethub.py
                               opens the copy locked (``open_locked``) as ``con`` and
                               connects JupySQL to it (alias ``analyst``): ``%%sql`` works
    jupyter/config             jupyter_server_config.json: 127.0.0.1, the token, no
                               terminals, nothing fetched (updates, news, extensions)
    jupyter/data, jupyter/runtime
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DB_ENV = "STREETHUB_ANALYST_DB"  # the notebooks find their database here
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
HOST = "127.0.0.1"
# what of the caller's environment a kernel may see (nothing else passes)
PASSED = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM", "USER",
          "LOGNAME", "VIRTUAL_ENV")  # fmt: skip
# what the example notebooks read besides the database: the share service's address, the
# analyst's OWN token or Delta Sharing profile (theirs, not the hub's), a grant, snapshots,
# a table — passed on only when the caller set them
NOTEBOOK_VARS = ("STREETHUB_NOTEBOOK_SHARE_URL", "STREETHUB_NOTEBOOK_TOKEN",
                 "STREETHUB_NOTEBOOK_PROFILE", "STREETHUB_NOTEBOOK_GRANT",
                 "STREETHUB_NOTEBOOK_SNAPSHOTS", "STREETHUB_NOTEBOOK_TABLE")  # fmt: skip
SHARE_URL_ENV = NOTEBOOK_VARS[0]
STARTUP = '''"""streethub: the analyst database, read-only and locked, for %%sql and DuckDB's API.

``con`` is the DuckDB connection (open_locked: read-only, no external access, the
configuration locked); JupySQL is connected to it as ``analyst``."""

import os as _os

from share_api.analysts.lock import open_locked as _open_locked

con = _open_locked(_os.environ["STREETHUB_ANALYST_DB"])
_ip = get_ipython()  # noqa: F821 - IPython's startup namespace
_ip.run_line_magic("load_ext", "sql")
_ip.run_line_magic("config", "SqlMagic.displaylimit = 50")
_ip.run_line_magic("config", "SqlMagic.feedback = 0")
_ip.run_line_magic("sql", "con --alias analyst")
del _os, _open_locked, _ip
'''


@dataclass(frozen=True)
class Workspace:
    """A prepared workspace: its folders, the copied database, the kernels' environment."""

    root: Path
    db: Path
    notebooks: Path
    env: dict[str, str]  # the environment JupyterLab (and so every kernel) starts with

    @property
    def runtime_dir(self) -> Path:
        return self.root / "jupyter" / "runtime"


def kernel_env(
    environ: Mapping[str, str], root: Path, db: Path, share_url: str | None = None
) -> dict[str, str]:
    """The environment of the notebook server and its kernels: the allow-listed variables
    of ``environ`` and the notebooks' own (:data:`NOTEBOOK_VARS`; the share service's
    address ``share_url`` unless given), the database's path, JupySQL's statistics off,
    the workspace's own Jupyter, IPython and matplotlib folders and HOME."""
    env = {k: environ[k] for k in (*PASSED, *NOTEBOOK_VARS) if k in environ}
    if share_url and SHARE_URL_ENV not in env:
        env[SHARE_URL_ENV] = share_url
    env.update(
        {
            DB_ENV: str(db),
            "PLOOMBER_STATS_ENABLED": "false",
            "HOME": str(root),
            "IPYTHONDIR": str(root / "ipython"),
            "JUPYTER_CONFIG_DIR": str(root / "jupyter" / "config"),
            "JUPYTER_DATA_DIR": str(root / "jupyter" / "data"),
            "JUPYTER_RUNTIME_DIR": str(root / "jupyter" / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "MPLCONFIGDIR": str(root / "matplotlib"),
            "PYTHONNOUSERSITE": "1",
        }
    )
    return env


def _copy_into(source: Path, dest: Path) -> None:
    """``source`` copied to ``dest`` through a temporary file and a rename."""
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def prepare_workspace(
    root: Path,
    analyst: str,
    db: Path,
    *,
    environ: Mapping[str, str] | None = None,
    port: int = 0,
    token: str | None = None,
    notebooks: Path = NOTEBOOKS_DIR,
    share_url: str | None = None,
) -> Workspace:
    """The workspace ``root/<analyst>``: the database ``db`` copied in, the notebooks
    missing there copied, the IPython startup file and the server's configuration
    (``port``; ``token``: a new random one when None) written; ``share_url``: the share
    service the notebooks call (unless the caller's environment names one)."""
    base = root.expanduser().resolve() / analyst
    for sub in ("data", "notebooks", "ipython/profile_default/startup", "jupyter/config",
                "jupyter/data", "jupyter/runtime", "matplotlib"):  # fmt: skip
        (base / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    copy = base / "data" / f"{analyst}.duckdb"
    _copy_into(db, copy)
    if notebooks.is_dir():
        for nb in sorted(notebooks.glob("*.ipynb")):
            if not (base / "notebooks" / nb.name).exists():
                shutil.copyfile(nb, base / "notebooks" / nb.name)
    (base / "ipython/profile_default/startup/00-streethub.py").write_text(STARTUP)
    config = {
        "ServerApp": {"ip": HOST, "port": port, "port_retries": 0 if port else 50,
                      "open_browser": False, "root_dir": str(base / "notebooks"),
                      "terminals_enabled": False,
                      # as root (a container) Jupyter refuses to start; a street runs it as
                      # an OS user of its own (README: For analysts)
                      "allow_root": os.geteuid() == 0},
        "IdentityProvider": {"token": token or secrets.token_urlsafe(32)},
        # nothing fetched from the internet: no update check, no news, no extension index
        "LabApp": {"check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                   "news_url": None, "extension_manager": "readonly"},
    }  # fmt: skip
    path = base / "jupyter" / "config" / "jupyter_server_config.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=1)
    env = kernel_env(os.environ if environ is None else environ, base, copy, share_url)
    return Workspace(base, copy, base / "notebooks", env)


def lab_command() -> list[str]:
    """JupyterLab, run by this interpreter (its configuration comes from the workspace)."""
    return [sys.executable, "-m", "jupyterlab"]


def server_info(workspace: Workspace, pid: int) -> dict | None:
    """The record the server of process ``pid`` keeps of itself in the workspace
    (``jpserver-<pid>.json``: url, port, token), once it is up; None before."""
    try:
        return json.loads((workspace.runtime_dir / f"jpserver-{pid}.json").read_text())
    except (OSError, ValueError):
        return None


__all__ = [
    "DB_ENV",
    "NOTEBOOKS_DIR",
    "NOTEBOOK_VARS",
    "PASSED",
    "Workspace",
    "kernel_env",
    "lab_command",
    "prepare_workspace",
    "server_info",
]
