"""Excel workbooks (a title row above Chinese headers), read with fastexcel (calamine):
xlsx, and the Excel 97–2003 ``.xls`` many government systems still export (told by content,
not by name).

An xls is a compound document (OLE2) of whole 512-byte sectors, nothing compressed: one
whose size is over ``xlsx_max_uncompressed_bytes`` or not whole sectors (cut short) is
refused before calamine reads it. An xlsx is a zip archive: before calamine reads anything, the archive is checked
with ``zipfile`` on the landed file opened seekable (:func:`open_landed`: decrypted
segment by segment, never a plaintext copy on disk) — member count (``xlsx_max_members``), the sum of the sizes its
members declare uncompressed (``xlsx_max_uncompressed_bytes``: a zip bomb is refused
unread) and the CRC of every member, streamed. Calamine then reads the workbook from
memory (its size bounded by those checks). Reasons never quote calamine's own
messages, which carry the landed path.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import fastexcel
import polars as pl
from defusedxml import ElementTree

from catalog.errors import DeliveryError
from catalog.model import Dataset, header_key
from catalog.settings import Settings
from pipelines.connectors.base import (
    HEADER_SEARCH_ROWS,
    SOURCE_ROW,
    Parsed,
    names_required,
    stringify,
)
from pipelines.connectors.landed import open_landed

# an OLE2 compound document (Excel 97-2003 .xls), of 512-byte sectors (version 3; a version 4
# file's are 4,096 bytes, a multiple)
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
OLE2_SECTOR = 512


def size_of(fh: BinaryIO) -> int:
    """The size of a seekable file (left at its start)."""
    size = fh.seek(0, io.SEEK_END)
    fh.seek(0)
    return size


def check_archive(source: BinaryIO, settings: Settings, dataset: str, file: str) -> int:
    """Refuse a workbook that is no xlsx (zip) or xls (OLE2), too big (once unpacked), or
    damaged; its size if not. ``source``: the workbook, seekable."""

    def fail(msg: str) -> DeliveryError:
        return DeliveryError(msg, dataset=dataset, file=file)

    size = size_of(source)
    if size == 0:
        raise fail("the file is empty")
    if source.read(len(OLE2_MAGIC)) == OLE2_MAGIC:
        if size > settings.xlsx_max_uncompressed_bytes:
            raise fail(
                f"too large: the workbook (xls) has {size:,} bytes, "
                f"the limit is {settings.xlsx_max_uncompressed_bytes:,}"
            )
        if size % OLE2_SECTOR:
            raise fail("corrupt workbook: the xls is not whole sectors (cut short? truncated?)")
        return size
    source.seek(0)
    try:
        with zipfile.ZipFile(source) as zf:
            members = zf.infolist()
            if len(members) > settings.xlsx_max_members:
                raise fail(
                    f"too large: the workbook holds {len(members):,} archive members, "
                    f"the limit is {settings.xlsx_max_members:,}"
                )
            declared = sum(m.file_size for m in members)
            if declared > settings.xlsx_max_uncompressed_bytes:
                raise fail(
                    f"too large: the workbook unpacks to {declared:,} bytes, "
                    f"the limit is {settings.xlsx_max_uncompressed_bytes:,}"
                )
            bad = zf.testzip()  # reads every member in chunks and checks its CRC
            if bad is not None:
                raise fail("corrupt archive: a member of the workbook fails its CRC check")
    except zipfile.BadZipFile:
        source.seek(0)
        zip_start = source.read(4) == b"PK\x03\x04"
        if zip_start:  # a zip whose end (its directory) is missing or damaged
            raise fail(
                "corrupt archive: the workbook is cut short or damaged (truncated?)"
            ) from None
        raise fail(
            "not a workbook: the file is neither an xlsx (zip) nor an xls (OLE2) workbook"
        ) from None
    except (zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError) as exc:
        raise fail(
            f"corrupt archive: the workbook cannot be unpacked ({type(exc).__name__})"
        ) from None
    if size > settings.xlsx_max_uncompressed_bytes + settings.xlsx_max_members * 1024:
        raise fail(  # more bytes than its members and their headers: not read whole
            f"too large: the workbook has {size:,} bytes, over what its members declare"
        )
    return size


def read_excel(path: Path, dataset: Dataset, settings: Settings) -> Iterator[Parsed]:
    d = dataset.delivery
    file = str(path)
    header_row = d.header_row or 0
    with open_landed(settings, path, seekable=True) as source:
        size = check_archive(source, settings, dataset.code, file)
        source.seek(0)
        data = source.read(size)
    try:
        reader = fastexcel.read_excel(data)
        names = reader.sheet_names
    except Exception as exc:  # calamine's own error types; their text names the landed path
        raise DeliveryError(
            f"not a workbook: calamine cannot open it ({type(exc).__name__})",
            dataset=dataset.code,
            file=file,
        ) from None
    # the sheet as named, else the one named alike (spaces, full-width forms: as headers are),
    # else the one sheet whose header names every required column (a clerk's Sheet1)
    alike = [n for n in names if header_key(n) == header_key(d.sheet)]
    notes: list[str] = []
    if d.sheet in names:
        name = d.sheet
    elif len(alike) == 1:
        name = alike[0]
    elif alike:
        raise DeliveryError(
            f"sheet {d.sheet!r} is named {len(alike)} ways in the workbook: which is meant?",
            dataset=dataset.code,
            file=file,
        )
    else:
        holding = sheets_with_header(reader, names, dataset)
        if len(holding) != 1:
            raise DeliveryError(
                f"sheet {d.sheet!r} is missing (the workbook has {len(names)} sheet(s), "
                + (f"{len(holding)} of them with every required column: which is meant?)"
                   if holding else "none with every required column)"),
                dataset=dataset.code,
                file=file,
            )  # fmt: skip
        name = holding[0]
        notes.append(
            f"the catalogue's sheet is not in the workbook: read its one sheet (of {len(names)}) "
            "whose header names every required column"
        )
    try:
        declared = header_row
        sheet = reader.load_sheet_by_name(name, header_row=header_row, dtypes="string")
        if not names_required(dataset, [c.name for c in sheet.available_columns()]):
            header_row = header_row_of(reader, name, header_row, dataset)
            if header_row != declared:  # read again under the header where it is
                sheet = reader.load_sheet_by_name(name, header_row=header_row, dtypes="string")
        frame = sheet.to_polars()
        at = {c.absolute_index: c.name for c in sheet.available_columns()}
        merged = [] if data.startswith(OLE2_MAGIC) else merged_down(data, name)  # xlsx only
    except Exception as exc:  # calamine: a damaged sheet (its text names the landed path)
        raise DeliveryError(
            f"corrupt archive: sheet {d.sheet!r} cannot be read ({type(exc).__name__})",
            dataset=dataset.code,
            file=file,
        ) from None
    # spreadsheet row numbers: the header is on row header_row + 1 (1-based)
    frame = frame.with_row_index(SOURCE_ROW, offset=header_row + 2).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64)
    )
    try:
        frame, filled = fill_merged(frame, merged, at, first_row=header_row + 2)
    except ValueError:
        raise DeliveryError(
            "corrupt workbook: its merged cells overlap", dataset=dataset.code, file=file
        ) from None
    frame.columns = [c if c == SOURCE_ROW else str(c).strip() for c in frame.columns]
    blank = pl.all_horizontal(
        pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")
        for c in frame.columns
        if c != SOURCE_ROW
    )
    if filled:
        notes.append(f"{filled} cell(s) of merged cells filled from the merge's first")
    if header_row != declared:
        notes.append(f"the header is on row {header_row + 1}, the catalogue says {declared + 1}")
    yield Parsed(stringify(frame.filter(~blank)), notes=notes)


def sheets_with_header(reader, names: list[str], dataset: Dataset) -> list[str]:
    """The sheets among ``names`` one of whose first rows names every required column."""
    found = []
    for name in names:
        try:
            top = reader.load_sheet_by_name(
                name, header_row=None, n_rows=HEADER_SEARCH_ROWS, dtypes="string"
            ).to_polars()
        except Exception:  # an empty or damaged sheet holds no header
            continue
        if any(names_required(dataset, list(top.row(i))) for i in range(top.height)):
            found.append(name)
    return found


def header_row_of(reader, sheet: str, declared: int, dataset: Dataset) -> int:
    """The row (0-based) holding the header, asked when the catalogue's ``header_row``
    does not name every required column: the first of the sheet's first rows that does (a
    ledger whose export gained or lost a title or a 制表日期 line above its header), else
    the catalogue's (the delivery then fails naming the missing columns)."""
    top = reader.load_sheet_by_name(
        sheet, header_row=None, n_rows=HEADER_SEARCH_ROWS, dtypes="string"
    ).to_polars()
    found = (i for i in range(top.height) if names_required(dataset, list(top.row(i))))
    return next(found, declared)


