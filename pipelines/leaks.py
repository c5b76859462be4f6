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
lake and the reports (``streethub leaks scan``). Within a run each table is read once:
:func:`scan_lake_changes` (the Dagster check) reads the rows no clean scan on record read
(:mod:`pipelines.leak_marks`), and :func:`scan_changed` with ``from_mark`` (closing the
run) what the check did not read, and the files the run wrote.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from catalog.authority import person_registers
from catalog.errors import StreethubError, shown
from catalog.marts import load_marts
from catalog.model import Catalogue, MaskingRule, PiiKind
from catalog.settings import Settings
from curated.houses import PUBLIC_TEXT_COLUMNS
from curated.persons import REVIEW_TABLE
from curated.review import MASKED_COLUMNS
from lakehouse.lake import ALIAS, tables_in, transaction
from lakehouse.snapshots import insertions
from marts.catalogue_tables import (
    MART_SOURCE_SCHEMA,
    MART_SOURCES_TABLE,
    RESOURCE_SCHEMA,
    RESOURCES_TABLE,
)
from masking.leaks import FrameScan, LeakCounts, scan_frames
from masking.names import KnownNames
from masking.stream import HEADER_BYTES, is_encrypted
from pipelines.ingest.landing import open_landed
from pipelines.ingest.raw import raw_table
from pipelines.leak_files import Structured, files_under, scan_plain_file, scan_stream
from pipelines.leak_marks import (
    ScanMark,
    inserted_since,
    lake_mark,
    live_tables,
    read_mark,
    tables_at,
)
from pipelines.memory import trim_heap
from pipelines.protection import ACTOR, Protection

AREAS = ("lake", "landing", "archive", "inbox", "dagster", "reports", "audit", "state",
         "models", "other")  # fmt: skip
BATCH_ROWS = 100_000  # rows a sample list is kept for (see _scan_reads)
BATCH_CELLS = 1_000_000  # cells read from DuckDB at once: a wide table in parts of a batch
WAIT_CELLS = 100_000  # cells of small tables' rows held to be scanned together (_scan_queries)
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
    mark: ScanMark | None = None  # the lake snapshot the tables were scanned up to

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
    return set(_register_names(con, cat, protection))


def _register_names(
    con: duckdb.DuckDBPyConnection,
    cat: Catalogue,
    protection: Protection,
    inserted: tuple[int, int] | None = None,
) -> Counter:
    """How often each full name stands in the registers' rows (of the rows inserted in
    the snapshots ``inserted`` = (first, last) only, when given). All rows' names are kept
    in memory for the next scan in this process (a run's leak check, then its closing
    scan) while no register table changed."""
    version = None
    if inserted is None:
        version = _register_version(con, cat)
        kept = _NAMES_KEPT.get("names")
        if kept is not None and kept[0] == version:
            return kept[1]
    staged = tables_in(con, "staged")
    names: Counter = Counter()
    for reg in person_registers(cat):
        name_fields = [f.name for f in reg.dataset.fields if f.person_name]
        table = raw_table(reg.dept, reg.dataset)
        if ("staged", table) not in staged or not name_fields:
            continue
        source = f'staged."{table}"'
        if inserted is not None:
            source = insertions("staged", table, *inserted)
        # the row's identity (its key pseudonym) is part of what each ciphertext is bound to
        cols = ", ".join(f'"{c}"' for c in ["_key_pid", *name_fields])
        frame = con.execute(f"SELECT {cols} FROM {source}").pl()
        if frame.height == 0:
            continue
        frame = protection.reveal(frame, reg.dataset, PURPOSE)
        names.update(n for c in name_fields for n in frame[c].drop_nulls().to_list() if len(n) >= 2)
    trim_heap()  # the decrypted registers' pages (about 120 MB at 200,000 residents)
    if version is not None:
        _NAMES_KEPT["names"] = (version, names)
    return names


_NAMES_KEPT: dict[str, tuple[tuple, Counter]] = {}


