"""Great Expectations is imported without SciPy's statistics (deferred to first use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import datetime as dt, json, sys
import polars as pl
from catalog.loader import get_catalogue
from quality.expectations import run_expectations

cat = get_catalogue()
dept, ds = next(iter(cat.datasets()))
frame = pl.DataFrame({f.name: ["x", None] for f in ds.fields})
out = run_expectations(ds, frame, previous_rows=None, registry_ids=None,
                       newest_delivery_at=None, now=dt.datetime.now(dt.UTC), dept=dept.code,
                       catalogue=cat)
ran = {"rows": out.height, "optimize_loaded": "scipy.optimize" in sys.modules,
       "nulls_failed": out.filter(~pl.col("success")).height}
from scipy import stats  # a later user gets the real module, loaded on first use
ran["entropy"] = float(stats.entropy([0.5, 0.5], [0.9, 0.1]))
ran["optimize_after_use"] = "scipy.optimize" in sys.modules
print(json.dumps(ran))
"""


def test_suites_run_without_scipy_stats_loaded_until_used(home: Path, tmp_path: Path) -> None:
    script = tmp_path / "suite.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ran = json.loads(done.stdout.strip().splitlines()[-1])
    assert ran["rows"] > 3 and ran["nulls_failed"] >= 1  # the suite ran and judged
    assert ran["optimize_loaded"] is False  # scipy.stats (and what it imports) not executed
    assert abs(ran["entropy"] - 0.5108256) < 1e-6 and ran["optimize_after_use"] is True
