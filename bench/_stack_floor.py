"""The stack's own floor under a first run's fixed overhead, measured beside it.

A 1,000-resident first run costs 35-37 CPU s; issue 10's goal for the fixed overhead is
20 s. How much of that is the libraries the run must use, before any work of ours? Each
part below is what a first run meets of one library, done with no data, in a fresh process
(as a run meets it: imports, a new home), through the same public functions the run calls:

- ``imports``: the interpreter and ``import pipelines.main_job`` (Dagster, DuckDB, polars,
  SQLAlchemy and our own modules);
- ``expectations``: Great Expectations validating every catalogue dataset's suite
  (:func:`quality.expectations.run_expectations`) on an empty frame;
- ``registry``: the need model's MLflow registry made on a new home
  (:class:`marts.need_model.registry.Registry`: MLflow's imports, its SQLite store and
  the migrations of a new one);
- ``models``: LightGBM and scikit-learn's calibrators, imported where the need model
  imports them, one small classifier and regressor fitted (100 rows);
- ``dagster``: the fixed-cost run's Dagster runs and steps as jobs of as many no-op
  assets, each with one asset check, run in process on the main job's instance
  (:func:`pipelines.instance.shared_instance`);
- ``lake``: a new lake (:func:`lakehouse.lake.init_lake`), the ledger and every catalogue
  dataset's raw and staged tables, one write transaction a dataset (one row into each of
  its two tables), then one read of each table.

A part's figure is the CPU its process spent beyond the imports (``imports``: all of it),
the median of :data:`ROUNDS` processes; ``done`` says what each did (suites validated,
steps run, rows read back). Their sum is what no design of ours can take off a first run
on this stack, and a low one: each part does the least a run does with its library (no
model is registered, no asset reads the lake). The fixed overhead less that sum is ours.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PARTS = ("imports", "expectations", "registry", "models", "dagster", "lake")
ROUNDS = 3
CHILD_FLAG = "--stack-floor-part"


def _expectations(settings, runs: int, steps: int) -> int:
    import datetime as dt

    import polars as pl

    from catalog.loader import load_catalogue
    from quality.expectations import run_expectations

    catalogue = load_catalogue(settings.catalog_dir)
    now = dt.datetime.now(dt.UTC)
    suites = 0
    for dept, dataset in catalogue.datasets():
        suites += 1
        run_expectations(
            dataset,
            pl.DataFrame(),
            previous_rows=None,
            registry_ids=None,
            newest_delivery_at=None,
            now=now,
            dept=dept.code,
            catalogue=catalogue,
        )
    return suites


def _registry(settings, runs: int, steps: int) -> int:
    from marts.need_model.registry import Registry

    Registry.from_settings(settings)
    return 1


def _models(settings, runs: int, steps: int) -> int:
    import lightgbm as lgb
    import numpy as np
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x, y = rng.random((100, 4)), rng.integers(0, 2, 100)
    params = {"n_estimators": 5, "verbose": -1}
    scores = lgb.LGBMClassifier(**params).fit(x, y).predict_proba(x)[:, 1]
    lgb.LGBMRegressor(**params).fit(x, rng.random(100))
    IsotonicRegression(out_of_bounds="clip").fit(scores, y)
    LogisticRegression().fit(scores.reshape(-1, 1), y)
    return 4


def _dagster(settings, runs: int, steps: int) -> int:
    import dagster as dg

    from pipelines.instance import shared_instance

    # no annotations on the asset functions: Dagster resolves them, and this module's are
    # strings naming a local import
    def noop(i: int) -> tuple:
        @dg.asset(name=f"noop_{i}")
        def _asset():
            return dg.MaterializeResult(metadata={"rows": 0})

        @dg.asset_check(asset=f"noop_{i}", name=f"noop_check_{i}")
        def _check():
            return dg.AssetCheckResult(passed=True)

        return _asset, _check

    runs = max(1, runs)
    made = [noop(i) for i in range(steps)]
    jobs = [
        dg.define_asset_job(f"noop_job_{r}", selection=[f"noop_{i}" for i in range(r, steps, runs)])
        for r in range(runs)
        if r < steps
    ]
    defs = dg.Definitions(
        assets=[a for a, _ in made],
        asset_checks=[c for _, c in made],
        jobs=jobs,
        executor=dg.in_process_executor,
    )
    done = 0
    with shared_instance(settings) as instance:
        for job in jobs:
            result = defs.get_job_def(job.name).execute_in_process(instance=instance)
            if not result.success:
                raise RuntimeError(f"the no-op job {job.name} failed")
            done += len(result.get_asset_materialization_events())
    return done


def _lake(settings, runs: int, steps: int) -> int:
    from catalog.loader import load_catalogue
    from lakehouse.lake import init_lake, open_lake, transaction
    from pipelines.ingest.ledger import ensure_ledger
    from pipelines.ingest.raw import raw_table
    from pipelines.ingest.tables import ensure_dataset_tables

    init_lake(settings)
    pairs = [(d.code, ds) for d, ds in load_catalogue(settings.catalog_dir).datasets()]
    zones = ("raw", "staged")
    with open_lake(settings) as con:
        ensure_ledger(con)
        ensure_dataset_tables(con, pairs)
        for dept, ds in pairs:  # a dataset's two tables in one transaction
            with transaction(con):
                for zone in zones:
                    con.execute(f'INSERT INTO {zone}."{raw_table(dept, ds)}" DEFAULT VALUES')
        return sum(
            con.execute(f'SELECT count(*) FROM {zone}."{raw_table(dept, ds)}"').fetchone()[0]
            for dept, ds in pairs
            for zone in zones
        )


# each returns what it did (suites, registries, models, steps, rows read back)
WORK: dict[str, Callable[..., int]] = {
    "expectations": _expectations,
    "registry": _registry,
    "models": _models,
    "dagster": _dagster,
    "lake": _lake,
}


def child(part: str, runs: int, steps: int) -> dict:
    """In a fresh process: the imports' CPU, then the part's beyond them, and what it did."""
    import pipelines.main_job  # noqa: F401  (what every part meets first, as a run does)
    from catalog.settings import Settings

    imported = time.process_time()  # this process's user + system CPU
    with tempfile.TemporaryDirectory(prefix="bench_stack_floor_") as tmp:
        settings = Settings(home=Path(tmp) / "home").ensure_dirs()
        done = WORK[part](settings, runs, steps) if part != "imports" else 0
        spent = time.process_time() - imported
    return {"part": part, "cpu_s": round(imported if part == "imports" else spent, 3), "done": done}


def measure(runs: int, steps: int, rounds: int = ROUNDS, parts: tuple[str, ...] = PARTS) -> dict:
    """Each part's CPU s (the median of ``rounds`` fresh processes) and their sum, for a
    run of ``runs`` Dagster runs and ``steps`` steps."""
    figures: dict[str, float] = {}
    done: dict[str, int] = {}
    for part in parts:
        seen = []
        for _ in range(rounds):
            ran = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench._stack_floor",
                    CHILD_FLAG,
                    part,
                    str(runs),
                    str(steps),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if ran.returncode:
                raise RuntimeError(f"stack floor, part {part}: {ran.stderr[-2000:]}")
            answer = json.loads(ran.stdout.strip().splitlines()[-1])
            seen.append(answer["cpu_s"])
            done[part] = answer["done"]
        figures[part] = round(statistics.median(seen), 2)
    return {
        "parts_cpu_s": figures,
        "done": done,
        "cpu_s": round(sum(figures.values()), 2),
        "rounds": rounds,
        "dagster_runs": runs,
        "dagster_steps": steps,
    }


LABELS = {
    "imports": "imports",
    "expectations": "Great Expectations",
    "registry": "MLflow's new registry",
    "models": "LightGBM and scikit-learn",
    "dagster": "Dagster's runs and steps",
    "lake": "DuckLake's tables and commits",
}


def floor_line(floor: dict) -> str:
    """The floor as one line of the report."""
    parts = ", ".join(f"{LABELS.get(k, k)} {v}" for k, v in floor["parts_cpu_s"].items())
    return (
        f"the stack alone, no work of ours ({floor['dagster_runs']} Dagster runs, "
        f"{floor['dagster_steps']} steps): {floor['cpu_s']} CPU s ({parts})"
    )


if __name__ == "__main__":
    if CHILD_FLAG in sys.argv:
        at = sys.argv.index(CHILD_FLAG)
        part, runs, steps = sys.argv[at + 1], int(sys.argv[at + 2]), int(sys.argv[at + 3])
        print(json.dumps(child(part, runs, steps)))
    else:  # by itself: as many runs and steps as the last fixed-cost run had
        ran = json.loads((Path(__file__).parent / "results" / "ingest.json").read_text())
        fixed = ran.get("fixed_cost") or {}
        runs, steps = fixed.get("dagster_runs") or 1, fixed.get("dagster_steps") or 1
        print(floor_line(measure(runs=runs, steps=steps)))