def _register_version(con: duckdb.DuckDBPyConnection, cat: Catalogue) -> tuple:
    """The lake (its data path), the register tables' ids and the last snapshot that
    created, inserted into or deleted from any of them: equal while their rows are."""
    places = {f"staged.{t}" for _, t in _register_tables(cat)}
    meta = f"__ducklake_metadata_{ALIAS}"
    ids = con.execute(
        f"SELECT t.table_id FROM {meta}.ducklake_table t JOIN {meta}.ducklake_schema s "
        "USING (schema_id) WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL "
        "AND s.schema_name = 'staged' AND list_contains(?, t.table_name)",
        [[t for _, t in _register_tables(cat)]],
    ).fetchall()
    marks = places | {str(i) for (i,) in ids}
    rows = con.execute(f"SELECT snapshot_id, changes FROM {ALIAS}.snapshots()").fetchall()
    last = max(
        (sid for sid, changes in rows
         if any(v in marks for vals in (changes or {}).values() for v in vals or [])),
        default=-1,
    )  # fmt: skip
    (path,) = con.execute(
        f"SELECT value FROM {meta}.ducklake_metadata WHERE key = 'data_path'"
    ).fetchone() or ("",)
    return path, tuple(sorted(i for (i,) in ids)), last


# -- the lake ---------------------------------------------------------------------------


def structured_columns(cat: Catalogue) -> dict[tuple[str, str], frozenset[str]]:
    """(zone, table) → the catalogue fields of a raw or staged table that are not free
    text: there a registry name counts only as a whole value (``scan_frame``)."""
    out = {}
    for dept, ds in cat.datasets():
        fields = frozenset(f.name for f in ds.fields if f.pii is not PiiKind.free_text)
        for zone in ("raw", "staged"):
            out[(zone, raw_table(dept.code, ds))] = fields
    # curated columns of public register text (a shop's name, a building's address)
    out |= {("curated", table): cols for table, cols in PUBLIC_TEXT_COLUMNS.items()}
    out[("curated", REVIEW_TABLE)] = MASKED_COLUMNS  # masked evidence (欧阳* holds 欧阳)
    out |= mart_text_columns()
    return out


def mart_text_columns() -> dict[tuple[str, str], frozenset[str]]:
    """(``marts``, table) → its columns that are not free text: every column of a published
    mart but those it publishes scrubbed (``scrub_text``: free text, where a registry name
    inside counts), and every column of the catalogue's own tables (names, consumers and
    labels from the catalogue: 街道社区建设办公室 holds the name 区建)."""
    out = {
        ("marts", name): frozenset(
            c.name for c in mart.columns if c.masking is not MaskingRule.scrub_text
        )
        for name, mart in load_marts().items()
    }
    out[("marts", RESOURCES_TABLE)] = frozenset(RESOURCE_SCHEMA)
    out[("marts", MART_SOURCES_TABLE)] = frozenset(MART_SOURCE_SCHEMA)
    return out


def card_columns(cat: Catalogue) -> dict[tuple[str, str], frozenset[str]]:
    """(zone, table) → the catalogue fields of a raw or staged table that hold card numbers
    (PII kind ``bank_card``): there a Luhn-valid run is a card with no issuer prefix or cue
    (``masking.cards``)."""
    out = {}
    for dept, ds in cat.datasets():
        fields = frozenset(f.name for f in ds.fields if f.pii is PiiKind.bank_card)
        if fields:
            for zone in ("raw", "staged"):
                out[(zone, raw_table(dept.code, ds))] = fields
    return out


@dataclass(frozen=True)
class _Query:
    """A query whose rows a scan reads, with the columns its table's rules name."""

    sql: str
    whole: frozenset[str] = frozenset()  # structured columns (``structured_columns``)
    cards: frozenset[str] = frozenset()  # columns of card numbers (``card_columns``)


def _scan_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    names: KnownNames,
    whole_name_columns: frozenset[str] = frozenset(),
    *,
    names_only: bool = False,
    cards: frozenset[str] = frozenset(),
) -> LeakCounts:
    """Scan a query's rows (:func:`_scan_queries`)."""
    query = _Query(sql, whole_name_columns, cards)
    return _scan_queries(con, [query], names, names_only=names_only)[0]


