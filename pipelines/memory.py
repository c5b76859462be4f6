"""Giving back what a unit of work held, before the next one starts.

A step's frames can stay alive after it returns, held by reference cycles (a traceback,
a closure, an object that points back at its owner) until CPython's next full
collection, which comes rarely in a run (8-10 in a whole first run); the next step's peak
then stands on top of them. At 200,000 residents a collection after the curated build
gave back 480 MB (876 -> 393 MB). A full collection costs tenths of a second, so it runs
only when the process grew by ``GROWTH`` since the last one: after the big steps of a
big street, not after every small one.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import resource
import time
from dataclasses import dataclass, field
from functools import cache

import psutil

from lakehouse.allocator import purge_freed

GROWTH = 256 * 2**20  # bytes of RSS above the last collection's that call for one

GC_THRESHOLDS = (700, 10, 100)
"""CPython's collection thresholds for a run (:func:`tune_gc`): the young generations' as
CPython's own, a full collection after 100 collections of the middle one instead of 10.
A full collection walks every object the process tracks, most of them the modules a
run imports as it goes (Great Expectations', MLflow's, LightGBM's, after the imports
frozen at the start); in a 1,000-resident first run CPython made 12 of them for 1.04 CPU s,
which found ~11,000 objects of garbage in all. The garbage that holds memory, a step's
frames held by cycles, is collected by :func:`release` when the process grew."""

_PROCESS = psutil.Process()


def rss() -> int:
    """This process's resident set size, in bytes."""
    return _PROCESS.memory_info().rss


_floor = [rss()]  # the RSS after the last collection (at first: after the imports)


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release(growth: int = GROWTH) -> bool:
    """Collect cycles and hand freed heap pages back to the system when the process grew
    by ``growth`` bytes since the last time; True when it did."""
    if rss() - _floor[0] < growth:
        return False
    gc.collect()
    trim_heap()
    _floor[0] = rss()
    return True


