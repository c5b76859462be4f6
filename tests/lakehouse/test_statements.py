"""Counting a process's statements on the lake (``STREETHUB_LAKE_STATEMENT_COUNTS``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from catalog.settings import Settings
from lakehouse.lake import init_lake
from lakehouse.statements import (
    CATALOGUE_QUERY_KINDS,
    CATALOGUE_QUERY_NAMES,
    CATALOGUE_QUERY_OTHER,
    ENV,
    KINDS,
    catalogue_by_kind,
    read,
)

ROOT = Path(__file__).resolve().parents[2]

# a process that opens the lake, makes a table (first process only) and reads it ``n`` times
CHILD = """
import sys
from catalog.settings import Settings
from lakehouse.lake import open_lake
n = int(sys.argv[2])
with open_lake(Settings(home=sys.argv[1])) as con:
    con.execute("CREATE TABLE IF NOT EXISTS landing.counted (a VARCHAR, b BIGINT)")
    con.execute("INSERT INTO landing.counted VALUES ('x', 1)")
    for _ in range(n):
        con.execute("SELECT count(*) FROM landing.counted WHERE a = 'x'").fetchall()
"""


def _child(home: Path, reads: int, counts: Path | None, script: str = CHILD) -> None:
    """``script`` in a process of its own (``home`` and ``reads`` its arguments), counting
    into ``counts`` (None: counting off)."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PYTHONPATH"] = str(ROOT)
    if counts is not None:
        env[ENV] = str(counts)
    subprocess.run([sys.executable, "-c", script, str(home), str(reads)], env=env, check=True)


def test_counts_follow_the_statements_run(settings: Settings, tmp_path: Path) -> None:
    init_lake(settings)
    few, more = tmp_path / "few.json", tmp_path / "more.json"
    _child(settings.home, 2, few)
    _child(settings.home, 12, more)
    a, b = read(few), read(more)
    assert a is not None and b is not None and set(a) == set(KINDS)
    # ten more reads of ours are exactly ten more statements of ours, and each made DuckLake
    # read its catalogue at least once (the snapshot: each is a transaction of its own)
    assert b["ours"] - a["ours"] == 10
    assert b["catalogue"] - a["catalogue"] >= 10
    assert b["statements"] == b["ours"] + b["catalogue"] + b["transaction_control"]
    # DuckLake's own log of its catalogue queries: at least one more a read (its snapshot)
    assert b["catalogue_queries"] - a["catalogue_queries"] >= 10
    assert a["instances"] == b["instances"] == 1
    # by kind: every catalogue query has one, and a read's snapshot is told as one (each
    # read is a transaction of its own: ten more reads, ten more snapshots)
    for counts in (a, b):
        kinds = catalogue_by_kind(counts)
        assert set(kinds) == {*CATALOGUE_QUERY_KINDS, CATALOGUE_QUERY_OTHER}
        assert set(kinds) == set(CATALOGUE_QUERY_NAMES)  # each named for the bench's report
        assert sum(n for n, _ in kinds.values()) == counts["catalogue_queries"]
        assert sum(ms for _, ms in kinds.values()) == counts["catalogue_ms"]
    assert b["catalogue_snapshots"] - a["catalogue_snapshots"] >= 10
    assert a["catalogue_commit_writes"] >= 1  # the insert's commit
    assert b["catalogue_other"] < b["catalogue_queries"] / 2  # DuckLake's SQL still told apart


def test_counts_add_up_across_processes_and_are_off_by_default(
    settings: Settings, tmp_path: Path
) -> None:
    init_lake(settings)
    one, both = tmp_path / "one.json", tmp_path / "both.json"
    _child(settings.home, 3, one)
    _child(settings.home, 3, both)
    _child(settings.home, 3, both)
    first, twice = read(one), read(both)
    assert first is not None and twice is not None
    assert twice["instances"] == 2
    assert twice["ours"] == 2 * first["ours"]
    _child(settings.home, 3, None)  # not asked: nothing written anywhere
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".json") == [
        "both.json",
        "one.json",
    ]


def test_a_forked_child_never_counts_its_parents_instances(
    settings: Settings, tmp_path: Path
) -> None:
    init_lake(settings)
    counts = tmp_path / "counts.json"
    forking = """
import os, sys
from catalog.settings import Settings
from lakehouse import statements
from lakehouse.lake import open_lake
with open_lake(Settings(home=sys.argv[1])) as con:
    con.execute("SELECT 1").fetchall()
pid = os.fork()
if pid == 0:  # the child's exit would flush what it inherited: the parent's instance
    statements._flush()
    os._exit(0)
os.waitpid(pid, 0)
"""
    _child(settings.home, 0, counts, forking)
    counted = read(counts)
    assert counted is not None and counted["instances"] == 1
