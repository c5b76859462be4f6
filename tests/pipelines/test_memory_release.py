"""What a unit of work left in reference cycles goes back once the process grew enough,
and a small step pays no collection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines import memory
from tests.python_child import printed_figures

_CYCLE_CHILD = """
import gc
import weakref

import duckdb  # noqa: F401  (a run's process has both allocators loaded: the purge's first
import polars  # noqa: F401  call would load polars otherwise, ~40 MB of RSS of its own)
from pipelines import memory

memory.trim_heap()  # its one-time lookups done before anything is measured


class Holder:
    def __init__(self, size):
        self.buffer = bytearray(b"\\x01") * size  # written: resident, counted in RSS
        self.me = self  # a cycle: only a collection frees it


def left_in_a_cycle(size):
    return weakref.ref(Holder(size))


gc.collect()
gc.disable()  # no automatic collection meanwhile: only release() may free the cycle
memory._floor[0] = memory.rss()
small = left_in_a_cycle(1 << 20)
print(memory.release(growth=64 << 20), small() is not None)  # 1 MB grown: no collection
big = left_in_a_cycle(96 << 20)
before = memory.rss()
print(memory.release(growth=64 << 20), big() is None and small() is None)
print((before - memory.rss()) >> 20, (before - memory._floor[0]) >> 20)
"""


def test_a_cycle_is_collected_after_growth_only(tmp_path: Path) -> None:
    """A small growth pays no collection; one past ``growth`` collects the cycles, hands the
    pages back and counts the next growth from there. (A fresh process: in the test runner's,
    whose heap earlier tests left with free room, the 96 MB may grow no RSS at all.)"""
    small_collected, small_alive, collected, freed, given_back, floor_down = _child(
        tmp_path, _CYCLE_CHILD
    )
    assert (small_collected, small_alive) == ("False", "True")
    assert (collected, freed) == ("True", "True")
    assert int(given_back) >= 64  # the pages went back to the system
    assert int(floor_down) >= 64  # the next growth counts from there


_TUNED_CHILD = """
import sys
from pipelines import memory
if sys.argv[1] == "tuned":
    assert memory.tune_heap() is True
del bytearray(8 << 20)[:]  # a large block freed: raises glibc's default threshold
before = memory.rss()
kept, large = [], []
for _ in range(200):
    large.append(bytearray(b"\\x01") * (1 << 20))  # written: resident
    kept.append(bytearray(2048))  # a small live block after each: no trim from the top
grown = memory.rss() - before
large.clear()
print(grown >> 20, (memory.rss() - before) >> 20)
"""


def _child(tmp_path: Path, code: str, *args: str) -> list[str]:
    """What a fresh Python running ``code`` with ``args`` prints, split on whitespace (started
    by the test runner itself: the high water a child reads is its own memory's, ``VmHWM``,
    not the runner's that Linux puts in its ``ru_maxrss``)."""
    script = tmp_path / "memory_child.py"
    script.write_text(code)
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        check=True,
        # one BLAS thread: after numpy's import, OpenBLAS's own worker thread spins for a
        # moment (~70 ms of CPU on 2 cores), which the process's CPU clock would count
        env={**os.environ, "PYTHONPATH": str(root), "OPENBLAS_NUM_THREADS": "1"},
    ).stdout.split()


def _heap_child(tmp_path: Path, mode: str) -> tuple[int, int]:
    out = _child(tmp_path, _TUNED_CHILD, mode)
    return int(out[0]), int(out[1])


def test_a_tuned_heap_gives_large_blocks_back_as_they_are_freed(tmp_path: Path) -> None:
    """In a process that calls tune_heap first (as ``streethub run`` does), a block of at
    least MMAP_THRESHOLD is a mapping of its own, returned when freed, even among small
    live blocks; glibc's default, after a larger block was freed, carves it from the heap,
    where it stays resident between them until a trim. (A fresh process each: in one whose
    heap already has free room, glibc serves even large blocks from it.)"""
    grown, kept = _heap_child(tmp_path, "tuned")
    assert grown > 150 and kept < 40
    grown, kept = _heap_child(tmp_path, "default")
    assert grown > 150 and kept > 150


_PHASES_CHILD = """
import sys
from pipelines.memory import HighWater, rss
water = HighWater()
water.mark("small")
held_then = rss() >> 20
held = bytearray(b"\\x01") * (int(sys.argv[1]) << 20)  # written: resident
del held
water.mark("big")
water.mark("after")
phase, mb = water.peak()
print(phase, round(mb), *(round(m) for _, m in water.marks), held_then)
print(water.sentence().replace(" ", "_"))
"""


def test_the_high_water_names_the_phase_of_the_peak_even_after_it_went_back(
    tmp_path: Path,
) -> None:
    """A phase that held 200 MB for a moment and gave it back is where the peak was: the
    marks are the kernel's high water, not the memory held at the mark. (A fresh process:
    the test runner's own high water may be above anything a test allocates.)"""
    phase, peak, small, big, after, held, sentence = _child(tmp_path, _PHASES_CHILD, "200")
    assert phase == "big" and int(peak) == int(big) == int(after) > int(small)
    assert int(big) - int(held) >= 190  # what it held at the first mark, and the 200 MB
    assert sentence.startswith(f"memory:_peak_{int(peak):,}_MB_resident,_reached_in_big_")
    assert memory.HighWater().peak() is None


# a parent that held 300 MB, then a child of it started as subprocess starts one (vfork)
_INHERITING_PARENT = """
import subprocess
import sys

held = bytearray(b"\\x01") * (300 << 20)  # written: resident
del held
child = (
    "import resource; from pipelines.memory import high_water_mb; "
    "print('figures', round(high_water_mb()), "
    "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10)"
)
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                     check=True).stdout)
"""


