"""JSON Lines deliveries (emergency management, IoT) and records pulled from APIs/DBs.

Read as a stream of lines (:mod:`pipelines.connectors.records`), in batches. Each
line is checked on its own before any parser sees it — size (``max_record_bytes``),
nesting depth (``max_json_depth``), UTF-8 — and the lines that pass are parsed by
polars in one go (the fast path). Where polars refuses a batch, it is halved until
the broken lines are found; those are read one by one with Python's strict parser
and quarantined with their line number and a reason: not JSON, not an object,
duplicate key, too deep, too large, wrong encoding at byte N, possibly truncated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from catalog.errors import DeliveryError
from catalog.model import Dataset
from catalog.settings import Settings
from pipelines.connectors import jsonstrict
from pipelines.connectors.base import (
    SOURCE_ROW,
    Parsed,
    RowProblem,
    stringify,
    to_text_frame,
    whole_file_failure,
)
from pipelines.connectors.records import Record, batches, scan_records

SMALL = 64  # below this many lines a failing batch is read line by line


def _as_text_columns(frame: pl.DataFrame, source_rows: list[int]) -> pl.DataFrame:
    """Nested values become JSON text / comma lists; everything becomes text."""
    frame = frame.with_columns(
        pl.col(c).struct.json_encode() for c, t in frame.schema.items() if isinstance(t, pl.Struct)
    ).with_columns(
        pl.col(c).cast(pl.List(pl.String)).list.join(",")
        for c, t in frame.schema.items()
        if isinstance(t, pl.List)
    )
    return stringify(frame.with_columns(pl.Series(SOURCE_ROW, source_rows, dtype=pl.Int64)))


def _polars(lines: list[bytes]) -> pl.DataFrame | None:
    """polars' reading of JSON object lines, or None if it refuses them or miscounts."""
    try:
        frame = pl.read_ndjson(b"\n".join(lines), infer_schema_length=None)
    except (pl.exceptions.PolarsError, ValueError, OverflowError):
        return None
    return frame if frame.height == len(lines) else None


def records_frame(lines: list[bytes], source_rows: list[int]) -> pl.DataFrame:
    """Checked JSON object lines → a frame of text columns with their source rows."""
    if not lines:
        return pl.DataFrame({SOURCE_ROW: pl.Series([], dtype=pl.Int64)})
    frame = _polars(lines)
    if frame is None:
        # mixed types under one key: fall back to Python values, one column at a time
        objs = [jsonstrict.loads(ln) for ln in lines]
        keys = list(dict.fromkeys(k for o in objs for k in o))
        return to_text_frame({k: [o.get(k) for o in objs] for k in keys}, source_rows)
    return _as_text_columns(frame, source_rows)


def line_problem(line: bytes, known: set[str]) -> str | None:
    """Why one (depth-checked, UTF-8) line is no record, or None when it is one."""
    try:
        obj = jsonstrict.loads(line)
    except json.JSONDecodeError as exc:
        return f"not json: broken JSON line ({exc.msg}, column {exc.colno})"
    except (ValueError, RecursionError):
        return "not json: a value JSON does not allow (NaN or Infinity)"
    if not isinstance(obj, dict):
        return f"not an object: the line holds a JSON {type(obj).__name__}, not an object"
    dups = jsonstrict.duplicate_keys(obj)
    return None if dups is None else jsonstrict.duplicate_reason(dups, known)


def _line_problem(row: int, why: str) -> RowProblem:
    return RowProblem(
        row, why, check="duplicate_key" if why.startswith("duplicate key") else "json"
    )


def _sift(
    lines: list[bytes], rows: list[int], known: set[str], problems: list[RowProblem]
) -> tuple[list[bytes], list[int]]:
    """Lines polars reads, found by halving a refused batch; the others become problems."""
    if len(lines) <= SMALL:
        good, good_rows = [], []
        for line, row in zip(lines, rows, strict=True):
            why = line_problem(line, known)
            if why is None:
                good.append(line)
                good_rows.append(row)
            else:
                problems.append(_line_problem(row, why))
        return good, good_rows
    if _polars(lines) is not None:
        return lines, rows
    half = len(lines) // 2
    a, ra = _sift(lines[:half], rows[:half], known, problems)
    b, rb = _sift(lines[half:], rows[half:], known, problems)
    return a + b, ra + rb


def _record_problem(rec: Record, settings: Settings, lines_terminated: bool) -> RowProblem | None:
    if rec.data is None:
        return RowProblem(
            rec.line,
            f"too large: the line has {rec.size:,} bytes, the limit is {settings.max_record_bytes:,}",
            check="too_large",
        )
    if not rec.terminated and lines_terminated:
        return RowProblem(
            rec.line,
            "possibly truncated: the last line has no line ending (the exporter ends every line)",
            check="truncated",
        )
    return None


def _utf8(rec: Record, problems: list[RowProblem]) -> bool:
    """True if the line is UTF-8; else a 'wrong encoding at byte N' problem (file offset)."""
    try:
        rec.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            RowProblem(
                rec.line,
                f"wrong encoding at byte {rec.offset + exc.start}: not utf-8 ({exc.reason})",
                check="encoding",
            )
        )
        return False
    return True


