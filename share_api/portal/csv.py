"""The portal's CSV rule (CSV 下载规则) — the one home of it; every CSV the portal serves
(a grant's rows, a dashboard's table) is made here.

- **UTF-8 with a byte-order mark**: Excel and WPS take a CSV without one for the
  system's code page (GBK on a Chinese Windows) and show Chinese as mojibake.
- **Formula injection escaped** (OWASP "CSV Injection"): a text cell that begins with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with a single quote,
  so a spreadsheet shows it as text instead of running it as a formula. Header names are
  treated the same way. Numeric, date and boolean columns are written as what they are:
  a number is never a formula (``-5`` stays a number a spreadsheet can add up).
- **CRLF rows** (RFC 4180), fields quoted only where needed, nulls as empty cells.

One vectorised polars expression a text column (no Python loop over cells), and big
tables are written in slices (:func:`csv_chunks`) so a download streams instead of
building the whole file in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import polars as pl
import pyarrow as pa
from fastapi.responses import StreamingResponse

BOM = "\ufeff"
LINE_TERMINATOR = "\r\n"
MEDIA_TYPE = "text/csv; charset=utf-8"
# what a spreadsheet may read as the start of a formula (OWASP CSV Injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = "^([" + "".join("\\" + c if c in "-\\" else c for c in FORMULA_START) + "])"
CHUNK_ROWS = 50_000  # rows a slice when streaming

Table = pl.DataFrame | pl.LazyFrame | pa.Table
_TEXT_TYPES = (pl.String, pl.Categorical, pl.Enum)


def escape_formula(expr: pl.Expr) -> pl.Expr:
    """``expr`` (text) with a single quote before a leading ``= + - @`` / tab / CR."""
    return expr.str.replace(_FORMULA_PATTERN, "'$1")


def escape_names(names: Sequence[str]) -> list[str]:
    """Header names escaped by the same expression as the cells."""
    series = pl.Series("name", list(names), dtype=pl.String)
    return pl.select(escape_formula(pl.lit(series))).to_series().to_list()


def escaped(frame: pl.LazyFrame) -> pl.LazyFrame:
    """``frame`` ready for a spreadsheet: text columns (categoricals as text) and header
    names escaped by :func:`escape_formula`; other columns as they are."""
    schema = frame.collect_schema()
    labels = escape_names(schema.names())
    exprs = [
        (escape_formula(pl.col(name).cast(pl.String)) if isinstance(dtype, _TEXT_TYPES)
         else pl.col(name)).alias(label)
        for (name, dtype), label in zip(schema.items(), labels, strict=True)
    ]  # fmt: skip
    return frame.select(exprs)


def as_lazy(table: Table | None = None, *, rows: Iterable[Sequence[Any]] | None = None,
            header: Sequence[str] | None = None) -> pl.LazyFrame:  # fmt: skip
    """A polars / pyarrow ``table``, or ``rows`` under ``header``, as a LazyFrame."""
    if table is None:
        if header is None:
            raise ValueError("rows need a header")
        frame = pl.DataFrame(
            list(rows or []), schema=list(header), orient="row", infer_schema_length=None
        )
        return frame.lazy()
    if isinstance(table, pa.Table):
        return pl.from_arrow(table).lazy()  # type: ignore[union-attr]
    return table.lazy()


def _text(frame: pl.DataFrame, *, header: bool) -> str:
    return frame.write_csv(include_header=header, line_terminator=LINE_TERMINATOR)


def csv_chunks(
    table: Table | None = None,
    *,
    rows: Iterable[Sequence[Any]] | None = None,
    header: Sequence[str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[bytes]:
    """The CSV of ``table`` (or ``rows`` under ``header``) as UTF-8 byte chunks: the BOM
    and the header row first, then ``chunk_rows`` rows a chunk."""
    frame = escaped(as_lazy(table, rows=rows, header=header))
    empty = pl.DataFrame(schema=frame.collect_schema())
    yield (BOM + _text(empty, header=True)).encode("utf-8")
    for batch in frame.collect_batches(chunk_size=chunk_rows):
        if batch.height:
            yield _text(batch, header=False).encode("utf-8")


def csv_bytes(
    table: Table | None = None,
    *,
    rows: Iterable[Sequence[Any]] | None = None,
    header: Sequence[str] | None = None,
) -> bytes:
    """The whole CSV at once (small tables; :func:`csv_chunks` for big ones)."""
    return b"".join(csv_chunks(table, rows=rows, header=header))


def attachment(filename: str) -> str:
    """A ``Content-Disposition`` naming ``filename`` (Chinese kept, RFC 6266 / 5987),
    with an ASCII fallback for old clients."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in filename)  # fmt: skip
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


def csv_response(
    table: Table | None = None,
    *,
    filename: str,
    rows: Iterable[Sequence[Any]] | None = None,
    header: Sequence[str] | None = None,
    headers: dict[str, str] | None = None,
) -> StreamingResponse:
    """A streamed CSV download of ``table`` (or ``rows`` under ``header``) as
    ``filename``; ``headers`` added (an audit receipt …)."""
    return StreamingResponse(
        csv_chunks(table, rows=rows, header=header),
        media_type=MEDIA_TYPE,
        headers={
            "Content-Disposition": attachment(filename),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        },
    )
