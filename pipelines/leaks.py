"""The leak scanner over the lake: every table outside the encrypted zones, and reports.

Raw and staged hold sensitive columns only as ciphertext (tests read their
Parquet files directly to prove it); everything else — landing, quarantine,
curated, marts, and the HTML reports — must hold no unmasked citizen ID,
mobile, bank card or the name of a person in the registers (the datasets the catalogue's
authority for the person key keeps: ``catalog.authority.person_registers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from catalog.authority import person_registers
from catalog.model import Catalogue, PiiKind
from catalog.settings import Settings
from lakehouse.lake import tables_in
from masking.leaks import LeakCounts, scan_frame
from pipelines.ingest.raw import raw_table
from pipelines.protection import ACTOR, Protection

SCANNED_ZONES = ("landing", "quarantine", "curated", "marts")


@dataclass(frozen=True)
class Finding:
    place: str  # zone.table or a file
    cells: int
    counts: LeakCounts


def registry_names(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, protection: Protection
) -> set[str]:
    """Full names of the persons in the registers (decrypted for the leak_scan purpose,
    audited); empty when the catalogue declares no person registers or none is staged."""
    staged = tables_in(con, "staged")
    names: set[str] = set()
    for reg in person_registers(cat):
        name_fields = [f.name for f in reg.dataset.fields if f.pii is PiiKind.person_name]
        table = raw_table(reg.dept, reg.dataset)
        if ("staged", table) not in staged or not name_fields:
            continue
        cols = ", ".join(f'"{c}"' for c in name_fields)
        frame = con.execute(f'SELECT {cols} FROM staged."{table}"').pl()
        frame = protection.reveal(frame, reg.dataset, "leak_scan")
        names |= {n for c in name_fields for n in frame[c].drop_nulls().to_list() if len(n) >= 2}
    return names


def scan_lake(
    settings: Settings, cat: Catalogue, con: duckdb.DuckDBPyConnection, actor: str = ACTOR
) -> list[Finding]:
    protection = Protection.from_settings(settings, actor)
    names = registry_names(con, cat, protection)
    tables = sorted(tables_in(con))
    findings = []
    for zone, table in tables:
        if zone not in SCANNED_ZONES:
            continue
        frame = con.execute(f'SELECT * FROM {zone}."{table}"').pl()
        counts = scan_frame(frame, known_names=names)
        findings.append(Finding(f"{zone}.{table}", counts.cells_scanned, counts))
    for path in sorted((settings.home_abs / "reports").glob("*.html")):
        findings.append(scan_text_file(path, names))
    return findings


def scan_text_file(path: Path, names: set[str]) -> Finding:
    lines = path.read_text(encoding="utf-8").splitlines()
    counts = scan_frame(pl.DataFrame({"line": lines}), known_names=names)
    return Finding(str(path), counts.cells_scanned, counts)