def test_the_high_water_is_the_process_own_not_its_parent() -> None:
    """A run's peak is its own memory's, however it was started: a process started by a
    parent that once held 300 MB (as subprocess starts one, by vfork) has that parent's
    high water in its ``ru_maxrss`` (the premise: the check below sees it), and
    ``high_water_mb`` says what the process itself held."""
    [[own, inherited]] = printed_figures(_INHERITING_PARENT, words=2)
    assert int(inherited) >= 300  # what ru_maxrss would have said
    assert int(own) < 250  # the child's imports (psutil, the allocator's), not 300 MB


_CLOCK_CHILD = """
import time
from pipelines.memory import HighWater
water = HighWater()
until = time.process_time() + 0.3
while time.process_time() < until:
    pass
water.mark("busy")
time.sleep(0.3)
water.mark("asleep")
for phase, cpu, wall in water.phase_seconds():
    print(phase, cpu, wall)
print(water.timing().replace(" ", "_"))
print(HighWater().timing().replace(" ", "_"))
"""


def test_each_phase_is_given_its_own_cpu_and_wall_seconds(tmp_path: Path) -> None:
    """A phase that computes has its CPU seconds; the phase after it, asleep, has wall
    seconds and next to no CPU: each phase counts from the mark before it, not from the
    start (a cumulative figure would give the sleeper the worker's CPU too). (A fresh
    process: the test runner's other threads would add their CPU.)"""
    out = _child(tmp_path, _CLOCK_CHILD)
    busy, busy_cpu, busy_wall, asleep, asleep_cpu, asleep_wall, line, empty = out
    assert (busy, asleep) == ("busy", "asleep")
    # busy until 0.3 CPU s (a loaded machine may stretch its wall time, never shrink it: the
    # child has one thread), never the sleeper's
    assert float(busy_cpu) >= 0.3 and float(busy_wall) >= float(busy_cpu) * 0.9
    assert float(asleep_cpu) < 0.1 and float(asleep_wall) >= 0.29
    assert line.startswith("time:_") and f"_busy_{float(busy_cpu):,.1f}_/_" in line
    assert f"_asleep_{float(asleep_cpu):,.1f}_/_{float(asleep_wall):,.1f}" in line
    assert empty == "time:_no_phase_measured"


_GC_CHILD = """
import gc
import sys
from pipelines import memory
if sys.argv[1] == "tuned":
    memory.tune_gc()
full = gc.get_stats()[2]["collections"]
kept = [[] for _ in range(600_000)]  # long-lived containers, as a run's imports make
print(gc.get_threshold()[2], gc.get_stats()[2]["collections"] - full)
"""


def test_a_tuned_run_makes_far_fewer_full_collections(tmp_path: Path) -> None:
    """Objects that live on (a run imports modules as it goes) make CPython walk everything
    it tracks again and again at its default thresholds; with :func:`memory.tune_gc`
    (``streethub run`` calls it first thing) a full collection waits for 100 collections of
    the middle generation. (A fresh process each: the thresholds are the process's.)"""
    threshold, full = _child(tmp_path, _GC_CHILD, "tuned")
    assert int(threshold) == memory.GC_THRESHOLDS[2] and int(full) == 0
    threshold, full = _child(tmp_path, _GC_CHILD, "default")
    assert int(threshold) == 10 and int(full) >= 3


_EXIT_CHILD = """
import os
import sys
from pipelines import memory
if sys.argv[1] == "frozen":
    memory.freeze_at_exit()
    memory.freeze_at_exit()  # once a process, however often asked


class Cycle:
    def __init__(self):
        self.me = self  # only a collection frees it

    def __del__(self):
        os.write(1, b"collected ")


Cycle()
print("done", flush=True)
"""


def test_the_process_end_makes_no_collection_over_the_heap(tmp_path: Path) -> None:
    """With :func:`memory.freeze_at_exit` (``streethub run`` calls it first thing) the
    collection CPython makes as it shuts down scans nothing: a cycle left at the end is not
    collected (the process's end frees its memory). Without it, the shutdown's collection
    finds it, as it walks every object the process holds."""
    assert _child(tmp_path, _EXIT_CHILD, "frozen") == ["done"]
    assert _child(tmp_path, _EXIT_CHILD, "default") == ["done", "collected"]


def test_the_need_model_gets_a_new_instance_only_on_a_large_street(staged_street, monkeypatch):
    """The renewal's heap (~50 MB) is the same on any street; its cost (~0.3 CPU s) is paid
    only where the lake's staged rows reach the threshold, counted from the catalogue."""
    from lakehouse.lake import open_lake
    from pipelines import main_job

    with open_lake(staged_street, read_only=True) as con:
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake' "
            "AND schema_name = 'staged'"
        ).fetchall()
        counted = sum(
            con.execute(f'SELECT count(*) FROM staged."{t}"').fetchone()[0] for (t,) in tables
        )
    assert counted > 0
    assert main_job.renews(staged_street) is (counted >= main_job.RENEW_AT_STAGED_ROWS)
    assert main_job.renews(staged_street) is False  # the session's street is small
    monkeypatch.setattr(main_job, "RENEW_AT_STAGED_ROWS", counted)
    assert main_job.renews(staged_street) is True
    monkeypatch.setattr(main_job, "RENEW_AT_STAGED_ROWS", counted + 1)
    assert main_job.renews(staged_street) is False