def trim_heap() -> None:
    """Hand the C heap's freed pages back to the system (glibc's ``malloc_trim``; nothing
    where there is none): glibc keeps freed pages of its arenas, scattered among live
    allocations, until asked; and DuckDB's allocator its own until its decay, seconds later
    (:func:`lakehouse.allocator.purge_freed`). Milliseconds; no collection."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
    purge_freed()


# glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = (
    128 * 2**10
)  # bytes: a block at least this large is its own mapping (glibc starts there)
ARENA_MAX = 2  # arenas for the process's threads (glibc's default: 8 per core)


def tune_heap() -> bool:
    """Make glibc's heap give memory back as the process goes (call once, early; True when
    it could). By default glibc raises its threshold for serving a block from its own
    mapping up to 32 MB each time such a block is freed, so after the first large frame
    every block below that is carved from the heap, whose freed pages stay resident among
    live ones; and each thread that allocates may get an arena of its own (up to 16 on 2
    cores), each keeping its freed pages. A fixed threshold makes a large block the heap has
    no free room for (a numpy array, a batch's buffer) a mapping of its own, returned when
    freed, instead of growing the heap (free room already in the heap still serves any
    size), and fixes the trim threshold with it, so freed room at the heap's top goes back;
    two arenas bound what the threads keep. A 50,000-resident first run (2026-12-01, beside one without, same
    load): peak RSS 1.23 -> 1.12 GB, 0.03-0.1 GB less through the run, CPU 204 -> 207 s;
    set at run time as here, 1.12 GB again. ``streethub run`` calls it first thing."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
    )


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` (``streethub run`` calls it first, before its imports)."""
    gc.set_threshold(*GC_THRESHOLDS)


@cache
def freeze_at_exit() -> None:
    """At the interpreter's exit, after the exit handlers registered before it ran (this one
    is registered first of a run's, so it runs last), freeze every object: the collection
    the interpreter makes as it shuts down is a full one over every object it tracks, which
    after a 1,000-resident first run took ~0.7 CPU s (``py-spy --native``: the process's
    last 0.86 s, after its last line, were ``gc_collect_main``) to find garbage that the
    process's end frees anyway. Frozen objects are not scanned; nothing is written by the
    collection (a run's lake, Dagster and audit files are closed and committed by then).
    Registered once a process (cached)."""
    atexit.register(gc.freeze)


STATUS = "/proc/self/status"  # Linux: the process's own memory figures, VmHWM among them


def high_water_mb() -> float:
    """The most this process has held resident since it started, in MB: the kernel's own
    high-water mark of its memory (exact, however short the peak, where a sampler misses
    what comes between two samples). On Linux ``VmHWM``, the mark of the process's own
    memory, not ``ru_maxrss``: a process started by vfork (Python's ``subprocess``, and
    ``posix_spawn``, use it where they can: Dagster's run launcher, a benchmark's parent)
    takes its parent's high-water mark into its ``ru_maxrss`` when it execs, so a run
    started by a process that once held 860 MB said its peak was 860 MB whatever it held
    itself. ``ru_maxrss`` where there is no ``/proc``."""
    try:
        with open(STATUS, "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class HighWater:
    """The process's high-water mark (:func:`high_water_mb`) after each phase of a run, so
    the run can say in which phase it reached its peak: the first phase whose mark is as
    high as the last one's (the high water only rises). What came before the first mark
    (the imports, the catalogue) counts to the first phase, and so does the high water of
    the process that started this one, which Linux carries into it at exec: a run started
    by a large process (a test runner) may show that one's peak at its first mark.

    The process's CPU seconds (every thread's) and the wall seconds are kept beside each
    mark, from the moment this record was made, so the run can also say which phase its
    time went to (:meth:`timing`)."""

    marks: list[tuple[str, float]] = field(default_factory=list)
    clock: list[tuple[float, float]] = field(default_factory=list)  # (CPU s, wall s) a mark
    start: tuple[float, float] = field(
        default_factory=lambda: (time.process_time(), time.perf_counter())
    )

    def mark(self, phase: str) -> None:
        """``phase`` has just ended."""
        self.marks.append((phase, high_water_mb()))
        self.clock.append((time.process_time(), time.perf_counter()))

    def peak(self) -> tuple[str, float] | None:
        """(phase, MB): where the high water reached its height, and that height; None
        before any mark."""
        if not self.marks:
            return None
        top = self.marks[-1][1]
        return next((phase, mb) for phase, mb in self.marks if mb >= top)

    def phase_seconds(self) -> list[tuple[str, float, float]]:
        """(phase, CPU s, wall s) of each phase, from the mark before it (the first from
        when this record was made)."""
        before = [self.start, *self.clock]
        return [
            (phase, cpu - cpu0, wall - wall0)
            for (phase, _), (cpu, wall), (cpu0, wall0) in zip(
                self.marks, self.clock, before, strict=False
            )
        ]

    def sentence(self) -> str:
        """The peak and every phase's mark, for the run's summary."""
        peak = self.peak()
        if peak is None:
            return "memory: no phase measured"
        marks = ", ".join(f"{phase} {mb:,.0f}" for phase, mb in self.marks)
        return (
            f"memory: peak {peak[1]:,.0f} MB resident, reached in {peak[0]} "
            f"(the high water after each phase, MB: {marks})"
        )

    def timing(self) -> str:
        """The CPU and wall seconds of the phases, each phase's own, for the run's summary
        (this process's CPU, every thread's; not its children's: the simulated departments'
        API server is a process of its own)."""
        phases = self.phase_seconds()
        if not phases:
            return "time: no phase measured"
        cpu = sum(c for _, c, _ in phases)
        wall = sum(w for _, _, w in phases)
        each = ", ".join(f"{phase} {c:,.1f} / {w:,.1f}" for phase, c, w in phases)
        return (
            f"time: {cpu:,.1f} CPU s, {wall:,.1f} s wall from the ingest on "
            f"(each phase's CPU / wall s: {each})"
        )
