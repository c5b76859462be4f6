"""Parquet deliveries (housing): typed already; the raw zone keeps values as text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

from catalog.errors import DeliveryError
from catalog.model import Dataset
from catalog.settings import Settings
from pipelines.connectors.base import SOURCE_ROW, Parsed, stringify


def read_parquet(path: Path, dataset: Dataset, settings: Settings) -> Iterator[Parsed]:
    if path.stat().st_size == 0:
        raise DeliveryError("the file is empty", dataset=dataset.code, file=str(path))
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars/arrow errors quote the landed path
        raise DeliveryError(
            f"corrupt archive: not a readable Parquet file ({type(exc).__name__})",
            dataset=dataset.code,
            file=str(path),
        ) from None
    frame = frame.with_row_index(SOURCE_ROW, offset=1).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64)
    )
    frame = frame.with_columns(
        pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S")
        for c, t in frame.schema.items()
        if isinstance(t, pl.Datetime)
    )
    yield Parsed(stringify(frame))
