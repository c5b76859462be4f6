"""The row gate's validation on 1 M rows: pandera-polars vs plain polars masks vs GE.

Data: the simulated registered residents (户籍人口, with the simulator's dirt),
repeated to 1 M rows and standardised once (not timed). Timed, medians of
``RUNS`` runs:

(a) the gate's pandera-polars validation (lazy, every failure with its row index);
(a') the gate's plain-mask engine (same checks, failures as row indexes);
(b) the floor: the same checks as bare polars boolean masks in one ``select``;
(c) Great Expectations 1.x on pandas with the equivalent built-in expectations
    (not-null, regex, value set; GE has no check-digit rules), run on
    ``GE_ROWS`` rows and scaled linearly to 1 M.

Writes ``bench/results/gate.json`` and prints a table.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

ROWS = 1_000_000
GE_ROWS = 100_000
RUNS = 3
RESULTS = Path(__file__).parent / "results" / "gate.json"


def _raw_residents(home: Path) -> tuple[pl.DataFrame, object]:
    import sqlite3

    from catalog.loader import load_catalogue
    from departments.simulate import simulate

    simulate(home, residents=2_000, seed=7, days=1, start=dt.date(2026, 11, 20))
    _, ds = load_catalogue().dataset("gaj.registered_residents")
    con = sqlite3.connect(home / "departments" / "gaj" / "registry.sqlite")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM hukou ORDER BY gxsj, gmsfhm")]
    con.close()
    by_source = {f.source_name: f.name for f in ds.fields}
    frame = pl.DataFrame(rows, infer_schema_length=None).select(
        pl.col(s).cast(pl.String).alias(n) for s, n in by_source.items()
    )
    return frame, ds


def _big(frame: pl.DataFrame) -> pl.DataFrame:
    reps = ROWS // frame.height + 1
    big = pl.concat([frame] * reps).head(ROWS)
    return big.with_columns(
        pl.lit("bench").alias("_delivery_id"),
        pl.int_range(2, ROWS + 2, dtype=pl.Int64).alias("_source_row"),
        pl.lit(dt.datetime(2026, 11, 21)).alias("_loaded_at"),
    )


def _median(fn, runs: int = RUNS) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _ge_seconds(work: pl.DataFrame, ds) -> float:
    import great_expectations as gx  # lazily: ~2.4 s to import

    pdf = work.head(GE_ROWS).select([f.name for f in ds.fields]).to_pandas()
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("bench")
    asset = source.add_dataframe_asset("residents")
    batch_def = asset.add_batch_definition_whole_dataframe("all")
    suite = gx.ExpectationSuite(name="residents")
    for f in ds.fields:
        if f.required:
            suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=f.name))
        if f.pattern:
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToMatchRegex(column=f.name, regex=f.pattern)
            )
        if f.allowed_values:
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToBeInSet(
                    column=f.name, value_set=f.allowed_values
                )
            )
    suite = context.suites.add(suite)

    def run():
        batch = batch_def.get_batch(batch_parameters={"dataframe": pdf})
        return batch.validate(suite, result_format="COMPLETE")

    seconds, _ = _median(run, runs=1)
    return seconds * ROWS / GE_ROWS


def main() -> dict:
    from quality.gate import _failures_masks, _failures_pandera, _work_frame
    from quality.gate_checks import row_checks

    with tempfile.TemporaryDirectory() as tmp:
        frame, ds = _raw_residents(Path(tmp))
    big = _big(frame)
    t = time.perf_counter()
    work, _ = _work_frame(big, ds)
    standardise_s = time.perf_counter() - t
    checks = row_checks(ds)
    floor_exprs = [(~rc.passes.fill_null(True)).alias(str(i)) for i, rc in enumerate(checks)]

    floor_s, masks = _median(lambda: work.select(floor_exprs))
    pandera_s, failures = _median(
        lambda: _failures_pandera(work, ds, (116.43, 39.9, 116.47, 39.925))
    )
    masks_s, _ = _median(lambda: _failures_masks(work, checks))
    failing_rows = masks.select(pl.any_horizontal(pl.all())).to_series().sum()
    ge_s = _ge_seconds(work, ds)

    result = {
        "rows": ROWS,
        "dataset": "gaj.registered_residents",
        "checks": len(checks),
        "failing_rows_pct": round(100 * failing_rows / ROWS, 2),
        "failures": failures.height,
        "runs": RUNS,
        "seconds": {
            "standardise (once, not compared)": round(standardise_s, 3),
            "pandera gate validation": round(pandera_s, 3),
            "gate mask engine": round(masks_s, 3),
            "plain polars masks (floor)": round(floor_s, 3),
            f"great expectations (pandas, {GE_ROWS:,} rows ×{ROWS // GE_ROWS})": round(ge_s, 3),
        },
        "ratios": {
            "pandera gate / floor (target ≤ 1.5)": round(pandera_s / floor_s, 2),
            "mask engine / floor": round(masks_s / floor_s, 2),
            "GE / pandera gate (target ≥ 50)": round(ge_s / pandera_s, 1),
        },
        "note": f"GE ran on {GE_ROWS:,} rows and was scaled linearly to {ROWS:,}; "
        "GE has built-in expectations only (no check digits, no cross-field checks)",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"row gate, {ROWS:,} rows of {result['dataset']}, {len(checks)} checks, "
          f"{result['failing_rows_pct']} % rows failing, median of {RUNS}")  # fmt: skip
    for name, s in result["seconds"].items():
        print(f"  {name:<55} {s:>8.3f} s")
    for name, r in result["ratios"].items():
        print(f"  {name:<55} {r:>8}")
    print(f"  ({result['note']})\n  → {RESULTS}")
    return result
