"""Splitting a landed file into records at byte level, in chunks, with bounded memory.

CSV and JSON Lines deliveries are read as streams of records: the file is read in
chunks of bytes and cut at line ends (``\\n``), a CSV record spanning several lines
while one of its cells is quoted. Nothing is decoded here: each record is decoded
on its own later, so one bad byte sequence costs one record, not the delivery.

Cutting bytes is safe for the catalogue's encodings (UTF-8, UTF-8 with BOM, GBK,
GB18030): none of them uses the bytes of ``\\n``, ``\\r`` or ``"`` inside a
multi-byte character (:func:`byte_splittable` checks an encoding). A record longer
than ``max_bytes`` is not kept: the scanner skips to its end while holding at most
one chunk, and reports it with ``data=None`` so it is quarantined as too large.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

CHUNK_BYTES = 4 * 1024 * 1024
BATCH_RECORDS = 50_000
BATCH_BYTES = 16 * 1024 * 1024
QUOTE = 0x22
UTF8_BOM = codecs.BOM_UTF8


class Record(NamedTuple):
    """One record as delivered: where it starts and its bytes (without the final ``\\n``)."""

    line: int  # 1-based line number of its first line
    offset: int  # byte offset of its first byte in the file
    data: bytes | None  # None: longer than the limit, skipped
    size: int  # bytes, without the final line end
    terminated: bool  # ended by ``\\n`` (False only for the file's last record)
    open_quote: bool = False  # CSV: the file ended inside a quoted cell


_record = tuple.__new__  # builds a Record without NamedTuple's Python-level __new__ (hot path)


def byte_splittable(encoding: str, delimiter: str = ",") -> bool:
    """True where line ends, quotes and the delimiter are single bytes that no
    multi-byte character contains (UTF-8, GBK, GB18030; not UTF-16)."""
    name = codecs.lookup(encoding).name
    if name in {"utf-8", "utf-8-sig", "ascii", "gbk", "gb18030", "gb2312"}:
        return delimiter in {",", ";", "\t", ":"} or name in {"utf-8", "utf-8-sig", "ascii"}
    return False


UTF16_BOMS = {codecs.BOM_UTF16_LE: "utf-16-le", codecs.BOM_UTF16_BE: "utf-16-be"}
UTF16 = frozenset({"utf-16", "utf-16-le", "utf-16-be"})  # codecs' names
TRANSCODE_BYTES = 1 << 20


def is_utf16(encoding: str) -> bool:
    return codecs.lookup(encoding).name in UTF16


class _Transcoded:
    """A UTF-16 file read as UTF-8 bytes (``read`` only: what the scanner asks).

    UTF-16 cannot be cut at byte level (its ``\\n`` is two bytes, one of them 0), so it
    is decoded as it is read and handed on as UTF-8, which can. Damage stays with its
    row: a lone surrogate is passed through as UTF-8 never writes one (strict UTF-8
    decoding then fails that record), and a last odd byte (a file cut inside a
    character) as a byte no UTF-8 holds. Offsets in the records are then offsets in
    the UTF-8, not in the file; their line numbers are the file's."""

    def __init__(self, fh: BinaryIO, encoding: str) -> None:
        self._fh = fh
        self._decoder = codecs.getincrementaldecoder(encoding)("surrogatepass")
        self._done = False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:  # all of it
            return b"".join(iter(lambda: self.read(TRANSCODE_BYTES), b""))
        while size and not self._done:
            raw = self._fh.read(size)
            try:
                text = self._decoder.decode(raw, final=not raw)
            except UnicodeDecodeError:  # only at the end: an odd byte, half a character
                self._done = True
                return b"\xff"
            if not raw:
                self._done = True
            if text:
                return text.encode("utf-8", "surrogatepass")
        return b""


def utf16_as_utf8(fh: BinaryIO, declared: str) -> tuple[BinaryIO, str | None]:
    """``fh`` to be scanned, and the UTF-16 it was read in (None: as it is).

    A file that starts with a UTF-16 byte-order mark is UTF-16 in that byte order
    whatever was declared (Excel's "Unicode text", a database's ``bcp -w`` export): its
    mark is its own word, as a UTF-8 mark is. A file declared UTF-16 without a mark is
    read in the order declared (``utf-16``: little-endian, as Windows writes it)."""
    head = fh.read(2)
    told = UTF16_BOMS.get(head)
    if told is not None:
        return _Transcoded(fh, told), told  # type: ignore[return-value]
    name = codecs.lookup(declared).name
    if name in UTF16:
        order = "utf-16-le" if name == "utf-16" else name
        return _Transcoded(Prefixed(head, fh), order), order  # type: ignore[return-value]
    return Prefixed(head, fh), None  # type: ignore[return-value]


