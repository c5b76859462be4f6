"""The grid forecast's counts (网格周诉求数): appeals per ``(grid_code, category,
week_start)`` (:mod:`marts.need_model.spec`), every week of every cell and category — the weeks
without an appeal as 0, which a Poisson forecast must see.

The counting is ``marts.demand_heatmap``'s (``sql/grid_counts.sql`` reads that mart, the
appeals only); this module fills the zeros and names no dataset.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from marts.build import sql_failure
from marts.lineage import MartError
from marts.need_model.features import read_feature_sql
from marts.need_model.spec import GRID_COUNT, GRID_KEYS

GRID_SQL = "grid_counts"
WHAT = "need_model.grid_counts"
SCHEMA = {"grid_code": pl.String(), "category": pl.String(), "week_start": pl.Date(),
          GRID_COUNT: pl.Int64()}  # fmt: skip


def complete_weeks(counts: pl.DataFrame, until: dt.date | None = None) -> pl.DataFrame:
    """``counts`` over every cell × category seen and every week from the first to the last
    (the last ending by ``until`` when given), 0 where none was counted."""
    if until is not None:
        counts = counts.filter(pl.col("week_start") + pl.duration(days=6) <= until)
    if counts.height == 0:
        return pl.DataFrame(schema=SCHEMA)
    weeks = pl.date_range(counts["week_start"].min(), counts["week_start"].max(), "1w", eager=True)
    cells = counts.select("grid_code", "category").unique()
    every = cells.join(pl.DataFrame({"week_start": weeks}), how="cross")
    return (
        every.join(counts, on=list(GRID_KEYS), how="left")
        .with_columns(pl.col(GRID_COUNT).fill_null(0))
        .select(list(SCHEMA))
        .cast(SCHEMA)  # type: ignore[arg-type]
        .sort(list(GRID_KEYS))
    )


def grid_counts(con: duckdb.DuckDBPyConnection, until: dt.date | None = None) -> pl.DataFrame:
    """The grid counts frame: appeals per cell, category and week (weeks ending by ``until``),
    zeros filled (:func:`complete_weeks`)."""
    try:
        counts = con.execute(read_feature_sql(GRID_SQL)).pl()
    except duckdb.Error as exc:
        raise MartError(f"the SQL failed: {sql_failure(exc)}", dataset=WHAT) from None
    return complete_weeks(counts.cast(SCHEMA), until)  # type: ignore[arg-type]


__all__ = ["complete_weeks", "grid_counts"]
