"""The leak scanner over the home: unmasked personal information wherever it may sit.

Places (``AREAS``):

- ``lake``: every table of every zone. Raw and staged hold sensitive (L3/L4) columns only
  as ciphertext, which is passed over; their L1/L2 and lineage columns are read like any
  other. Landing's ledger, quarantine, curated and marts hold no clear value at all.
- ``landing`` and ``archive``: the landed deliveries and the inbox originals kept. An
  encrypted file (the streaming AEAD's header) is opened through ``open_landed`` for the
  audited ``leak_scan`` purpose and read to its end: every segment authenticates, so it is
  proven ciphertext — what it holds is protected, not a leak (``landing_content`` also
  counts what it holds, reported apart). A file in the clear there is read as any file.
- ``inbox``: files waiting to land (or refused) are deliveries in the clear: what they hold
  is counted as a leak until landing takes them away.
- ``dagster`` (event logs, run storage, schedules: SQLite; compute logs), ``reports``,
  ``audit`` and ``state``: every file, by its content (:mod:`pipelines.leak_files`);
  ``other``: every other file of the home but the lake's data files (the key ring, the
  lake's metadata database with its column statistics, caches).

The kinds are ``masking.leaks.KINDS``; names are the registers' full names, decrypted
for ``leak_scan`` (audited). A finding names a place and counts, never a value.
:func:`scan_all` scans everything (``streethub leaks scan --all``), :func:`scan_lake` the
lake and the reports (the Dagster check), :func:`scan_changed` what a run changed.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from catalog.authority import person_registers
from catalog.errors import StreethubError, shown
from catalog.model import Catalogue, PiiKind
from catalog.settings import Settings
from lakehouse.lake import ALIAS, tables_in
from masking.leaks import LeakCounts, scan_frame
from masking.names import KnownNames
from masking.stream import HEADER_BYTES, is_encrypted
from pipelines.ingest.landing import open_landed
from pipelines.ingest.raw import raw_table
from pipelines.leak_files import files_under, scan_plain_file, scan_stream
from pipelines.protection import ACTOR, Protection

AREAS = ("lake", "landing", "archive", "inbox", "dagster", "reports", "audit", "state", "other")
BATCH_ROWS = 100_000
PURPOSE = "leak_scan"


@dataclass(frozen=True)
class Finding:
    """One place scanned. ``counts`` are leaks (values in the clear); a protected place
    (proven ciphertext) has none, and what it holds is in ``held`` when it was read."""

    place: str  # zone.table, or a file's path under the home (shown escaped)
    cells: int
    counts: LeakCounts
    area: str = "lake"
    size: int = 0  # bytes of a file
    protected: bool = False
    held: LeakCounts | None = None
    problem: str | None = None  # could not be read or proven (never a value)

    @property
    def leaks(self) -> int:
        return self.counts.total


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def leaks(self) -> int:
        return sum(f.leaks for f in self.findings)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.problem]

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            for kind, n in f.counts.by_kind.items():
                out[kind] = out.get(kind, 0) + n
        return out

    def by_area(self) -> dict[str, tuple[int, int, int]]:
        """area → (places, cells, leaks)."""
        out: dict[str, tuple[int, int, int]] = {}
        for f in self.findings:
            p, c, n = out.get(f.area, (0, 0, 0))
            out[f.area] = (p + 1, c + f.cells, n + f.leaks)
        return out


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
        # the row's identity (its key pseudonym) is part of what each ciphertext is bound to
        cols = ", ".join(f'"{c}"' for c in ["_key_pid", *name_fields])
        frame = con.execute(f'SELECT {cols} FROM staged."{table}"').pl()
        frame = protection.reveal(frame, reg.dataset, PURPOSE)
        names |= {n for c in name_fields for n in frame[c].drop_nulls().to_list() if len(n) >= 2}
    return names


# -- the lake ---------------------------------------------------------------------------


def structured_columns(cat: Catalogue) -> dict[tuple[str, str], frozenset[str]]:
    """(zone, table) → the catalogue fields of a raw or staged table that are not free
    text: there a registry name counts only as a whole value (``scan_frame``)."""
    out = {}
    for dept, ds in cat.datasets():
        fields = frozenset(f.name for f in ds.fields if f.pii is not PiiKind.free_text)
        for zone in ("raw", "staged"):
            out[(zone, raw_table(dept.code, ds))] = fields
    return out


def _scan_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    names: KnownNames,
    whole_name_columns: frozenset[str] = frozenset(),
) -> LeakCounts:
    """Scan a query's rows batch by batch (memory: one batch)."""
    result = LeakCounts()
    reader = con.execute(sql).to_arrow_reader(BATCH_ROWS)
    row = 0
    for batch in reader:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        counts = scan_frame(
            frame, known_names=names, row_offset=row, whole_name_columns=whole_name_columns
        )
        result.add(counts)
        row += batch.num_rows
    return result


