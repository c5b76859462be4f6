"""A department's relational database, read over a real DB connection.

The police registry is a SQLite file by default (DuckDB's sqlite scanner,
read-only, every column as text as the legacy system keeps it); the same
code reads PostgreSQL through DuckDB's postgres scanner once a later issue
adds it. Pulls are incremental on the dataset's ``cursor_column``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from catalog.errors import DeliveryError
from catalog.model import Dataset
from catalog.settings import Settings
from lakehouse.extensions import bounded_instance
from lakehouse.sqltext import sql_literal


@dataclass(frozen=True)
class Pulled:
    """Records pulled from a system (not a file): bytes to land and where the cursor ends."""

    data: bytes
    rows: int
    cursor_end: str | None
    source: str


def db_url(settings: Settings, dept: str, dataset: str) -> str:
    """The department database's URL from the settings (``STREETHUB_<DEPT>_DB_URL``)."""
    url = settings.db_url(dept)
    if not url:
        raise DeliveryError(
            f"no database URL for department {dept!r}: set STREETHUB_{dept.upper()}_DB_URL",
            dataset=dataset,
        )
    return url


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


_READERS: dict[tuple[Path, Path], duckdb.DuckDBPyConnection] = {}  # (extensions, lake) -> it
_READERS_LOCK = threading.Lock()
_ATTACHED = itertools.count()


def _readers(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB that reads department databases, its sqlite scanner
    loaded once: DuckDB verifies an extension's signature at every LOAD (~0.1 s, as much as
    a small pull), which a new connection per pull paid each time. It holds nothing between
    pulls: each attaches its database read-only on a cursor of its own and detaches it.

    Bounded as the lake's instances are (:func:`lakehouse.extensions.bounded_instance`): a
    pull sorts a department's rows, personal data, and what does not fit in its memory
    spills encrypted under the lake (its own folder), where DuckDB's defaults would have
    used 80 % of the machine and spilled in the clear into ``.tmp/`` of the working
    directory. An instance apart from the lake's: its ``sqlite_all_varchar`` would make
    DuckLake read its SQLite catalogue as text."""
    with _READERS_LOCK:
        key = (settings.extension_dir, settings.lake_dir)
        con = _READERS.get(key)
        if con is None:
            con = bounded_instance(settings, settings.spill_dir, "sqlite_scanner")
            # every cursor too (a bare SET is the connection's): text, as the legacy systems keep it
            con.execute("SET GLOBAL sqlite_all_varchar = true")
            _READERS[key] = con
        return con


def pull_sql(settings: Settings, dept: str, dataset: Dataset, cursor: str | None) -> Pulled:
    d = dataset.delivery
    url = db_url(settings, dept, dataset.code)
    kind, _, target = url.partition(":")
    if kind != "sqlite":
        raise DeliveryError(f"unsupported database URL scheme {kind!r}", dataset=dataset.code)
    if not os.path.exists(target):
        raise DeliveryError(
            f"the department database is not reachable: {target} does not exist",
            dataset=dataset.code,
            file=target,
        )
    con = _readers(settings).cursor()
    src = f"src_{next(_ATTACHED)}"  # a name of its own: another thread may be pulling
    try:
        con.execute(f"ATTACH {sql_literal(target)} AS {src} (TYPE sqlite, READ_ONLY)")
        order = [d.cursor_column] if d.cursor_column else []
        order += [dataset.field(k).source_name for k in dataset.key]
        sql = f"SELECT * FROM {src}.{_quote(d.table or '')}"
        params: list[str] = []
        if d.cursor_column and cursor is not None:
            sql += f" WHERE {_quote(d.cursor_column)} > ?"
            params.append(cursor)
        sql += " ORDER BY " + ", ".join(_quote(c) for c in dict.fromkeys(order))
        frame = con.execute(sql, params).pl()
    except duckdb.Error as exc:  # DuckDB's text may quote a value of the table: never shown
        raise DeliveryError(
            f"reading table {d.table!r} failed: {type(exc).__name__} "
            "(its message is withheld: it may quote source data)",
            dataset=dataset.code,
            file=target,
        ) from None
    finally:
        with contextlib.suppress(duckdb.Error):  # never attached: nothing to let go
            con.execute(f"DETACH DATABASE IF EXISTS {src}")
        con.close()
    cursor_end = cursor
    if d.cursor_column and frame.height:
        cursor_end = frame.select(pl.col(d.cursor_column).max()).item()
    return Pulled(
        data=frame.write_ndjson().encode() if frame.height else b"",
        rows=frame.height,
        cursor_end=cursor_end,
        source=f"{url}#{d.table}",
    )
