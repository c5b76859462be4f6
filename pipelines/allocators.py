"""The allocators of polars and DuckDB, and polars' thread pool, set before either is imported.

Polars and DuckDB each bring a jemalloc of their own, each reading its settings from its
own environment variable once, when the library is imported (polars appends
``_RJEM_MALLOC_CONF`` to its own ``dirty_decay_ms:500,muzzy_decay_ms:1000``; a later key
wins). A page an allocator freed is first "dirty" (still resident, reused first); after the
dirty decay it becomes "muzzy": ``MADV_FREE``, which leaves it counted in the process's
RSS (``LazyFree``) until the kernel is short of memory — on a machine with room to spare,
never. A muzzy decay of 0 hands the page back with ``MADV_DONTNEED`` when its dirty decay
ends, so the RSS is what is in use. Kept apart from :mod:`pipelines.memory` (psutil, and its
RSS floor taken at import), so that ``pipelines`` can set these first thing.
"""

from __future__ import annotations

import os

ALLOCATOR_CONF = {
    "_RJEM_MALLOC_CONF": "muzzy_decay_ms:0",
    "DUCKDB_JE_MALLOC_CONF": "muzzy_decay_ms:0",
}
THREAD_CONF = {"POLARS_MAX_THREADS": "1"}
"""Polars' thread pool, sized when polars is imported: one thread, as the lake's DuckDB has
(``Settings.lake_threads``). The hub's frames are a delivery's, a batch's or a column's, and
a run makes tens of thousands of polars operations on them: with a pool of two, each string
operation and each lazy query handed its work to the pool and waited (~0.1 ms of a ~0.02 ms
operation on 100 values). Side by side (2026-12-05, 2 cores): a 1,000-resident first run
35.4-36.0 -> 33.2-33.5 CPU s, wall alike; a 200,000-resident one 420 -> 410 CPU s, peak RSS
994 -> 968 MB, wall 431 -> 444 s (the curated build and the summary lost ~6 s of parallel
polars, the ingest's wall is the departments' answers)."""


def tune_libraries() -> None:
    """Set :data:`ALLOCATOR_CONF` and :data:`THREAD_CONF` in the environment where they are
    not set yet (an operator's own setting wins); they hold for a library imported after
    this, and for child processes (``pipelines`` calls it on import, before it or anything
    of ours imports polars or DuckDB). The allocators: a 200,000-resident first run
    (2026-12-02, beside one without, same load): up to 95 MB of ``LazyFree`` in the RSS
    without, none with; max RSS 1,077 -> 1,040 MB."""
    for name, conf in (ALLOCATOR_CONF | THREAD_CONF).items():
        os.environ.setdefault(name, conf)
