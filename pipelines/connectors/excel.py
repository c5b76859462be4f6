"""Excel workbooks (a title row above Chinese headers), read with fastexcel (calamine)."""

from __future__ import annotations

from pathlib import Path

import fastexcel
import polars as pl

from catalog.errors import DeliveryError
from catalog.model import Dataset
from pipelines.connectors.base import SOURCE_ROW, Parsed, stringify


def read_excel(path: Path, dataset: Dataset) -> Parsed:
    d = dataset.delivery
    header_row = d.header_row or 0
    try:
        reader = fastexcel.read_excel(path)
    except Exception as exc:  # calamine raises its own error types for a bad workbook
        raise DeliveryError(
            f"not a readable workbook: {exc}", dataset=dataset.code, file=str(path)
        ) from None
    if d.sheet not in reader.sheet_names:
        raise DeliveryError(
            f"sheet {d.sheet!r} is missing (the workbook has: {', '.join(reader.sheet_names)})",
            dataset=dataset.code,
            file=str(path),
        )
    sheet = reader.load_sheet_by_name(d.sheet, header_row=header_row, dtypes="string")
    frame = sheet.to_polars()
    frame.columns = [str(c).strip() for c in frame.columns]
    # spreadsheet row numbers: the header is on row header_row + 1 (1-based)
    frame = frame.with_row_index(SOURCE_ROW, offset=header_row + 2).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64)
    )
    blank = pl.all_horizontal(
        pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")
        for c in frame.columns
        if c != SOURCE_ROW
    )
    return Parsed(stringify(frame.filter(~blank)))
