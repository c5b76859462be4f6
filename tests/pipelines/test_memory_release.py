"""What a unit of work left in reference cycles goes back once the process grew enough,
and a small step pays no collection."""

from __future__ import annotations

import gc
import weakref

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