def _batch(
    recs: list[Record], settings: Settings, lines_terminated: bool, known: set[str]
) -> Parsed:
    """One batch: per-line checks done vectorised, the suspects read one by one."""
    depth = settings.max_json_depth
    problems: list[RowProblem] = []
    kept: list[Record] = []
    for rec in recs:
        problem = _record_problem(rec, settings, lines_terminated)
        if problem is None:
            kept.append(rec)
        else:
            problems.append(problem)
    try:  # one C call for the whole batch; line by line only when it fails
        b"\n".join(r.data for r in kept).decode("utf-8")
    except UnicodeDecodeError:
        kept = [r for r in kept if _utf8(r, problems)]
    text = pl.Series("line", [r.data for r in kept], dtype=pl.Binary).cast(pl.String)
    deep = text.str.count_matches(r"[\[{]") > depth  # an upper bound first
    trimmed = text.str.strip_chars()
    shaped = trimmed.str.starts_with("{") & trimmed.str.ends_with("}")
    lines: list[bytes] = []
    rows: list[int] = []
    odd: list[Record] = []  # read one by one
    for rec, suspect_depth, ok_shape in zip(kept, deep, shaped, strict=True):
        if suspect_depth and jsonstrict.too_deep(rec.data, depth):
            problems.append(
                RowProblem(rec.line, f"too deep: nested over {depth} levels", check="json")
            )
        elif ok_shape:
            lines.append(rec.data)
            rows.append(rec.line)
        else:
            odd.append(rec)
    for rec in odd:
        if jsonstrict.too_deep(rec.data, depth):
            problems.append(
                RowProblem(rec.line, f"too deep: nested over {depth} levels", check="json")
            )
            continue
        why = line_problem(rec.data, known)
        if why is None:
            lines.append(rec.data)
            rows.append(rec.line)
        else:
            problems.append(_line_problem(rec.line, why))
    if odd:  # keep the file's order
        order = sorted(range(len(rows)), key=rows.__getitem__)
        lines = [lines[i] for i in order]
        rows = [rows[i] for i in order]
    frame = _polars(lines) if lines else None
    if frame is None:
        lines, rows = _sift(lines, rows, known, problems)
        frame = _polars(lines) if lines else None
    if frame is not None:
        lines, rows, frame = _without_duplicate_keys(lines, rows, frame, known, problems)
    problems.sort(key=lambda p: p.source_row)
    if frame is None:  # mixed types under one key, or nothing left
        return Parsed(records_frame(lines, rows), problems)
    return Parsed(_as_text_columns(frame, rows), problems)


def _without_duplicate_keys(
    lines: list[bytes],
    rows: list[int],
    frame: pl.DataFrame,
    known: set[str],
    problems: list[RowProblem],
) -> tuple[list[bytes], list[int], pl.DataFrame]:
    """Drop records that repeat a key (polars keeps the first silently).

    A line with a repeated key has more key texts (``"`` then ``:``, an over-count)
    than values polars found (an under-count of its distinct keys); only such lines
    are parsed strictly, one by one.
    """
    if frame.width == 0:
        return lines, rows, frame
    keys = pl.Series(lines, dtype=pl.Binary).cast(pl.String).str.count_matches(r'"\s*:')
    present = frame.select(pl.sum_horizontal(pl.all().is_not_null().cast(pl.UInt32))).to_series()
    suspects = (keys > present).arg_true().to_list()
    drop = []
    for i in suspects:
        why = line_problem(lines[i], known)
        if why is not None:
            problems.append(_line_problem(rows[i], why))
            drop.append(i)
    if not drop:
        return lines, rows, frame
    keep = pl.Series(range(len(lines))).is_in(drop).not_()
    dropped = set(drop)
    lines = [ln for i, ln in enumerate(lines) if i not in dropped]
    rows = [r for i, r in enumerate(rows) if i not in dropped]
    return lines, rows, frame.filter(keep)


def read_jsonl(path: Path, dataset: Dataset, settings: Settings) -> Iterator[Parsed]:
    """Batches of records of a landed JSON Lines delivery (see the module docstring)."""
    file = str(path)
    known = {f.source_name for f in dataset.fields}
    terminated = dataset.delivery.lines_terminated
    read = loaded = 0
    first: RowProblem | None = None
    with open(path, "rb") as fh:
        records = scan_records(fh, max_bytes=settings.max_record_bytes, skip_bom=True)
        for recs in batches(records):
            parsed = _batch(recs, settings, terminated, known)
            read += parsed.rows_read
            loaded += parsed.frame.height
            if parsed.problems and first is None:
                first = parsed.problems[0]
            yield parsed
    if not read:
        raise DeliveryError("the file is empty (no JSON line)", dataset=dataset.code, file=file)
    if not loaded:
        raise whole_file_failure(read, first, dataset.code, file)