def scan_tables(
    con: duckdb.DuckDBPyConnection,
    tables: Iterable[tuple[str, str]],
    names: KnownNames,
    structured: dict[tuple[str, str], frozenset[str]] | None = None,
) -> list[Finding]:
    out = []
    for zone, table in sorted(tables):
        whole = (structured or {}).get((zone, table), frozenset())
        counts = _scan_query(con, f'SELECT * FROM {zone}."{table}"', names, whole)
        out.append(Finding(f"{zone}.{table}", counts.cells_scanned, counts))
    return out


# -- files ------------------------------------------------------------------------------


def _place(settings: Settings, path: Path) -> str:
    try:
        return shown(str(path.relative_to(settings.home_abs)))
    except ValueError:
        return shown(str(path))


def _encrypted(path: Path) -> bool:
    with open(path, "rb") as fh:
        return is_encrypted(fh.read(HEADER_BYTES))


def _scan_encrypted(
    settings: Settings, path: Path, area: str, names: KnownNames, content: bool
) -> Finding:
    """An encrypted file read to its end through ``open_landed``: every segment (and the
    SHA-256 it was landed under, when its name carries one) must check."""
    place, size = _place(settings, path), path.stat().st_size
    try:
        if content:
            with open_landed(settings, path, seekable=True) as fh:
                held, _ = scan_stream(fh, names, seekable=True)
        else:
            held = None
            with open_landed(settings, path) as fh:
                while fh.read(1 << 20):
                    pass
    except Exception as exc:  # our errors name a segment or a key; others only their type
        why = str(exc) if isinstance(exc, StreethubError) else type(exc).__name__
        return Finding(place, 0, LeakCounts(), area, size, problem=f"encrypted, not proven: {why}")
    cells = held.cells_scanned if held is not None else 0
    return Finding(place, cells, LeakCounts(), area, size, protected=True, held=held)


def _scan_file(
    settings: Settings,
    path: Path,
    area: str,
    names: KnownNames,
    content: bool,
    since: dt.datetime | None = None,
) -> Finding | None:
    """The file's finding; None when it went away before it was read (a spill file)."""
    try:
        return _scan_present_file(settings, path, area, names, content, since)
    except FileNotFoundError:
        return None


def _scan_present_file(
    settings: Settings,
    path: Path,
    area: str,
    names: KnownNames,
    content: bool,
    since: dt.datetime | None,
) -> Finding:
    if area in ("landing", "archive", "inbox") and _encrypted(path):
        return _scan_encrypted(settings, path, area, names, content)
    place, size = _place(settings, path), path.stat().st_size
    try:
        counts, _ = scan_plain_file(path, names, since)
    except Exception as exc:  # a file that will not parse: said, never its content
        return Finding(place, 0, LeakCounts(), area, size,
                       problem=f"not readable ({type(exc).__name__})")  # fmt: skip
    return Finding(place, counts.cells_scanned, counts, area, size)


def area_dirs(settings: Settings) -> dict[str, Path]:
    return {
        "landing": settings.landing_dir,
        "archive": settings.archive_dir,
        "inbox": settings.inbox_dir,
        "dagster": settings.dagster_home,
        "reports": settings.home_abs / "reports",
        "audit": settings.audit_dir,
        "state": settings.state_dir,
    }


def _other_files(settings: Settings, dirs: dict[str, Path]) -> Iterable[Path]:
    """Every file of the home outside the areas and the lake's data (its tables are read
    as tables): the key ring, the lake's metadata database, caches, spill files."""
    skip = [*dirs.values(), settings.lake_data_dir]
    for path in files_under(settings.home_abs):
        if not any(path.is_relative_to(d) for d in skip):
            yield path


