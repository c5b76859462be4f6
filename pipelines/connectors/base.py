"""What every connector produces, and the checks shared by all of them.

A connector turns one landed delivery (bytes on disk) into batches of text
columns named as delivered, each row with its ``_source_row`` (the row number
a person would see in the file), plus the rows it could not parse. A delivery
that cannot be read as a whole raises :class:`DeliveryError` — and only that:
reasons are in the officer's words (see ``tests/reliability``' vocabulary) and
never carry a cell value or the landed file's path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from catalog.errors import DeliveryError
from catalog.model import Dataset

SOURCE_ROW = "_source_row"


@dataclass(frozen=True)
class RowProblem:
    """One delivered row that could not be parsed (it goes to quarantine)."""

    source_row: int
    reason: str
    field: str | None = None
    check: str = "parse"


@dataclass
class Parsed:
    """A delivery read into text columns (source names) and its unparseable rows."""

    frame: pl.DataFrame
    problems: list[RowProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.frame.height + len(self.problems)


def concat(parts: Iterable[Parsed]) -> Parsed:
    """Batches of one delivery as one (tests, small deliveries); columns may differ."""
    parts = list(parts)
    frames = [p.frame for p in parts]
    frame = (
        pl.concat(frames, how="diagonal_relaxed")
        if frames
        else pl.DataFrame({SOURCE_ROW: pl.Series([], dtype=pl.Int64)})
    )
    return Parsed(
        frame,
        [q for p in parts for q in p.problems],
        list(dict.fromkeys(n for p in parts for n in p.notes)),
    )


def whole_file_failure(
    rows: int, first: RowProblem | None, dataset: str, file: str
) -> DeliveryError:
    """Every record of the delivery was damaged: it fails as a whole, saying how."""
    detail = f"; the first, row {first.source_row}: {first.reason}" if first else ""
    return DeliveryError(
        f"no record of the file could be read ({rows:,} damaged){detail}",
        dataset=dataset,
        file=file,
        row=first.source_row if first else None,
    )


def to_text_frame(columns: dict[str, list[object]], source_rows: list[int]) -> pl.DataFrame:
    """Columns of Python values → a frame of strings (None stays null)."""
    data = {
        name: pl.Series(name, [_as_text(v) for v in values], dtype=pl.String)
        for name, values in columns.items()
    }
    return pl.DataFrame({SOURCE_ROW: pl.Series(SOURCE_ROW, source_rows, dtype=pl.Int64), **data})


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):  # as polars writes a struct: JSON text
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):  # as polars writes a list: its items joined by commas
        return ",".join(
            v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value
        )
    return str(value)


def stringify(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast every column but ``_source_row`` to text, as the raw zone keeps values."""
    return frame.with_columns(pl.col(c).cast(pl.String) for c in frame.columns if c != SOURCE_ROW)


def split_stray_headers(parsed: Parsed, dataset: Dataset) -> Parsed:
    """Rows that repeat the header (a re-pasted header block) go to quarantine."""
    sources = [f.source_name for f in dataset.fields if f.source_name in parsed.frame.columns]
    if len(sources) < 2 or parsed.frame.height == 0:
        return parsed
    hits = sum((pl.col(s).str.strip_chars() == s).fill_null(False).cast(pl.Int32) for s in sources)
    mask = hits >= max(2, (len(sources) + 1) // 2)
    stray = parsed.frame.filter(mask)
    if stray.height == 0:
        return parsed
    problems = parsed.problems + [
        RowProblem(int(r), "row repeats the header (stray header row)", check="stray_header")
        for r in stray[SOURCE_ROW].to_list()
    ]
    return Parsed(parsed.frame.filter(~mask), problems, parsed.notes)


def source_columns(frame: pl.DataFrame) -> dict[str, str]:
    """Delivered column names (trimmed, BOM removed) → the frame's column names."""
    return {c.strip().lstrip("\ufeff"): c for c in frame.columns if c != SOURCE_ROW}


def check_required(
    dataset: Dataset, columns: Iterable[str], file: Path | str, width: int | None = None
) -> None:
    """Fail the delivery when a required column is missing (never quoting other names:
    in a file without a header they are values)."""
    have = set(columns)
    missing = [f.source_name for f in dataset.fields if f.required and f.source_name not in have]
    if missing:
        known = {f.source_name for f in dataset.fields}
        n = len(have) if width is None else width
        raise DeliveryError(
            f"missing column: required column(s) {', '.join(missing)} not in the delivery "
            f"(it has {n} column(s), {len(have & known)} of them in the catalogue)",
            dataset=dataset.code,
            file=str(file),
        )


def map_to_fields(
    parsed: Parsed, dataset: Dataset, file: Path | str, *, require: bool = True
) -> pl.DataFrame:
    """Rename source columns to the catalogue's field names; check the columns are there.

    A missing required column fails the whole delivery (``require=False``: the caller
    checks over all batches, as JSON records may leave a key out of a whole batch); a
    missing optional one becomes null; columns the catalogue does not know are dropped
    and counted in the notes (their names may be values).
    """
    frame = parsed.frame
    cols = source_columns(frame)
    if require:
        check_required(dataset, cols, file)
    known = {f.source_name for f in dataset.fields}
    extra = [c for c in cols if c not in known]
    if extra:
        parsed.notes.append(f"{len(extra)} column(s) not in the catalogue, not loaded")
    exprs = [pl.col(SOURCE_ROW)]
    for f in dataset.fields:
        if f.source_name in cols:
            exprs.append(pl.col(cols[f.source_name]).cast(pl.String).alias(f.name))
        else:
            exprs.append(pl.lit(None, dtype=pl.String).alias(f.name))
    return frame.select(exprs)
