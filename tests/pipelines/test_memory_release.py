"""What a unit of work left in reference cycles goes back once the process grew enough,
and a small step pays no collection."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

from pipelines import memory


class _Holder:
    def __init__(self, size: int) -> None:
        self.buffer = bytearray(b"\x01") * size  # written: resident, counted in RSS
        self.me = self  # a cycle: only a collection frees it


def _left_in_a_cycle(size: int) -> weakref.ref:
    holder = _Holder(size)
    return weakref.ref(holder)


def test_a_cycle_is_collected_after_growth_only() -> None:
    gc.collect()
    gc.disable()  # no automatic collection meanwhile: only release() may free the cycle
    try:
        memory._floor[0] = memory.rss()
        small = _left_in_a_cycle(1 << 20)
        assert memory.release(growth=64 << 20) is False  # 1 MB grown: no collection
        assert small() is not None
        big = _left_in_a_cycle(96 << 20)
        before = memory.rss()
        assert memory.release(growth=64 << 20) is True
        assert big() is None and small() is None
        assert memory.rss() < before - (64 << 20)  # the pages went back to the system
        assert memory._floor[0] < before - (64 << 20)  # the next growth counts from there
    finally:
        gc.enable()


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


def _heap_child(tmp_path: Path, mode: str) -> tuple[int, int]:
    script = tmp_path / "heap_child.py"
    script.write_text(_TUNED_CHILD)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, str(script), mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    ).stdout.split()
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
