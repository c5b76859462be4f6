"""The gate groups only the rows that may repeat (a hash of their values is shared): the same
result as grouping every row, on every dataset of the gate street with planted copies and
key conflicts, and on floats whose equal values differ in bits (-0.0 and 0.0, NaN)."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_gate_street import Street

import quality.gate as gate_module
from catalog.loader import get_catalogue
from catalog.model import FieldType
from quality.gate import gate

REFS = sorted(f"{dept.code}.{ds.code}" for dept, ds in get_catalogue().datasets())


def _every_row(frame: pl.DataFrame, columns: list[str]) -> pl.Series:
    """The slow path: every row may repeat, so every row is grouped."""
    return pl.Series([True] * frame.height, dtype=pl.Boolean)


def _assert_same(a, b) -> None:
    for part in ("staged", "quarantine", "repairs", "skipped"):
        assert_frame_equal(getattr(a, part), getattr(b, part))


def _planted(raw: pl.DataFrame) -> pl.DataFrame:
    """``raw`` with its first rows again at its end (exact copies) and a copy of its second
    row with one field changed (a key conflict or another row), new source rows."""
    n = min(5, raw.height)
    last = raw["_source_row"].max() or 0
    copies = raw.head(n).with_columns(
        (pl.int_range(1, n + 1, dtype=pl.Int64) + last).alias("_source_row")
    )
    field = raw.columns[-1]
    changed = raw.slice(1, 1).with_columns(
        pl.lit("x").alias(field), pl.lit(last + n + 1, dtype=pl.Int64).alias("_source_row")
    )
    return pl.concat([raw, copies, changed], how="vertical_relaxed")


@pytest.mark.parametrize("ref", REFS)
def test_grouping_the_rows_that_may_repeat_equals_grouping_all(
    ref, gate_street: Street, monkeypatch
) -> None:
    raw, ds = _planted(gate_street.raw[ref]), gate_street.dataset(ref)
    fast = gate(raw, ds)
    assert fast.skipped.filter(pl.col("check_name") == "duplicate").height >= 1
    monkeypatch.setattr(gate_module, "_may_repeat", _every_row)
    _assert_same(fast, gate(raw, ds))


def test_floats_equal_in_value_repeat(monkeypatch) -> None:
    ds = get_catalogue().dataset("iot.sensor_readings")[1]
    decimal = next(f.name for f in ds.fields if f.type is FieldType.decimal)
    values = ["0", "-0", "0.0", "NaN", "nan", "1.5", "1.50", None]
    rows = len(values)
    raw = pl.DataFrame(
        {
            "_delivery_id": ["d1"] * rows,
            "_source_row": list(range(2, rows + 2)),
            **{f.name: [None] * rows for f in ds.fields},
        },
        schema_overrides={f.name: pl.String for f in ds.fields},
    ).with_columns(pl.Series(decimal, values, dtype=pl.String))
    fast = gate(raw, ds)
    assert fast.skipped.height >= 2  # 1.5 and 1.50, 0 and 0.0: copies
    monkeypatch.setattr(gate_module, "_may_repeat", _every_row)
    _assert_same(fast, gate(raw, ds))
