"""The ingest streams: a Parquet delivery is read a batch at a time, not whole (memory
stays flat however large it is), with the same values and source rows as a whole read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

import pipelines.connectors.parquet as parquet_reader
from catalog.errors import DeliveryError
from catalog.loader import load_catalogue
from catalog.model import ConnectorKind
from catalog.settings import Settings


def _parquet_dataset():
    cat = load_catalogue()
    return next(ds for _, ds in cat.datasets() if ds.delivery.kind is ConnectorKind.parquet)


def _frame(ds, n: int) -> pl.DataFrame:
    cols: dict[str, pl.Series] = {}
    for i, f in enumerate(ds.fields):
        if i == 1:  # one typed column: a timestamp must come out as text, as before
            start = dt.datetime(2026, 1, 1, 8, 30)
            values = [start + dt.timedelta(minutes=r) for r in range(n)]
            cols[f.source_name] = pl.Series(values, dtype=pl.Datetime("us"))
        else:
            cols[f.source_name] = pl.Series([f"{f.name}-{r}" for r in range(n)])
    return pl.DataFrame(cols)


def test_parquet_is_read_in_batches_with_continuous_source_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _parquet_dataset()
    path = tmp_path / "big.parquet"
    _frame(ds, 2_500).write_parquet(path, row_group_size=700)
    monkeypatch.setattr(parquet_reader, "BATCH_ROWS", 1_000)
    parts = list(parquet_reader.read_parquet(path, ds, Settings()))
    assert len(parts) >= 3 and max(p.frame.height for p in parts) <= 1_000
    got = pl.concat([p.frame for p in parts])
    assert got["_source_row"].to_list() == list(range(1, 2_501))
    second = ds.fields[1].source_name
    assert got[second][0] == "2026-01-01 08:30:00" and got.schema[second] == pl.String
    assert got.drop("_source_row").equals(
        _frame(ds, 2_500).with_columns(pl.col(second).dt.strftime("%Y-%m-%d %H:%M:%S"))
    )


def test_an_empty_parquet_still_shows_its_columns(tmp_path: Path) -> None:
    ds = _parquet_dataset()
    path = tmp_path / "empty.parquet"
    _frame(ds, 0).write_parquet(path)
    (part,) = list(parquet_reader.read_parquet(path, ds, Settings()))
    assert part.frame.height == 0
    assert set(part.frame.columns) == {"_source_row", *(f.source_name for f in ds.fields)}


def test_a_damaged_row_group_further_in_fails_the_delivery(tmp_path: Path) -> None:
    ds = _parquet_dataset()
    path = tmp_path / "damaged.parquet"
    _frame(ds, 3_000).write_parquet(path, row_group_size=1_000, compression="uncompressed")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the second row group's pages
    data[middle : middle + 4_000] = b"\xff" * 4_000
    path.write_bytes(bytes(data))
    with pytest.raises(DeliveryError, match="corrupt archive: not a readable Parquet file"):
        list(parquet_reader.read_parquet(path, ds, Settings()))
