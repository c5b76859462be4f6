"""The leak scanner's file readers: what a file holds, as text, for ``masking.leaks``.

A file is read by what it is, told by its first bytes, not by its name:

- SQLite (Dagster's run and event storage, its schedules): every table, every column, row
  by row; a zlib-compressed value (Dagster's snapshots) decompressed first;
- Parquet: every column, batch by batch;
- xlsx (a zip with a workbook): every cell of every sheet, read-only and streaming; a number
  Excel stored as a float keeps its float form, so an ID stored as a number is seen;
- xls (Excel 97–2003, an OLE2 compound document): every cell of every sheet as calamine
  reads it; every number in an xls is a float, so a cell of 11–19 digits alone is read in a
  float's form (``…0.0``): an ID stored as a number is seen, and one stored as text too;
- gzip: decompressed as it is read, then read by what it holds (compression hides nothing;
  its compressed bytes, read as text, at times looked like an e-mail address);
- anything else as text: UTF-8, else GB18030 (the departments' GBK exports), line by line,
  undecodable bytes replaced; a line longer than ``MAX_LINE`` is read in overlapping parts.

Memory stays bounded: batches of rows or lines, never a whole file (except an xls, read
whole, and an xlsx or a Parquet file from an encrypted store, whose reader must seek: see
``open_landed``).
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import gzip
import sqlite3
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import polars as pl

from masking.leaks import FrameScan, LeakCounts, scan_frame, scan_frames, scan_texts
from pipelines.connectors.compressed import GZIP_MAGIC, ZIP_MAGIC
from pipelines.connectors.excel import OLE2_MAGIC
from pipelines.connectors.records import Prefixed

SQLITE_MAGIC = b"SQLite format 3\x00"
PARQUET_MAGIC = b"PAR1"
READ_BYTES = 1 << 20
MAX_LINE = 1 << 20  # characters; longer lines are read in parts overlapping by OVERLAP
OVERLAP = 64
ROWS = 20_000
HELD_CELLS = 200_000  # cells of a SQLite file's reads held to be scanned together
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")  # read through their database
# columns that say when a row was written, in the order they are preferred (Dagster's)
STAMP_COLUMNS = ("update_timestamp", "timestamp", "event_timestamp", "create_timestamp")
# DuckLake's metadata catalogue keeps each data file's and table's column statistics: a
# column's smallest and largest value are copies of its cells, read here under the
# column's own rules (``structured``: a shop's name 北京凌云家政有限公司 in a structured
# column holds the registry name 凌云 as a substring, which is no leak there nor here)
LAKE_STATS = frozenset(
    {"ducklake_file_column_stats", "ducklake_table_column_stats", "ducklake_file_variant_stats"}
)
STAT_VALUES = ("min_value", "max_value")
# (zone, table) -> its structured columns, where a registry name counts only as a whole value
Structured = Mapping[tuple[str, str], frozenset[str]]


def sniff(head: bytes) -> str:
    """``sqlite``, ``parquet``, ``xlsx``, ``xls``, ``gzip`` or ``text`` from a file's first
    bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(ZIP_MAGIC):
        return "xlsx"
    if head.startswith(OLE2_MAGIC):
        return "xls"
    return "text"