def _scan_queries(
    con: duckdb.DuckDBPyConnection,
    queries: Sequence[_Query],
    names: KnownNames,
    *,
    names_only: bool = False,
) -> list[LeakCounts]:
    """Each query's rows scanned, its counts its own, the queries run one after another.

    A query whose rows come in more than one read, or in one read of more than
    :data:`WAIT_CELLS` cells, is scanned as its reads come (:func:`_scan_reads`); the rows of
    a small one (most of a lake's tables) wait, with others', until together they would
    hold more than :data:`WAIT_CELLS` cells, and are scanned together
    (``masking.leaks.scan_frames``: its polars queries once for them all, not several a
    table). Memory: what waits is at most :data:`WAIT_CELLS` cells beside one read of at
    most :data:`BATCH_CELLS`, as before."""
    results: list[LeakCounts] = [LeakCounts() for _ in queries]
    waiting: list[tuple[int, FrameScan]] = []
    held = 0

    def scan_waiting() -> None:
        nonlocal held
        scans = [scan for _, scan in waiting]
        counts = scan_frames(scans, known_names=names, names_only=names_only)
        for (i, scan), found in zip(waiting, counts, strict=True):
            results[i] = _scan_reads([(scan.frame.columns, scan.frame.height, found)])
        waiting.clear()
        held = 0
        trim_heap()  # the frames' freed pages back to the system before the next reads

    for i, query in enumerate(queries):
        cursor = con.execute(query.sql)
        read = _read_rows(len(cursor.description or ()))
        reads = iter(cursor.to_arrow_reader(read))
        first = next(reads, None)
        if first is None:
            continue
        # a read shorter than asked for is the last (checked: another would be read on)
        second = next(reads, None) if first.num_rows < read else None
        cells = first.num_rows * first.num_columns
        if first.num_rows < read and second is None and cells <= WAIT_CELLS:
            if not cells:
                continue
            if held + cells > WAIT_CELLS:
                scan_waiting()
            frame = pl.from_arrow(first)
            assert isinstance(frame, pl.DataFrame)
            waiting.append((i, FrameScan(frame, 0, query.whole, query.cards)))
            held += cells
            continue
        row = 0

        def scanned(part, query: _Query = query) -> tuple[list[str], int, LeakCounts]:
            nonlocal row
            frame = pl.from_arrow(part)
            assert isinstance(frame, pl.DataFrame)
            scan = FrameScan(frame, row, query.whole, query.cards)
            row += part.num_rows
            found = scan_frames([scan], known_names=names, names_only=names_only)[0]
            return frame.columns, part.num_rows, found

        parts = itertools.chain((first,), () if second is None else (second,), reads)
        results[i] = _scan_reads(scanned(p) for p in parts)
        trim_heap()  # a batch's freed pages back to the system before the next table's
    if waiting:
        scan_waiting()
    return results


def _scan_reads(reads: Iterable[tuple[list[str], int, LeakCounts]]) -> LeakCounts:
    """A query's counts from those of its reads in order (each read's columns, rows and
    counts, its rows counted from the query's first), kept per batch of :data:`BATCH_ROWS`
    rows: the counts are a sum over cells; the samples are those a scan of each whole batch
    keeps (:func:`_batch_samples`)."""
    result = LeakCounts()
    batch, rows, columns = LeakCounts(), 0, []
    for columns, read, counts in reads:
        batch.add(counts, max_samples=len(batch.samples) + len(counts.samples))
        rows += read
        if rows % BATCH_ROWS == 0:
            result.add(_batch_samples(batch, columns))
            batch = LeakCounts()
    result.add(_batch_samples(batch, columns))
    return result


