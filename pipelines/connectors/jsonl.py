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
from collections import deque
from collections.abc import Iterator
from itertools import repeat
from operator import add
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
from pipelines.connectors.compressed import open_delivered
from pipelines.connectors.records import LineBlock, scan_lines

SMALL = 64  # below this many lines a failing batch is read line by line
LARGE = 1024 * 1024  # a line this long is parsed on its own (memory: a few times the line)


def _object_shaped(line: bytes) -> bool:
    """Starts with ``{`` and ends with ``}`` (blanks aside): worth a vectorised read."""
    return (line[:1] == b"{" or line.lstrip()[:1] == b"{") and (
        line[-1:] == b"}" or line.rstrip()[-1:] == b"}"
    )


def _as_text_columns(frame: pl.DataFrame, source_rows: list[int]) -> pl.DataFrame:
    """Nested values become JSON text / comma lists, and each value inside an object a
    column of its own named by its dotted path (``person.idcard``); everything text."""
    frame = _unnested(frame)
    frame = frame.with_columns(
        pl.when(pl.col(c).is_not_null()).then(pl.col(c).struct.json_encode()).alias(c)
        for c, t in frame.schema.items()
        if isinstance(t, pl.Struct)
    ).with_columns(
        pl.col(c).cast(pl.List(pl.String)).list.join(",")
        for c, t in frame.schema.items()
        if isinstance(t, pl.List)
    )
    return stringify(frame.with_columns(pl.Series(SOURCE_ROW, source_rows, dtype=pl.Int64)))


