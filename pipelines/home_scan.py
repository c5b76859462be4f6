"""An independent scan of every file under the home for personal data in the clear.

Independent of the leak scanner (``masking.leaks``, ``pipelines.leaks``): its own walk,
its own readers and its own patterns, and no knowledge of what the hub puts where — a
second opinion that does not share the first one's blind spots. It looks for the three
kinds that can be checked without context:

- valid citizen IDs (GB 11643: 18 characters, real birth date, check character; also
  written 6-8-4 with spaces or dashes),
- mobiles (1[3-9] + 9 digits, with or without 86, +86, 0086; also 3-4-4),
- bank card numbers (16-19 digits from an issuer, first digit 2-6, passing Luhn; also
  4-4-4-4), not counting a valid citizen ID that happens to pass Luhn.

Every regular file under the home is read: Parquet (every column, by row group), SQLite
(every table and cell; zlib-compressed blobs inflated), xlsx and xls (every cell) decoded,
gzip and zip inflated (each member of a zip; at most :data:`MAX_INFLATED` bytes of a file,
past which it is unreadable: a bomb), UTF-16 text (told by its byte-order mark) read as
UTF-8, everything else as raw bytes in overlapping chunks (ASCII digits are the same bytes
in UTF-8 and GBK). Digits inside a hex word (a digest, a UUID) or after a decimal point are
chance, not numbers. A finding is a file, a kind and a count — never a value.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from catalog.identifiers import citizen_id_valid_str, luhn_valid_str

CHUNK = 4 << 20
MAX_INFLATED = 1 << 30  # bytes a compressed file may inflate to before it is given up
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"  # a zip, and so an xlsx
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
OVERLAP = 64  # bytes a chunk repeats of the one before (a number cut at the edge)
ROWS = 20_000

_ID = rb"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}[01][0-9][0-3][0-9]{4}[0-9Xx]"
_ID_SPLIT = rb"[1-9][0-9]{5}([ -])(?:18|19|20)[0-9]{6}\1[0-9]{3}[0-9Xx]"
_MOBILE = rb"(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[0-9]{8}|[ -][0-9]{4}[ -][0-9]{4})"
_CARD = rb"[2-6][0-9]{15,18}|[2-6][0-9]{3}(?:[ -][0-9]{4}){3}(?:[ -][0-9]{1,3})?"
PATTERN = re.compile(
    rb"(?<![0-9A-Za-z])(?<![0-9]\.)(?:(?P<id>" + _ID + rb")|(?P<ids>" + _ID_SPLIT + rb")"
    rb"|(?P<card>" + _CARD + rb")|(?P<mobile>" + _MOBILE + rb"))(?![0-9A-Za-z])"
)
_HEX = re.compile(
    rb"(?<![0-9A-Za-z])(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    rb"|(?=[0-9]*[a-f])[0-9a-f]{12,})(?![0-9A-Za-z])"
)
SQLITE_MAGIC = b"SQLite format 3\x00"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass
class HomeScan:
    files: int = 0
    bytes: int = 0
    findings: dict[str, Counter] = field(default_factory=dict)  # file → kind → count
    unreadable: list[str] = field(default_factory=list)  # decoded formats that failed

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.findings.values())

    def by_kind(self) -> Counter:
        out: Counter = Counter()
        for c in self.findings.values():
            out.update(c)
        return out


def kinds_in(data: bytes) -> Counter:
    """Citizen IDs, mobiles and card numbers in the clear in ``data``."""
    found: Counter = Counter()
    data = _HEX.sub(lambda m: b" " * len(m.group()), data)
    for m in PATTERN.finditer(data):
        kind = m.lastgroup
        digits = re.sub(rb"[^0-9Xx]", b"", m.group()).decode().upper()
        if kind in ("id", "ids"):
            if citizen_id_valid_str(digits):
                found["citizen_id"] += 1
        elif kind == "card":
            if luhn_valid_str(digits) and not citizen_id_valid_str(digits):
                found["bank_card"] += 1
        else:
            found["mobile"] += 1
    return found


def _overlapping(pieces: Iterator[bytes]) -> Iterator[tuple[bytes, int]]:
    """Each piece after the last :data:`OVERLAP` bytes (at most) of what came before, and
    how many bytes of it came before (a number ending there was counted already)."""
    tail = b""
    for chunk in pieces:
        if chunk:
            data = tail + chunk
            yield data, len(tail)
            tail = data[-OVERLAP:]


def _reads(fh) -> Iterator[bytes]:
    """A binary stream's bytes, :data:`CHUNK` at a time."""
    return iter(lambda: fh.read(CHUNK), b"")


def _raw_chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    with open(path, "rb") as fh:
        yield from _overlapping(_reads(fh))


class TooLarge(Exception):
    """A compressed file inflating past :data:`MAX_INFLATED`."""


def _capped(pieces: Iterator[bytes]) -> Iterator[bytes]:
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > MAX_INFLATED:
            raise TooLarge
        yield piece


def _gzip_chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    import gzip

    with gzip.open(path, "rb") as fh:
        yield from _overlapping(_capped(_reads(fh)))


