"""The curated zone against the staged zone it reads (issue 12's goals).

In a temporary home, a street (50,000 residents; ``STREETHUB_BENCH_QUICK=1``: 1,500) is
copied from the street cache (:mod:`bench.streets`), then, in this process, measured
side by side (wall clock and this process's CPU seconds, DuckDB's threads included):

1. **staged**: every dataset landed, read and gated (``ingest_dataset`` +
   ``stage_dataset``, the simulated APIs served without faults) — the time the staged
   zone took to load;
2. **curated, full**: the whole curated zone built from it (``build_curated``: the
   master resident index, houses, households, golden records, re-collection, things,
   events), each part timed; goal: less than (1);
3. **curated, incremental**: one department's next daily delivery (the file a department
   re-exports the next day: ``bench.incremental.next_day_delivery``, with
   :data:`NEW_RECORDS` new records) landed and gated, then the curated zone updated for
   what changed; goal: under a tenth of (2).

Prints the figures and the two verdicts; writes ``bench/results/curated.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "curated.json"
SEED = 7
RESIDENTS = 50_000
QUICK_RESIDENTS = 1_500
GOALS = {"full_vs_staged": 1.0, "incremental_vs_full": 0.10}
NEW_RECORDS = 20  # new records in the next day's delivery


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = _clock()
    return {"wall_s": round(wall - start[0], 2), "cpu_s": round(cpu - start[1], 2)}


def with_new_records(path: Path, n: int) -> int:
    """The next day's export gains ``n`` new records (a day's new cases): its last ``n``
    rows again under new numbers (the first column, the record's number, suffixed); the
    records added. Lines of CSV or JSON Lines: the record number is the first value."""
    raw = path.read_bytes()
    encoding = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
    lines = raw.decode(encoding).splitlines()
    body = lines[1:] if path.suffix == ".csv" else lines
    new = []
    for line in body[-n:]:
        if path.suffix == ".csv":
            number, rest = line.split(",", 1)
            new.append(f"{number}N,{rest}")
        else:  # {"<first key>": "<number>", ...}
            head, sep, rest = line.partition('",')
            new.append(f"{head}N{sep}{rest}")
    newline = "\r\n" if b"\r\n" in raw else "\n"
    path.write_text(newline.join([*lines, *new]) + newline, encoding=encoding)
    return len(new)


def measure(residents: int) -> dict:
    from bench.incremental import next_day_delivery
    from bench.streets import street
    from catalog.loader import load_catalogue
    from catalog.settings import Settings
    from catalog.street import get_street
    from departments.connect import connection_env
    from departments.server import running_server
    from lakehouse.lake import hold_lake, open_lake
    from pipelines.connectors.http_api import RetryPolicy
    from pipelines.curated_run import build_curated
    from pipelines.ingest import ingest_dataset
    from pipelines.ingest.ledger import ensure_ledger
    from pipelines.ingest.staged import stage_dataset
    from pipelines.protection import Protection

    policy = RetryPolicy(attempts=12, base_delay_s=0.01, max_delay_s=0.05, timeout_s=30)
    tmp = Path(tempfile.mkdtemp(prefix="streethub-bench-curated-"))
    saved = {k: v for k, v in os.environ.items() if k.startswith("STREETHUB_")}
    try:
        made = street(tmp, residents, SEED)
        os.environ["STREETHUB_HOME"] = str(made.home)
        os.environ["STREETHUB_SIM_DIR"] = str(made.sim_dir)
        settings = Settings(home=made.home, sim_dir=made.sim_dir).ensure_dirs()
        cat = load_catalogue(settings.catalog_dir)
        place = get_street(settings.street_file)
        rows = 0
        with running_server(settings.sim_dir_abs, fault_rate=0.0) as url:
            settings = settings.connected(connection_env(settings.sim_dir_abs, url))
            protection = Protection.from_settings(settings)
            with hold_lake(settings):

                def stage_all(only=None) -> int:
                    n = 0
                    with open_lake(settings) as con:
                        ensure_ledger(con)
                        for dept, ds in cat.datasets():
                            if only is not None and (dept.code, ds.code) != only:
                                continue
                            ingest_dataset(con, settings, dept.code, ds, policy=policy)
                            n += sum(
                                a.rows_out for a in stage_dataset(con, dept.code, ds, protection)
                            )
                    return n

                t = _clock()
                rows = stage_all()
                staged = _since(t)
                with open_lake(settings) as con:
                    t = _clock()
                    full_build = build_curated(con, cat, protection, place, full=True)
                    full = _since(t)
                dept, dataset, path = next_day_delivery(settings)
                added = with_new_records(path, NEW_RECORDS)
                t = _clock()
                stage_all((dept, dataset))
                daily_staged = _since(t)
                with open_lake(settings) as con:
                    t = _clock()
                    inc_build = build_curated(con, cat, protection, place)
                    incremental = _since(t)
    finally:
        for k in [k for k in os.environ if k.startswith("STREETHUB_")]:
            del os.environ[k]
        os.environ.update(saved)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "residents": residents,
        "staged_rows": rows,
        "staged": staged,
        "curated_full": full,
        "curated_full_parts_s": {k: round(v, 2) for k, v in full_build.seconds.items()},
        "curated_full_counts": full_build.counts,
        "daily_delivery": f"{dept}.{dataset}",
        "daily_new_records": added,
        "daily_staged": daily_staged,
        "curated_incremental": incremental,
        "curated_incremental_changed": sorted(f"{d}.{s}" for d, s in inc_build.changed),
        "curated_incremental_parts_s": {k: round(v, 2) for k, v in inc_build.seconds.items()},
        "full_vs_staged_cpu": round(full["cpu_s"] / staged["cpu_s"], 3),
        "incremental_vs_full_cpu": round(incremental["cpu_s"] / full["cpu_s"], 3),
        "goals": GOALS,
    }


def report(f: dict) -> None:
    g = f["goals"]
    print(f"curated zone, {f['residents']:,} residents ({f['staged_rows']:,} staged rows)")
    for key, label in (
        ("staged", "staged zone loaded (land, read, gate)"),
        ("curated_full", "curated zone built in full"),
        (
            "daily_staged",
            f"daily delivery staged ({f['daily_delivery']}, {f['daily_new_records']} new)",
        ),
        ("curated_incremental", "curated zone updated for it"),
    ):
        print(f"  {label}: {f[key]['cpu_s']} CPU s, {f[key]['wall_s']} s wall")
    parts = ", ".join(f"{k} {v} s" for k, v in f["curated_full_parts_s"].items())
    print(f"  full build by part (wall): {parts}")
    ratio, goal = f["full_vs_staged_cpu"], g["full_vs_staged"]
    print(
        f"  index build ÷ staged load: {ratio:.2f} (goal < {goal}: "
        f"{'met' if ratio < goal else 'MISSED'})"
    )
    ratio, goal = f["incremental_vs_full_cpu"], g["incremental_vs_full"]
    print(
        f"  incremental ÷ full build: {ratio:.1%} (goal < {goal:.0%}: "
        f"{'met' if ratio < goal else 'MISSED'})"
    )


def main(residents: int | None = None) -> dict:
    quick = os.environ.get("STREETHUB_BENCH_QUICK") == "1"
    n = residents or (QUICK_RESIDENTS if quick else RESIDENTS)
    figures = measure(n)
    report(figures)
    if residents is None:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return figures


if __name__ == "__main__":
    main()
