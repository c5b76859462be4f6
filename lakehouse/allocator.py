"""DuckDB's freed memory handed back to the system at once, instead of over the next seconds.

DuckDB allocates through a jemalloc of its own, linked into its Python module. What a query
freed stays resident until jemalloc's decay gives it back, over about two seconds (after a
3-million-row sort on one thread: 251, 192, 101, 56 MB at 0, 0.5, 1 and 2 s). Python work
that starts right after a large query (the need model encrypting a cut-off's features just
read) stands on top of what the query freed meanwhile: at 200,000 residents the run's peak
came that way. Purging every arena hands those pages back at once (the same sort: 251 -> 55
MB in 16 ms).

The purge goes through ``duckdb_je_mallctl``, which the module exports; where it is absent
(another build of DuckDB) nothing is done. What was not freed yet (a result still held, the
statement before's state until the next statement runs) is not touched: it is purged next
time.

jemalloc lets one purge of an arena run at a time: asked while its background thread is in
the middle of one of its own (the lake runs with ``allocator_background_threads``), a purge
returns at once having done nothing (after the sort above, 5 purges in 16 left 240 MB
resident). So the background threads are stopped for the purge, which waits for a purge of
theirs under way to end, and started again after it (~0.1 ms).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from functools import cache

_ARENAS_ALL = 4096  # jemalloc's MALLCTL_ARENAS_ALL: "arena.<i>.purge" for every arena
_PURGE_ALL = f"arena.{_ARENAS_ALL}.purge".encode()
_BACKGROUND = b"background_thread"  # read and written: are jemalloc's purging threads on

_Mallctl = Callable[[bytes, object, object, object, int], int]


@cache
def _mallctl() -> _Mallctl | None:
    """DuckDB's ``mallctl``, None where its module does not export one."""
    try:
        import _duckdb  # DuckDB's compiled module (``import duckdb`` loads it)

        ctl = ctypes.CDLL(_duckdb.__file__).duckdb_je_mallctl
    except (ImportError, OSError, AttributeError, TypeError):
        return None
    ctl.argtypes = [ctypes.c_char_p, *[ctypes.c_void_p] * 3, ctypes.c_size_t]
    ctl.restype = ctypes.c_int
    return ctl


_ONE_AT_A_TIME = threading.Lock()  # one thread stops and restarts the background threads


def _background(ctl: _Mallctl, on: bool | None = None) -> bool | None:
    """Whether jemalloc's background threads run (None where it cannot say); given ``on``,
    they are started or stopped first (stopping waits for the work they are doing)."""
    value = ctypes.c_bool()
    size = ctypes.c_size_t(ctypes.sizeof(value))
    new = None if on is None else ctypes.byref(ctypes.c_bool(on))
    rc = ctl(_BACKGROUND, ctypes.byref(value), ctypes.byref(size), new, 0 if on is None else 1)
    return None if rc != 0 else value.value


def purge_freed() -> bool:
    """Hand every page DuckDB's allocator holds freed back to the system now (every arena's
    unused dirty pages; milliseconds, ~0.1 ms with nothing to give), the background threads
    stopped meanwhile. True when DuckDB's allocator could be asked."""
    ctl = _mallctl()
    if ctl is None:
        return False
    with _ONE_AT_A_TIME:
        running = _background(ctl) is True
        if running:
            _background(ctl, on=False)
        try:
            return ctl(_PURGE_ALL, None, None, None, 0) == 0
        finally:
            if running:
                _background(ctl, on=True)


__all__ = ["purge_freed"]
