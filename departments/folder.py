"""The simulator's folder (``<home>.departments`` by default): its layout and the two small
files read by whoever serves or finds a street there — the manifest (a street is there) and
the APIs' token. Apart from the generator (:mod:`departments.simulate`), so that serving
the simulated systems or asking whether a street exists imports none of it (the generator
pulls in the writers, openpyxl and the world's history: ~0.25 s of CPU in a process that
already holds the pipeline's libraries, more in one that does not)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

TOKEN_FILE = "api_token"
MANIFEST_FILE = "manifest.json"
SYSTEMS_DIR = "systems"
TRUTH_DIR = "truth"


def sim_dir_for(home: Path) -> Path:
    """The simulator's folder for a hub home: beside it, ``<home>.departments``.

    The same default as ``catalog.settings.Settings.sim_dir_abs`` (this package imports
    nothing of the hub; a test keeps the two equal)."""
    home = Path(home).expanduser().resolve()
    return home.parent / f"{home.name}.departments"


def truth_dir(sim_dir: Path) -> Path:
    """Where the ground truth lives in the simulator's folder."""
    return Path(sim_dir) / TRUTH_DIR


def read_manifest(sim_dir: Path) -> dict | None:
    """The simulator's manifest, or None when its folder holds no street yet."""
    path = Path(sim_dir) / MANIFEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def ensure_token(sim_dir: Path) -> str:
    """The simulated APIs' bearer token, made (0600) on first use."""
    path = Path(sim_dir) / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


__all__ = [
    "MANIFEST_FILE",
    "SYSTEMS_DIR",
    "TOKEN_FILE",
    "TRUTH_DIR",
    "ensure_token",
    "read_manifest",
    "sim_dir_for",
    "truth_dir",
]
