"""Simulated streets for the benchmarks, simulated once and kept.

A street of 200,000 residents takes minutes to simulate; the benchmarks measure runs of
the hub, not the simulator. :func:`street` hands a benchmark a fresh copy of a cached
street (``home`` and its simulator folder ``home.departments`` beside it, as
``streethub simulate`` leaves them), simulating into the cache only when no cached street
fits. A cached street is keyed by residents, seed, days and a hash of the source of
``departments/`` (the simulator): change the simulator and the old streets are not used.

The cache is ``$STREETHUB_BENCH_STREETS`` when set (e.g. ``/work/prof/streets``, whose
streets ``r10000``, ``r50000`` … another tool simulated), else
``~/.cache/streethub/bench-streets``. A street this module simulated carries a
``street.json`` with its key; a street found in the folder without one (simulated by
hand) is used when its simulator manifest says the same residents, seed and days — its
source hash cannot be checked, and :class:`Street` says so (``source_checked``).
Cached streets are never modified: a benchmark runs on a copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "STREETHUB_BENCH_STREETS"
DEFAULT_CACHE = Path.home() / ".cache" / "streethub" / "bench-streets"
KEY_FILE = "street.json"
MANIFEST = Path("home.departments") / "manifest.json"
DAYS = 3  # `streethub simulate`'s default
# the need-outcome registers' days (no history: the ingest benches' street): enough for the
# need model to train on every street, whatever the day it was simulated (the simulator's
# default registers never train: departments/NEEDS.md), so a full run's figures always
# include the training and compare from one day to the next
REGISTER_DAYS = 270


@dataclass(frozen=True)
class Street:
    """A fresh copy of a simulated street: ``home`` and ``sim_dir`` (its simulator folder)."""

    home: Path
    sim_dir: Path
    residents: int
    cached: bool  # True: copied from the cache; False: simulated now (then cached)
    simulate_s: float | None  # the simulation's wall seconds when simulated now
    source_checked: bool  # False: a street found in the cache without a recorded source hash


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


# what serves or documents a simulated street, not what makes it: a change to these
# leaves every delivery, system and truth file as it was, so it keeps the cache
NOT_THE_STREET = frozenset({"server.py", "connect.py"})


def source_hash(root: Path = ROOT / "departments") -> str:
    """SHA-256 over the simulator's source that makes a street (``departments/**/*.py``
    and its data files, by relative path and content; not its documents (``*.md``) nor
    the modules that serve a street made, :data:`NOT_THE_STREET`)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".md"):
            continue
        if path.name in NOT_THE_STREET and path.parent == root:
            continue
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def street_key(residents: int, seed: int, days: int, source: str) -> dict:
    return {"residents": residents, "seed": seed, "days": days,
            "register_days": REGISTER_DAYS, "source_sha256": source}  # fmt: skip


def _name(key: dict) -> str:
    return (f"r{key['residents']}-s{key['seed']}-d{key['days']}-g{key['register_days']}-"
            f"{key['source_sha256'][:12]}")  # fmt: skip


def _registers(manifest: dict) -> int | None:
    """The days a simulated street's need-outcome registers hold (None: a history's)."""
    needs = manifest.get("needs") or {}
    if needs.get("history_days") or "first" not in needs:
        return None
    end = dt.date.fromisoformat(manifest["end"])
    return (end - dt.date.fromisoformat(needs["first"])).days + 1


def _complete(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / "home" / "inbox").is_dir()


def find_cached(cache: Path, key: dict) -> tuple[Path, bool] | None:
    """The cached street with this key: (its folder, whether its source hash was checked)."""
    own = cache / _name(key)
    recorded = own / KEY_FILE
    if _complete(own) and recorded.is_file() and json.loads(recorded.read_text()) == key:
        return own, True
    if not cache.is_dir():
        return None
    for folder in sorted(cache.iterdir()):
        if not folder.is_dir() or (folder / KEY_FILE).exists() or not _complete(folder):
            continue  # a street of ours with another key, or one not simulated (yet)
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if all(manifest.get(k) == key[k] for k in ("residents", "seed", "days")) and (
            _registers(manifest) == key["register_days"]
        ):
            return folder, False
    return None


def _simulate(folder: Path, key: dict) -> float:
    """``streethub simulate`` into ``folder`` (home + home.departments); wall seconds."""
    home = folder / "home"
    home.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETHUB_")}
    env |= {
        "STREETHUB_HOME": str(home),
        "STREETHUB_SIM_DIR": str(folder / "home.departments"),
        "PYTHONPATH": str(ROOT),
    }
    cmd = [str(Path(sys.executable).parent / "streethub"), "simulate"]
    cmd += ["--residents", str(key["residents"]), "--seed", str(key["seed"])]
    cmd += ["--days", str(key["days"]), "--history-days", "0"]  # the ingest benches' street
    cmd += ["--register-days", str(key["register_days"])]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(
            f"simulating {key['residents']:,} residents failed:\n{done.stderr[-3000:]}"
        )
    return time.perf_counter() - started


def street(dest: Path, residents: int, seed: int = 7, days: int = DAYS) -> Street:
    """A fresh copy of the street in ``dest`` (``dest/home``, ``dest/home.departments``),
    from the cache, or simulated into the cache first."""
    cache = cache_dir()
    key = street_key(residents, seed, days, source_hash())
    found = find_cached(cache, key)
    simulated = None
    if found is None:
        folder = cache / _name(key)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        simulated = round(_simulate(partial, key), 1)
        (partial / KEY_FILE).write_text(json.dumps(key) + "\n", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)  # complete or absent: a killed simulation is never used
        found = (folder, True)
    src, checked = found
    dest.mkdir(parents=True, exist_ok=True)
    for part in ("home", "home.departments"):
        shutil.copytree(src / part, dest / part, symlinks=True)
    return Street(
        home=dest / "home",
        sim_dir=dest / "home.departments",
        residents=residents,
        cached=simulated is None,
        simulate_s=simulated,
        source_checked=checked,
    )


def copy_home(home: Path, dest: Path) -> Path:
    """``home`` copied to ``dest`` with its audit witness (kept beside a home, outside it,
    so a plain copy of the home would fail its audit log's check): the copy's home."""
    from catalog.settings import Settings

    shutil.copytree(home, dest)
    witness = Settings(home=home).witness_dir_abs
    if witness.exists():
        shutil.copytree(witness, Settings(home=dest).witness_dir_abs)
    return dest
