"""What a DuckDB query or polars freed goes back to the system when purged, not seconds (or,
for polars, an unbounded time) later."""

from __future__ import annotations

from tests.python_child import printed_figures

_CHILD = """
import sys
import duckdb
from lakehouse.allocator import purge_freed
def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) >> 10 for l in fh if l.startswith("VmRSS"))
con = duckdb.connect(config={"threads": 1, "allocator_background_threads": True})
con.execute("SET enable_progress_bar = false")  # a slow machine's sort printed one
for _ in range(int(sys.argv[2])):
    con.execute("SELECT count(*) FROM (SELECT md5(i::VARCHAR) m FROM range(3000000) t(i) ORDER BY m)")
    con.fetchall()
    con.execute("SELECT 1").fetchall()  # the sort's state let go
    before = rss()
    purged = purge_freed() if sys.argv[1] == "purge" else None
    print("figures", before, rss(), purged)
"""


def _figures(script: str, *args: str, **env: str) -> list[tuple[int, int, str]]:
    """The (before, after, purged) lines ``script`` prints (``env``: set besides)."""
    return [(int(b), int(a), p) for b, a, p in printed_figures(script, *args, **env)]


def _child(mode: str, rounds: int = 1) -> list[tuple[int, int, str]]:
    return _figures(_CHILD, mode, str(rounds))


def test_a_large_query_s_freed_memory_goes_back_when_purged() -> None:
    """A 3-million-row sort frees ~200 MB that DuckDB's allocator keeps resident for about
    two seconds (its decay): purged, it is gone at once; not purged, still there a moment
    later. (A fresh process each: its RSS is the query's alone.) Three sorts purged: a purge
    asked while jemalloc's background thread is in one of its own does nothing, and one in
    three sorts met one (CI failed on 262 -> 260 MB) until the purge stopped the background
    threads first."""
    rounds = _child("purge", rounds=3)
    assert len(rounds) == 3
    for before, after, purged in rounds:
        assert purged == "True" and before - after > 100, rounds
    [(before, after, purged)] = _child("keep")
    assert purged == "None" and before - after < 50


_POLARS_CHILD = """
import sys, time
import polars as pl
from lakehouse.allocator import purge_freed, purge_polars
def anon():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) >> 10 for l in fh if l.startswith("RssAnon"))
frames = [pl.Series(range(i, i + 2_000_000)).cast(pl.String) for i in range(4)]
del frames
time.sleep(0.7)  # what polars' threads free of it, freed
before = anon()
purge = {"purge": purge_polars, "both": purge_freed}.get(sys.argv[1], lambda: None)
for _ in range(5):  # on a busy machine a thread of polars may still be freeing its part
    purged = purge()
    if purged and before - anon() > 60:
        break
    time.sleep(0.2)
print("figures", before, anon(), purged)
"""


_LONG_DECAY = "muzzy_decay_ms:0,dirty_decay_ms:60000"


def _polars_child(mode: str) -> tuple[int, int, str]:
    # a dirty decay of a minute: nothing goes back by the clock while the test looks
    [figures] = _figures(_POLARS_CHILD, mode, _RJEM_MALLOC_CONF=_LONG_DECAY)
    return figures


def test_what_polars_freed_goes_back_when_purged() -> None:
    """Four 2-million-value text columns freed stay resident in polars' allocator until its
    decay, and then only once polars is used again; purged (alone, or with DuckDB's by
    purge_freed), they are gone at once (asked again a few times: on a busy machine one of
    polars' threads may still be freeing its part). The purge is found in the pinned polars
    build (True): an upgrade that strips its symbols fails here, while the hub goes on
    without it."""
    for mode in ("purge", "both"):
        before, after, purged = _polars_child(mode)
        assert purged == "True" and before - after > 60, (mode, before, after)
    before, after, purged = _polars_child("keep")
    assert purged == "None" and before - after < 20, (before, after)
