"""What every ``streethub run`` pays before it does work: importing the CLI and the main job
loads none of the libraries only some runs call (the need model's training and metrics,
Great Expectations and what it imports for expectations not used here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# imported where they are called: a run that trains or scores no model, or runs no suite,
# pays none of them (each was ~1-3 s CPU of every run)
NOT_AT_IMPORT = (
    "sklearn",
    "lightgbm",
    "fairlearn",
    "scipy.stats",
    "great_expectations",
    "altair",
    "jsonschema",
    "rfc3987_syntax",
    "rich.markdown",
)

SCRIPT = """
import json, sys
import pipelines.cli, pipelines.main_job
print(json.dumps(sorted(m for m in sys.modules)))
"""


def test_the_cli_and_main_job_import_no_model_or_expectation_library(tmp_path: Path) -> None:
    script = tmp_path / "imports.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREETHUB_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert {"pipelines.main_job", "dagster", "marts.need_model.step"} <= loaded  # it ran
    assert sorted(m for m in NOT_AT_IMPORT if m in loaded) == []