def _unnested(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a column for each value inside its objects, at every depth, named by
    its dotted path (a key already so named in the records wins); the objects kept."""
    todo = [c for c, t in frame.schema.items() if isinstance(t, pl.Struct)]
    while todo:
        added = []
        for c in todo:
            for f in frame.schema[c].fields:  # type: ignore[union-attr]
                name, inner = f"{c}.{f.name}", pl.col(c).struct.field(f.name)
                if name not in frame.columns:
                    added.append(name)
                    frame = frame.with_columns(inner.alias(name))
                elif frame.schema[name] == f.dtype:  # where a record has no key so named
                    frame = frame.with_columns(pl.coalesce(name, inner).alias(name))
        todo = [c for c in added if isinstance(frame.schema[c], pl.Struct)]
    return frame


def _polars(lines: list[bytes], joined: bytes | None = None) -> pl.DataFrame | None:
    """polars' reading of JSON object lines (``joined``: them joined by ``\\n``, if at hand),
    or None if it refuses them or miscounts."""
    try:
        data = b"\n".join(lines) if joined is None else joined
        frame = pl.read_ndjson(data, infer_schema_length=None)
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
        objs = [with_paths(jsonstrict.loads(ln)) for ln in lines]
        keys = list(dict.fromkeys(k for o in objs for k in o))
        return to_text_frame({k: [o.get(k) for o in objs] for k in keys}, source_rows)
    return _as_text_columns(frame, source_rows)


def with_paths(obj: dict) -> dict:
    """A record with each value inside its objects also under its dotted path, at every
    depth (as :func:`_unnested` does for a frame; a key already so named wins)."""
    out = dict(obj)
    todo = [(k, v) for k, v in obj.items() if isinstance(v, dict)]
    while todo:
        key, value = todo.pop(0)
        for k, v in value.items():
            name = f"{key}.{k}"
            if name not in out:
                out[name] = v
                if isinstance(v, dict):
                    todo.append((name, v))
    return out


def parse_line(line: bytes, known: set[str]) -> tuple[dict | None, str | None]:
    """One (depth-checked, UTF-8) line read strictly: (its object, None) or (None, why not)."""
    try:
        obj = jsonstrict.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not json: broken JSON line ({exc.msg}, column {exc.colno})"
    except (ValueError, RecursionError):
        return None, "not json: a value JSON does not allow (NaN or Infinity)"
    if not isinstance(obj, dict):
        return None, f"not an object: the line holds a JSON {type(obj).__name__}, not an object"
    dups = jsonstrict.duplicate_keys(obj)
    if dups is not None:
        return None, jsonstrict.duplicate_reason(dups, known)
    return obj, None


def line_problem(line: bytes, known: set[str]) -> str | None:
    """Why one (depth-checked, UTF-8) line is no record, or None when it is one."""
    return parse_line(line, known)[1]


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


def _block(block: LineBlock, settings: Settings, lines_terminated: bool, known: set[str]) -> Parsed:
    """One block of lines: checks as C-level passes over the list, suspects read one by one."""
    depth = settings.max_json_depth
    problems: list[RowProblem] = []
    first = block.first_line
    if all(block.lines):  # no empty line, none skipped: all are records (blank ones: below)
        index = list(range(len(block.lines)))
    else:
        index = [i for i, ln in enumerate(block.lines) if ln is None or ln.strip()]
    for i in [i for i in index if block.lines[i] is None]:
        problems.append(
            RowProblem(
                first + i,
                f"too large: the line has {block.sizes[i]:,} bytes, "
                f"the limit is {settings.max_record_bytes:,}",
                check="too_large",
            )
        )
    if not block.terminated and lines_terminated and index and index[-1] == len(block.lines) - 1:
        i = index.pop()
        if block.lines[i] is not None:
            problems.append(
                RowProblem(
                    first + i,
                    "possibly truncated: the last line has no line ending "
                    "(the exporter ends every line)",
                    check="truncated",
                )
            )
    index = [i for i in index if block.lines[i] is not None]
    lines = [block.lines[i] for i in index]
    try:  # C-level over the block, one line's text alive at a time
        deque(map(bytes.decode, lines), maxlen=0)
    except UnicodeDecodeError:
        index = [i for i in index if _utf8(block, i, problems)]
        lines = [block.lines[i] for i in index]
    # nesting: an upper bound per line (two C-level passes), exact only where it is over
    bounds = list(
        map(add, map(bytes.count, lines, repeat(b"{")), map(bytes.count, lines, repeat(b"[")))
    )
    deep = (
        {k for k, n in enumerate(bounds) if n > depth and jsonstrict.too_deep(lines[k], depth)}
        if max(bounds, default=0) > depth
        else set()
    )
    for k in sorted(deep):
        problems.append(
            RowProblem(first + index[k], f"too deep: nested over {depth} levels", check="json")
        )
    plain = all(map(bytes.startswith, lines, repeat(b"{"))) and all(
        map(bytes.endswith, lines, repeat(b"}"))
    )
    long = max(map(len, lines), default=0) > LARGE
    odd = (
        set()
        if plain and not long
        else {k for k, ln in enumerate(lines) if len(ln) > LARGE or not _object_shaped(ln)}
    )
    rows = [first + i for i in index]
    if deep or odd:
        keep = [k for k in range(len(lines)) if k not in deep and k not in odd]
        singles = [(rows[k], lines[k]) for k in sorted(odd - deep)]
        lines, rows = [lines[k] for k in keep], [rows[k] for k in keep]
    else:
        singles = []
    frames: list[pl.DataFrame] = []
    for row, line in singles:  # not object-shaped, or long: parsed alone, in Python
        if not line.strip():
            continue  # a blank line is no record
        obj, why = parse_line(line, known)
        if obj is None:
            problems.append(_line_problem(row, why or "not json"))
        else:
            frames.append(to_text_frame({k: [v] for k, v in with_paths(obj).items()}, [row]))
        obj = None  # a long line's values are not held twice
    joined = b"\n".join(lines)
    frame = _polars(lines, joined) if lines else None
    if frame is None:
        lines, rows = _sift(lines, rows, known, problems)
        joined = b"\n".join(lines)
        frame = _polars(lines, joined) if lines else None
    if frame is not None:
        lines, rows, frame = _without_duplicate_keys(lines, rows, frame, joined, known, problems)
    problems.sort(key=lambda p: p.source_row)
    # mixed types under one key, or nothing left: Python values
    out = records_frame(lines, rows) if frame is None else _as_text_columns(frame, rows)
    if frames:
        # appended, not sorted in: a sort would copy a long line's values once more
        out = pl.concat([out, *frames], how="diagonal_relaxed", rechunk=False)
    return Parsed(out, problems)


def _utf8(block: LineBlock, i: int, problems: list[RowProblem]) -> bool:
    """True if line ``i`` is UTF-8; else a 'wrong encoding at byte N' problem (file offset)."""
    try:
        block.lines[i].decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            RowProblem(
                block.first_line + i,
                f"wrong encoding at byte {block.offset_of(i) + exc.start}: "
                f"not utf-8 ({exc.reason})",
                check="encoding",
            )
        )
        return False
    return True


def _key_texts(line: bytes) -> int:
    """At least the number of keys written in a JSON line (every key is ``"…"`` then a colon).

    Compact JSON writes ``":`` after each key; where a quote is followed by a blank,
    a key might be written ``"k" :``, so every colon counts (still an over-count).
    """
    if b'" ' in line or b'"\t' in line or b'"\r' in line:
        return line.count(b":")
    return line.count(b'":')


def _without_duplicate_keys(
    lines: list[bytes],
    rows: list[int],
    frame: pl.DataFrame,
    joined: bytes,
    known: set[str],
    problems: list[RowProblem],
) -> tuple[list[bytes], list[int], pl.DataFrame]:
    """Drop records that repeat a key (polars keeps the first silently).

    A line with a repeated key has more key texts (:func:`_key_texts`, an over-count)
    than values polars found (an under-count of its distinct keys); only such lines
    are parsed strictly, one by one.
    """
    if frame.width == 0:
        return lines, rows, frame
    present = frame.select(pl.sum_horizontal(pl.all().is_not_null().cast(pl.UInt32))).to_series()
    if b'" ' in joined or b'"\t' in joined or b'"\r' in joined:
        keys = map(_key_texts, lines)
    elif joined.count(b'":') == present.sum():
        return lines, rows, frame  # compact JSON, every key text a value: no line repeats one
    else:  # compact JSON: every key is followed by ``":``
        keys = map(bytes.count, lines, repeat(b'":'))
    counts = pl.Series("keys", list(keys), dtype=pl.UInt32)
    suspects = (counts > present).arg_true().to_list()
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
    with open_delivered(settings, path, dataset.code, file) as (fh, came):
        for block in scan_lines(fh, max_bytes=settings.max_record_bytes, skip_bom=True):
            parsed = _block(block, settings, terminated, known)
            read += parsed.rows_read
            loaded += parsed.frame.height
            if parsed.problems and first is None:
                first = parsed.problems[0]
            if parsed.rows_read:
                if came is not None:  # said once, with the first rows
                    parsed.notes.insert(0, came)
                    came = None
                yield parsed
    if not read:
        raise DeliveryError("the file is empty (no JSON line)", dataset=dataset.code, file=file)
    if not loaded:
        raise whole_file_failure(read, first, dataset.code, file)
