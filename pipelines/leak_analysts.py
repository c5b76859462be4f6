"""The leak scanner's ``analysts`` area: the analysts' databases (``share_api.analysts``).

Every DuckDB file under ``analyst_dir`` (what ``streethub analyst`` writes) and every
workspace copy under ``notebook_dir`` (what ``streethub notebook`` hands the kernels) is
opened locked (``open_locked``) and each of its tables read whole, batch by batch, and
scanned with the lake's rules (``masking.leaks.scan_frame``; a table copied from a mart
keeps that mart's structured columns, ``pipelines.leaks.structured_columns``): an analyst
database holds no more than its grants' masking lets out, so 0 unmasked values. A file
that does not open is a problem of the scan (named, never a value).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from catalog.model import Catalogue
from catalog.settings import Settings
from masking.leaks import LeakCounts, scan_frame
from masking.names import KnownNames
from pipelines.leaks import BATCH_ROWS, Finding, structured_columns

AREA = "analysts"


def analyst_files(settings: Settings) -> Iterator[tuple[str, Path]]:
    """(place, path) of every analyst database and workspace copy."""
    home = settings.analyst_dir_abs
    if home.is_dir():
        for path in sorted(home.glob("*.duckdb")):
            yield f"analysts/{path.name}", path
    workspaces = settings.notebook_dir_abs
    if workspaces.is_dir():
        for path in sorted(workspaces.glob("*/data/*.duckdb")):
            yield f"notebooks/{path.parent.parent.name}/{path.name}", path


def _scan_table(con: duckdb.DuckDBPyConnection, table: str, names: KnownNames, whole) -> LeakCounts:
    counts, row = LeakCounts(), 0
    for batch in con.execute(f'SELECT * FROM "{table}"').to_arrow_reader(BATCH_ROWS):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        counts.add(scan_frame(frame, known_names=names, row_offset=row,
                              whole_name_columns=whole))  # fmt: skip
        row += batch.num_rows
    return counts


def scan_analyst_dbs(settings: Settings, cat: Catalogue, names: KnownNames) -> list[Finding]:
    """One finding per table of every analyst database (area ``analysts``)."""
    from share_api.analysts.build import BUILD_TABLE
    from share_api.analysts.lock import open_locked

    structured = structured_columns(cat)
    findings: list[Finding] = []
    for place, path in analyst_files(settings):
        try:
            con = open_locked(path)
        except duckdb.Error as exc:
            problem = f"did not open ({type(exc).__name__})"
            findings.append(Finding(place, 0, LeakCounts(), AREA, problem=problem))
            continue
        try:
            tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() "
                                                "WHERE NOT internal ORDER BY 1").fetchall()]  # fmt: skip
            for table in tables:
                mart = table.partition("__")[0]  # a second grant of a mart: <mart>__<id>
                whole = structured.get(("marts", mart), frozenset())
                counts = _scan_table(con, table, names, whole if table != BUILD_TABLE else ())
                findings.append(Finding(f"{place}:{table}", counts.cells_scanned, counts, AREA))
        finally:
            con.close()
    return findings


__all__ = ["AREA", "analyst_files", "scan_analyst_dbs"]
