"""Parquet deliveries (housing): typed already; the raw zone keeps values as text."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from catalog.errors import DeliveryError
from catalog.model import Dataset
from pipelines.connectors.base import SOURCE_ROW, Parsed, stringify


def read_parquet(path: Path, dataset: Dataset) -> Parsed:
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DeliveryError(
            f"not a readable Parquet file: {exc}", dataset=dataset.code, file=str(path)
        ) from None
    frame = frame.with_row_index(SOURCE_ROW, offset=1).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64)
    )
    frame = frame.with_columns(
        pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S")
        for c, t in frame.schema.items()
        if isinstance(t, pl.Datetime)
    )
    return Parsed(stringify(frame))
