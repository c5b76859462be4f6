"""What a DuckDB query freed goes back to the system when purged, not seconds later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_CHILD = """
import sys
import duckdb
from lakehouse.allocator import purge_freed
def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) >> 10 for l in fh if l.startswith("VmRSS"))
con = duckdb.connect(config={"threads": 1, "allocator_background_threads": True})
con.execute("SET enable_progress_bar = false")  # a slow machine's sort printed one
con.execute("SELECT count(*) FROM (SELECT md5(i::VARCHAR) m FROM range(3000000) t(i) ORDER BY m)")
con.fetchall()
con.execute("SELECT 1").fetchall()  # the sort's state let go
before = rss()
purged = purge_freed() if sys.argv[1] == "purge" else None
print("figures", before, rss(), purged)
"""


def _child(mode: str) -> tuple[int, int, str]:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    ).stdout.split()
    at = out.index("figures")  # what the child says comes last
    return int(out[at + 1]), int(out[at + 2]), out[at + 3]


def test_a_large_query_s_freed_memory_goes_back_when_purged() -> None:
    """A 3-million-row sort frees ~200 MB that DuckDB's allocator keeps resident for about
    two seconds (its decay): purged, it is gone at once; not purged, still there a moment
    later. (A fresh process each: its RSS is the query's alone.)"""
    before, after, purged = _child("purge")
    assert purged == "True" and before - after > 100
    before, after, purged = _child("keep")
    assert purged == "None" and before - after < 50