_MERGE_REF = re.compile(rb'<mergeCell\b[^>]*\bref="([A-Z]{1,3})(\d+):([A-Z]{1,3})(\d+)"')
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _column_index(letters: bytes) -> int:
    """0-based index of a column named by its letters (A → 0, AA → 26)."""
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n - 1


def merged_down(data: bytes, sheet: str) -> list[tuple[int, int, int]]:
    """(column, first row, last row) of each merged cell of ``sheet`` (an xlsx) that spans
    rows within one column: column 0-based, rows 1-based as the spreadsheet counts them.
    Read from the sheet's XML (calamine does not say which cells are merged), streamed."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        book = ElementTree.fromstring(zf.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
        rid = next(
            (e.get(f"{{{_REL_NS}}}id") for e in book.iter() if e.tag.endswith("}sheet")
             and e.get("name") == sheet),
            None,
        )  # fmt: skip
        target = next((e.get("Target") for e in rels if e.get("Id") == rid), None)
        if target is None:
            return []
        member = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        found: list[tuple[int, int, int]] = []
        tail = b""
        with zf.open(member) as fh:
            while chunk := fh.read(1 << 20):
                text = tail + chunk
                end = text.rfind(b"<")  # a tag cut at the chunk's end is read with the next
                for m in _MERGE_REF.finditer(text, 0, end if end > 0 else len(text)):
                    c0, r0, c1, r1 = m.groups()
                    if c0 == c1 and int(r1) > int(r0):
                        found.append((_column_index(c0), int(r0), int(r1)))
                tail = text[end:] if end > 0 else b""
    return found


def fill_merged(
    frame: pl.DataFrame, merged: list[tuple[int, int, int]], at: dict[int, str], first_row: int
) -> tuple[pl.DataFrame, int]:
    """Cells of a merged cell spanning data rows take its first cell's value, as the sheet
    shows them (a 社区 merged over its residents' rows): calamine leaves them empty, and the
    rows were quarantined as missing a required value. Returns the frame and the count."""
    last = first_row + frame.height - 1
    spans = [(at[c], r0, min(r1, last)) for c, r0, r1 in merged if c in at and r0 >= first_row]
    if not spans:
        return frame, 0
    if sum(r1 - r0 for _, r0, r1 in spans) > frame.height * len(at):  # merges never overlap
        raise ValueError("merged cells that overlap")
    fills = pl.DataFrame(
        [(name, r, r0) for name, r0, r1 in spans for r in range(r0 + 1, r1 + 1)],
        schema={"_col": pl.String, SOURCE_ROW: pl.Int64, "_from": pl.Int64},
        orient="row",
    )
    filled = 0
    for name, part in fills.partition_by("_col", as_dict=True).items():
        tops = frame.select(pl.col(SOURCE_ROW).alias("_from"), pl.col(name[0]).alias("_top"))
        source = part.join(tops, on="_from", how="left").select(SOURCE_ROW, "_top")
        joined = frame.join(source, on=SOURCE_ROW, how="left")
        gaps = joined[name[0]].is_null() & joined["_top"].is_not_null()
        filled += int(gaps.sum())
        frame = joined.with_columns(pl.coalesce(name[0], "_top").alias(name[0])).drop("_top")
    return frame, filled