def _read_rows(width: int) -> int:
    """Rows read at once from a query of ``width`` columns: :data:`BATCH_ROWS` divided by
    the least whole number that keeps a read within :data:`BATCH_CELLS` cells (so that
    reads end where the batches do)."""
    for parts in range(1, BATCH_ROWS + 1):
        if BATCH_ROWS % parts == 0 and (BATCH_ROWS // parts) * width <= BATCH_CELLS:
            return BATCH_ROWS // parts
    return 1


def _batch_samples(batch: LeakCounts, columns: list[str], max_samples: int = 10) -> LeakCounts:
    """``batch`` (the parts of one batch added up) with the samples a scan of the whole
    batch keeps: ``scan_frame`` lists a frame's findings column by column, row by row, kinds
    sorted, and keeps the first ``max_samples``; each part kept its own first ones, which
    hold every one of the batch's first."""
    order = {c: i for i, c in enumerate(columns)}
    batch.samples = sorted(batch.samples, key=lambda s: (order.get(s[1], len(order)), s[0], s[2]))
    batch.samples = batch.samples[:max_samples]
    return batch


def scan_tables(
    con: duckdb.DuckDBPyConnection,
    tables: Iterable[tuple[str, str]],
    names: KnownNames,
    structured: dict[tuple[str, str], frozenset[str]] | None = None,
    cards: dict[tuple[str, str], frozenset[str]] | None = None,
) -> list[Finding]:
    return _scan_sources(
        con,
        {(zone, table): f'{zone}."{table}"' for zone, table in tables},
        names,
        structured or {},
        cards or {},
        _read_columns(con),
    )


def _scan_sources(
    con: duckdb.DuckDBPyConnection,
    sources: dict[tuple[str, str], str],
    names: KnownNames,
    structured: dict[tuple[str, str], frozenset[str]],
    cards: dict[tuple[str, str], frozenset[str]],
    columns: dict[tuple[str, str], list[str]] | None = None,
) -> list[Finding]:
    """A finding for each (zone, table) of ``sources``, in their order, from the rows of its
    source (the table, or its rows inserted since a snapshot: SQL a query reads from), with
    the table's structured and card columns; ``columns``: the columns read, known already
    (:func:`_read_columns`)."""
    read = sorted(sources)
    queries = [
        _Query(
            _select(con, sources[key], columns=(columns or {}).get(key)),
            structured.get(key, frozenset()),
            cards.get(key, frozenset()),
        )
        for key in read
    ]
    found = _scan_queries(con, queries, names)
    return [Finding(f"{z}.{t}", c.cells_scanned, c) for (z, t), c in zip(read, found, strict=True)]


_NO_TEXT = ("BOOLEAN", "DATE", "TIME", "INTERVAL")  # TIME… covers TIMESTAMP…: read as nothing


def _select(
    con: duckdb.DuckDBPyConnection,
    source: str,
    kinds: tuple = _NO_TEXT,
    columns: list[str] | None = None,
) -> str:
    """A query of ``source``'s columns but those of ``kinds`` (the scanner reads no value
    of a date, time or flag: ``masking.leaks``; fewer columns read from Parquet).
    ``columns``: the ones to read, known already (:func:`_read_columns`)."""
    if columns is None:
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        columns = [c for c, kind, *_ in described if not kind.upper().startswith(kinds)]
    cols = [_quoted(c) for c in columns]
    return f"SELECT {', '.join(cols) or 'NULL AS nothing'} FROM {source}"


def _read_columns(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], list[str]]:
    """(zone, table) → the columns the scanner reads (all but dates, times and flags),
    for every table of the lake now, from DuckLake's catalogue in one query (a DESCRIBE
    a table costs a planned query)."""
    meta = f"__ducklake_metadata_{ALIAS}"
    rows = con.execute(
        f"SELECT s.schema_name, t.table_name, c.column_name, c.column_type "
        f"FROM {meta}.ducklake_column c JOIN {meta}.ducklake_table t USING (table_id) "
        f"JOIN {meta}.ducklake_schema s USING (schema_id) "
        "WHERE c.parent_column IS NULL AND c.end_snapshot IS NULL "
        "AND t.end_snapshot IS NULL AND s.end_snapshot IS NULL "
        "ORDER BY s.schema_name, t.table_name, c.column_order"
    ).fetchall()
    out: dict[tuple[str, str], list[str]] = {}
    for zone, table, column, kind in rows:
        read = out.setdefault((zone, table), [])
        if not kind.upper().startswith(_NO_TEXT):
            read.append(column)
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
    structured: Structured | None = None,
) -> Finding | None:
    """The file's finding; None when it went away before it was read (a spill file)."""
    try:
        return _scan_present_file(settings, path, area, names, content, since, structured)
    except FileNotFoundError:
        return None


