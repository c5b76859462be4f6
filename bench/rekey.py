"""A re-key of a street whose tables hold many deliveries, a batch of whole deliveries at a
time against one delivery at a time, side by side.

``streethub keys rekey`` rewrites each table a batch of whole deliveries at a time, about
``pipelines.rekey.BATCH_ROWS`` rows, and each dataset's quarantined records in one UPDATE.
Until 2026-12-07 it took one delivery at a time (a read, a delete, an insert and two
statements on ``quarantine.rows`` each, every one listing the table's files in DuckLake's
catalogue); the batch budget set to one row gives that pass again, so both ways run on the
same code: the baseline is the budget of one row.

The street: :data:`RESIDENTS` residents with :data:`DAYS` days of daily deliveries (the IoT
readings and door events a file a day; :mod:`bench.streets`), through one ``streethub run``.
Each round re-keys a fresh copy of its home to 国密 in a child process (its CPU from
``wait4``), the two ways alternating; the best of :data:`ROUNDS` each. Prints the table
deliveries and rows re-keyed, both ways' CPU and wall seconds and their ratio; writes
``bench/results/rekey.json``. ``STREETHUB_BENCH_QUICK=1``: a smaller street, one round.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench._spawn import run_measured
from bench.incremental import street_env
from bench.streets import copy_home, street
from catalog.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "rekey.json"
RESIDENTS, DAYS, ROUNDS = 1_000, 30, 3
QUICK_RESIDENTS, QUICK_DAYS, QUICK_ROUNDS = 300, 4, 1
WAYS = {"one delivery at a time": "1", "batches of deliveries": "default"}  # batch budgets
CHILD_FLAG = "--rekey-child"


def quick() -> bool:
    return os.environ.get("STREETHUB_BENCH_QUICK") == "1"


def child(home: str, batch_rows: str) -> None:
    """In the measured child: re-key the home to 国密 with the batch budget given."""
    import pipelines.rekey
    from pipelines.rekey import rekey

    if batch_rows != "default":
        pipelines.rekey.BATCH_ROWS = int(batch_rows)
    report = rekey(Settings(home=Path(home)), "gm", "bench:rekey")
    rows = sum(n for counts in report.datasets.values() for n in counts.values())
    print(json.dumps({"datasets": len(report.datasets), "rows": rows}))


def deliveries(home: Path) -> dict[str, int]:
    """The raw and staged tables' rows and deliveries (a table's delivery counted once)."""
    from lakehouse.lake import open_lake, tables_in

    rows = table_deliveries = 0
    with open_lake(Settings(home=home), read_only=True) as con:
        for zone, table in tables_in(con):
            if zone in ("raw", "staged"):
                n, d = con.execute(
                    f'SELECT count(*), count(DISTINCT _delivery_id) FROM {zone}."{table}"'
                ).fetchone()
                rows, table_deliveries = rows + n, table_deliveries + d
    return {"rows": rows, "table_deliveries": table_deliveries}


def measure(home: Path, tmp: Path, rounds: int) -> dict:
    """Both ways on fresh copies of ``home``, alternating; the best of ``rounds`` each."""
    env = street_env(home)  # each child given its copy as its home below
    runs: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    done: dict[str, dict] = {}
    for r in range(rounds):
        for way, budget in WAYS.items():
            copy = copy_home(home, tmp / f"{r}-{budget}" / "home")
            cmd = [sys.executable, "-m", "bench.rekey", CHILD_FLAG, str(copy), budget]
            ran = run_measured(cmd, f"the re-key ({way})", cwd=ROOT, env=env | {
                "STREETHUB_HOME": str(copy)})  # fmt: skip
            runs[way].append((ran.cpu, ran.wall))
            done[way] = json.loads(ran.out.strip().splitlines()[-1])
            shutil.rmtree(copy.parent, ignore_errors=True)
    if done["one delivery at a time"] != done["batches of deliveries"]:
        raise RuntimeError(f"the two ways re-keyed different rows: {done}")
    best = {way: min(times) for way, times in runs.items()}
    base, batched = best["one delivery at a time"], best["batches of deliveries"]
    return {
        **done["batches of deliveries"],
        "cpu_s": {way: round(cpu, 2) for way, (cpu, _) in best.items()},
        "wall_s": {way: round(wall, 2) for way, (_, wall) in best.items()},
        "ratio_cpu": round(base[0] / batched[0], 2),
    }


def main(residents: int | None = None, days: int | None = None) -> dict:
    residents = residents or (QUICK_RESIDENTS if quick() else RESIDENTS)
    days = days or (QUICK_DAYS if quick() else DAYS)
    rounds = QUICK_ROUNDS if quick() else ROUNDS
    with tempfile.TemporaryDirectory(prefix="streethub-bench-rekey-") as folder:
        tmp = Path(folder)
        made = street(tmp / "street", residents, days=days)
        run_measured(
            [str(Path(sys.executable).parent / "streethub"), "run"],
            "the street's run",
            ok=(0, 1),  # 1: failures of the data, reported in its summary
            cwd=ROOT,
            env=street_env(made.home),
        )
        figures = {"residents": residents, "days": days, "rounds": rounds,
                   **deliveries(made.home), **measure(made.home, tmp, rounds),
                   "load_average_1m": round(os.getloadavg()[0], 2)}  # fmt: skip
    print(
        f"a re-key to gm of {residents:,} residents with {days} days of deliveries: "
        f"{figures['table_deliveries']:,} table deliveries, {figures['rows']:,} rows re-keyed "
        f"(CPU s, best of {rounds}):"
    )
    for way in WAYS:
        print(
            f"  {way:<24}{figures['cpu_s'][way]:>8.2f} CPU s{figures['wall_s'][way]:>8.2f} s wall"
        )
    print(f"  batches take {1 / figures['ratio_cpu']:.0%} of one delivery at a time's CPU "
          f"({figures['ratio_cpu']:.2f}x)")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:2] == [CHILD_FLAG]:  # pipelines came first, with the bench package
        child(sys.argv[2], sys.argv[3])
    else:
        main()
