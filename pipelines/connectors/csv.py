"""CSV deliveries in a declared encoding (GBK, UTF-8 with or without BOM).

The file is decoded strictly first (STACK.md: DuckDB's GBK reader corrupts
characters at its buffer edges), so a wrong encoding fails the delivery with
the line where decoding broke. A row with the wrong number of cells is
quarantined; a file that ends mid-row is truncated and fails as a whole.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from catalog.errors import DeliveryError
from catalog.model import Dataset
from pipelines.connectors.base import Parsed, RowProblem, to_text_frame


def decode(data: bytes, encoding: str, file: Path, dataset: str) -> str:
    """Decode strictly; on failure name the line and byte where it broke."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DeliveryError(
            f"cannot decode as {encoding} at byte {exc.start} ({exc.reason}); "
            "wrong encoding for this delivery?",
            dataset=dataset,
            file=str(file),
            row=line,
        ) from None


def read_csv(path: Path, dataset: Dataset) -> Parsed:
    d = dataset.delivery
    data = path.read_bytes()
    text = decode(data, d.encoding or "utf-8", path, dataset.code)
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DeliveryError("the file is empty", dataset=dataset.code, file=str(path))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=d.delimiter or ",", strict=True)
    try:
        header = [h.strip() for h in next(reader)]
        rows: list[list[str]] = []
        lines: list[int] = []
        problems: list[RowProblem] = []
        line = reader.line_num
        for record in reader:
            start = line + 1
            line = reader.line_num
            if not record or all(not c.strip() for c in record):
                continue  # a blank line is no record
            if len(record) != len(header):
                problems.append(
                    RowProblem(
                        start,
                        f"row has {len(record)} cells, the header has {len(header)}",
                        check="cell_count",
                    )
                )
                continue
            rows.append(record)
            lines.append(start)
    except csv.Error as exc:
        raise DeliveryError(
            f"the file is truncated or malformed: {exc}",
            dataset=dataset.code,
            file=str(path),
            row=reader.line_num,
        ) from None
    if not text.endswith(("\n", "\r")) and problems and problems[-1].source_row == line:
        raise DeliveryError(
            "the file ends in the middle of a row (truncated delivery)",
            dataset=dataset.code,
            file=str(path),
            row=line,
        )
    columns = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    return Parsed(to_text_frame(columns, lines), problems)