def scan_files(
    settings: Settings,
    names: KnownNames,
    protection: Protection,
    *,
    areas: Iterable[str] = AREAS,
    since: dt.datetime | None = None,
    landing_content: bool = False,
) -> list[Finding]:
    """Every file of the areas (when ``since`` is given: those modified at or after it, and
    in a SQLite database the rows written since, where its tables say when)."""
    dirs = area_dirs(settings)
    wanted = [(a, files_under(dirs[a])) for a in areas if a in dirs]
    if "other" in areas:
        wanted.append(("other", _other_files(settings, dirs)))
    cutoff = since.timestamp() if since is not None else None
    picked = [
        (area, path)
        for area, paths in wanted
        for path in paths
        if cutoff is None or _mtime(path) >= cutoff
    ]
    decrypting = [p for a, p in picked if a in ("landing", "archive", "inbox") and _encrypted(p)]
    if decrypting:  # one record for the scan's decryption of files, before any is read
        protection.audit.append(
            "decrypt", protection.actor, purpose=PURPOSE, files=len(decrypting),
            content=landing_content,
        )  # fmt: skip
    found = (_scan_file(settings, p, a, names, landing_content, since) for a, p in picked)
    return [f for f in found if f is not None]


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return float("-inf")


# -- what is scanned --------------------------------------------------------------------


def scan_lake(
    settings: Settings, cat: Catalogue, con: duckdb.DuckDBPyConnection, actor: str = ACTOR
) -> list[Finding]:
    """Every table of the lake, and the reports."""
    protection = Protection.from_settings(settings, actor)
    names = KnownNames(registry_names(con, cat, protection))
    findings = scan_tables(con, tables_in(con), names, structured_columns(cat))
    return findings + scan_files(settings, names, protection, areas=("reports",))


def scan_all(
    settings: Settings,
    cat: Catalogue,
    con: duckdb.DuckDBPyConnection,
    actor: str = ACTOR,
    *,
    landing_content: bool = False,
) -> ScanReport:
    """Everything: the lake's tables and every file of every area (``AREAS``)."""
    protection = Protection.from_settings(settings, actor)
    names = KnownNames(registry_names(con, cat, protection))
    findings = scan_tables(con, tables_in(con), names, structured_columns(cat))
    findings += scan_files(settings, names, protection, landing_content=landing_content)
    return ScanReport(findings)


def _changed_tables(
    con: duckdb.DuckDBPyConnection, since: dt.datetime
) -> tuple[int | None, int, set[tuple[str, str]]]:
    """(last snapshot before ``since``, current snapshot, tables inserted into since)."""
    rows = con.execute(
        f"SELECT snapshot_id, snapshot_time, changes FROM {ALIAS}.snapshots() ORDER BY 1"
    ).fetchall()
    before = [sid for sid, at, _ in rows if at < since]
    ids: set[int] = set()
    for _, at, changes in rows:
        if at >= since:
            ids |= {int(t) for t in (changes or {}).get("tables_inserted_into", []) or []}
    current = rows[-1][0] if rows else 0
    if not ids:
        return (before[-1] if before else None), current, set()
    found = con.execute(
        f"SELECT s.schema_name, t.table_name FROM __ducklake_metadata_{ALIAS}.ducklake_table t "
        f"JOIN __ducklake_metadata_{ALIAS}.ducklake_schema s USING (schema_id) "
        f"WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL AND t.table_id IN "
        f"({', '.join(str(i) for i in sorted(ids))})"
    ).fetchall()
    return (before[-1] if before else None), current, {(z, t) for z, t in found}


def scan_changed(
    settings: Settings,
    cat: Catalogue,
    con: duckdb.DuckDBPyConnection,
    *,
    since: dt.datetime,
    actor: str = ACTOR,
) -> ScanReport:
    """What a run that started at ``since`` changed: the rows inserted into the lake since
    (DuckLake's ``table_insertions`` between the last snapshot before and the current one),
    and the files of every area written since (in Dagster's databases, the rows written
    since; an appended text file such as the audit log is read whole)."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    protection = Protection.from_settings(settings, actor)
    names = KnownNames(registry_names(con, cat, protection))
    start, current, tables = _changed_tables(con, since)
    structured = structured_columns(cat)
    findings = []
    for zone, table in sorted(tables):
        if start is None:
            sql = f'SELECT * FROM {zone}."{table}"'
        else:
            sql = (
                f"SELECT * FROM ducklake_table_insertions('{ALIAS}', '{zone}', '{table}', "
                f"{start + 1}, {current})"
            )
        counts = _scan_query(con, sql, names, structured.get((zone, table), frozenset()))
        findings.append(Finding(f"{zone}.{table}", counts.cells_scanned, counts))
    findings += scan_files(settings, names, protection, since=since)
    return ScanReport(findings)
