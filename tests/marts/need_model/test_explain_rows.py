"""Explanations: the top factors of a batch of rows at once (numpy ordering, values taken a column
at a time) equal :func:`top_factors` row by row, the old path: tied contributions, zeros and
negatives, missing values and NaNs, false conditions, negative numbers, categories, an input
without a template, a phrase that comes out empty."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from marts.need_model.explain import top_factors, top_factors_of_rows

TEMPLATES = {
    "age": "年龄{n}岁",
    "alone": "独居",
    "drop": "近30天门禁出入次数下降{pct}%",
    "appeals": "近期诉求{n}次",
    "visits": "走访",  # a number said as a condition: only when not zero
    "housing": "房屋性质",
    "note": "{v}",  # an empty value says nothing
    "flag": "标记{n}",  # a bool in a number's phrase
}


def frame(rows: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)

    def holes(values: np.ndarray, share: float = 0.1) -> list:
        return [None if rng.random() < share else v for v in values.tolist()]

    drop = rng.normal(20, 40, rows)
    drop[rng.random(rows) < 0.1] = np.nan
    data = pl.DataFrame(
        {
            "age": holes(rng.integers(18, 100, rows)),
            "alone": holes(rng.random(rows) < 0.3),
            "drop": drop,
            "appeals": holes(rng.integers(-1, 4, rows)),
            "visits": holes(np.round(rng.random(rows) * 2) / 2),
            "housing": holes(rng.choice(["商品房", "公租房", "老旧小区"], rows)),
            "note": holes(rng.choice(["", "", "近期住院"], rows)),
            "flag": holes(rng.random(rows) < 0.5),
            "noise": rng.normal(size=rows),  # no template
        },
        schema_overrides={"age": pl.Int64, "appeals": pl.Int32, "visits": pl.Float32},
    ).with_columns(pl.col("housing").cast(pl.Categorical))
    # rounded: many ties, zeros
    contributions = np.round(rng.normal(0, 1, (rows, data.width)), 1)
    return data, contributions


@pytest.mark.parametrize(
    ("rows", "seed", "top"), [(2000, 1, 3), (500, 2, 1), (300, 3, 9), (50, 4, 0)]
)
def test_rows_at_once_equal_row_by_row(rows, seed, top):
    data, contributions = frame(rows, seed)
    inputs = data.columns
    factors, features = top_factors_of_rows(contributions, data, inputs, TEMPLATES, top)
    assert factors.dtype == features.dtype == pl.List(pl.String) and factors.len() == rows
    phrases, names = factors.to_list(), features.to_list()
    expected = [
        top_factors(contributions[r], row, inputs, TEMPLATES, top)
        for r, row in enumerate(data.rows())
    ]
    assert phrases == [p for p, _ in expected] and names == [n for _, n in expected]
    # the awkward cases occurred
    said = {n for row in names for n in row}
    if top:
        assert {"age", "alone", "drop", "appeals", "visits", "housing", "note", "flag"} <= said
        assert "noise" not in said and any(len(p) == min(top, 3) for p in phrases)