CR_SNIFF_BYTES = 64 * 1024


class _CrLines:
    """A file whose lines end with a carriage return alone, read with line feeds."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size).replace(b"\r", b"\n")


def cr_lines(fh: BinaryIO) -> tuple[BinaryIO, bool]:
    """``fh`` to be scanned, and whether its lines end with a carriage return alone (old
    Mac exports: Excel for Mac's "CSV (Macintosh)"), told by its first 64 KiB holding a
    CR and no LF; such a file is read with each CR a line feed (no catalogue's encoding
    holds the byte 0x0D inside a character; a CR LF further on is a blank line, skipped)."""
    head = fh.read(CR_SNIFF_BYTES)
    fh = Prefixed(head, fh)  # type: ignore[assignment]
    if b"\r" in head and b"\n" not in head:
        return _CrLines(fh), True  # type: ignore[return-value]
    return fh, False


class Prefixed:
    """``fh`` read again from its start when ``head`` (its first bytes) was read already:
    the file need not seek (a landed file is decrypted as a stream)."""

    def __init__(self, head: bytes, fh: BinaryIO) -> None:
        self._head, self._fh = head, fh

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._fh.read(n)
        if n is None or n < 0:
            out, self._head = self._head + self._fh.read(), b""
            return out
        out, self._head = self._head[:n], self._head[n:]
        return out + (self._fh.read(n - len(out)) if len(out) < n else b"")


OUT, IN, QUOTE_SEEN = (
    0,
    1,
    2,
)  # CSV quote states: outside, inside a quoted cell, just after a quote in one


def _chunks(fh: BinaryIO, chunk_bytes: int, skip_bom: bool) -> Iterator[tuple[int, bytes]]:
    """(file offset, bytes) of each chunk of the file; a leading UTF-8 BOM left out."""
    pos = 0
    chunk = fh.read(chunk_bytes)
    if skip_bom:
        while len(chunk) < len(UTF8_BOM) and (more := fh.read(chunk_bytes)):
            chunk += more
        if chunk.startswith(UTF8_BOM):
            chunk, pos = chunk[len(UTF8_BOM) :], len(UTF8_BOM)
            chunk = chunk or fh.read(chunk_bytes)
    while chunk:
        yield pos, chunk
        pos += len(chunk)
        chunk = fh.read(chunk_bytes)


def _quote_state(piece: bytes, state: int, opens_at_0: bool, delim: int) -> int:
    """The CSV quote state after ``piece`` (part of one line), as Python's csv module reads it.

    A quote opens a quoted cell only at the start of a cell (elsewhere it is a
    literal character); inside, a doubled quote is a quote and a single one closes.
    ``opens_at_0``: position 0 of the piece is the start of a cell.
    ``QUOTE_SEEN`` is left when the piece ends right after a quote inside a cell
    (the next byte tells whether it closed or was doubled).
    """
    n = len(piece)
    i = 0
    if state == QUOTE_SEEN:
        if n and piece[0] == QUOTE:
            state, i = IN, 1
        else:
            state = OUT
    i = piece.find(b'"', i)
    while i != -1:
        if state == IN:
            if i + 1 == n:
                return QUOTE_SEEN
            if piece[i + 1] == QUOTE:
                i = piece.find(b'"', i + 2)
                continue
            state = OUT
        elif (i == 0 and opens_at_0) or (i > 0 and piece[i - 1] == delim):
            state = IN
        i = piece.find(b'"', i + 1)
    return state


def scan_records(
    fh: BinaryIO,
    *,
    max_bytes: int,
    csv_delimiter: bytes | None = None,
    skip_bom: bool = False,
    chunk_bytes: int | None = None,
) -> Iterator[Record]:
    """Every non-blank record of an open binary file, in order.

    ``csv_delimiter`` set: records are CSV records (a quoted cell may span lines);
    otherwise each line is a record (JSON Lines). Blank lines are no records.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    delim = csv_delimiter[0] if csv_delimiter else -1
    quoted = csv_delimiter is not None
    line_no = 1  # line number of the next byte
    # the record being assembled across lines or chunks
    parts: list[bytes] = []
    size = 0
    rec_line = rec_off = 0
    state = OUT
    started = False
    oversized = False
    at_line_start = True  # the next piece starts a line (not the rest of one cut by a chunk)
    prev = -1  # last byte before the next piece, within its line
    for pos, chunk in _chunks(fh, chunk_bytes, skip_bom):
        lines = chunk.split(b"\n")
        last = len(lines) - 1
        for i, piece in enumerate(lines):
            ends = i < last  # this piece is followed by a line end
            if not started:
                if ends and (not quoted or b'"' not in piece):
                    # the common case: one whole line, one record
                    n = len(piece)
                    if piece.strip():
                        data = piece if n <= max_bytes else None
                        yield _record(Record, (line_no, pos, data, n, True, False))
                    pos += n + 1
                    line_no += 1
                    continue
                started = True
                rec_line, rec_off = line_no, pos
                size = 0
                oversized = False
                state = OUT
                prev = -1
            if quoted and (state == QUOTE_SEEN or b'"' in piece):
                opens_at_0 = (size == 0) or (not at_line_start and prev == delim)
                state = _quote_state(piece, state, opens_at_0, delim)
            if piece:
                prev = piece[-1]
            size += len(piece)
            pos += len(piece)
            if not oversized:
                if size > max_bytes:
                    oversized = True
                    parts = []
                else:
                    parts.append(piece)
            if not ends:
                at_line_start = False
                break  # the line goes on in the next chunk
            at_line_start = True
            pos += 1
            line_no += 1
            if state == QUOTE_SEEN:
                state = OUT  # a quote right before the line end closed its cell
            if state == IN:
                size += 1  # a line end inside a quoted cell belongs to the record
                prev = -1
                if not oversized:
                    parts.append(b"\n")
                continue
            data = None if oversized else b"".join(parts)
            if oversized or data.strip():
                yield Record(rec_line, rec_off, data, size, True)
            parts = []
            started = False
    if started:
        data = None if oversized else b"".join(parts)
        if oversized or data.strip():
            open_quote = quoted and state == IN
            yield Record(rec_line, rec_off, data, size, False, open_quote=open_quote)


def batches(records: Iterator[Record], rows: int | None = None) -> Iterator[list[Record]]:
    """Records grouped into lists of at most ``rows`` records or about ``BATCH_BYTES``."""
    rows = rows or BATCH_RECORDS
    batch: list[Record] = []
    size = 0
    for rec in records:
        batch.append(rec)
        size += rec.size if rec.data is not None else 0
        if len(batch) >= rows or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class LineBlock(NamedTuple):
    """The whole lines of one chunk (JSON Lines): kept as a list, no object per line."""

    first_line: int  # line number of lines[0]
    offset: int  # file offset of lines[0]
    lines: list[bytes | None]  # without their ``\n``; None: longer than the limit, skipped
    sizes: dict[int, int]  # index → bytes, for the lines that are None
    terminated: bool  # the last line ends with ``\n`` (False only at the end of the file)

    def offset_of(self, i: int) -> int:
        """File offset of ``lines[i]`` (computed on demand: only errors need it)."""
        return self.offset + sum(
            (self.sizes[j] if ln is None else len(ln)) + 1 for j, ln in enumerate(self.lines[:i])
        )


def scan_lines(
    fh: BinaryIO, *, max_bytes: int, skip_bom: bool = False, chunk_bytes: int | None = None
) -> Iterator[LineBlock]:
    """The lines of an open binary file, a block per chunk (blank lines included).

    A line longer than ``max_bytes`` is replaced by None (its size in ``sizes``) and
    skipped to its end while holding at most one chunk.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    line_no = 1  # number of the line being read
    line_start: int | None = None  # its file offset
    carry: list[bytes] = []  # its bytes so far (a line cut by a chunk edge)
    carry_size = 0
    for start, chunk in _chunks(fh, chunk_bytes, skip_bom):
        if line_start is None:
            line_start = start  # after a BOM
        pieces = chunk.split(b"\n")
        if len(pieces) == 1:  # no line end: the line goes on
            carry_size += len(chunk)
            carry = [] if carry_size > max_bytes else [*carry, chunk]
            continue
        sizes: dict[int, int] = {}
        head_size = carry_size + len(pieces[0])
        if head_size > max_bytes:
            pieces[0] = None
            sizes[0] = head_size
        elif carry:
            pieces[0] = b"".join([*carry, pieces[0]])
        carry = []  # not held while the block is read
        rest = pieces.pop()
        if max(map(len, pieces[1:]), default=0) > max_bytes:
            for i in range(1, len(pieces)):
                if len(pieces[i]) > max_bytes:
                    sizes[i] = len(pieces[i])
                    pieces[i] = None
        yield LineBlock(line_no, line_start, pieces, sizes, True)
        line_no += len(pieces)
        line_start = start + len(chunk) - len(rest)
        carry_size = len(rest)
        carry = [rest] if rest and carry_size <= max_bytes else []
    if carry_size:
        data = b"".join(carry) if carry_size <= max_bytes else None
        sizes = {} if data is not None else {0: carry_size}
        yield LineBlock(line_no, line_start, [data], sizes, False)
