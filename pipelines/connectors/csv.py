"""CSV deliveries in a declared encoding (GBK, UTF-8 with or without BOM), read as a stream.

A delivery in the other of the two encodings Chinese exports are written in is read in it
where the file says so: a UTF-8 byte-order mark in a file declared GBK, or a header line
that names the catalogue's required columns only when read in the other encoding, or,
under a header in ASCII (pinyin initials: SFZH, XM), rows that read only in the other
one (:func:`_rows_tell`: UTF-8 read as GB18030 loaded mojibake names silently). A file
that starts with a UTF-16 byte-order mark (Excel's "Unicode text") is UTF-16 whatever was
declared, transcoded to UTF-8 as it is read; one declared UTF-16 without a mark is read
in the order declared. A header that names the required columns only when split at tabs
(Excel's text exports) makes the file read so. The read's notes say each of these (the
catalogue's setting is for the officer to correct).

The landed file is cut into records at byte level (:mod:`pipelines.connectors.records`)
and each record is decoded strictly on its own (STACK.md: DuckDB's GBK reader
corrupts characters at its buffer edges), then split into cells by Python's csv
module. Damage stays with its row: a bad byte sequence ("wrong encoding at byte N"),
a record over ``max_record_bytes`` ("too large"), a wrong number of cells ("cell
count") and — where the department's exporter ends every line — a last row without
its line end ("possibly truncated") are quarantined and the rest loads. Only a file
that cannot be read at all fails: empty, no readable header, or no readable row.
Rows come out in batches, so memory is a small multiple of the largest row.

A delivery declared GBK (or GB2312, CP936) is decoded as GB18030, the national standard
(GB 18030-2022) its exporter in fact writes: a superset that reads every GBK byte
sequence to the same character (all 21,791 two-byte ones: Python's codecs), and also the
four-byte sequences of the characters GBK lacks, which residents' names hold (生僻字: 䶮,
𠮷 …). Decoded as GBK, such a row was quarantined for "wrong encoding" and the resident
lost.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import sys
from collections.abc import Iterator
from itertools import chain, islice, repeat
from pathlib import Path
from typing import BinaryIO, NamedTuple

import polars as pl

from catalog.errors import DeliveryError
from catalog.model import Dataset
from catalog.settings import Settings
from pipelines.connectors.base import (
    HEADER_SEARCH_ROWS,
    SOURCE_ROW,
    Parsed,
    RowProblem,
    names_required,
    whole_file_failure,
)
from pipelines.connectors.compressed import open_delivered
from pipelines.connectors.records import (
    UTF8_BOM,
    Record,
    batches,
    byte_splittable,
    cr_lines,
    is_utf16,
    scan_records,
    utf16_as_utf8,
)

GBK_FAMILY = frozenset({"gbk", "gb2312"})  # codecs' names (cp936 is gbk's alias)


def decode_error(exc: UnicodeDecodeError, offset: int, encoding: str) -> str:
    """'wrong encoding at byte N' for a decode failure inside a record at ``offset``
    (GB18030 named with GBK, which the officer declared: see the module's docstring)."""
    shown = "gbk/gb18030" if codecs.lookup(encoding).name == "gb18030" else encoding
    return (
        f"wrong encoding at byte {offset + exc.start}: not {shown} ({exc.reason}); "
        "wrong encoding declared for this delivery?"
    )


def too_large(size: int, limit: int) -> str:
    return f"too large: the record has {size:,} bytes, the limit is {limit:,}"


def truncated_last(rec: Record) -> str:
    if rec.open_quote:
        return "truncated: the file ends inside a quoted cell of its last row"
    return "possibly truncated: the last row has no line ending (the exporter ends every line)"


class _Header:
    def __init__(self, names: list[str], line: int, named: int | None = None) -> None:
        self.names = names
        self.width = len(names)
        self.line = line
        # the cells up to the last named column: a spreadsheet's export may end its header,
        # and some of its rows, with empty cells of its used range beyond the table
        if named is None:
            named = max((i + 1 for i, n in enumerate(names) if n.strip()), default=0)
        self.named = named

    def fitted(self, row: list[str]) -> list[str] | None:
        """A row of another width than the header's, fitted to it where only empty cells
        beyond the table differ (cells past the header's, all empty; or the header's
        unnamed last columns missing); None where the row is broken."""
        if len(row) > self.width and not any(map(str.strip, row[self.width :])):
            return row[: self.width]
        if self.named <= len(row) < self.width:
            return row + [""] * (self.width - len(row))
        return None


def beyond_the_table(rows: int, width: int) -> str:
    """The note for rows fitted to the header (:meth:`_Header.fitted`)."""
    return (
        f"{rows} row(s) differ from the header (of {width} named cells) only by empty cells "
        "beyond the table, the used range of a spreadsheet: read without them"
    )


def _header_below(
    header: _Header | None,
    records: Iterator[Record],
    encodings: tuple[str, ...],
    dataset: Dataset,
    file: str,
    limit: int,
) -> tuple[_Header | None, Iterator[Record], str]:
    """The first of the next lines that names every required column, read in the first of
    ``encodings`` that makes it do so, as the header, the records after it (the lines above
    it are titles, not rows) and that encoding; else ``header``, every record and the first
    encoding (the delivery then fails naming the missing columns)."""
    peeked = list(islice(records, HEADER_SEARCH_ROWS - 1))
    for i, rec in enumerate(peeked):
        for encoding in encodings:
            try:
                below = _read_header(rec, encoding, dataset.code, file, dataset.delivery, limit)
            except DeliveryError:
                continue
            if names_required(dataset, below.names):
                return below, chain(peeked[i + 1 :], records), encoding
    return header, chain(peeked, records), encodings[0]


def _read_header(rec: Record, encoding: str, dataset: str, file: str, d, limit: int) -> _Header:
    if rec.data is None:
        raise DeliveryError(
            too_large(rec.size, limit) + " (the header line)",
            dataset=dataset,
            file=file,
            row=rec.line,
        )
    try:
        text = rec.data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DeliveryError(
            decode_error(exc, rec.offset, encoding), dataset=dataset, file=file, row=rec.line
        ) from None
    if not rec.terminated and d.lines_terminated:
        raise DeliveryError(
            "truncated: the file ends inside its header line", dataset=dataset, file=file
        )
    try:
        rows = list(csv.reader([text.removeprefix("\ufeff")], delimiter=d.delimiter or ","))
    except csv.Error:
        rows = []
    if len(rows) != 1:
        nul = "\x00" in text  # UTF-16 read as a one-byte encoding: a 0 byte in every ASCII
        raise DeliveryError(
            "missing column names: the header line cannot be split into cells"
            + (
                " (it holds 0 bytes: a UTF-16 file without its byte-order mark? declare its "
                "encoding utf-16)"
                if nul
                else ""
            ),
            dataset=dataset,
            file=file,
            row=rec.line,
        )
    names = [h.strip() for h in rows[0]]
    return _Header(names, rec.line)


def _header_told(
    first: Record, encoding: str, other: str | None, dataset: Dataset, file: str, limit: int
) -> tuple[_Header, str | None]:
    """The header line read in the declared ``encoding``, or, where only ``other`` (the
    other encoding Chinese exports are written in) reads it into names of every required
    column, read in that one; with the encoding it told (None: the declared one). A
    department whose export moved between GBK and UTF-8 (a new Excel's "CSV UTF-8", an old
    system's GBK) failed whole: "wrong encoding at byte 14", "missing column"."""
    d = dataset.delivery
    try:
        header = _read_header(first, encoding, dataset.code, file, d, limit)
    except DeliveryError as exc:
        header, failure = None, exc
    if header is not None and names_required(dataset, header.names):
        return header, None
    if other is not None and first.data is not None:
        try:
            told = _read_header(first, other, dataset.code, file, d, limit)
        except DeliveryError:
            told = None
        if told is not None and names_required(dataset, told.names):
            return told, other
    if header is None:
        raise failure
    return header, None


def _parse_batch(recs: list[Record], encoding: str, delimiter: str) -> list[list[str]] | None:
    """Cells of a batch of records decoded and parsed in one go; None when one of them
    needs a closer look (a bad byte, a stray quote, a record the csv module cuts otherwise)."""
    try:  # each record one string: the csv module reads a quoted line break inside one
        texts = list(map(bytes.decode, (r.data for r in recs), repeat(encoding)))
        rows = list(csv.reader(texts, delimiter=delimiter, strict=True))
    except (UnicodeDecodeError, csv.Error):
        return None
    return rows if len(rows) == len(recs) else None


def _parse_one(text: str, delimiter: str) -> list[str] | None:
    try:
        rows = list(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _batch(
    recs: list[Record], header: _Header, encoding: str, d, limit: int
) -> tuple[pl.DataFrame, list[RowProblem], int]:
    """The batch's rows, its unreadable rows, and how many rows were fitted to the header
    (:meth:`_Header.fitted`)."""
    delimiter = d.delimiter or ","
    problems: list[RowProblem] = []
    kept: list[Record] = []
    for rec in recs:
        if rec.data is None:
            problems.append(RowProblem(rec.line, too_large(rec.size, limit), check="too_large"))
        elif not rec.terminated and (rec.open_quote or d.lines_terminated):
            problems.append(RowProblem(rec.line, truncated_last(rec), check="truncated"))
        else:
            kept.append(rec)
    rows = _parse_batch(kept, encoding, delimiter)  # the fast path: one decode, one parse
    if rows is not None:
        lines = [r.line for r in kept]
    else:
        texts, lines = [], []
        for r in kept:
            try:
                texts.append(r.data.decode(encoding))
                lines.append(r.line)
            except UnicodeDecodeError as exc:
                problems.append(
                    RowProblem(r.line, decode_error(exc, r.offset, encoding), check="encoding")
                )
        rows = [_parse_one(t, delimiter) for t in texts]
        del texts  # the cells are copies: the decoded records need not stay
    good: list[list[str]] = []
    good_lines: list[int] = []
    fitted = 0
    for line, row in zip(lines, rows, strict=True):
        if row is not None and len(row) != header.width:
            fit = header.fitted(row)
            if fit is not None and any(map(str.strip, fit)):
                row, fitted = fit, fitted + 1
        if row is None:
            problems.append(
                RowProblem(
                    line,
                    "cell count unknown: the row cannot be split into cells (a stray quote?)",
                    check="cell_count",
                )
            )
        elif len(row) != header.width:
            if not any(map(str.strip, row)):
                continue  # a row of empty cells is no record
            problems.append(
                RowProblem(
                    line,
                    f"cell count: the row has {len(row)} cells, the header has {header.width}",
                    check="cell_count",
                )
            )
        elif not any(map(str.strip, row)):
            continue
        else:
            good.append(row)
            good_lines.append(line)
    columns = list(zip(*good, strict=True)) if good else [() for _ in header.names]
    frame = pl.DataFrame(
        [pl.Series(SOURCE_ROW, good_lines, dtype=pl.Int64)]
        + [
            pl.Series(name, col, dtype=pl.String)
            for name, col in zip(header.names, columns, strict=True)
        ]
    )
    problems.sort(key=lambda p: p.source_row)
    return frame, problems, fitted


def _unique_header(header: _Header, dataset: Dataset, file: str) -> _Header:
    """Repeated column names: fail if a catalogue column repeats, else keep the first."""
    counts: dict[str, int] = {}
    for n in header.names:
        counts[n] = counts.get(n, 0) + 1
    repeated = [n for n, c in counts.items() if c > 1]
    if not repeated:
        return header
    known = {f.source_name for f in dataset.fields}
    clash = [n for n in repeated if n in known]
    if clash:
        raise DeliveryError(
            f"the header names column(s) {', '.join(clash)} more than once",
            dataset=dataset.code,
            file=file,
            row=header.line,
        )
    seen: set[str] = set()
    names = []
    for i, n in enumerate(header.names):
        names.append(n if n not in seen else f"_repeated_{i}")
        seen.add(n)
    return _Header(names, header.line, header.named)  # the empty names renamed, not named


class _Opened(NamedTuple):
    """A CSV delivery's header as found, the records after it, the encoding its rows are
    decoded in, and the notes on what the file said against the catalogue."""

    header: _Header
    records: Iterator[Record]
    encoding: str
    notes: list[str]
    undecided: str | None  # the other encoding, where the header could not tell


def _open_csv(fh: BinaryIO, dataset: Dataset, file: str, limit: int) -> _Opened:
    """The header of an open landed CSV file, read with the dataset's delimiter: in the
    declared encoding, else in the one the file itself tells (a byte-order mark, or a
    header line that names the required columns only in the other Chinese encoding), on
    the first line or on one of the next under a title."""
    d = dataset.delivery
    declared = d.encoding or "utf-8"
    name = codecs.lookup(declared).name
    fh, utf16 = utf16_as_utf8(fh, declared)
    notes: list[str] = []
    fh, cr = cr_lines(fh)
    if cr:
        notes.append("the lines end with a carriage return alone (an old Mac export): read so")
    if utf16 is not None:  # transcoded to UTF-8 (pipelines.connectors.records)
        name = "utf-8"
        if not is_utf16(declared):
            notes.append(
                "the file is UTF-16 (it starts with UTF-16's byte-order mark), the catalogue "
                f"says {declared}"
            )
    utf8, gbk = name in {"utf-8", "utf-8-sig"}, name in GBK_FAMILY | {"gb18030"}
    # utf-8: the BOM is skipped by the scanner, offsets stay file offsets; GBK is read as
    # GB18030, their superset (see the module's docstring)
    encoding = "utf-8" if utf8 else "gb18030" if gbk else declared
    # the other Chinese export; none where the file has said what it is
    other = None if utf16 else "gb18030" if utf8 else "utf-8" if gbk else None
    # a UTF-8 byte-order mark is skipped in a GBK file too (its bytes start no GBK header)
    records = scan_records(
        fh,
        max_bytes=limit,
        csv_delimiter=(d.delimiter or ",").encode("ascii"),
        skip_bom=utf8 or gbk,
    )
    first = next(records, None)
    if first is None:
        raise DeliveryError("the file is empty", dataset=dataset.code, file=file)
    if gbk and first.line == 1 and first.offset == len(UTF8_BOM):  # the file's own word
        encoding, other, told = "utf-8", None, None
        notes.append(
            "the file is UTF-8 (it starts with UTF-8's byte-order mark), the catalogue "
            f"says {declared}"
        )
        header = _read_header(first, encoding, dataset.code, file, d, limit)
    else:
        try:
            header, told = _header_told(first, encoding, other, dataset, file, limit)
        except DeliveryError as exc:  # the first line reads in neither: a title, perhaps
            if other is None:
                raise
            header, told, unreadable = None, None, exc
        if told is not None:
            encoding, other = told, None
    if header is None or not names_required(dataset, header.names):  # under a title?
        tries = (encoding, other) if other is not None else (encoding,)
        header, records, found = _header_below(header, records, tries, dataset, file, limit)
        if header is None:  # no header below either: the first line's failure stands
            raise unreadable
        if found != encoding:
            encoding, told = found, found
    if told is not None:  # told by the header line or by a header under a title
        notes.append(
            f"the file is {_spelt(told)} (its header reads so), the catalogue says {declared}"
        )
    if header.line != first.line:
        notes.append(f"the header is on line {header.line}, under a title")
    # an ASCII header (SFZH, XM …) reads alike in both: the rows are left to tell
    ascii_header = all(n.isascii() for n in header.names)
    undecided = other if told is None and ascii_header else None
    return _Opened(header, records, encoding, notes, undecided)


def _spelt(encoding: str) -> str:
    return "UTF-8" if encoding == "utf-8" else "GB18030/GBK"


ROWS_TELL_BYTES = 16  # bytes of characters outside ASCII the rows must hold to tell


def _rows_tell(recs: list[Record], encoding: str, other: str) -> bool:
    """Whether the first batch's rows are in ``other``, the other Chinese encoding.

    Read in GB18030, most UTF-8 text decodes too, as mojibake (张三 as 寮犱笁): a UTF-8
    file declared GBK under an ASCII header loaded its names garbled and said nothing.
    UTF-8 is the file's word where every row outside ASCII is valid UTF-8 (a GBK text of
    a few characters almost never is); GB18030 where none of them is UTF-8 and every one
    reads in GB18030 (a UTF-8 file with one damaged row still reads as UTF-8, the row
    quarantined). At least :data:`ROWS_TELL_BYTES` bytes outside ASCII must be there."""
    rows = [r.data for r in recs if r.data is not None and not r.data.isascii()]
    if sum(len(r) for r in rows) < ROWS_TELL_BYTES:
        return False

    def reads(data: bytes, enc: str) -> bool:
        try:
            data.decode(enc)
        except UnicodeDecodeError:
            return False
        return True

    if other == "utf-8":
        return all(reads(r, "utf-8") for r in rows)
    return not any(reads(r, encoding) for r in rows) and all(reads(r, other) for r in rows)


TAB = "\t"


def read_csv(path: Path, dataset: Dataset, settings: Settings) -> Iterator[Parsed]:
    """Batches of rows of a landed CSV delivery (see the module docstring)."""
    d = dataset.delivery
    encoding = d.encoding or "utf-8"
    delimiter = d.delimiter or ","
    file = str(path)
    if not is_utf16(encoding) and not byte_splittable(encoding, delimiter):
        raise DeliveryError(
            f"encoding {encoding} with delimiter {delimiter!r} cannot be read as a stream",
            dataset=dataset.code,
            file=file,
        )
    limit = settings.max_record_bytes
    csv.field_size_limit(max(csv.field_size_limit(), min(limit, sys.maxsize)))
    read = loaded = 0
    first_problem: RowProblem | None = None
    with contextlib.ExitStack() as opened:
        fh, came = opened.enter_context(open_delivered(settings, path, dataset.code, file))
        header, records, encoding, notes, undecided = _open_csv(fh, dataset, file, limit)
        if not names_required(dataset, header.names) and delimiter != TAB:
            # Excel's "Unicode text" and "Text (tab delimited)" separate cells by tabs:
            # where the header names the columns only so, the file is read so
            tabbed = dataset.model_copy(
                update={"delivery": d.model_copy(update={"delimiter": TAB})}
            )
            again, _ = opened.enter_context(open_delivered(settings, path, dataset.code, file))
            try:
                told = _open_csv(again, tabbed, file, limit)
            except DeliveryError:
                told = None
            if told is not None and names_required(dataset, told.header.names):
                header, records, encoding = told.header, told.records, told.encoding
                undecided = told.undecided
                notes = [
                    *told.notes,
                    f"the cells are separated by tabs (the header reads so), the catalogue "
                    f"says {delimiter!r}",
                ]
                dataset, d = tabbed, tabbed.delivery
        header = _unique_header(header, dataset, file)
        if came is not None:
            notes = [came, *notes]
        parts = batches(records)
        recs = next(parts, [])
        if undecided is not None and _rows_tell(recs, encoding, undecided):
            encoding = undecided
            notes.append(
                f"the file is {_spelt(undecided)} (its rows read so, its header is ASCII), "
                f"the catalogue says {d.encoding or 'utf-8'}"
            )
        while True:
            frame, problems, fitted = _batch(recs, header, encoding, d, limit)
            if fitted:
                notes = [*notes, beyond_the_table(fitted, header.named)]
            read += frame.height + len(problems)
            loaded += frame.height
            if problems and first_problem is None:
                first_problem = problems[0]
            following = next(parts, None)
            if following is None and read and not loaded:
                break  # nothing readable: fail before the header is judged against the catalogue
            yield Parsed(frame, problems, notes)
            notes = []
            if following is None:
                break
            recs = following
    if read and not loaded:
        raise whole_file_failure(read, first_problem, dataset.code, file)
