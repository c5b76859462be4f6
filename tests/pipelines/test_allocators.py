"""Polars' and DuckDB's allocators hand freed pages back in every process of the hub, and
polars works on one thread there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.allocators import ALLOCATOR_CONF, THREAD_CONF

_LAZY_CHILD = """
import sys, threading, time
if sys.argv[1] == "hub":
    import pipelines  # noqa: F401  (as every process of the hub does first)
import polars as pl

def lazy_mb():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("LazyFree:"):
            return int(line.split()[1]) >> 10
    return 0

most, done = [0], threading.Event()

def sample():
    while not done.is_set():
        most[0] = max(most[0], lazy_mb())
        time.sleep(0.01)

sampler = threading.Thread(target=sample)
sampler.start()
for _ in range(4):
    frame = pl.DataFrame({"a": pl.int_range(0, 1_000_000, eager=True)})
    frame = frame.with_columns(b=pl.col("a").cast(pl.String)).sort("b")
    del frame
    time.sleep(0.7)  # past polars' dirty decay (500 ms): what it freed is handed back
done.set()
sampler.join()
print(most[0])
"""


def _child(script: Path, *args: str, **env: str) -> str:
    """``script``'s stdout, run by a fresh interpreter with the repository on its path and
    none of :data:`ALLOCATOR_CONF` or :data:`THREAD_CONF` inherited (``env``: set besides)."""
    root = Path(__file__).resolve().parents[2]
    clean = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_CONF | THREAD_CONF}
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**clean, "PYTHONPATH": str(root), **env},
    ).stdout


def _lazy_child(tmp_path: Path, mode: str) -> int:
    script = tmp_path / "lazy_child.py"
    script.write_text(_LAZY_CHILD)
    return int(_child(script, mode).split()[0])


def test_what_polars_frees_leaves_the_rss_in_a_hub_process(tmp_path: Path) -> None:
    """A process that imports ``pipelines`` first hands what polars freed back to the
    system (muzzy decay 0): none of it lingers in the RSS as ``LazyFree``; with polars' own
    setting, freed frames stay counted there (tens of MB of a 1,000,000-row sort)."""
    assert _lazy_child(tmp_path, "hub") == 0
    assert _lazy_child(tmp_path, "plain") > 5


def test_a_setting_already_made_is_kept(tmp_path: Path) -> None:
    """``tune_libraries`` only fills in what the environment lacks: an operator's own
    setting wins (polars then appends it to its defaults)."""
    script = tmp_path / "kept.py"
    script.write_text(
        "import os, pipelines, polars\n"
        "print(os.environ['_RJEM_MALLOC_CONF'], os.environ['DUCKDB_JE_MALLOC_CONF'])\n"
    )
    out = _child(script, _RJEM_MALLOC_CONF="dirty_decay_ms:0").split()
    assert out[0].endswith(",dirty_decay_ms:0") and "muzzy_decay_ms:0" not in out[0]
    assert out[1] == ALLOCATOR_CONF["DUCKDB_JE_MALLOC_CONF"]


def test_polars_has_one_thread_in_a_hub_process_unless_the_operator_says(tmp_path: Path) -> None:
    """A process that imports ``pipelines`` first gives polars a pool of one thread (the
    hub's frames are small: a pool of two made every small operation wait on it); an
    operator's own ``POLARS_MAX_THREADS`` wins."""
    script = tmp_path / "threads.py"
    script.write_text(
        "import pipelines  # noqa: F401\nimport polars as pl\nprint(pl.thread_pool_size())\n"
    )
    assert _child(script).split() == ["1"]
    assert _child(script, POLARS_MAX_THREADS="3").split() == ["3"]
