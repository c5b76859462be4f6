"""The full ingest against its floor, and the growth curve of a full run.

Run through ``python -m bench ingest`` (which calls :func:`main`) or
``python bench/ingest.py``. Everything runs in child processes on a temporary
``STREETHUB_HOME`` (and the simulator's folder beside it), removed afterwards:

(a) **Ingest against the floor.** One street of ``FLOOR_RESIDENTS`` residents is
    simulated (``streethub simulate``), then one child measures, in the same run:

    - the *floor*: DuckDB alone reading every delivered file (CSV, GBK CSV transcoded
      to UTF-8 first, Excel, JSON, JSON Lines, Parquet) into Parquet, text as text
      (``COPY (SELECT * FROM read_…) TO … (FORMAT parquet)``), file by file;
    - the *ingest*: landing → raw → staged for every dataset of every department,
      with the production function a dataset step calls (``pipelines.ingest.ingest_and_stage``:
      each new delivery landed, read into raw and gated in one transaction), the lake
      opened once, every dataset's
      raw and staged tables created first in one commit (as a run's first dataset step
      does: ``pipelines.ingest.tables``), the departments' systems served without
      faults. Time is kept per dataset and summed for the file-delivered datasets (what
      the floor reads) and for all, the tables' commit counted whole in both.

    Goal: the file-delivered ingest ≤ 3 × the floor.

(b) **Growth curve.** For each size in ``SIZES`` (``QUICK_SIZES`` when
    ``STREETHUB_BENCH_QUICK=1``): a street is simulated (timed apart), then
    ``streethub run`` — the whole main job through Dagster — runs in a child whose
    wall time and peak RSS (its own ``ru_maxrss``, from ``os.wait4``; the child
    launched apart: :mod:`bench._spawn`) are kept, with the rows delivered. The run
    meets the street as a real one (:func:`as_a_real_street`: the departments' systems
    served apart, no simulator folder, so no truth evaluation); the fixed-cost street is
    run once more as ``make run`` meets it, for what the
    simulator adds. Fitted: the time and memory exponents (least squares on
    log–log), and a line ``time = fixed + rows / rate`` (the fixed overhead) through
    these runs and the fixed-cost run's small street (``bench._growth.exponents``).
    Goals: fixed overhead < 20 s, time exponent ≤ 1.1, peak RSS < 1 GB at the
    largest size. Beside the fixed-cost run (the full bench), the stack's own floor
    (``bench._stack_floor``): what the libraries a run must use cost in as many Dagster
    runs and steps with no work of ours, so the fixed overhead reads as theirs plus ours.

Writes ``bench/results/ingest.json`` and ``bench/results/ingest_growth.svg`` (a chart
drawn by hand, from before matplotlib was a dependency) and prints tables.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench._costs import WAITING, can_sample, cost_shares, sampled_command, share_lines
from bench._growth import GOALS, chart, exponents, fit_lines
from bench._spawn import Child, run_measured
from bench._stack_floor import floor_line
from bench._stack_floor import measure as stack_floor
from lakehouse import statements as statement_counts
from lakehouse.sqltext import sql_literal

FLOOR_RESIDENTS = 20_000  # the default street (Settings.sim_residents)
SIZES = (10_000, 50_000, 200_000)
FIXED_RESIDENTS = 1_000  # a street whose run is nearly all fixed cost
QUICK_SIZES = (1_000, 2_000)
QUICK_FLOOR_RESIDENTS = 1_000
SEED = 7
RESULTS = Path(__file__).parent / "results" / "ingest.json"
CHART = Path(__file__).parent / "results" / "ingest_growth.svg"
INGEST_FLAG = "--ingest-child"
COUNT_FLAG = "--count-child"
SCORECARD_FLAG = "--scorecard-child"
BASE_FLAG = "--base-child"
ROOT = Path(__file__).resolve().parent.parent
TRUTH_HEADING = "against the simulator's ground truth"  # the run's truth table's title


def quick() -> bool:
    return os.environ.get("STREETHUB_BENCH_QUICK") == "1"


def _env(home: Path) -> dict[str, str]:
    """The environment of a child: this home, its own simulator folder, nothing inherited
    that would point it elsewhere but the catalogue measured (``STREETHUB_CATALOG_DIR``: a
    street's own catalogue; the shipped one without it)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STREETHUB_") or k == "STREETHUB_CATALOG_DIR"
    }
    env["STREETHUB_HOME"] = str(home)
    env["STREETHUB_SIM_DIR"] = str(home.parent / (home.name + ".departments"))
    env["PYTHONPATH"] = str(ROOT)
    return env