def _zip_chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    """Every member's bytes (a line break between two members)."""
    import zipfile

    def members() -> Iterator[bytes]:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                with z.open(info) as fh:
                    yield from _reads(fh)
                yield b"\n"

    yield from _overlapping(_capped(members()))


def _utf16_chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    import codecs

    decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
    with open(path, "rb") as fh:
        pieces = (decoder.decode(b).encode() for b in _reads(fh))
        yield from _overlapping(pieces)


def _scan_bytes(path: Path, chunks=_raw_chunks) -> Counter:
    """Raw bytes (or what ``chunks`` makes of the file), chunk by chunk; a number across a
    chunk edge is read in the chunk that holds it whole (each chunk counts only matches
    that end past its overlap)."""
    found: Counter = Counter()
    for data, skip in chunks(path):
        part = _HEX.sub(lambda m: b" " * len(m.group()), data)
        for m in PATTERN.finditer(part):
            if m.end() <= skip:
                continue
            found.update(kinds_in(m.group()))
    return found


def _text(v: object) -> bytes:
    if v is None:
        return b""
    if isinstance(v, bytes | memoryview | bytearray):
        data = bytes(v)
        with contextlib.suppress(zlib.error):
            data = zlib.decompress(data)
        return data
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e19:
        return str(int(v)).encode()
    return str(v).encode("utf-8", "replace")


def _scan_cells(rows: Iterator[tuple]) -> Counter:
    found: Counter = Counter()
    for row in rows:
        found.update(kinds_in(b"\n".join(_text(v) for v in row)))
    return found


def _scan_parquet(path: Path) -> Counter:
    import pyarrow.parquet as pq

    found: Counter = Counter()
    for batch in pq.ParquetFile(path).iter_batches(batch_size=ROWS):
        columns = [col.to_pylist() for col in batch.columns]
        found.update(_scan_cells(zip(*columns, strict=True)))
    return found


def _scan_sqlite(path: Path) -> Counter:
    found: Counter = Counter()
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            cur = con.execute('SELECT * FROM "' + table.replace('"', '""') + '"')
            while rows := cur.fetchmany(ROWS):
                found.update(_scan_cells(iter(rows)))
    finally:
        con.close()
    return found


def _scan_xlsx(path: Path) -> Counter:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    try:
        return sum((_scan_cells(s.iter_rows(values_only=True)) for s in book.worksheets), Counter())
    finally:
        book.close()


def _scan_xls(path: Path) -> Counter:
    import fastexcel

    book = fastexcel.read_excel(str(path))
    found: Counter = Counter()
    for name in book.sheet_names:
        sheet = book.load_sheet_by_name(name, header_row=None, dtypes="string").to_polars()
        found.update(_scan_cells(sheet.iter_rows()))
    return found


def _is_xlsx(path: Path, head: bytes) -> bool:
    import zipfile

    if not head.startswith(ZIP_MAGIC):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.startswith("xl/") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def scan_file(path: Path) -> tuple[Counter, str]:
    """(kinds found, how it was read: parquet, sqlite, xlsx, xls, gzip, zip, utf-16 or
    bytes). A decoded format that fails to decode is read as bytes instead (and said so by
    the caller)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    readers = []
    if head.startswith(b"PAR1"):
        readers.append(("parquet", _scan_parquet))
    elif head.startswith(SQLITE_MAGIC):
        readers.append(("sqlite", _scan_sqlite))
    elif _is_xlsx(path, head):
        readers.append(("xlsx", _scan_xlsx))
    elif head.startswith(OLE2_MAGIC):  # a compound document: an Excel 97-2003 xls
        readers.append(("xls", _scan_xls))
    elif head.startswith(GZIP_MAGIC):
        readers.append(("gzip", lambda p: _scan_bytes(p, _gzip_chunks)))
    elif head.startswith(ZIP_MAGIC):  # a zip that is no workbook
        readers.append(("zip", lambda p: _scan_bytes(p, _zip_chunks)))
    elif head.startswith(UTF16_BOMS):
        # and as bytes too: a binary file may start so (UTF-16 text holds no ASCII number)
        readers.append(("utf-16", lambda p: _scan_bytes(p, _utf16_chunks) + _scan_bytes(p)))
    for how, read in readers:
        try:
            return read(path), how
        except Exception:  # a damaged file is still read, as bytes
            return _scan_bytes(path), f"bytes ({how} did not decode)"
    return _scan_bytes(path), "bytes"


def scan_home(home: Path) -> HomeScan:
    """Every regular file under ``home`` (links not followed)."""
    result = HomeScan()
    home = Path(home)
    for path in sorted(home.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            size = path.stat().st_size
            found, how = scan_file(path)
        except OSError:  # vanished or unreadable while scanned
            result.unreadable.append(str(path.relative_to(home)))
            continue
        result.files += 1
        result.bytes += size
        if how.startswith("bytes ("):
            result.unreadable.append(str(path.relative_to(home)))
        if found:
            result.findings[str(path.relative_to(home))] = found
    return result
