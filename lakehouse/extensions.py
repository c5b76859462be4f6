"""DuckDB extensions loaded from the PyPI wheels ``duckdb-extension-*`` (no network).

``INSTALL x`` would try the network; instead the binary shipped inside the
wheel is LOADed by path, and automatic installs are switched off so nothing
is ever fetched at run time.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import socket
from functools import cache
from pathlib import Path

import duckdb

from catalog.errors import LakeError
from catalog.settings import Settings
from lakehouse.processes import alive
from lakehouse.session import in_utc
from lakehouse.sqltext import sql_literal


@cache
def extension_path(name: str) -> Path:
    """Where the wheel ``duckdb-extension-<name>`` keeps the binary for this DuckDB."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or spec.origin is None:
        raise LakeError(
            f"DuckDB extension {name!r} is not installed: add duckdb-extension-"
            f"{name.replace('_', '-')}=={duckdb.__version__} to pyproject.toml"
        )
    path = (
        Path(spec.origin).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / f"{name}.duckdb_extension"
    )
    if not path.exists():
        raise LakeError(
            f"DuckDB extension {name!r} has no binary for v{duckdb.__version__}: {path}"
        )
    return path


def load_extensions(con: duckdb.DuckDBPyConnection, settings: Settings, *names: str) -> None:
    """Switch off network installs and LOAD each named extension from its wheel."""
    settings.extension_dir.mkdir(parents=True, exist_ok=True)
    con.execute("SET autoinstall_known_extensions = false")
    con.execute(f"SET extension_directory = {sql_literal(str(settings.extension_dir))}")
    for name in names:
        con.execute(f"LOAD {sql_literal(str(extension_path(name)))}")


def spill_encrypted(con: duckdb.DuckDBPyConnection, settings: Settings, directory: Path) -> None:
    """What ``con`` cannot hold within its ``memory_limit`` spills into ``directory``, encrypted.

    DuckDB writes a query's overflow (hash tables, sorts, tables larger than memory) in
    temporary files; with ``temp_file_encryption`` it encrypts them (AES-GCM under a key it
    draws for the instance and never writes), but only with the OpenSSL crypto that the
    httpfs extension brings. So a connection over personal data may bound its memory and
    still leave nothing readable on disk. Call before the connection's first query.

    ``directory`` must be the instance's own (:func:`spill_folder`): DuckDB names its
    temporary files the same in every instance (``duckdb_temp_storage_DEFAULT-0.tmp`` …),
    and two instances spilling into one folder at once overwrite each other's blocks: both
    processes died of a segmentation fault (DuckDB 1.5.5, 2026-12-06). Only its parent is
    made here (private): DuckDB makes the folder when it first spills and, having made it,
    removes it when the instance closes.
    """
    load_extensions(con, settings, "httpfs")
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    con.execute(f"SET temp_directory = {sql_literal(str(directory))}")
    con.execute("SET temp_file_encryption = true")


_SPILLS = itertools.count()


def spill_folder(root: Path) -> Path:
    """A spill folder under ``root`` that no other DuckDB instance uses, named by this host,
    process and a counter. The folders a process of this host left when it died (DuckDB
    removes its own only when it closes: a killed run's stay, their blocks encrypted under
    a key that died with it) are removed here; another host's (a container sharing the
    home, whose processes this one cannot see) are left to it."""
    host = socket.gethostname()
    if root.is_dir():
        for old in root.iterdir():
            owner, _, rest = old.name.rpartition("-")[0].rpartition("-")
            if owner == host and rest.isdigit() and old.is_dir() and not alive(int(rest)):
                shutil.rmtree(old, ignore_errors=True)
    return root / f"{host}-{os.getpid()}-{next(_SPILLS)}"


def bounded_instance(
    settings: Settings, spill_root: Path, *extensions: str
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for personal data, as the hub opens every one that reads a
    department's or the lake's rows: ``settings.lake_threads`` threads, at most
    ``settings.lake_memory_limit`` of memory, what does not fit spilled encrypted into a
    folder of its own under ``spill_root`` (:func:`spill_encrypted`, :func:`spill_folder`),
    times in UTC, and ``extensions`` loaded from their wheels. Without a limit and a folder,
    DuckDB's defaults are 80 % of the machine and ``.tmp/`` in the working directory, in
    the clear."""
    con = duckdb.connect(
        config={
            # one thread (``lake_threads``): the hub runs thousands of small statements
            # (DuckLake metadata reads, small inserts), and each woke the idle workers, which
            # spin before they sleep: 2 threads cost a 1,000-resident street's run 20-50 %
            # more CPU (60.4 -> 40.5 s) and a 20,000-resident one 16 % (72.3 -> 60.6 s)
            "threads": settings.lake_threads,
            # DuckDB's default is 80 % of the machine, and it keeps what it read (Parquet
            # pages in its external file cache) for the life of the instance: bounded here
            "memory_limit": settings.lake_memory_limit,
            # DuckDB's allocator (jemalloc) keeps what a query freed until a purge: 540 MB of
            # a dropped 1.7-million-row sort stayed resident, with nothing in its buffers,
            # until the instance closed (a 200,000-resident run carried ~1 GB into its last
            # phases that way); its background thread gives it back within seconds
            "allocator_background_threads": True,
        }
    )
    try:
        in_utc(con)
        load_extensions(con, settings, *extensions)
        spill_encrypted(con, settings, spill_folder(spill_root))
    except BaseException:
        con.close()
        raise
    return con
