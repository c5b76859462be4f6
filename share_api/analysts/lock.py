"""Opening an analyst database so that DuckDB itself keeps it shut (只读、禁外部访问、锁定配置).

:func:`open_locked` opens the file read-only with ``enable_external_access = false`` (no
file readers, ``glob``, ``ATTACH``, ``COPY … TO``, ``INSTALL``/``LOAD``, no extension
autoloading) and then ``lock_configuration = true``: from there on every ``SET``/``RESET``
is refused, so nothing can turn the access back on. The memory limit and the worker
threads are set before the lock (they cannot be changed after it). The tables in the file
stay readable. Opened twice in one process (a notebook's startup file and its first
cell), the second connection shares the first's locked database.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from lakehouse.session import in_utc

# set at connect, before the lock: what keeps a query inside the file
LOCKED_CONFIG: dict[str, str] = {
    "enable_external_access": "false",
    "autoinstall_known_extensions": "false",
    "autoload_known_extensions": "false",
    "allow_community_extensions": "false",
    "allow_unsigned_extensions": "false",
}


def open_locked(
    path: Path | str, *, memory_limit: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """``path`` opened read-only, external access off, then the configuration locked
    (``memory_limit`` and ``threads``, when given, set first)."""
    config = dict(LOCKED_CONFIG)
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    if threads is not None:
        config["threads"] = str(int(threads))
    con = duckdb.connect(str(path), read_only=True, config=config)
    try:
        # a second open in one process shares the first's database (DuckDB keeps one per
        # file, and refuses another configuration): locked already, it stays so
        external, locked = con.execute(
            "SELECT current_setting('enable_external_access'), "
            "current_setting('lock_configuration')"
        ).fetchone()
        if external:  # pragma: no cover - the config above turned it off
            raise duckdb.InvalidInputException("external access is on")
        if not locked:
            in_utc(con)  # an analyst's times in UTC, as the lake's, on any machine
            con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


__all__ = ["LOCKED_CONFIG", "open_locked"]
