"""The grid demand forecast (网格诉求预测): expected appeals next week per grid cell × appeal
category, from the grid counts frame (:mod:`marts.need_model.spec`), by a Poisson LightGBM
over lag and season features — each computed only from weeks before the forecast week.

It is compared with two forecasts a street could make without a model: naive (the count of
the week before) and seasonal-naive (the count :data:`~marts.need_model.spec.SEASON_WEEKS`
weeks before; where the history is shorter than that, the naive count). Scored by mean
Poisson deviance — counts per cell, category and week are small, and MAE alone rewards
forecasting zero — with every forecast kept at least :data:`MIN_FORECAST` (a forecast of 0
for a week that had an appeal has infinite deviance), and MAE beside it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from rich.table import Table

from marts.need_model.backtest import as_text
from marts.need_model.booster_doc import booster_document, booster_text
from marts.need_model.grid import complete_weeks
from marts.need_model.metrics import lightgbm, mean_absolute_error, mean_poisson_deviance
from marts.need_model.spec import FORECAST_WEEKS, GRID_COUNT, GRID_KEYS, SEASON_WEEKS

if TYPE_CHECKING:  # LightGBM where it is used (metrics.lightgbm)
    import lightgbm as lgb

FORMAT = "streethub-grid-forecast/1"

MIN_FORECAST = 0.01
"""The least expected count any forecast is scored with (Poisson deviance needs > 0)."""

SERIES = ("grid_code", "category")
LAGS = (1, 2, 3, 4)
INPUTS = (
    *(f"lag{k}" for k in LAGS),
    "mean4",
    "mean13",
    "history_mean",
    "lag_season",
    "category_mean4",
    "week_sin",
    "week_cos",
)
"""The forecast model's inputs, each known before the week it forecasts."""

PARAMS: dict[str, Any] = {
    "objective": "poisson",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
    "seed": 16,
}
NUM_ROUNDS = 150

METHODS = ("model", "naive", "seasonal_naive")

BACKTEST_WEEKS = 8
"""The weeks the backtest tests (each forecast by a model trained on the weeks before it)."""


def week_panel(counts: pl.DataFrame, through: dt.date | None = None) -> pl.DataFrame:
    """Every grid cell × category × week from the first week of ``counts`` to its last, or
    to ``through`` (the week to forecast, its count unknown: 0), the count 0 where the frame
    has no row (:func:`marts.need_model.grid.complete_weeks`)."""
    if through is not None and through > counts["week_start"].max():
        ahead = (
            counts.select(SERIES)
            .unique()
            .with_columns(pl.lit(through).alias("week_start"), pl.lit(0).alias(GRID_COUNT))
        )
        counts = pl.concat([counts, ahead], how="diagonal_relaxed")
    return complete_weeks(counts)


def lag_features(panel: pl.DataFrame) -> pl.DataFrame:
    """The panel with :data:`INPUTS` (and ``naive``, ``seasonal_naive``) for each week, from
    earlier weeks only; the first week of each series has no lag and is dropped."""
    prior = pl.col(GRID_COUNT).shift(1)
    season = pl.col(GRID_COUNT).shift(SEASON_WEEKS).over(SERIES)
    category_week = panel.group_by("category", "week_start").agg(
        pl.col(GRID_COUNT).mean().alias("category_week")
    )
    week = pl.col("week_start").dt.week().cast(pl.Float64) * (2 * np.pi / 52.0)
    return (
        panel.with_columns(pl.col(GRID_COUNT).cast(pl.Float64))
        .join(category_week, on=["category", "week_start"], how="left")
        .sort(*SERIES, "week_start")
        .with_columns(
            *(pl.col(GRID_COUNT).shift(k).over(SERIES).alias(f"lag{k}") for k in LAGS),
            prior.rolling_mean(4, min_samples=1).over(SERIES).alias("mean4"),
            prior.rolling_mean(13, min_samples=1).over(SERIES).alias("mean13"),
            (prior.cum_sum() / pl.int_range(pl.len())).over(SERIES).alias("history_mean"),
            season.alias("lag_season"),
            pl.col("category_week")
            .shift(1)
            .rolling_mean(4, min_samples=1)
            .over(SERIES)
            .alias("category_mean4"),
            week.sin().alias("week_sin"),
            week.cos().alias("week_cos"),
        )
        .with_columns(
            pl.col("lag1").alias("naive"),
            pl.coalesce(season, pl.col("lag1")).alias("seasonal_naive"),
            season.is_null().alias("season_fallback"),
        )
        .filter(pl.col("lag1").is_not_null())
        .drop("category_week")
    )


