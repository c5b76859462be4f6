"""On a machine whose clock is set to China's time zone (as a street office's servers are),
the lake keeps time in UTC and a delivery is ingested as anywhere else.

DuckDB's default time zone is the machine's: before ``lakehouse.session.in_utc`` a
delivery's arrival came back as a +08:00 datetime and the row gate refused to compare it
with its UTC column, failing every dataset of the main job. The probe runs in a child
process with ``TZ=Asia/Shanghai`` (a time zone is read once per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, sys
from types import SimpleNamespace

from lakehouse.lake import hold_lake, open_lake
from tests.pipelines.test_incremental import DEPT, FIRST, deliver, one_department_home, run

root = sys.argv[1]
env = SimpleNamespace(setenv=lambda k, v: os.environ.__setitem__(k, v))
settings = one_department_home(__import__("pathlib").Path(root), env)
deliver(settings, FIRST, 0, 40)
outcome = run(settings)
with hold_lake(settings), open_lake(settings, read_only=True) as con:  # a held one's cursor
    zone = con.execute("SELECT current_setting('TimeZone')").fetchone()[0]
    arrived = con.execute("SELECT max(arrived_at) FROM landing.deliveries").fetchone()[0]
    frame = con.execute("SELECT arrived_at FROM landing.deliveries").pl()
    staged = con.execute(f'SELECT count(*) FROM staged."{DEPT}__violation_cases"').fetchone()[0]
    status = con.execute("SELECT status FROM landing.delivery_accounts").fetchall()
print(json.dumps({
    "zone": zone, "tzinfo": str(arrived.tzinfo), "dtype": str(frame.schema["arrived_at"]),
    "staged": staged, "status": [s for (s,) in status], "steps": len(outcome.steps),
}))
"""


def test_a_machine_set_to_shanghai_ingests_and_keeps_utc(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETHUB_")}
    env |= {"TZ": "Asia/Shanghai", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(probe), str(tmp_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "zone": "UTC",
        "tzinfo": "UTC",
        "dtype": "Datetime(time_unit='us', time_zone='UTC')",
        "staged": 40,
        "status": ["loaded"],
        "steps": 0,  # no failed step
    }