@contextlib.contextmanager
def as_a_real_street(home: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``env`` for a run that meets the street as a real one: its departments' systems
    served by this process in one of their own (:func:`departments.connect.server_process`,
    with the run's default faults), the run given only their connection settings (database
    URLs, the API's URL and token) and no simulator folder (``STREETHUB_SIM_DIR`` names
    one that does not exist). So a run's CPU is the hub's alone: the served APIs' process
    is no child of the run, and no truth evaluation runs (a real street has no truth)."""
    from departments.connect import connection_env, server_process

    sim_dir = Path(env["STREETHUB_SIM_DIR"])
    with server_process(sim_dir) as url:
        yield (
            env
            | connection_env(sim_dir, url)
            | {
                "STREETHUB_SIM_DIR": str(home.parent / "no-simulator"),
                "STREETHUB_SIM_AUTO": "false",
            }
        )


def _streethub() -> str:
    return str(Path(sys.executable).parent / "streethub")


def _child(cmd: list[str], env: dict[str, str], what: str, ok: tuple[int, ...] = (0,)) -> Child:
    """Run ``cmd`` in the checkout and measure it (:func:`bench._spawn.run_measured`: its
    CPU time and peak from ``os.wait4``, none of this process's memory in its peak).
    `streethub run` passes ``ok=(0, 1)``: 1 is failures of the data."""
    return run_measured(cmd, what, ok, cwd=ROOT, env=env)


def simulate(dest: Path, residents: int) -> tuple[Path, float | None]:
    """A fresh street of ``residents`` in ``dest`` (``dest/home`` and its simulator folder),
    copied from the street cache (:mod:`bench.streets`) or simulated into it first:
    (the home, the simulation's seconds, None when it came from the cache)."""
    from bench.streets import street

    made = street(dest, residents, SEED)
    return made.home, made.simulate_s


# ---------------------------------------------------------------------------- (a) the floor


def _floor_source(
    con, path: Path, kind: str, encoding: str | None, tmp: Path, delimiter: str | None = None
) -> str | None:
    """The DuckDB table function reading one delivered file, all as delivered (None: a kind
    DuckDB does not read here)."""
    p = sql_literal(str(path))
    if kind == "csv":
        enc = (encoding or "utf-8").lower().replace("_", "-")
        if enc not in ("utf-8", "utf8", "utf-8-sig"):
            # DuckDB's encodings extension corrupts characters across its read buffer
            # (STACK.md): transcode first, as a careful floor would; the time counts
            utf8 = tmp / (path.name + ".utf8.csv")
            with (
                open(path, encoding=enc, newline="") as src,
                open(utf8, "w", encoding="utf-8", newline="") as dst,
            ):
                shutil.copyfileobj(src, dst, 4 * 2**20)
            p = sql_literal(str(utf8))
        # the dialect the catalogue knows, as a careful floor would give it: DuckDB's sniffer
        # gave up on some deliveries of dirty rows (2026-12-04: two of the 20k street's
        # health CSVs, left out of the floor, which then read less than the hub)
        dialect = f"delim={sql_literal(delimiter or ',')}, quote='\"'"
        return (
            f"read_csv({p}, all_varchar=true, header=true, null_padding=true, "
            f"ignore_errors=true, strict_mode=false, {dialect})"
        )
    if kind == "excel":
        return f"read_xlsx({p}, header=false, all_varchar=true)"
    if kind == "json":
        return f"read_json({p}, format='auto', ignore_errors=true)"
    if kind == "jsonl":
        return f"read_json({p}, format='newline_delimited', ignore_errors=true)"
    if kind == "parquet":
        return f"read_parquet({p})"
    return None


FLOOR_ROUNDS = 3  # the floor's CPU moved 0.38-1.03 s from one bench to the next (one round)


def floor(settings, cat, out: Path, rounds: int = FLOOR_ROUNDS) -> dict:
    """DuckDB alone reading every delivered file in the inbox into Parquet, ``rounds`` times
    over (each into a folder of its own): the round of the median CPU, with every round's
    CPU and wall seconds (``rounds_cpu_s``, ``rounds_s``)."""
    import duckdb

    from lakehouse.extensions import load_extensions
    from pipelines.ingest.inbox import matches

    con = duckdb.connect(config={"threads": os.cpu_count() or 2})
    load_extensions(con, settings, "excel")
    files = []
    for dept, ds in cat.datasets():
        folder = settings.inbox_dir / dept.code
        if not ds.delivery.pattern or not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and matches(ds.delivery.pattern, path.name):
                files.append((dept.code, ds, path))
    measured = []
    for r in range(rounds):
        folder = out / f"round{r}"
        folder.mkdir()
        measured.append(_floor_round(con, files, folder))
    con.close()
    median = sorted(measured, key=lambda m: m["cpu_s"])[len(measured) // 2]
    return {
        **median,
        "rounds_cpu_s": [m["cpu_s"] for m in measured],
        "rounds_s": [m["seconds"] for m in measured],
    }


def _floor_round(con, files: list, out: Path) -> dict:
    """One round of :func:`floor`: ``files`` (dept, dataset, path) read into ``out``."""
    import duckdb

    rows = nbytes = 0
    failed: list[str] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for i, (dept, ds, path) in enumerate(files):
        delivery = ds.delivery
        source = _floor_source(
            con, path, delivery.kind.value, delivery.encoding, out, delivery.delimiter
        )
        if source is None:
            continue
        target = sql_literal(str(out / f"{i}.parquet"))
        try:
            n = con.execute(f"COPY (SELECT * FROM {source}) TO {target} (FORMAT parquet)")
            rows += int(n.fetchone()[0])
            nbytes += path.stat().st_size
        except duckdb.Error:
            failed.append(f"{dept}.{ds.code}")  # a delivery too broken for DuckDB alone
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started  # DuckDB's worker threads included
    return {
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu_s, 2),
        "files": len(files),
        "rows": rows,
        "mb": round(nbytes / 2**20, 1),
        "files_duckdb_could_not_read": failed,
    }


def ingest(settings, cat) -> dict:
    """Landing → raw → staged for every dataset, the lake opened once; seconds per dataset."""
    from departments.connect import simulated_systems
    from lakehouse.lake import open_lake
    from pipelines.connectors.http_api import RetryPolicy
    from pipelines.ingest import ingest_and_stage
    from pipelines.ingest.ledger import ensure_ledger
    from pipelines.ingest.tables import ensure_dataset_tables
    from pipelines.protection import Protection

    policy = RetryPolicy(attempts=12, base_delay_s=0.01, max_delay_s=0.05, timeout_s=30)
    protection = Protection.from_settings(settings)
    per: dict[str, dict] = {}
    with simulated_systems(settings.sim_dir_abs, fault_rate=0.0, slow_rate=0.0) as env:
        settings = settings.connected(env)
        started = time.perf_counter()
        with open_lake(settings) as con:
            opened = time.perf_counter() - started
            ensure_ledger(con)
            # as a run's first dataset step does: every dataset's tables in one commit
            t0, c0 = time.perf_counter(), time.thread_time()
            ensure_dataset_tables(con, [(dept.code, ds) for dept, ds in cat.datasets()])
            tables = {"seconds": time.perf_counter() - t0, "cpu_s": time.thread_time() - c0}
            for dept, ds in cat.datasets():
                # CPU of this thread: the lake's DuckDB runs on it (one thread); the simulated
                # departments' servers (other threads) are not the hub's work
                # as a run's dataset step: each new delivery landed, read and gated in one
                # lake transaction (pipelines.ingest.staged.stage_with_landing)
                t0, c0 = time.perf_counter(), time.thread_time()
                _, accounts, staged = ingest_and_stage(
                    con, settings, dept.code, ds, protection=protection, policy=policy,
                    wait_for_settle=False,
                )  # fmt: skip
                t1, c1 = time.perf_counter(), time.thread_time()
                per[f"{dept.code}.{ds.code}"] = {
                    "kind": ds.delivery.kind.value,
                    "file": bool(ds.delivery.pattern),
                    "rows": sum(a.rows_read for a in accounts),
                    "staged": sum(s.rows_out for s in staged),
                    "seconds": round(t1 - t0, 3),
                    "cpu_s": round(c1 - c0, 3),
                }
        total = time.perf_counter() - started

    def part(file: bool | None) -> dict:
        """The datasets' times; the tables made before them counted whole in every part
        (it makes the pulled datasets' tables too: the file part's figure is high by that)."""
        sel = [v for v in per.values() if file is None or v["file"] is file]
        return {
            "seconds": round(tables["seconds"] + sum(v["seconds"] for v in sel), 2),
            "cpu_s": round(tables["cpu_s"] + sum(v["cpu_s"] for v in sel), 2),
            "rows": sum(v["rows"] for v in sel),
            "datasets": len(sel),
        }

    return {
        "seconds": round(total, 2),
        "lake_open_s": round(opened, 3),
        "tables_s": round(tables["seconds"], 3),
        "tables_cpu_s": round(tables["cpu_s"], 3),
        "files": part(True),
        "pulled": part(False),
        "all": part(None),
        "datasets": per,
    }


# where the ingest's time goes (``--profile``): disjoint buckets of a cProfile run, by
# (file ending, function); "lake statements" is DuckDB's own time in execute/register
# (DuckLake metadata reads and commits, inserts), the rest is the Python around them
BUCKETS = {
    "encryption at rest (encrypt raw, decrypt + re-encrypt staged)": (
        ("masking/crypto.py", "encrypt_series"),
        ("masking/crypto.py", "decrypt_series"),
    ),
    "reading deliveries (connectors)": tuple(
        (f"pipelines/connectors/{m}.py", f"read_{m}")
        for m in ("csv", "excel", "json", "jsonl", "parquet")
    ),
    "pulling (database, HTTP API)": (
        ("pipelines/connectors/sql_db.py", "pull_sql"),
        ("pipelines/connectors/http_api.py", "pull_http"),
    ),
    "standardising (quality.standardise)": (("quality/standardise.py", "standardise"),),
    "row gate but standardising (checks, duplicates, split)": (("quality/gate.py", "gate"),),
    "keys and row digests (HMAC)": (
        ("pipelines/protection.py", "key_pid"),
        ("pipelines/protection.py", "row_digest"),
    ),
}
LAKE_CALLS = ("execute", "register", "unregister")
INSIDE = {  # a bucket whose time is inside another's: taken out of that one
    "standardising (quality.standardise)": "row gate but standardising (checks, duplicates, split)",
}


def profile_buckets(stats) -> dict[str, float]:
    """Seconds per bucket from ``pstats.Stats`` (cumulative time; lake: DuckDB's own)."""
    raw = stats.stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = max(ct for _, _, _, ct, _ in raw.values())
    out: dict[str, float] = {}
    for bucket, names in BUCKETS.items():
        out[bucket] = sum(
            ct
            for (file, _, name), (_, _, _, ct, _) in raw.items()
            if any(file.endswith(f) and name == n for f, n in names)
        )
    lake = sum(
        tt
        for (file, _, name), (_, _, tt, _, _) in raw.items()
        if file == "~" and any(f"_duckdb.{c}" in name or f"'{c}'" in name for c in LAKE_CALLS)
    )
    for inner, outer in INSIDE.items():
        out[outer] -= out[inner]
    out["lake statements (DuckDB/DuckLake: metadata, commits, inserts)"] = lake
    out["other (Python around them, imports)"] = total - sum(out.values())
    out["total"] = total
    return {k: round(v, 2) for k, v in out.items()}


def ingest_child(home: Path, profile: bool = False) -> None:
    """In the child: the floor, then the ingest, on the street simulated into ``home``
    (``profile``: under cProfile, with the time per bucket; slower than unprofiled)."""
    from catalog.loader import load_catalogue
    from catalog.settings import Settings

    settings = Settings(home=home).ensure_dirs()
    cat = load_catalogue(settings.catalog_dir)
    with tempfile.TemporaryDirectory(prefix="bench_floor_") as out:
        measured = {"floor": floor(settings, cat, Path(out))}
    if not profile:
        measured["ingest"] = ingest(settings, cat)
        print(json.dumps(measured))
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    measured["ingest"] = profiler.runcall(ingest, settings, cat)
    measured["profile"] = profile_buckets(pstats.Stats(profiler))
    print(json.dumps(measured))


def base_child(home: Path) -> None:
    """In the child: a run's resident memory before any data, step by step — the
    interpreter, the libraries, our entry point and main job (Dagster with it), the Dagster
    definitions, the row gate, the simulated systems served, the lake attached and listed,
    Great Expectations (imported when the scorecard runs its suites)."""
    steps: list[tuple[str, int]] = []

    def mark(what: str) -> None:
        with open("/proc/self/status", encoding="ascii") as status:
            kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        steps.append((what, kb // 1024))

    mark("interpreter")
    for modules, what in (
        (("polars", "duckdb"), "polars, duckdb"),
        (("pipelines.cli",), "the streethub entry point"),
        (("pipelines.main_job",), "the main job (Dagster and our pipelines)"),
        (("pipelines.definitions",), "the Dagster definitions"),
        (("pipelines.ingest.staged", "quality.gate"), "the row gate (the first staged step)"),
    ):
        for module in modules:
            importlib.import_module(module)
        mark(what)
    from catalog.settings import Settings
    from departments.connect import simulated_systems
    from lakehouse.lake import open_lake, tables_in

    settings = Settings(home=home)
    with simulated_systems(settings.sim_dir_abs, fault_rate=0.0):
        mark("the simulated systems served")
        with open_lake(settings, read_only=True) as con:
            mark("the lake attached")
            tables_in(con, "staged")
            mark("the lake's tables listed")
    importlib.import_module("great_expectations")
    mark("Great Expectations")
    print(json.dumps({"steps": steps}))


def floor_and_ingest(tmp: Path, residents: int) -> dict:
    home, simulated = simulate(tmp / "floor", residents)
    cmd = [sys.executable, "-m", "bench.ingest", INGEST_FLAG, str(home)]
    load_before = os.getloadavg()[0]
    child = _child(cmd, _env(home), "the floor and ingest child")
    measured = json.loads(child.out.strip().splitlines()[-1])
    peak = child.peak_mb
    measured.update(
        residents=residents,
        simulate_s=simulated,
        peak_rss_mb=round(peak, 1),
        load_avg=[round(load_before, 1), round(os.getloadavg()[0], 1)],
    )
    measured["ratio_files"] = round(
        measured["ingest"]["files"]["seconds"] / max(measured["floor"]["seconds"], 1e-9), 1
    )
    measured["ratio_all"] = round(
        measured["ingest"]["all"]["seconds"] / max(measured["floor"]["seconds"], 1e-9), 1
    )
    # the same in CPU seconds: on a shared machine wall time is mostly waiting for a core
    measured["ratio_files_cpu"] = round(
        measured["ingest"]["files"]["cpu_s"] / max(measured["floor"]["cpu_s"], 1e-9), 1
    )
    base = _child([sys.executable, "-m", "bench.ingest", BASE_FLAG, str(home)], _env(home), "base")
    measured["base_rss"] = json.loads(base.out.strip().splitlines()[-1])["steps"]
    shutil.rmtree(tmp / "floor", ignore_errors=True)
    # where the time goes: the same street again (the first ingest emptied the inbox),
    # ingested under cProfile (slower: its seconds are shares, not the measurement)
    home, _ = simulate(tmp / "profile", residents)
    child = _child([*cmd[:-1], str(home), "--profile"], _env(home), "the profiled ingest")
    measured["profile"] = json.loads(child.out.strip().splitlines()[-1])["profile"]
    shutil.rmtree(tmp / "profile", ignore_errors=True)
    # and once more sampled by py-spy, native frames: the ingest's time by kind of cost
    # (DuckLake's catalogue told from DuckDB's work on the data), the floor left out
    why = can_sample()
    if why:
        measured["sampled_profile"] = {"unavailable": why}
        return measured
    home, _ = simulate(tmp / "sampled", residents)
    raw = tmp / "sampled" / "ingest.raw"
    _child(sampled_command([*cmd[:-1], str(home)], raw), _env(home), "the sampled ingest")
    measured["sampled_profile"] = cost_shares(raw, within="ingest (bench/ingest.py:")
    shutil.rmtree(tmp / "sampled", ignore_errors=True)
    return measured


# --------------------------------------------------------------------- (b) the growth curve


def count_child(home: Path) -> None:
    """In the child: rows delivered and staged, as the ledger counts them."""
    from catalog.settings import Settings
    from lakehouse.lake import open_lake

    with open_lake(Settings(home=home), read_only=True) as con:
        read = con.execute("SELECT coalesce(sum(rows_read), 0) FROM landing.delivery_accounts")
        rows = int(read.fetchone()[0])
        out = con.execute(
            "SELECT coalesce(sum(rows_out), 0) FROM landing.stage_accounts WHERE stage='staged'"
        )
        staged = int(out.fetchone()[0])
    print(json.dumps({"rows": rows, "staged": staged, **dagster_steps(home)}))


def dagster_steps(home: Path) -> dict:
    """Dagster runs and steps started in the home's instance (a fresh home: one main job),
    and where the runs' wall time went, from the instance's own events: ``runs_s``, the
    runs' wall seconds (start to end), ``steps_s``, their steps' (each step's start to its
    success or failure), and ``step_groups``, per group of steps (the step key's first part:
    ``ingest``, ``curated``, ``marts``, ``need_model``) how many and their seconds; the
    slowest steps in ``slowest``. A run's wall less ``runs_s`` is what it did outside Dagster
    (imports, the summary, the truth evaluation, custody); ``runs_s`` less ``steps_s``,
    Dagster between steps."""
    from dagster import DagsterEventType, DagsterInstance

    from catalog.settings import Settings

    folder = Settings(home=home).dagster_home
    if not (folder / "dagster.yaml").exists():
        return {"dagster_runs": 0, "dagster_steps": 0}
    os.environ["DAGSTER_HOME"] = str(folder)  # (a child of its own) the run's instance storage
    instance = DagsterInstance.get()  # reads DAGSTER_HOME, as the main job's does
    runs = instance.get_runs()
    start, ends = DagsterEventType.STEP_START, (
        DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE,
    )  # fmt: skip
    steps: dict[str, float] = {}
    started = 0
    runs_s = 0.0
    for run in runs:
        begun: dict[str, float] = {}
        for event in instance.all_logs(run.run_id, of_type={start, *ends}):
            key, kind = event.step_key, event.dagster_event.event_type  # type: ignore[union-attr]
            if kind == start:
                begun[key], started = event.timestamp, started + 1
            elif key in begun:
                steps[key] = steps.get(key, 0.0) + event.timestamp - begun.pop(key)
        stats = instance.get_run_stats(run.run_id)
        if stats.start_time and stats.end_time:
            runs_s += stats.end_time - stats.start_time
    groups: dict[str, list[float]] = {}
    for key, seconds in steps.items():
        group = groups.setdefault(key.split("__", 1)[0], [0, 0.0])
        group[0] += 1
        group[1] += seconds
    slowest = sorted(steps.items(), key=lambda kv: -kv[1])[:8]
    return {
        "dagster_runs": len(runs),
        "dagster_steps": started,
        "runs_s": round(runs_s, 2),
        "steps_s": round(sum(steps.values()), 2),
        "step_groups": {g: [n, round(s, 2)] for g, (n, s) in sorted(groups.items())},
        "slowest": [[k, round(v, 2)] for k, v in slowest],
    }


def step_lines(run: dict) -> list[str]:
    """A run's wall time by where it went (:func:`dagster_steps`' figures), as report lines."""
    if "steps_s" not in run:
        return []
    outside = run["run_s"] - run["runs_s"]
    between = run["runs_s"] - run["steps_s"]
    groups = ", ".join(
        f"{g} {n} step{'s' if n != 1 else ''} {s:.1f} s" for g, (n, s) in run["step_groups"].items()
    )
    return [
        f"  its {run['run_s']} s wall, from Dagster's events: {run['steps_s']:.1f} s in steps "
        f"({groups}), {between:.1f} s in runs between steps, {outside:.1f} s outside Dagster's "
        "runs (imports, the summary, the truth evaluation, custody)",
        "  slowest steps: " + ", ".join(f"{k} {s:.1f} s" for k, s in run["slowest"]),
    ]


def scorecard_child(home: Path) -> None:
    """In the child: the quality scorecard's inputs read and its figures computed, as the
    scorecard asset does (nothing written), to tell its memory from the run's."""
    import datetime as dt

    from catalog.loader import load_catalogue
    from catalog.settings import Settings
    from lakehouse.lake import open_lake
    from pipelines.protection import Protection
    from pipelines.quality_run import compute_quality, load_inputs

    settings = Settings(home=home)
    cat = load_catalogue(settings.catalog_dir)
    started = time.perf_counter()
    with open_lake(settings, read_only=True) as con:
        inputs = load_inputs(con, cat, Protection.from_settings(settings), incremental=False)
        compute_quality(settings, cat, inputs, dt.datetime.now(dt.UTC))
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1)}))


def _scorecard(home: Path, env: dict[str, str]) -> dict:
    """Peak RSS of the scorecard alone (its module is another owner's: a changed
    signature is reported, not fatal)."""
    cmd = [sys.executable, "-m", "bench.ingest", SCORECARD_FLAG, str(home)]
    try:
        child = _child(cmd, env, "the scorecard child")
    except RuntimeError as exc:
        return {"error": str(exc).splitlines()[-1][:200]}
    figures = json.loads(child.out.strip().splitlines()[-1])
    return {**figures, "cpu_s": round(child.cpu, 1), "peak_rss_mb": round(child.peak_mb, 1)}


_PEAK_PHASE = re.compile(r"memory: peak [\d,]+ MB resident, reached in (.+?) \(")


_PHASE_TIMES = re.compile(r"time: [\d,.]+ CPU s, .*? \(each phase's CPU / wall s: (.+?)\)")
_PHASE_TIME = re.compile(r"(.+?) (\d[\d,]*\.\d) / (\d[\d,]*\.\d)(?:, |$)")


def phase_cpu(out: str) -> dict[str, float]:
    """Each phase's CPU seconds, as the run's summary says them (``HighWater.timing``: the
    line may be wrapped over several); empty where it says none."""
    found = _PHASE_TIMES.search(" ".join(out.split()))
    if not found:
        return {}
    return {
        phase: float(cpu.replace(",", "")) for phase, cpu, _ in _PHASE_TIME.findall(found.group(1))
    }


def peak_phase(out: str) -> str | None:
    """The phase of the run in which it reached its peak, as its summary says (the line's
    words may be wrapped over several lines); None where it says none."""
    found = _PEAK_PHASE.search(" ".join(out.split()))
    return found.group(1) if found else None


def full_run(
    tmp: Path, residents: int, *, scorecard_alone: bool = True, simulator: bool = False
) -> dict:
    """A street of ``residents`` (from the cache), then one whole ``streethub run`` in a
    child, as a real street's (:func:`as_a_real_street`): its figures (``scorecard_alone``:
    and the scorecard's peak alone, after). ``simulator``: the run as ``make run`` makes
    it instead, the simulator's folder its own (it serves the APIs from a child and
    evaluates the deliveries against the simulator's truth)."""
    home, simulated = simulate(tmp / f"run{residents}", residents)
    env = _env(home)
    load_before = os.getloadavg()[0]
    meeting = contextlib.nullcontext(env) if simulator else as_a_real_street(home, env)
    with meeting as run_env:
        run = _child([_streethub(), "run"], run_env, f"streethub run ({residents:,})", ok=(0, 1))
    load_after = os.getloadavg()[0]
    counted = _child([sys.executable, "-m", "bench.ingest", COUNT_FLAG, str(home)], env, "counting")
    scorecard = _scorecard(home, env) if scorecard_alone else {"error": "not asked"}
    shutil.rmtree(home.parent, ignore_errors=True)
    return {
        "residents": residents,
        "simulate_s": simulated,  # None: the street came from the cache
        "run_s": round(run.wall, 1),
        "cpu_s": round(run.cpu, 1),
        "peak_rss_mb": round(run.peak_mb, 1),
        "peak_phase": peak_phase(run.out),  # where the run's summary says the peak was
        "phase_cpu_s": phase_cpu(run.out),  # and where its CPU went
        "exit_code": run.code,  # 1: the run reported failures of the data (see its summary)
        # whether it evaluated deliveries against the simulator's truth (as `make run` does)
        "truth_evaluated": TRUTH_HEADING in " ".join(run.out.split()),
        # the machine is shared: the 1-minute load average before and after the run
        "load_avg": [round(load_before, 1), round(load_after, 1)],
        "scorecard_alone": scorecard,
        **json.loads(counted.out.strip().splitlines()[-1]),
    }


def profiled_run(tmp: Path, residents: int) -> tuple[dict, dict[str, int] | None]:
    """``streethub run`` on a fresh copy of the street sampled by py-spy with native frames
    (``bench._costs``): seconds of samples per kind of cost (the sampled run is slower than
    an unsampled one: shares, not the measurement), or ``{"unavailable": why}`` where py-spy
    cannot sample; and the statements it ran on the lake by kind
    (``lakehouse.statements``: counted here, not in the measured runs, whose CPU and peak
    the query log would add to)."""
    home, _ = simulate(tmp / f"profiled{residents}", residents)
    out = home.parent / "run.raw"
    counts = home.parent / "lake_statements.json"
    env = _env(home) | {statement_counts.ENV: str(counts)}
    why = can_sample()
    cmd = [_streethub(), "run"]
    with as_a_real_street(home, env) as run_env:
        _child(
            cmd if why else sampled_command(cmd, out),
            run_env,
            f"the profiled run ({residents:,})",
            ok=(0, 1),
        )
    shares = {"unavailable": why} if why else cost_shares(out)
    statements = statement_counts.read(counts)
    shutil.rmtree(home.parent, ignore_errors=True)
    return shares, statements


def _print_sampled(title: str, shares: dict | None) -> None:
    """A sampled profile's shares (``bench._costs``), or why there is none."""
    if not shares:
        return
    if shares.get("unavailable"):
        print(f"  {title}: not sampled ({shares['unavailable']})")
        return
    waited = shares.get(WAITING, 0)
    print(
        f"  {title} (py-spy, native frames, {shares['total']} s of samples; threads "
        f"waiting {waited} s, not counted):"
    )
    for line in share_lines(shares):
        print(f"    {line}")


def report(figures: dict) -> None:
    f = figures["floor_vs_ingest"]
    fl, ing = f["floor"], f["ingest"]
    print(
        f"ingest against its floor ({f['residents']:,} residents; "
        + (
            "street from the cache)"
            if f["simulate_s"] is None
            else f"simulated in {f['simulate_s']} s)"
        )
    )
    print(
        f"  floor: DuckDB alone, {fl['files']} delivered files ({fl['mb']} MB, {fl['rows']:,} "
        f"rows) → Parquet: {fl['seconds']} s, {fl['cpu_s']} CPU s"
        + (f" (the median of {len(fl['rounds_cpu_s'])} rounds' CPU: "
           f"{' / '.join(map(str, fl['rounds_cpu_s']))} s)" if fl.get("rounds_cpu_s") else "")
        + (f"  (DuckDB could not read: {', '.join(fl['files_duckdb_could_not_read'])})"
           if fl["files_duckdb_could_not_read"] else "")
    )  # fmt: skip
    for name, part in (("file-delivered", ing["files"]), ("pulled (DB, API)", ing["pulled"])):
        print(
            f"  ingest {name}: {part['datasets']} datasets, {part['rows']:,} rows: "
            f"{part['seconds']} s (landed, read and gated: one transaction a delivery)"
        )
    print(
        f"  ingest, every department: {ing['seconds']} s (lake opened once: "
        f"{ing['lake_open_s']} s; tables made first: {ing.get('tables_s', '-')} s); peak RSS {f['peak_rss_mb']} MB; machine load "
        f"{f['load_avg'][0]} → {f['load_avg'][1]} on {figures['cpus']} cores"
    )
    goal = GOALS["floor_ratio"]
    mark = "met" if f["ratio_files"] <= goal else "MISSED"
    print(
        f"  file-delivered ingest = {f['ratio_files']}× the floor (goal ≤ {goal}×: {mark}); "
        f"every department = {f['ratio_all']}×"
    )
    if "ratio_files_cpu" in f:
        print(
            f"  in CPU seconds: file-delivered ingest {ing['files']['cpu_s']} s against the "
            f"floor's {fl['cpu_s']} s = {f['ratio_files_cpu']}× (load-independent)"
        )
    prof = f["profile"]
    print(f"  where the ingest's time goes (cProfile, {prof['total']} s profiled):")
    for line in share_lines(prof):
        print(f"    {line}")
    _print_sampled("the ingest's time by kind of cost", f.get("sampled_profile"))
    if f.get("base_rss"):
        print("  a run's memory before any data (RSS after each step, MB):")
        prev = 0
        for what, mb in f["base_rss"]:
            print(f"    {mb:>6} (+{mb - prev:>4})  {what}")
            prev = mb
    slow = sorted(ing["datasets"].items(), key=lambda kv: -kv[1]["seconds"])
    print("  slowest datasets: " + ", ".join(
        f"{k} {v['seconds']:.1f} s" for k, v in slow[:5]))  # fmt: skip
    print()
    fixed = figures.get("fixed_cost")
    if fixed:
        steps = fixed.get("dagster_steps") or 0
        per_step = (
            f"; {fixed['cpu_s'] / steps:.2f} CPU s a step, all work included" if steps else ""
        )
        print(
            f"fixed cost: `streethub run` on a street of {fixed['residents']:,} residents "
            f"({fixed['rows']:,} rows): {fixed['cpu_s']} CPU s, {fixed['run_s']} s wall, peak RSS "
            f"{fixed['peak_rss_mb']} MB; {fixed.get('dagster_runs', 0)} Dagster run(s), "
            f"{steps} steps{per_step}"
        )
        for line in step_lines(fixed):
            print(line)
        if sim := fixed.get("with_simulator"):  # measured since 2026-12-06 noon
            print(
                f"  the same street as `make run` meets it (the simulator's APIs served from "
                f"the run's child, its deliveries evaluated against its truth): {sim['cpu_s']} "
                f"CPU s, {sim['cpu_s'] - fixed['cpu_s']:+.1f} s; the runs here meet the street "
                "as a real one (`as_a_real_street`)"
            )
        if fixed.get("stack_floor"):
            floor = fixed["stack_floor"]
            print(
                f"  {floor_line(floor)}; beyond it, ours: "
                f"{fixed['cpu_s'] - floor['cpu_s']:.1f} CPU s"
            )
        counted = fixed.get("lake_statements")
        if counted:
            print(
                f"  statements on the lake (the profiled run): {counted['statements']:,}: "
                f"{counted['ours']:,} of ours, {counted['catalogue']:,} on DuckLake's catalogue, "
                f"{counted['transaction_control']:,} BEGIN/COMMIT/ROLLBACK "
                "(`python -m bench lake_statements` prices them)"
            )
            if "catalogue_ms" in counted:  # counted since 2026-12-03
                sampled_run = "sampled_profile" in fixed  # timed under py-spy since 2026-12-05
                print(
                    f"  DuckLake's own catalogue queries: {counted['catalogue_queries']:,}, "
                    f"{counted['catalogue_ms'] / 1000:.1f} s as DuckLake times them (whole ms "
                    "a query: low by up to one each), DuckDB's planning around them not included"
                    + ("; in the sampled run, which the sampling slows" if sampled_run else "")
                )
                if kinds := statement_counts.catalogue_by_kind(counted):  # counted since 2026-12-06
                    print(
                        "    by kind: "
                        + ", ".join(
                            f"{statement_counts.CATALOGUE_QUERY_NAMES[k]} {n:,} ({ms / 1000:.1f} s)"
                            for k, (n, ms) in kinds.items()
                        )
                    )
        if fixed.get("sampled_profile"):
            _print_sampled("where its time goes", fixed["sampled_profile"])
        elif (prof := fixed.get("profile") or {}).get("total"):  # before 2026-12-05: cProfile
            print(f"  where its time goes (cProfile, {prof['total']} s profiled, main thread):")
            for line in share_lines(prof):
                print(f"    {line}")
        print()
    print(
        "growth of a full run (`streethub run`, child process, simulation not counted; "
        "the departments' systems served apart, no simulator folder)"
    )
    print(
        f"{'residents':>10}{'rows':>11}{'staged':>11}{'wall s':>9}{'CPU s':>9}{'peak MB':>9}"
        f"{'steps':>7}{'rc':>4}{'load':>12}   scorecard alone"
    )
    for r in figures["growth"]:
        sc = r["scorecard_alone"]
        alone = (
            f"{sc['peak_rss_mb']} MB, {sc['seconds']} s"
            if "peak_rss_mb" in sc
            else f"not measured ({sc.get('error')})"
        )
        print(
            f"{r['residents']:>10,}{r['rows']:>11,}{r['staged']:>11,}{r['run_s']:>9}"
            f"{r.get('cpu_s', '-'):>9}{r['peak_rss_mb']:>9}{r.get('dagster_steps', '-'):>7}"
            f"{r['exit_code']:>4}{r['load_avg'][0]:>6}→{r['load_avg'][1]:<5}   {alone}"
            f"; the peak in {r.get('peak_phase') or '-'}"
        )  # fmt: skip
    if not fixed and figures["growth"]:  # the quick bench: its smallest run, where it went
        for line in step_lines(figures["growth"][0]):
            print(line)
    phased = [r for r in figures["growth"] if r.get("phase_cpu_s")]
    if phased:
        print(
            "  CPU s by phase of the run (its summary's figures; a library imported late counts where it is):"
        )
        for phase in phased[-1]["phase_cpu_s"]:
            print(
                "    "
                + "".join(f"{r['phase_cpu_s'].get(phase, '-'):>9}" for r in phased)
                + f"   {phase}"
            )
    fitted = figures["fitted"]
    if fitted:
        for line in fit_lines(fitted, figures["growth"]):
            print(line)
    print(f"results: {RESULTS}" + (f"; chart: {CHART}" if figures["growth"] else ""))


def main(sizes: tuple[int, ...] | None = None, floor_residents: int | None = None) -> dict:
    sizes = sizes or (QUICK_SIZES if quick() else SIZES)
    floor_residents = floor_residents or (QUICK_FLOOR_RESIDENTS if quick() else FLOOR_RESIDENTS)
    figures: dict = {"quick": quick(), "cpus": os.cpu_count(), "goals": GOALS}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every step: a long run interrupted keeps what it measured
        figures["fitted"] = exponents(figures["growth"], figures.get("fixed_cost"))
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")

    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        figures["floor_vs_ingest"] = floor_and_ingest(Path(tmp), floor_residents)
        figures["growth"] = []
        if not quick():  # the quick bench's smallest growth run says as much
            figures["fixed_cost"] = full_run(Path(tmp), FIXED_RESIDENTS, scorecard_alone=False)
            # the same street as `make run` meets it: what the simulator adds to a run
            with_simulator = full_run(
                Path(tmp), FIXED_RESIDENTS, scorecard_alone=False, simulator=True
            )
            figures["fixed_cost"]["with_simulator"] = {
                k: with_simulator[k] for k in ("cpu_s", "run_s", "peak_rss_mb", "phase_cpu_s")
            }
            profile, statements = profiled_run(Path(tmp), FIXED_RESIDENTS)
            figures["fixed_cost"]["sampled_profile"] = profile
            figures["fixed_cost"]["lake_statements"] = statements
            ran = figures["fixed_cost"]
            ran["stack_floor"] = stack_floor(  # beside it: bench/_stack_floor.py
                runs=ran.get("dagster_runs") or 1, steps=ran.get("dagster_steps") or 1
            )
        save()
        for n in sizes:
            figures["growth"].append(full_run(Path(tmp), n))
            save()
    if len(figures["growth"]) >= 2:
        chart(figures["growth"], CHART)
    report(figures)
    return figures


if __name__ == "__main__":
    if INGEST_FLAG in sys.argv:
        ingest_child(Path(sys.argv[sys.argv.index(INGEST_FLAG) + 1]), "--profile" in sys.argv)
    elif COUNT_FLAG in sys.argv:
        count_child(Path(sys.argv[sys.argv.index(COUNT_FLAG) + 1]))
    elif BASE_FLAG in sys.argv:
        base_child(Path(sys.argv[sys.argv.index(BASE_FLAG) + 1]))
    elif SCORECARD_FLAG in sys.argv:
        scorecard_child(Path(sys.argv[sys.argv.index(SCORECARD_FLAG) + 1]))
    else:
        main()
