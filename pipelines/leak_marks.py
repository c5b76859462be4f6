"""The leak scan on record: up to which lake snapshot every table was scanned clean.

A clean scan writes its mark (``state/leak_scan.json``: the snapshot's id and time); the
next scan reads only what the lake took in after it (:func:`insertions`), and a mark the
lake does not know (its snapshot expired, another or a restored lake) counts as none.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import duckdb

from catalog.settings import Settings
from lakehouse.lake import ALIAS

MARK_FILE = "leak_scan.json"


@dataclass(frozen=True)
class ScanMark:
    """The lake's snapshot up to which every table was scanned and found clean, and the
    snapshot's time (a mark whose snapshot the lake no longer has is no mark)."""

    snapshot: int
    at: str  # the snapshot's time, ISO 8601


def lake_mark(con: duckdb.DuckDBPyConnection) -> ScanMark:
    """The lake's current snapshot as a mark."""
    row = con.execute(
        f"SELECT snapshot_id, snapshot_time FROM {ALIAS}.snapshots() ORDER BY 1 DESC LIMIT 1"
    ).fetchone()
    return ScanMark(int(row[0]), row[1].isoformat()) if row else ScanMark(0, "")


def read_mark(settings: Settings, con: duckdb.DuckDBPyConnection) -> ScanMark | None:
    """The scan on record, if the lake still has its snapshot (expired, restored or
    another lake: None, and the next scan reads every table)."""
    try:
        saved = json.loads((settings.state_dir / MARK_FILE).read_text())
        mark = ScanMark(int(saved["snapshot"]), str(saved["at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    row = con.execute(
        f"SELECT snapshot_time FROM {ALIAS}.snapshots() WHERE snapshot_id = ?", [mark.snapshot]
    ).fetchone()
    return mark if row is not None and row[0].isoformat() == mark.at else None


def write_mark(settings: Settings, mark: ScanMark) -> None:
    """Record a clean scan of every table up to ``mark`` (written whole, then renamed)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    path = settings.state_dir / MARK_FILE
    part = path.with_suffix(".part")
    part.write_text(json.dumps({"snapshot": mark.snapshot, "at": mark.at}))
    os.replace(part, path)


def tables_at(con: duckdb.DuckDBPyConnection, snapshot: int) -> set[tuple[str, str]]:
    """(zone, table) of the tables the lake had at ``snapshot``."""
    meta = f"__ducklake_metadata_{ALIAS}"
    rows = con.execute(
        f"SELECT s.schema_name, t.table_name FROM {meta}.ducklake_table t "
        f"JOIN {meta}.ducklake_schema s USING (schema_id) "
        "WHERE t.begin_snapshot <= ? AND (t.end_snapshot IS NULL OR t.end_snapshot > ?)",
        [snapshot, snapshot],
    ).fetchall()
    return {(z, t) for z, t in rows}


def inserted_since(con: duckdb.DuckDBPyConnection, snapshot: int) -> set[tuple[str, str]]:
    """(zone, table) of the tables that exist now and were inserted into after ``snapshot``."""
    rows = con.execute(
        f"SELECT changes FROM {ALIAS}.snapshots() WHERE snapshot_id > ?", [snapshot]
    ).fetchall()
    ids = {int(t) for (changes,) in rows for t in (changes or {}).get("tables_inserted_into") or []}
    return live_tables(con, ids)


def live_tables(con: duckdb.DuckDBPyConnection, ids: set[int]) -> set[tuple[str, str]]:
    if not ids:
        return set()
    found = con.execute(
        f"SELECT s.schema_name, t.table_name FROM __ducklake_metadata_{ALIAS}.ducklake_table t "
        f"JOIN __ducklake_metadata_{ALIAS}.ducklake_schema s USING (schema_id) "
        f"WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL AND t.table_id IN "
        f"({', '.join(str(i) for i in sorted(ids))})"
    ).fetchall()
    return {(z, t) for z, t in found}
