"""Incremental runs: a second run with nothing new, and a run after one new daily delivery.

In a temporary ``STREETHUB_HOME`` (and the simulator's folder beside it, both
removed afterwards) a street is copied from the street cache (:mod:`bench.streets`;
simulated into it the first time, not timed), then three ``streethub run`` children
are measured (CPU seconds, wall clock, peak RSS), each a whole process as an officer
would start it:

1. the first full run (everything delivered is landed, read, gated, scored);
2. the same again with nothing new (goal: at most 1/10 of the first run);
3. a run after one department's new daily delivery: the newest file of a daily
   file-delivered dataset, as the department would re-export it the next day (the
   same export less its last record, under the next name its pattern allows), is
   put in the inbox (goal: at most 1/5 of the first run).

Prints the three times (the child's CPU time, which a shared machine disturbs less,
and wall clock), their peak RSS and the two fractions (goals judged on CPU); writes
``bench/results/incremental.json``.
``STREETHUB_BENCH_QUICK=1``: a smaller street (the smoke test).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench._spawn import run_measured
from catalog.loader import load_catalogue
from catalog.model import FILE_CONNECTORS, UpdateCycle
from catalog.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "incremental.json"
SEED = 7
RESIDENTS = 20_000
QUICK_RESIDENTS = 1_500
GOALS = {"no_op_fraction": 0.10, "daily_fraction": 0.20}
TAIL_LINES = 8  # of a run's summary kept in the results: counts and names, never a value
LINE_KINDS = {"csv", "jsonl"}  # a record a line: the next day's export is the file less one


def quick() -> bool:
    return os.environ.get("STREETHUB_BENCH_QUICK") == "1"


def street_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETHUB_")}
    env["STREETHUB_HOME"] = str(home)
    env["STREETHUB_SIM_DIR"] = str(home.parent / (home.name + ".departments"))
    env["STREETHUB_SIM_AUTO"] = "false"  # the street is simulated once, before the timing
    env["PYTHONPATH"] = str(ROOT)
    return env


def _child(args: list[str], env: dict[str, str]) -> tuple[float, float, int, str, float]:
    """(wall seconds, CPU seconds, exit code, the last lines of its summary, peak RSS in
    MB) of one ``streethub`` command. The CPU time (user + system, from ``os.wait4``) is
    what the run itself cost; the wall time also holds what others on a shared machine
    took. Exit code 1 (the run reported failures of the data) keeps stderr's last lines:
    our errors name files and rows only."""
    exe = str(Path(sys.executable).parent / "streethub")
    run = run_measured([exe, *args], f"streethub {' '.join(args)}", (0, 1), cwd=ROOT, env=env)
    lines = run.out.splitlines() + run.err_tail.splitlines()[-TAIL_LINES:]
    return run.wall, run.cpu, run.code, "\n".join(lines[-TAIL_LINES:]), run.peak_mb


def _newest_landed(settings: Settings, dept: str, dataset: str) -> bytes | None:
    """The delivered bytes of the dataset's newest landed file (its copy is encrypted)."""
    from lakehouse.lake import open_lake
    from pipelines.ingest.landing import open_landed
    from pipelines.ingest.ledger import landed_file

    with open_lake(settings, read_only=True) as con:
        row = con.execute(
            "SELECT landed_path FROM landing.deliveries WHERE dept = ? AND dataset = ? "
            "ORDER BY arrived_at DESC, file_name DESC LIMIT 1",
            [dept, dataset],
        ).fetchone()
    if row is None:
        return None
    with open_landed(settings, landed_file(settings.landing_dir, dept, dataset, row[0])) as fh:
        return fh.read()


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
        newest = _newest_landed(settings, dept.code, ds.code)  # the inbox is emptied by landing
        if newest is None:
            continue
        data = newest.rstrip(b"\r\n")
        shorter = data[: data.rfind(b"\n") + 1]  # the last record withdrawn
        target = folder / ds.delivery.pattern.replace("*", "bench_next_day", 1)
        target.write_bytes(shorter)
        old = time.time() - 3600  # settled: written well before the run
        os.utime(target, (old, old))
        return dept.code, ds.code, target
    raise RuntimeError("no daily file-delivered dataset with a delivery in the inbox")


def measure(residents: int) -> dict:
    from bench.streets import street

    tmp = Path(tempfile.mkdtemp(prefix="streethub-bench-incremental-"))
    try:
        made = street(tmp, residents, SEED)  # from the cache, or simulated into it first
        env = street_env(made.home)
        load = [os.getloadavg()[0]]  # a shared machine: CPU seconds grow with its load too
        runs = {"full": _child(["run"], env), "no_op": _child(["run"], env)}
        dept, dataset, _ = next_day_delivery(Settings(home=made.home))
        runs["daily"] = _child(["run"], env)
        load.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures: dict = {
        "residents": residents,
        "simulate_s": made.simulate_s,  # None: the street came from the cache
        "daily_delivery": f"{dept}.{dataset}",
        "load_average": [round(x, 1) for x in load],  # 1-minute, before and after the runs
    }
    for name, (wall, cpu, code, tail, peak) in runs.items():
        figures[f"{name}_run_s"] = round(wall, 1)
        figures[f"{name}_cpu_s"] = round(cpu, 1)
        figures[f"{name}_peak_rss_mb"] = round(peak, 1)
        figures[f"{name}_exit_code"] = code
        figures[f"{name}_summary_tail"] = tail
    for name in ("no_op", "daily"):
        figures[f"{name}_fraction"] = round(runs[name][0] / runs["full"][0], 3)
        figures[f"{name}_cpu_fraction"] = round(runs[name][1] / runs["full"][1], 3)
    return figures


def report(f: dict) -> None:
    made = (
        "street from the cache" if f["simulate_s"] is None else f"simulated in {f['simulate_s']} s"
    )
    load = f.get("load_average")
    shared = f"; load average {load[0]:.1f} -> {load[1]:.1f}" if load else ""
    print(f"incremental runs ({f['residents']:,} residents; {made}{shared})")
    print(f"  {'':<44}{'wall s':>9}{'CPU s':>9}{'peak MB':>9}")
    print(
        f"  {'first full run':<44}{f['full_run_s']:>9.1f}{f['full_cpu_s']:>9.1f}"
        f"{f['full_peak_rss_mb']:>9.0f}"
    )
    for label, key in (
        ("second run, nothing new", "no_op"),
        (f"after a new daily {f['daily_delivery']}", "daily"),
    ):
        goal = GOALS[f"{key}_fraction"]
        frac, cpu_frac = f[f"{key}_fraction"], f[f"{key}_cpu_fraction"]
        verdict = "met" if cpu_frac <= goal else "MISSED"
        print(
            f"  {label:<44}{f[f'{key}_run_s']:>9.1f}{f[f'{key}_cpu_s']:>9.1f}"
            f"{f[f'{key}_peak_rss_mb']:>9.0f}   CPU {cpu_frac:.1%} of the first, wall {frac:.1%}"
            f" (goal ≤ {goal:.0%} of CPU: {verdict})"
        )
    print(
        f"  a no-op run's peak RSS is the process base: imports, Dagster, the simulated "
        f"systems, the lake (and whatever the run still reads): {f['no_op_peak_rss_mb']:.0f} MB"
    )
    codes = [f[f"{k}_exit_code"] for k in ("full", "no_op", "daily")]
    if any(codes):
        print(f"  exit codes {codes} (1: the run reported failures of the data; see the results)")


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