def _encoding(head: bytes) -> str:
    """UTF-16 when the first bytes start with its byte-order mark or hold its 0 bytes (a
    text in UTF-8 or GBK has none; an ASCII character in UTF-16 has one, in the byte order's
    place), UTF-8 when they decode as UTF-8 (a character cut at the end allowed), else
    GB18030 (a superset of GBK). A delivery in UTF-16 is read (pipelines.connectors.csv):
    read as bytes its digits stand between 0 bytes, and no ID in it would be found."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if max(even, odd) * 8 >= len(head) > 0 and min(even, odd) * 4 <= max(even, odd):
        return "utf-16-le" if odd > even else "utf-16-be"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def text_lines(fh: BinaryIO, head: bytes = b"") -> Iterator[str]:
    """The lines of a text file (``head``: bytes already read from it), decoded."""
    first = head + fh.read(max(0, READ_BYTES - len(head)))
    decoder = codecs.getincrementaldecoder(_encoding(first))(errors="replace")
    pending = ""
    chunk = first
    while chunk:
        pending += decoder.decode(chunk)
        *lines, pending = pending.split("\n")
        yield from lines
        while len(pending) > MAX_LINE:  # no newline for a long way: read it in parts
            yield pending[:MAX_LINE]
            pending = pending[MAX_LINE - OVERLAP :]
        chunk = fh.read(READ_BYTES)
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _sqlite_value(v: object) -> object:
    if isinstance(v, bytes | memoryview):
        data = bytes(v)
        if data[:1] == b"x":  # zlib's header byte: Dagster compresses its snapshots
            with contextlib.suppress(zlib.error):
                data = zlib.decompress(data)
        return data.decode("utf-8", "replace")
    return v


def _sqlite_column(values: list) -> pl.Series:
    if all(v is None or isinstance(v, float) for v in values):
        return pl.Series(values, dtype=pl.Float64)
    return pl.Series([None if v is None else str(v) for v in values], dtype=pl.String)


def _since_column(con: sqlite3.Connection, quoted: str) -> str | None:
    """The column that says when a row was last written (Dagster's tables), if any."""
    columns = {r[1] for r in con.execute(f"PRAGMA table_info({quoted})")}
    return next((c for c in STAMP_COLUMNS if c in columns), None)


def _stat_owners(con: sqlite3.Connection, structured: Structured) -> set[tuple[int, int]]:
    """(table_id, column_id) of a DuckLake metadata catalogue's columns that are
    structured (each id by its latest name); empty for another database."""
    try:
        rows = con.execute(
            "SELECT c.table_id, c.column_id, s.schema_name, t.table_name, c.column_name "
            "FROM (SELECT table_id, column_id, column_name, max(begin_snapshot) "
            "      FROM ducklake_column GROUP BY table_id, column_id) c "
            "JOIN (SELECT table_id, schema_id, table_name, max(begin_snapshot) "
            "      FROM ducklake_table GROUP BY table_id) t USING (table_id) "
            "JOIN (SELECT schema_id, schema_name, max(begin_snapshot) "
            "      FROM ducklake_schema GROUP BY schema_id) s USING (schema_id)"
        ).fetchall()
    except sqlite3.Error:  # not a DuckLake catalogue
        return set()
    return {
        (table_id, column_id)
        for table_id, column_id, zone, table, column in rows
        if column in structured.get((zone, table), ())
    }


def _pick(col: tuple, whole: list[bool], wanted: bool) -> list:
    """The column's values in the rows whose ``whole`` is ``wanted`` (None elsewhere)."""
    return [v if w is wanted else None for v, w in zip(col, whole, strict=True)]


def _structured_stats(
    cols: list, names_of: list[str], values: list[int], owners: set[tuple[int, int]]
) -> list | None:
    """In rows of a DuckLake statistics table (``values``: the positions of its
    ``STAT_VALUES``), take out the statistics of structured columns (``owners``): ``cols``
    keeps the others in place (None where one was taken), the structured ones are returned
    apart, None in the other rows. None when there are none to take out."""
    if not values or not owners:
        return None
    table_ids, column_ids = (cols[names_of.index(n)] for n in ("table_id", "column_id"))
    whole = [key in owners for key in zip(table_ids, column_ids, strict=True)]
    kept = [_pick(cols[i], whole, True) for i in values]
    for i in values:
        cols[i] = _pick(cols[i], whole, False)
    return kept


def _frame(columns: list[str], cols: list) -> pl.DataFrame:
    return pl.DataFrame(
        [_sqlite_column([_sqlite_value(v) for v in col]).alias(name)
         for name, col in zip(columns, cols, strict=True)]
    )  # fmt: skip


def scan_sqlite(
    path: Path, names, since: dt.datetime | None = None, structured: Structured | None = None
) -> LeakCounts:
    """Every table of a SQLite file, read-only (the WAL's content included). ``since``:
    in a table with a time column (``STAMP_COLUMNS``, Dagster's UTC text), only the rows
    written since; a table without one is read whole. ``structured``: in a DuckLake
    metadata catalogue, a statistic of a structured lake column is read as that column is
    (``LAKE_STATS``)."""
    result = LeakCounts()
    waiting: list[FrameScan] = []  # the reads not scanned yet, in order: scanned together
    held = 0

    def scan_waiting() -> None:
        for found in scan_frames(waiting, known_names=names):
            result.add(found)
        waiting.clear()

    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        owners = _stat_owners(con, structured) if structured and LAKE_STATS & set(tables) else set()
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            stamp = _since_column(con, quoted) if since is not None else None
            if stamp is None:
                cur = con.execute(f"SELECT * FROM {quoted}")  # a name SQLite listed
            else:
                utc = since.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
                cur = con.execute(f'SELECT * FROM {quoted} WHERE "{stamp}" >= ?', [utc])
            names_of = [d[0] for d in cur.description]
            columns = [f"{table}.{n}" for n in names_of]
            stats = owners and table in LAKE_STATS
            values = [names_of.index(n) for n in STAT_VALUES] if stats else []
            stat_columns = [columns[i] for i in values]
            row = 0
            while rows := cur.fetchmany(ROWS):
                cols = list(zip(*rows, strict=True))
                kept = _structured_stats(cols, names_of, values, owners)
                waiting.append(FrameScan(_frame(columns, cols), row))
                if kept:  # a structured column's statistics, at the same positions
                    waiting.append(FrameScan(_frame(stat_columns, kept), row, stat_columns))
                held += len(rows) * len(columns)
                row += len(rows)
                if held >= HELD_CELLS:  # many small tables: one scan
                    scan_waiting()
                    held = 0
        scan_waiting()
    finally:
        con.close()
    return result


def scan_parquet(fh: BinaryIO, names) -> LeakCounts:
    import pyarrow.parquet as pq

    result = LeakCounts()
    row = 0
    for batch in pq.ParquetFile(fh).iter_batches(batch_size=ROWS):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        result.add(scan_frame(frame, known_names=names, row_offset=row))
        row += batch.num_rows
    return result


def _cell_text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e19:
        return f"{int(v)}.0"  # as a float writes it: the float rules of the scanner apply
    return str(v)


def scan_xlsx(fh: BinaryIO, names) -> LeakCounts:
    """Every cell of every sheet (openpyxl, read-only: rows are streamed)."""
    from openpyxl import load_workbook

    result = LeakCounts()
    book = load_workbook(fh, read_only=True, data_only=True)
    try:
        for sheet in book.worksheets:
            cells = (
                t for row in sheet.iter_rows(values_only=True) for v in row
                if (t := _cell_text(v)) is not None
            )  # fmt: skip
            result.add(scan_texts(cells, known_names=names, column=sheet.title))
    finally:
        book.close()
    return result


_INTEGRAL = r"^[0-9]{11,19}$"


def scan_xls(fh: BinaryIO, names) -> LeakCounts:
    """Every cell of every sheet of an xls (calamine, cells as text; see the module's
    docstring for the numbers)."""
    import fastexcel

    result = LeakCounts()
    reader = fastexcel.read_excel(fh.read())
    for name in reader.sheet_names:
        frame = reader.load_sheet_by_name(name, header_row=None, dtypes="string").to_polars()
        if frame.is_empty():
            continue
        cells = frame.select(pl.concat_list(pl.all()).explode().drop_nulls().alias("cell")).select(
            pl.when(pl.col("cell").str.contains(_INTEGRAL))
            .then(pl.col("cell") + ".0")
            .otherwise(pl.col("cell"))
        )
        result.add(scan_texts(cells.to_series().to_list(), known_names=names, column=name))
    return result


def _workbook(fh: BinaryIO) -> bool:
    """Whether a zip is an xlsx (its content types' part), not an archive of files sent
    compressed (a damaged zip is left to the workbook reader to fail on)."""
    fh.seek(0)
    try:
        with zipfile.ZipFile(fh) as zf:
            return "[Content_Types].xml" in zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return True
    finally:
        fh.seek(0)


def scan_zip(fh: BinaryIO, names) -> LeakCounts:
    """Every file of a zip archive (a delivery sent compressed: pipelines.connectors.
    compressed), each read by what it holds, as a stream; a password-protected member is
    skipped (it holds nothing in the clear)."""
    result = LeakCounts()
    with zipfile.ZipFile(fh) as zf:
        for member in zf.infolist():
            if member.is_dir() or member.flag_bits & 0x1:
                continue
            with zf.open(member) as inner:
                counts, _ = scan_stream(inner, names, seekable=False)  # type: ignore[arg-type]
            result.add(counts)
    return result


def scan_stream(fh: BinaryIO, names, *, seekable: bool) -> tuple[LeakCounts, str]:
    """Scan an open binary file by what it holds; returns the counts and the format read.

    A Parquet, xlsx or xls file needs ``seekable``; a non-seekable one is read as text (its
    compressed pages would hide nothing from a byte scan that they do not hide here)."""
    head = fh.read(len(SQLITE_MAGIC))
    kind = sniff(head)
    if kind == "gzip":
        with gzip.GzipFile(fileobj=Prefixed(head, fh), mode="rb") as inner:
            counts, _ = scan_stream(inner, names, seekable=False)  # type: ignore[arg-type]
        return counts, kind
    if kind == "xlsx" and seekable and not _workbook(fh):
        return scan_zip(fh, names), "zip"
    if kind in ("parquet", "xlsx", "xls") and seekable:
        fh.seek(0)
        read = {"parquet": scan_parquet, "xlsx": scan_xlsx, "xls": scan_xls}[kind]
        return read(fh, names), kind
    return scan_texts(text_lines(fh, head), known_names=names), "text"


def scan_plain_file(
    path: Path, names, since: dt.datetime | None = None, structured: Structured | None = None
) -> tuple[LeakCounts, str]:
    """A file in the clear, by its content (SQLite opened by path; ``since``: see
    :func:`scan_sqlite`)."""
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if sniff(head) == "sqlite":
        return scan_sqlite(path, names, since, structured), "sqlite"
    with open(path, "rb") as fh:
        return scan_stream(fh, names, seekable=True)


def files_under(folder: Path) -> Iterator[Path]:
    """Regular files under ``folder`` (links are not followed), sorted; SQLite's side files
    (WAL, shared memory, journal) are left to their database."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if path.name.endswith(SQLITE_SIDE_FILES):
            continue
        yield path