def _scan_present_file(
    settings: Settings,
    path: Path,
    area: str,
    names: KnownNames,
    content: bool,
    since: dt.datetime | None,
    structured: Structured | None = None,
) -> Finding:
    if area in ("landing", "archive", "inbox") and _encrypted(path):
        return _scan_encrypted(settings, path, area, names, content)
    place, size = _place(settings, path), path.stat().st_size
    try:
        counts, _ = scan_plain_file(path, names, since, structured)
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
        "models": settings.models_dir,  # the need model's registry: MLflow's database, artifacts
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
    structured: Structured | None = None,
) -> list[Finding]:
    """Every file of the areas (when ``since`` is given: those modified at or after it, and
    in a SQLite database the rows written since, where its tables say when). ``structured``
    (``structured_columns``): the lake's metadata holds its columns' statistics, read as
    the columns are."""
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
    found = (
        _scan_file(settings, p, a, names, landing_content, since, structured) for a, p in picked
    )
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
    with transaction(con):
        names = KnownNames(registry_names(con, cat, protection))
        tables = tables_in(con)
        findings = scan_tables(con, tables, names, structured_columns(cat), card_columns(cat))
    return findings + scan_files(settings, names, protection, areas=("reports",))


def scan_lake_changes(
    settings: Settings, cat: Catalogue, con: duckdb.DuckDBPyConnection, actor: str = ACTOR
) -> ScanReport:
    """The lake's rows not scanned before (``scan_since_mark``: every table when no scan
    is on record), and the reports written since the scan on record."""
    protection = Protection.from_settings(settings, actor)
    mark = read_mark(settings, con)
    findings, reached, names = scan_since_mark(settings, cat, con, protection, mark)
    since = dt.datetime.fromisoformat(mark.at) if mark is not None else None
    findings += scan_files(settings, names, protection, areas=("reports",), since=since)
    return ScanReport(findings, reached)


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
    structured = structured_columns(cat)
    with transaction(con):
        names = KnownNames(registry_names(con, cat, protection))
        findings = scan_tables(con, tables_in(con), names, structured, card_columns(cat))
    findings += scan_files(
        settings, names, protection, landing_content=landing_content, structured=structured
    )
    return ScanReport(findings)


# -- scanning each table once: after the scan on record ----------------------------------


def scan_since_mark(
    settings: Settings,
    cat: Catalogue,
    con: duckdb.DuckDBPyConnection,
    protection: Protection,
    mark: ScanMark | None,
) -> tuple[list[Finding], ScanMark, KnownNames]:
    """The lake's rows not yet scanned: with no mark every table, else the rows inserted
    after the mark's snapshot (DuckLake's ``table_insertions``), with every registry name;
    and, when the registers gained names since, the rows scanned before for those names
    alone. Returns the findings, the mark they reach (the current snapshot) and the
    registers' names. The lake is read in one transaction (:func:`_read_since_mark`)."""
    with transaction(con):
        return _read_since_mark(cat, con, protection, mark)


