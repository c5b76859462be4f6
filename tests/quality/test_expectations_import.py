"""Great Expectations is imported without SciPy's statistics, Altair and jsonschema (deferred to
first use: quality/deferred.py)."""

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
       "nulls_failed": out.filter(~pl.col("success")).height,
       "grammar_loaded": "rfc3987_syntax" in sys.modules or "lark" in sys.modules,
       "altair_run": "altair.vegalite" in sys.modules,
       "jsonschema_run": "jsonschema.validators" in sys.modules}
from scipy import stats  # a later user gets the real module, loaded on first use
ran["entropy"] = float(stats.entropy([0.5, 0.5], [0.9, 0.1]))
ran["optimize_after_use"] = "scipy.optimize" in sys.modules
import jsonschema  # the stand-in GE bound and a later import answer as the real module would
from great_expectations.expectations.metrics.column_map_metrics import (
    column_values_match_json_schema as metric,
)
try:
    metric.jsonschema.validate(1, {"type": "string"})
    ran["invalid_raised"] = False
except jsonschema.ValidationError:
    ran["invalid_raised"] = True
ran["jsonschema_real"] = sys.modules["jsonschema"].validate is jsonschema.validate
import altair as alt
ran["chart"] = alt.Chart(pl.DataFrame({"x": [1]}).to_pandas()).mark_bar().to_dict()["mark"]
print(json.dumps(ran))
"""


def test_suites_run_without_unused_modules_loaded_until_used(home: Path, tmp_path: Path) -> None:
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
    # Altair and jsonschema (rfc3987_syntax's grammar) not executed until a later use
    assert ran["grammar_loaded"] is False and ran["altair_run"] is False
    assert ran["jsonschema_run"] is False
    assert ran["invalid_raised"] is True and ran["jsonschema_real"] is True
    assert ran["chart"] in ("bar", {"type": "bar"})
