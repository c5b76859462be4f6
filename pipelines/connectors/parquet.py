"""Parquet deliveries (housing): typed already; the raw zone keeps values as text.

Read a batch of at most ``BATCH_ROWS`` rows at a time (pyarrow's ``iter_batches``,
row group by row group), never the whole file: memory stays flat however large
the delivery. The landed file is opened seekable (:func:`open_landed`): Parquet reads
its footer first, and segments are decrypted where pyarrow seeks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from catalog.errors import DeliveryError
from catalog.model import Dataset
from catalog.settings import Settings
from pipelines.connectors.base import SOURCE_ROW, Parsed, stringify
from pipelines.connectors.landed import open_landed

BATCH_ROWS = 50_000


def _as_text(frame: pl.DataFrame, first_row: int) -> Parsed:
    """One batch with its source rows (1-based across the file), every value as text."""
    frame = frame.with_row_index(SOURCE_ROW, offset=first_row).with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64)
    )
    frame = frame.with_columns(
        pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S")
        for c, t in frame.schema.items()
        if isinstance(t, pl.Datetime)
    )
    return Parsed(stringify(frame))


def read_parquet(path: Path, dataset: Dataset, settings: Settings) -> Iterator[Parsed]:
    with open_landed(settings, path, seekable=True) as fh:
        yield from _read(fh, path, dataset)


def _read(fh, path: Path, dataset: Dataset) -> Iterator[Parsed]:
    if fh.seek(0, 2) == 0:
        raise DeliveryError("the file is empty", dataset=dataset.code, file=str(path))
    fh.seek(0)

    def corrupt(exc: Exception) -> DeliveryError:  # arrow's errors quote the landed path
        return DeliveryError(
            f"corrupt archive: not a readable Parquet file ({type(exc).__name__})",
            dataset=dataset.code,
            file=str(path),
        )

    try:
        source = pq.ParquetFile(fh)
        batches = source.iter_batches(batch_size=BATCH_ROWS)
    except Exception as exc:
        raise corrupt(exc) from None
    with source:
        row = 1
        while True:
            try:
                batch = next(batches, None)
                if batch is None:
                    break
                frame = pl.from_arrow(batch)
            except Exception as exc:  # a damaged row group further in
                raise corrupt(exc) from None
            assert isinstance(frame, pl.DataFrame)
            yield _as_text(frame, row)
            row += frame.height
        if row == 1:  # no rows: the columns alone, so that required ones are checked
            empty = pl.from_arrow(source.schema_arrow.empty_table())
            assert isinstance(empty, pl.DataFrame)
            yield _as_text(empty, row)