@dataclass
class GridForecaster:
    """A Poisson LightGBM over :data:`INPUTS`; ``forecast(counts)`` gives next week's
    expected appeals per cell and category."""

    booster: lgb.Booster
    trained_through: dt.date

    def expected(self, rows: pl.DataFrame) -> np.ndarray:
        return self.booster.predict(rows.select(INPUTS).cast(pl.Float64).to_numpy())

    def forecast(self, counts: pl.DataFrame, after: dt.date | None = None) -> pl.DataFrame:
        """``grid_code``, ``category``, ``week_start`` (the week after ``after``, by default
        after the frame's last week) and ``expected_appeals``."""
        last = after or counts["week_start"].max()
        target = last + dt.timedelta(weeks=FORECAST_WEEKS)
        past = counts.filter(pl.col("week_start") <= last)
        rows = lag_features(week_panel(past, through=target)).filter(pl.col("week_start") == target)
        return rows.select(*GRID_KEYS).with_columns(
            pl.Series("expected_appeals", self.expected(rows))
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        data = {
            "format": FORMAT,
            "trained_through": self.trained_through.isoformat(),
            "booster": booster_document(self.booster.model_to_string()),
        }
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> GridForecaster:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"not a saved grid forecaster (format {data.get('format')!r})")
        lgb = lightgbm()
        return cls(
            lgb.Booster(model_str=booster_text(data["booster"])),
            dt.date.fromisoformat(data["trained_through"]),
        )


def fit_on_rows(rows: pl.DataFrame, num_rounds: int = NUM_ROUNDS) -> GridForecaster:
    """Train on feature rows (:func:`lag_features`) whose count (:data:`~marts.need_model.spec.GRID_COUNT`) is the target."""
    lgb = lightgbm()
    data = lgb.Dataset(
        rows.select(INPUTS).cast(pl.Float64).to_numpy(),
        label=rows[GRID_COUNT].to_numpy(),
        feature_name=list(INPUTS),
    )
    booster = lgb.train(PARAMS, data, num_boost_round=num_rounds)
    return GridForecaster(booster, rows["week_start"].max())


def fit_forecaster(counts: pl.DataFrame, num_rounds: int = NUM_ROUNDS) -> GridForecaster:
    """Train on every week of ``counts``."""
    return fit_on_rows(lag_features(week_panel(counts)), num_rounds)


def forecast_scores(y: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """Mean Poisson deviance (forecasts kept ≥ :data:`MIN_FORECAST`) and MAE."""
    return {
        "poisson_deviance": float(mean_poisson_deviance(y, np.maximum(forecast, MIN_FORECAST))),
        "mae": float(mean_absolute_error(y, forecast)),
    }


@dataclass
class ForecastBacktest:
    """Per method (model, naive, seasonal-naive) the pooled deviance and MAE over the test
    weeks; ``weeks`` tested, ``rows`` cell × category × week scored, ``season_fallback``
    the share of rows whose seasonal-naive fell back to naive."""

    scores: pl.DataFrame
    weeks: list[dt.date]
    rows: int
    season_fallback: float

    def deviance(self, method: str) -> float:
        return float(self.scores.filter(pl.col("method") == method)["poisson_deviance"][0])

    def met_goal(self) -> bool:
        """The model's deviance is below both baselines'."""
        model = self.deviance("model")
        return model < self.deviance("naive") and model < self.deviance("seasonal_naive")

    def __rich__(self) -> Table:
        goal = "✓ met" if self.met_goal() else "✗ missed"
        table = Table(
            title="网格诉求预测回测 grid forecast backtest",
            caption=(
                f"goal: model deviance below naive and seasonal-naive — {goal}. "
                f"{len(self.weeks)} weeks to {self.weeks[-1]}, {self.rows} cell×category×week "
                f"rows; seasonal-naive fell back to naive on {self.season_fallback:.0%}"
            ),
            min_width=100,
        )
        for name in ("method", "Poisson deviance", "MAE"):
            table.add_column(name, justify="left" if name == "method" else "right")
        for r in self.scores.iter_rows(named=True):
            table.add_row(r["method"], f"{r['poisson_deviance']:.4f}", f"{r['mae']:.4f}")
        return table

    def __str__(self) -> str:
        return as_text(self)


def backtest_forecast(
    counts: pl.DataFrame, weeks: int = BACKTEST_WEEKS, num_rounds: int = NUM_ROUNDS
) -> ForecastBacktest:
    """For each of the last ``weeks`` weeks: train on the weeks before it, forecast it, and
    score the model, naive and seasonal-naive forecasts on all the test weeks together."""
    rows = lag_features(week_panel(counts))
    every = sorted(rows["week_start"].unique().to_list())
    tests = every[-weeks:]
    if len(every) <= len(tests):
        raise ValueError(f"{len(every)} weeks of history: too few to test {weeks}")
    scored = []
    for week in tests:
        model = fit_on_rows(rows.filter(pl.col("week_start") < week), num_rounds)
        test = rows.filter(pl.col("week_start") == week)
        scored.append(test.with_columns(pl.Series("model", model.expected(test))))
    pooled = pl.concat(scored)
    y = pooled[GRID_COUNT].to_numpy()
    scores = pl.DataFrame(
        [{"method": m} | forecast_scores(y, pooled[m].to_numpy()) for m in METHODS]
    )
    return ForecastBacktest(scores, tests, pooled.height, float(pooled["season_fallback"].mean()))
