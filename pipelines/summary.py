"""Printing what the lake holds (for the CLI and the main job)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from catalog.settings import Settings
from lakehouse.lake import ZONES, open_lake
from lakehouse.snapshots import list_snapshots, list_tables


def print_lake(console: Console, settings: Settings, *, last_snapshots: int = 5) -> None:
    """Zones with their tables and rows, then the newest snapshots."""
    with open_lake(settings, read_only=True) as con:
        tables = list_tables(con)
        snaps = list_snapshots(con)
    table = Table(title=f"lake {settings.lake_metadata}")
    for col in ("zone", "tables", "rows"):
        table.add_column(col)
    for zone in ZONES:
        mine = [t for t in tables if t[0] == zone]
        table.add_row(zone, str(len(mine)), f"{sum(t[2] for t in mine):,}")
    console.print(table)
    if snaps:
        s = Table(
            title=f"snapshots ({len(snaps)} in all, newest {min(last_snapshots, len(snaps))})"
        )
        for col in ("id", "time (UTC)", "changes"):
            s.add_column(col)
        for snap in snaps[-last_snapshots:]:
            changes = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in snap.changes.items())
            s.add_row(str(snap.snapshot_id), f"{snap.time:%Y-%m-%d %H:%M:%S}", changes[:100])
        console.print(s)
