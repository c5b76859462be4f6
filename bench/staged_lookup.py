"""A delivery's lookup of its staged versions on an aged lake: bounded by its key's range,
against the whole table, side by side.

Run through ``python -m bench staged_lookup`` (or ``python bench/staged_lookup.py``). An
event dataset grows by a data file a delivery; before a delivery is staged, the staged rows
of its keys are looked up (:func:`pipelines.ingest.staged.staged_versions`). Two kinds of
key, each the catalogue's first dataset so keyed: a time in the clear (``time``: a sensor's
readings, bounded both ways) and one string in the clear that grows with time (``text``:
event ids as a door system numbers them, a day's prefix and a counter; bounded from below
by the least normalised id). For a lake holding ``days`` daily deliveries of
:data:`PER_DAY` rows each, the newest day's keys are looked up twice: with the delivery's
key bounds (:func:`pipelines.ingest.staged.key_bounds`, what staging does), and without
them (the baseline: every data file's keys read). CPU seconds of this process, best of
:data:`ROUNDS`; both find the same rows (checked). Writes bench/results/staged_lookup.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DAYS = (30, 90, 365)
QUICK_DAYS = (3, 6)
PER_DAY = 10_000
ROUNDS = 3
RESULTS = Path(__file__).parent / "results" / "staged_lookup.json"
FIRST = dt.datetime(2025, 1, 1)


KINDS = ("time", "text")


def keyed_dataset(kind: str):
    """(dept code, dataset, field) of the catalogue's first dataset whose key holds a
    datetime in the clear (``time``) or is one string in the clear with no PII kind
    (``text``); None: the catalogue has none."""
    from catalog.loader import load_catalogue
    from catalog.model import FieldType

    for dept, ds in load_catalogue().datasets():
        for name in ds.key:
            f = ds.field(name)
            if f.level.sensitive:
                continue
            if kind == "time" and f.type is FieldType.datetime:
                return dept.code, ds, name
            text = f.type is FieldType.string and f.pii.value == "none"
            if kind == "text" and text and len(ds.key) == 1:
                return dept.code, ds, name
    return None


def _day(kind: str, field: str, day: int, rows: int):
    import polars as pl

    start = FIRST + dt.timedelta(days=day)
    if kind == "time":
        keys = pl.datetime_range(
            start, start + dt.timedelta(seconds=rows - 1), "1s", time_unit="us", eager=True
        )
    else:  # a day's event ids: its date and a counter
        keys = pl.Series([f"MJ{start:%Y%m%d}{i:07d}" for i in range(rows)])
    return pl.DataFrame(
        {
            "_key_pid": [os.urandom(10).hex() for _ in range(rows)],
            "_row_digest": ["d"] * rows,
            "_delivery_id": [f"delivery-{day}"] * rows,
            "_source_row": range(rows),
            field: keys,
        }
    )


def _best(fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(ROUNDS):
        c = time.process_time()
        out = fn()
        best = min(best, time.process_time() - c)
    return best, out


def measure(days: int, per_day: int, kind: str = "time") -> dict:
    from catalog.settings import Settings
    from lakehouse.lake import insert_frame, open_lake, transaction
    from pipelines.ingest.ledger import ensure_ledger
    from pipelines.ingest.staged import ensure_staged_table, key_bounds, staged_versions
    from pipelines.protection import Protection

    found = keyed_dataset(kind)
    if found is None:
        return {"key": kind, "days": days, "error": f"no dataset is keyed by a clear {kind}"}
    dept, ds, field = found
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home").ensure_dirs()
        with open_lake(settings) as con:
            ensure_ledger(con)
            name, _ = ensure_staged_table(con, dept, ds, Protection.from_settings(settings))
            for day in range(days):
                with transaction(con):  # a delivery's commit: its own data file
                    insert_frame(con, "staged", name, _day(kind, field, day, per_day))
            newest = _day(kind, field, days, per_day)
            keys, bounds = newest["_key_pid"], key_bounds(newest, ds)
            bounded_s, a = _best(lambda: staged_versions(con, name, ds, keys, bounds))
            whole_s, b = _best(lambda: staged_versions(con, name, ds, keys, []))
    assert a.height == b.height == 0, "the newest day's keys are new"  # type: ignore[union-attr]
    return {
        "key": kind,
        "dataset": f"{dept}.{ds.code}",
        "days": days,
        "staged_rows": days * per_day,
        "bounded_cpu_s": round(bounded_s, 4),
        "whole_table_cpu_s": round(whole_s, 4),
        "ratio": round(whole_s / bounded_s, 1) if bounded_s > 0 else None,
    }


def main(days: tuple[int, ...] | None = None) -> dict:
    quick = os.environ.get("STREETHUB_BENCH_QUICK") == "1"
    sizes = days or (QUICK_DAYS if quick else DAYS)
    runs = [measure(d, PER_DAY, kind) for kind in KINDS for d in sizes]
    print(f"a delivery's lookup of its staged versions, {PER_DAY:,} rows a daily file "
          f"(CPU s, best of {ROUNDS}):")  # fmt: skip
    print(f"{'key':>5}{'days staged':>12}{'rows':>12}{'bounded':>10}{'whole table':>13}{'×':>8}")
    for r in runs:
        if "error" in r:
            print(f"{r['key']:>5}{r['days']:>12}  {r['error']}")
            continue
        print(f"{r['key']:>5}{r['days']:>12}{r['staged_rows']:>12,}{r['bounded_cpu_s']:>10.4f}"
              f"{r['whole_table_cpu_s']:>13.4f}{r['ratio'] or 0:>8.1f}")  # fmt: skip
    figures = {"per_day": PER_DAY, "rounds": ROUNDS, "runs": runs,
               "load_average_1m": round(os.getloadavg()[0], 2)}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
