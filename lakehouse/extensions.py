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
    con.execute(f"SET extension_directory = '{settings.extension_dir}'")
    for name in names:
        con.execute(f"LOAD '{extension_path(name)}'")
