"""DuckDB extensions loaded from the PyPI wheels ``duckdb-extension-*`` (no network).

``INSTALL x`` would try the network; instead the binary shipped inside the
wheel is LOADed by path, and automatic installs are switched off so nothing
is ever fetched at run time.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import duckdb

from catalog.errors import LakeError
from catalog.settings import Settings
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
    """
    load_extensions(con, settings, "httpfs")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    con.execute(f"SET temp_directory = {sql_literal(str(directory))}")
    con.execute("SET temp_file_encryption = true")