def _read_since_mark(
    cat: Catalogue,
    con: duckdb.DuckDBPyConnection,
    protection: Protection,
    mark: ScanMark | None,
) -> tuple[list[Finding], ScanMark, KnownNames]:
    """:func:`scan_since_mark` inside its read transaction: every table's read sees the
    snapshot the mark names, and DuckLake loads its catalogue once for them, not once a
    query (autocommit: a few milliseconds a query, a table or more each)."""
    now = lake_mark(con)
    counts = _register_names(con, cat, protection)
    names = KnownNames(counts)
    structured = structured_columns(cat)
    if mark is None:
        return scan_tables(con, tables_in(con), names, structured, card_columns(cat)), now, names
    changed = inserted_since(con, mark.snapshot)
    cards = card_columns(cat)
    columns = _read_columns(con)
    changes = {key: insertions(*key, mark.snapshot + 1, now.snapshot) for key in changed}
    findings = _scan_sources(con, changes, names, structured, cards, columns)
    if any(t in changed for t in _register_tables(cat)):
        new = _new_names(con, cat, protection, counts, mark.snapshot + 1, now.snapshot)
        if new:
            findings += _scan_old_rows_for(con, mark.snapshot, KnownNames(new), structured)
    return findings, now, names


def _register_tables(cat: Catalogue) -> set[tuple[str, str]]:
    return {("staged", raw_table(r.dept, r.dataset)) for r in person_registers(cat)}


def _new_names(
    con: duckdb.DuckDBPyConnection,
    cat: Catalogue,
    protection: Protection,
    counts: Counter,
    first: int,
    last: int,
) -> set[str]:
    """Names the registers hold only in rows inserted in the snapshots first … last (a
    name that also stands in an older row was in the registers before)."""
    inserted = _register_names(con, cat, protection, (first, last))
    return {n for n, k in inserted.items() if counts[n] <= k}


def _scan_old_rows_for(
    con: duckdb.DuckDBPyConnection,
    snapshot: int,
    names: KnownNames,
    structured: dict[tuple[str, str], frozenset[str]],
) -> list[Finding]:
    """The tables as they were at ``snapshot`` (scanned then), for ``names`` only: their
    text columns (names stand in no number, date or flag)."""
    read = sorted(tables_at(con, snapshot))
    queries = [
        _Query(
            _select(con, f'{zone}."{table}" AT (VERSION => {snapshot})', _NOT_TEXT),
            structured.get((zone, table), frozenset()),
        )
        for zone, table in read
    ]
    found = _scan_queries(con, queries, names, names_only=True)
    return [
        Finding(f"{zone}.{table} (names new to the registers)", 0, counts)
        for (zone, table), counts in zip(read, found, strict=True)
    ]


_NOT_TEXT = ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
             "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "DATE", "TIME",
             "TIMESTAMP", "INTERVAL", "UUID")  # fmt: skip


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
    return (before[-1] if before else None), current, live_tables(con, ids)


def scan_changed(
    settings: Settings,
    cat: Catalogue,
    con: duckdb.DuckDBPyConnection,
    *,
    since: dt.datetime,
    actor: str = ACTOR,
    from_mark: bool = False,
) -> ScanReport:
    """What a run that started at ``since`` changed: the rows inserted into the lake since
    (DuckLake's ``table_insertions`` between the last snapshot before and the current one),
    and the files of every area written since (in Dagster's databases, the rows written
    since; an appended text file such as the audit log is read whole).

    ``from_mark``: the lake's rows from the scan on record instead (``scan_since_mark``:
    what the run's leak check did not read, every table when none is on record); the
    report's ``mark`` is then the snapshot reached, to record when the scan is clean."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    protection = Protection.from_settings(settings, actor)
    if from_mark:
        mark = read_mark(settings, con)
        findings, reached, names = scan_since_mark(settings, cat, con, protection, mark)
        files = scan_files(
            settings, names, protection, since=since, structured=structured_columns(cat)
        )
        return ScanReport(findings + files, reached)
    structured, cards = structured_columns(cat), card_columns(cat)
    with transaction(con):
        names = KnownNames(registry_names(con, cat, protection))
        start, current, tables = _changed_tables(con, since)
        sources = {
            (zone, table): f'{zone}."{table}"'
            if start is None
            else insertions(zone, table, start + 1, current)
            for zone, table in tables
        }
        findings = _scan_sources(con, sources, names, structured, cards)
    findings += scan_files(settings, names, protection, since=since, structured=structured)
    return ScanReport(findings)
