"""JSON Lines deliveries (emergency management, IoT) and records pulled from APIs/DBs.

Fast path: polars parses the whole file at once. If that fails, each line is
checked on its own: broken lines are quarantined with their line number and
the rest loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from catalog.errors import DeliveryError
from catalog.model import Dataset
from pipelines.connectors.base import SOURCE_ROW, Parsed, RowProblem, stringify, to_text_frame
from pipelines.connectors.csv import decode


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


def records_frame(lines: list[bytes], source_rows: list[int]) -> pl.DataFrame:
    """JSON object lines → a frame of text columns with their source rows."""
    if not lines:
        return pl.DataFrame({SOURCE_ROW: pl.Series([], dtype=pl.Int64)})
    try:
        frame = pl.read_ndjson(b"\n".join(lines), infer_schema_length=None)
    except pl.exceptions.PolarsError:
        # mixed types under one key: fall back to Python values, one column at a time
        objs = [json.loads(ln) for ln in lines]
        keys = list(dict.fromkeys(k for o in objs for k in o))
        return to_text_frame({k: [o.get(k) for o in objs] for k in keys}, source_rows)
    return _as_text_columns(frame, source_rows)


def read_jsonl(path: Path, dataset: Dataset) -> Parsed:
    data = path.read_bytes()
    decode(data, "utf-8", path, dataset.code)  # a wrong encoding fails the whole delivery
    lines = data.split(b"\n")
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    try:  # fast path: every line is a JSON object
        frame = pl.read_ndjson(data, infer_schema_length=None)
        if numbered and frame.height == len(numbered):
            return Parsed(_as_text_columns(frame, [n for n, _ in numbered]))
    except pl.exceptions.PolarsError:
        pass
    good: list[bytes] = []
    rows: list[int] = []
    problems: list[RowProblem] = []
    for line_no, line in numbered:
        try:
            obj = json.loads(line)
        except ValueError as exc:
            problems.append(RowProblem(line_no, f"broken JSON line: {exc.msg}", check="json"))
            continue
        if not isinstance(obj, dict):
            problems.append(RowProblem(line_no, "line is not a JSON object", check="json"))
            continue
        good.append(line)
        rows.append(line_no)
    if not good and problems:
        raise DeliveryError(
            f"no line of the file is a JSON object ({len(problems)} broken lines)",
            dataset=dataset.code,
            file=str(path),
        )
    return Parsed(records_frame(good, rows), problems)
