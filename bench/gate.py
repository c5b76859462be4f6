"""The row gate's validation on 1 M rows: pandera-polars vs plain polars masks vs GE.

Data: the simulated registered residents (户籍人口, with the simulator's dirt),
repeated to 1 M rows; standardising it (with the repair counts) is timed
separately and not compared. Timed, medians of
``RUNS`` runs:

(a) the gate's pandera-polars validation (``quality.schema.dataset_schema``, lazy, every
    failure with its row index);
(a') the whole gate (``quality.gate.gate``: standardise, keys, checks, split) with each
    engine, pandera and plain masks — their verdicts must agree;
(b) the floor: the same checks as bare polars boolean masks in one ``select``,
    eager and lazy (the lazy one shares common sub-expressions); the faster is
    the floor;
(c) Great Expectations 1.x on pandas with the same checks: built-in expectations
    where GE has them (not-null under a row condition, regex, value set) and, for
    the check digit, the ID's birth date and gender and mojibake, built-in
    expectations over columns derived in pandas inside the timed run; run on
    ``GE_ROWS`` rows (the first of the same frame) and scaled linearly to 1 M.

Writes ``bench/results/gate.json`` and prints a table. Public APIs only: the frame the
checks read (standardised fields + the delivered text under ``RAW_PREFIX``) is built here
from ``quality.standardise.standardise``.
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
    from departments.connect import connection_env
    from departments.simulate import sim_dir_for, simulate

    simulate(home, residents=2_000, seed=7, days=1, start=dt.date(2026, 11, 20))
    _, ds = load_catalogue().dataset("gaj.registered_residents")
    db_url = connection_env(sim_dir_for(home))["STREETHUB_GAJ_DB_URL"]
    con = sqlite3.connect(db_url.removeprefix("sqlite:"))
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


def _ge_frame(work: pl.DataFrame, ds) -> object:
    """The pandas frame GE validates, with the derived columns its expectations need.

    GE has no check-digit, ID-derived or mojibake rule: those become columns
    computed here (vectorised pandas/numpy, timed as part of GE's run) and checked
    with built-in expectations under a ``row_condition``.
    """
    import numpy as np

    from catalog.identifiers import ID_CHECK, ID_WEIGHTS
    from quality.validators import is_mojibake

    pdf = work.select([f.name for f in ds.fields]).to_pandas()
    for f in ds.fields:
        raw = work.get_column(f"_raw__{f.name}").to_pandas()
        pdf[f"present_{f.name}"] = raw.str.strip().str.len().fillna(0) > 0
    cid = pdf["citizen_id"]
    form = cid.str.match(r"^\d{17}[\dX]$", na=False)
    body = cid.where(form, "0" * 18).str.slice(0, 17).to_numpy().astype("S17")
    digits = np.frombuffer(body.tobytes(), dtype=np.uint8).reshape(-1, 17).astype(np.int64) - 48
    check = np.array(list(ID_CHECK))[(digits @ np.array(ID_WEIGHTS)) % 11]
    pdf["cid_form"] = form
    pdf["cid_last"] = cid.str.slice(17, 18)
    pdf["cid_expected"] = check
    pdf["cid_birth"] = pd_to_datetime(cid.str.slice(6, 14))
    pdf["cid_valid"] = form & (pdf["cid_last"] == pdf["cid_expected"]) & pdf["cid_birth"].notna()
    seq = cid.str.slice(16, 17).astype("float64", errors="ignore")
    pdf["cid_gender"] = np.where(pd_to_numeric(seq) % 2 == 1, "男", "女")
    pdf["birth_dt"] = pd_to_datetime(pdf["birth_date"])
    uniq = pdf["name"].dropna().unique()
    bad = {v for v in uniq if is_mojibake(v)}
    pdf["name_mojibake"] = pdf["name"].isin(bad)
    return pdf


def pd_to_datetime(s):
    import pandas as pd

    return pd.to_datetime(s, format="%Y%m%d" if s.dtype == object else None, errors="coerce")


def pd_to_numeric(s):
    import pandas as pd

    return pd.to_numeric(s, errors="coerce")


def _ge_suite(gx, ds):
    """The gate's 27 checks as GE expectations (derived columns from :func:`_ge_frame`)."""
    e = gx.expectations
    out = []
    for f in ds.fields:
        n = f.name
        out.append(
            e.ExpectColumnValuesToNotBeNull(
                column=n, row_condition=f"present_{n} == True", condition_parser="pandas"
            )
        )  # unparseable
        if f.required:
            out.append(
                e.ExpectColumnValuesToNotBeNull(
                    column=n, row_condition=f"present_{n} == False", condition_parser="pandas"
                )
            )  # required
        if f.pattern:
            out.append(e.ExpectColumnValuesToMatchRegex(column=n, regex=f.pattern))
        if f.allowed_values:
            out.append(e.ExpectColumnValuesToBeInSet(column=n, value_set=f.allowed_values))
    form = dict(row_condition="cid_form == True", condition_parser="pandas")
    valid = "cid_valid == True"
    out += [
        # citizen_id_checksum: check character, then a real birth date
        e.ExpectColumnPairValuesToBeEqual(column_A="cid_last", column_B="cid_expected", **form),
        e.ExpectColumnValuesToNotBeNull(column="cid_birth", **form),
        e.ExpectColumnPairValuesToBeEqual(
            column_A="gender",
            column_B="cid_gender",
            row_condition=f"{valid} and gender in ['男', '女']",
            condition_parser="pandas",
        ),
        e.ExpectColumnPairValuesToBeEqual(
            column_A="birth_dt",
            column_B="cid_birth",
            row_condition=f"{valid} and birth_dt.notna()",
            condition_parser="pandas",
        ),
        e.ExpectColumnValuesToBeInSet(column="name_mojibake", value_set=[False]),  # mojibake
    ]
    return out


def _ge_seconds(work: pl.DataFrame, ds) -> tuple[float, int]:
    """GE's time scaled to ``ROWS``, and how many values it found unexpected on its rows."""
    import great_expectations as gx  # lazily: ~2.4 s to import

    sample = work.head(GE_ROWS)
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("bench")
    asset = source.add_dataframe_asset("residents")
    batch_def = asset.add_batch_definition_whole_dataframe("all")
    suite = gx.ExpectationSuite(name="residents")
    for expectation in _ge_suite(gx, ds):
        suite.add_expectation(expectation)
    suite = context.suites.add(suite)

    def run():
        pdf = _ge_frame(sample, ds)  # the derived columns are part of GE's work
        batch = batch_def.get_batch(batch_parameters={"dataframe": pdf})
        return batch.validate(suite, result_format="COMPLETE")

    seconds, result = _median(run)
    assert result.results and all(
        r.exception_info.get("raised_exception") is False for r in result.results
    ), "a GE expectation raised"
    unexpected = sum(r.result.get("unexpected_count") or 0 for r in result.results)
    return seconds * ROWS / GE_ROWS, unexpected


def _checked_frame(raw: pl.DataFrame, ds) -> pl.DataFrame:
    """What the gate's checks read: the standardised fields and the delivered text of each."""
    from quality.gate_checks import RAW_PREFIX
    from quality.standardise import standardise

    delivered = raw.select(pl.col(f.name).alias(RAW_PREFIX + f.name) for f in ds.fields)
    return pl.concat([standardise(raw, ds).frame, delivered], how="horizontal")


def _pandera_failures(work: pl.DataFrame, ds, street) -> int:
    """Failure cases of the gate's pandera schema (0 when every row passes)."""
    import pandera.errors as pa_errors

    from quality.schema import dataset_schema

    try:
        dataset_schema(ds, street=street, for_gate=True).validate(work, lazy=True)
    except pa_errors.SchemaErrors as exc:
        return exc.failure_cases.height
    return 0


def main() -> dict:
    from catalog.street import get_street
    from quality.gate import gate
    from quality.gate_checks import row_checks
    from quality.standardise import standardise

    street = get_street()
    with tempfile.TemporaryDirectory() as tmp:
        frame, ds = _raw_residents(Path(tmp) / "home")  # the simulator folder beside it
    big = _big(frame)
    standardise_s, _ = _median(lambda: standardise(big, ds))
    work = _checked_frame(big, ds)
    checks = row_checks(ds)
    floor_exprs = [(~rc.passes.fill_null(True)).alias(str(i)) for i, rc in enumerate(checks)]

    eager_s, masks = _median(lambda: work.select(floor_exprs))
    lazy_s, _ = _median(lambda: work.lazy().select(floor_exprs).collect())
    floor_s = min(eager_s, lazy_s)
    pandera_s, failures = _median(lambda: _pandera_failures(work, ds, street))
    gate_pandera_s, by_pandera = _median(lambda: gate(big, ds, engine="pandera", street=street))
    gate_masks_s, by_masks = _median(lambda: gate(big, ds, engine="masks", street=street))
    assert by_pandera.quarantine.height == by_masks.quarantine.height, "the engines disagree"
    assert by_pandera.staged.height == by_masks.staged.height, "the engines disagree"
    failing_rows = masks.select(pl.any_horizontal(pl.all())).to_series().sum()
    ge_s, ge_unexpected = _ge_seconds(work, ds)
    # (row, check) failures on the rows GE saw: what the gate's mask engine reports for them
    gate_on_ge_rows = int(masks.head(GE_ROWS).sum().sum_horizontal()[0])

    result = {
        "rows": ROWS,
        "dataset": "gaj.registered_residents",
        "checks": len(checks),
        "failing_rows_pct": round(100 * failing_rows / ROWS, 2),
        "failures": failures,
        "quarantined (gate)": by_masks.quarantine.height,
        "same verdicts on the GE rows": {
            "gate failures": gate_on_ge_rows,
            "GE unexpected values": ge_unexpected,
        },
        "runs": RUNS,
        "seconds": {
            "standardise + repair counts (not compared)": round(standardise_s, 3),
            "pandera gate validation": round(pandera_s, 3),
            "whole gate, pandera engine": round(gate_pandera_s, 3),
            "whole gate, mask engine": round(gate_masks_s, 3),
            "plain polars masks, one eager select": round(eager_s, 3),
            "plain polars masks, one lazy select": round(lazy_s, 3),
            f"great expectations (pandas, {GE_ROWS:,} rows ×{ROWS // GE_ROWS})": round(ge_s, 3),
        },
        "ratios": {
            "pandera gate / floor = faster masks (target ≤ 1.5)": round(pandera_s / floor_s, 2),
            "whole gate, mask engine / (standardise + floor)": round(
                gate_masks_s / (standardise_s + floor_s), 2
            ),
            "GE / pandera gate (target ≥ 50)": round(ge_s / pandera_s, 1),
        },
        "note": f"GE ran the same {len(checks)} checks on the first {GE_ROWS:,} rows, scaled "
        f"linearly to {ROWS:,}; check digit, ID birth date/gender and mojibake as "
        "expectations over columns derived in pandas (timed with GE)",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"row gate, {ROWS:,} rows of {result['dataset']}, {len(checks)} checks, "
          f"{result['failing_rows_pct']} % rows failing, median of {RUNS}")  # fmt: skip
    for name, s in result["seconds"].items():
        print(f"  {name:<55} {s:>8.3f} s")
    for name, r in result["ratios"].items():
        print(f"  {name:<55} {r:>8}")
    print(f"  on the first {GE_ROWS:,} rows: gate failures {gate_on_ge_rows:,}, "
          f"GE unexpected values {ge_unexpected:,}")  # fmt: skip
    print(f"  ({result['note']})\n  → {RESULTS}")
    return result


HOT_PATH_RESULTS = Path(__file__).parent / "results" / "gate_hot_path.json"


def hot_path(street: Path) -> dict:
    """CPU seconds of raw (``load_raw``) and staged (``stage_dataset``) for every dataset of
    a simulated street, after landing it, without Dagster; and the process's peak RSS.

    ``street`` is a simulated street's folder (``home`` and ``home.departments``, as
    ``streethub simulate`` leaves them, not run): it is copied to a temporary folder first.
    ``python -m bench.gate --hot-path /work/prof/s1500.orig`` gives the 20,000-resident
    figures of the README's Performance section."""
    import os
    import shutil

    from catalog.loader import load_catalogue
    from catalog.settings import Settings
    from departments.connect import connection_env
    from departments.server import running_server
    from lakehouse.lake import open_lake
    from pipelines.connectors.http_api import RetryPolicy
    from pipelines.ingest.landing import land
    from pipelines.ingest.ledger import ensure_ledger
    from pipelines.ingest.raw import load_raw
    from pipelines.ingest.staged import stage_dataset
    from pipelines.memory import high_water_mb
    from pipelines.protection import Protection

    per: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "street"
        shutil.copytree(street, copy, symlinks=True)
        settings = Settings(home=copy / "home", sim_dir=copy / "home.departments").ensure_dirs()
        cat = load_catalogue()
        policy = RetryPolicy(attempts=12, base_delay_s=0.01, max_delay_s=0.05, timeout_s=30)
        with running_server(settings.sim_dir_abs, fault_rate=0.0) as url:
            settings = settings.connected(connection_env(settings.sim_dir_abs, url))
            with open_lake(settings) as con:
                ensure_ledger(con)
                for dept, ds in cat.datasets():
                    land(con, settings, dept.code, ds, policy=policy)
        protection = Protection.from_settings(settings)
        with open_lake(settings) as con:
            for dept, ds in cat.datasets():
                t = time.process_time()
                accounts = load_raw(con, dept.code, ds, protection.protect)
                raw_s = time.process_time() - t
                t = time.process_time()
                stage_dataset(con, dept.code, ds, protection)
                per[f"{dept.code}.{ds.code}"] = {
                    "rows": sum(a.rows_read for a in accounts),
                    "raw_cpu_s": round(raw_s, 2),
                    "staged_cpu_s": round(time.process_time() - t, 2),
                }
    raw_cpu = sum(v["raw_cpu_s"] for v in per.values())
    staged_cpu = sum(v["staged_cpu_s"] for v in per.values())
    result = {
        "street": str(street),
        "rows": sum(v["rows"] for v in per.values()),
        "raw_cpu_s": round(raw_cpu, 2),
        "staged_cpu_s": round(staged_cpu, 2),
        "raw_plus_staged_cpu_s": round(raw_cpu + staged_cpu, 2),
        "peak_rss_mb": round(high_water_mb()),  # its own, however it was started
        "load_average": round(os.getloadavg()[0], 1),
        "datasets": dict(sorted(per.items(), key=lambda kv: -sum(list(kv[1].values())[1:]))),
    }
    HOT_PATH_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    HOT_PATH_RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"raw + staged of {result['rows']:,} delivered rows ({street}), CPU seconds: "
          f"raw {raw_cpu:.1f}, staged {staged_cpu:.1f}, together {raw_cpu + staged_cpu:.1f} "
          f"(goal at 20,000 residents < 15); peak RSS {result['peak_rss_mb']} MB")  # fmt: skip
    for name, v in list(result["datasets"].items())[:8]:
        print(f"  {name:<36} {v['rows']:>9,} rows  raw {v['raw_cpu_s']:6.2f}  "
              f"staged {v['staged_cpu_s']:6.2f}")  # fmt: skip
    print(f"  → {HOT_PATH_RESULTS}")
    return result


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--hot-path":
        hot_path(Path(sys.argv[2]))
    else:
        main()
