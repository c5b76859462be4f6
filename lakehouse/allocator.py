"""What DuckDB and polars freed, handed back to the system at once, instead of over the next
seconds.

DuckDB allocates through a jemalloc of its own, linked into its Python module. What a query
freed stays resident until jemalloc's decay gives it back, over about two seconds (after a
3-million-row sort on one thread: 251, 192, 101, 56 MB at 0, 0.5, 1 and 2 s). Python work
that starts right after a large query (the need model encrypting a cut-off's features just
read) stands on top of what the query freed meanwhile: at 200,000 residents the run's peak
came that way. Purging every arena hands those pages back at once (the same sort: 251 -> 55
MB in 16 ms).

Polars has a jemalloc of its own too (``dirty_decay_ms:500``), and it is worse off: jemalloc
decays an arena's dirty pages only when that arena is used again, so what polars freed
stays resident for as long as polars is not called, whatever the time. NumPy, LightGBM and
glibc's heap never reuse those pages: at 200,000 residents the need model's training stood
on ~130 MB that reading its rows through polars had freed. Polars does not export its
``mallctl``; it is found by name in the symbol table of polars' compiled module
(:func:`_polars_mallctl`), checked to be a function of that file, and asked for a
harmless setting before it is trusted. Where it is not found (another build of polars,
one stripped of its symbols), nothing is done for polars.

DuckDB's purge goes through ``duckdb_je_mallctl``, which its module exports; where it is
absent (another build of DuckDB) nothing is done. What was not freed yet (a result still
held, the statement before's state until the next statement runs) is not touched: it is
purged next time.

jemalloc lets one purge of an arena run at a time: asked while its background thread is in
the middle of one of its own (the lake runs with ``allocator_background_threads``), a purge
returns at once having done nothing (after the sort above, 5 purges in 16 left 240 MB
resident). So DuckDB's background threads are stopped for the purge, which waits for a
purge of theirs under way to end, and started again after it (~0.1 ms). Polars' jemalloc
runs none.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

_ARENAS_ALL = 4096  # jemalloc's MALLCTL_ARENAS_ALL: "arena.<i>.purge" for every arena
_PURGE_ALL = f"arena.{_ARENAS_ALL}.purge".encode()
_BACKGROUND = b"background_thread"  # read and written: are jemalloc's purging threads on

_Mallctl = Callable[[bytes, object, object, object, int], int]
# jemalloc's ``int mallctl(const char *, void *, size_t *, void *, size_t)``, either library's
_MALLCTL_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, *[ctypes.c_void_p] * 3,
                                 ctypes.c_size_t)  # fmt: skip


@cache
def _mallctl() -> _Mallctl | None:
    """DuckDB's ``mallctl``, None where its module does not export one."""
    try:
        import _duckdb  # DuckDB's compiled module (``import duckdb`` loads it)

        exported = ctypes.CDLL(_duckdb.__file__).duckdb_je_mallctl
    except (ImportError, OSError, AttributeError, TypeError):
        return None
    return _MALLCTL_TYPE(ctypes.cast(exported, ctypes.c_void_p).value)  # type: ignore[return-value]


# ELF64, little-endian (the Linux wheels'): a section header's and a symbol's fields
_SECTION = np.dtype([("name", "<u4"), ("type", "<u4"), ("flags", "<u8"), ("addr", "<u8"),
                     ("offset", "<u8"), ("size", "<u8"), ("link", "<u4"), ("info", "<u4"),
                     ("align", "<u8"), ("entsize", "<u8")])  # fmt: skip
_SYMBOL = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                    ("value", "<u8"), ("size", "<u8")])  # fmt: skip
_SHT_SYMTAB, _SHT_DYNSYM, _STT_FUNC = 2, 11, 2
_POLARS_MALLCTL = "_rjem_mallctl"  # polars' jemalloc is built with the "_rjem_" prefix
_POLARS_ANCHOR = "PyInit__polars_runtime"  # exported: where the module was loaded


def _elf_functions(path: Path, names: tuple[str, ...]) -> dict[str, int]:
    """The addresses (relative to the load base) of the functions ``names`` in the symbol
    tables of the ELF64 file ``path``, those found; {} for a file that is not one."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:6] != b"\x7fELF\x02\x01" or len(data) < 64:
            return {}
        shoff = int.from_bytes(data[0x28:0x30], "little")
        count = int.from_bytes(data[0x3C:0x3E], "little")
        if not shoff or shoff + count * _SECTION.itemsize > len(data):
            return {}
        sections = np.frombuffer(data[shoff : shoff + count * _SECTION.itemsize], _SECTION)
        found: dict[str, int] = {}
        for table in sections[np.isin(sections["type"], [_SHT_SYMTAB, _SHT_DYNSYM])]:
            strings = sections[table["link"]]
            text = data[int(strings["offset"]) : int(strings["offset"] + strings["size"])]
            start = int(table["offset"])  # copied out: the map closes after
            symbols = np.frombuffer(data[start : start + int(table["size"])], _SYMBOL)
            for name in names:
                at = text.find(b"\0" + name.encode() + b"\0")
                hits = symbols[(symbols["name"] == at + 1) & (symbols["value"] != 0)]
                hits = hits[(hits["info"] & 0xF) == _STT_FUNC]
                if at >= 0 and len(hits):
                    found[name] = int(hits["value"][0])
        return found


@cache
def _polars_mallctl() -> _Mallctl | None:
    """Polars' ``mallctl``, None where it cannot be found and checked: its offset in the
    symbol table of polars' compiled module, placed by the module's exported entry point
    (both functions of that file), then asked polars' dirty decay, which must read back
    as a number (~0.1 s, once a process)."""
    try:
        import polars._plr as compiled  # polars' compiled module (``import polars`` loads it)

        path = Path(compiled.__file__)
        found = _elf_functions(path, (_POLARS_MALLCTL, _POLARS_ANCHOR))
        if len(found) != 2:
            return None
        anchor = ctypes.cast(getattr(ctypes.CDLL(str(path)), _POLARS_ANCHOR), ctypes.c_void_p)
        if anchor.value is None:
            return None
        ctl = _MALLCTL_TYPE(anchor.value - found[_POLARS_ANCHOR] + found[_POLARS_MALLCTL])
    except (ImportError, OSError, AttributeError, TypeError, ValueError):
        return None
    decay, size = ctypes.c_ssize_t(-2), ctypes.c_size_t(ctypes.sizeof(ctypes.c_ssize_t))
    read = ctl(b"opt.dirty_decay_ms", ctypes.byref(decay), ctypes.byref(size), None, 0)
    return ctl if read == 0 and decay.value >= -1 else None  # type: ignore[return-value]


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
    """Hand every page DuckDB's and polars' allocators hold freed back to the system now
    (every arena's unused dirty pages; milliseconds, ~0.1 ms with nothing to give), DuckDB's
    background threads stopped meanwhile. True when DuckDB's allocator could be asked
    (polars': :func:`purge_polars`)."""
    purge_polars()
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


def purge_polars() -> bool:
    """Hand every page polars' allocator holds freed back to the system now; True when its
    ``mallctl`` was found (:func:`_polars_mallctl`) and the purge done."""
    ctl = _polars_mallctl()
    return ctl is not None and ctl(_PURGE_ALL, None, None, None, 0) == 0


__all__ = ["purge_freed", "purge_polars"]
