"""Incremental runs: a second run with nothing new, and a run after one new daily delivery.

In a temporary ``STREETHUB_HOME`` (and the simulator's folder beside it, both
removed afterwards) a street is simulated (``streethub simulate``, not timed),
then three ``streethub run`` children are timed, wall clock, each a whole
process as an officer would start it:

1. the first full run (everything delivered is landed, read, gated, scored);
2. the same again with nothing new (goal: at most 1/10 of the first run);
3. a run after one department's new daily delivery: the newest file of a daily
   file-delivered dataset, as the department would re-export it the next day (the
   same export less its last record, under the next name its pattern allows), is
   put in the inbox (goal: at most 1/5 of the first run).

Prints the three times and the two fractions; writes ``bench/results/incremental.json``.
``STREETHUB_BENCH_QUICK=1``: a smaller street (the smoke test).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from catalog.loader import load_catalogue
from catalog.model import FILE_CONNECTORS, UpdateCycle
from catalog.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "incremental.json"
SEED = 7
RESIDENTS = 20_000
QUICK_RESIDENTS = 1_500
GOALS = {"no_op_fraction": 0.10, "daily_fraction": 0.20}
LINE_KINDS = {"csv", "jsonl"}  # a record a line: the next day's export is the file less one


def quick() -> bool:
    return os.environ.get("STREETHUB_BENCH_QUICK") == "1"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETHUB_")}
    env["STREETHUB_HOME"] = str(home)
    env["STREETHUB_SIM_DIR"] = str(home.parent / (home.name + ".departments"))
    env["STREETHUB_SIM_AUTO"] = "false"  # the street is simulated once, before the timing
    env["PYTHONPATH"] = str(ROOT)
    return env


def _child(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, exit code, stdout) of one ``streethub`` command."""
    exe = str(Path(sys.executable).parent / "streethub")
    started = time.perf_counter()
    proc = subprocess.run([exe, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # 1: the run reported failures of the data
        raise RuntimeError(
            f"streethub {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    return wall, proc.returncode, proc.stdout


def next_day_delivery(settings: Settings) -> tuple[str, str, Path]:
    """Put one department's next daily delivery in the inbox: (dept, dataset, file)."""
    cat = load_catalogue(settings.catalog_dir)
    for dept, ds in cat.datasets():
        kind = ds.delivery.kind
        if (
            ds.update_cycle is not UpdateCycle.daily
            or kind not in FILE_CONNECTORS
            or kind.value not in LINE_KINDS
            or not ds.delivery.pattern
            or "*" not in ds.delivery.pattern
        ):
            continue
        folder = settings.inbox_dir / dept.code
        files = sorted(folder.glob(ds.delivery.pattern), key=lambda p: p.stat().st_mtime_ns)
        if not files:
            continue
        newest = files[-1]
        data = newest.read_bytes().rstrip(b"\r\n")
        shorter = data[: data.rfind(b"\n") + 1]  # the last record withdrawn
        target = folder / ds.delivery.pattern.replace("*", "bench_next_day", 1)
        target.write_bytes(shorter)
        old = time.time() - 3600  # settled: written well before the run
        os.utime(target, (old, old))
        return dept.code, ds.code, target
    raise RuntimeError("no daily file-delivered dataset with a delivery in the inbox")


def measure(residents: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="streethub-bench-incremental-"))
    home = tmp / "home"
    env = _env(home)
    try:
        simulated, _, _ = _child(
            ["simulate", "--residents", str(residents), "--seed", str(SEED)], env
        )
        full, full_rc, _ = _child(["run"], env)
        no_op, no_op_rc, _ = _child(["run"], env)
        settings = Settings(home=home)
        dept, dataset, _ = next_day_delivery(settings)
        daily, daily_rc, _ = _child(["run"], env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "residents": residents,
        "simulate_s": round(simulated, 1),
        "full_run_s": round(full, 1),
        "no_op_run_s": round(no_op, 1),
        "daily_run_s": round(daily, 1),
        "daily_delivery": f"{dept}.{dataset}",
        "exit_codes": [full_rc, no_op_rc, daily_rc],
        "no_op_fraction": round(no_op / full, 3),
        "daily_fraction": round(daily / full, 3),
    }


def report(f: dict) -> None:
    print(f"incremental runs ({f['residents']:,} residents; simulated in {f['simulate_s']} s)")
    print(f"  first full run                 {f['full_run_s']:>8.1f} s")
    for label, key, goal in (
        ("second run, nothing new", "no_op", "no_op_fraction"),
        (f"after a new daily {f['daily_delivery']}", "daily", "daily_fraction"),
    ):
        frac = f[goal]
        verdict = "met" if frac <= GOALS[goal] else "MISSED"
        print(
            f"  {label:<30} {f[f'{key}_run_s']:>8.1f} s = {frac:.1%} of the first "
            f"(goal ≤ {GOALS[goal]:.0%}: {verdict})"
        )
    if any(rc != 0 for rc in f["exit_codes"]):
        print(f"  exit codes {f['exit_codes']} (1: the run reported failures of the data)")


def main(residents: int | None = None) -> dict:
    n = residents or (QUICK_RESIDENTS if quick() else RESIDENTS)
    figures = measure(n)
    figures["goals"] = GOALS
    figures["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    figures["quick"] = quick()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    report(figures)
    return figures


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else None)
