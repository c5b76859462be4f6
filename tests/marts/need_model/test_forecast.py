"""The grid forecast: a full week panel, lag features that never read the week they forecast,
a seasonal-naive that falls back when history is short, and a Poisson model that beats both
baselines on counts with a level and a season."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from marts.need_model.forecast import (
    MIN_FORECAST,
    GridForecaster,
    backtest_forecast,
    fit_forecaster,
    forecast_scores,
    lag_features,
    week_panel,
)
from marts.need_model.spec import GRID_COUNT, SEASON_WEEKS
from tests.marts.need_model.synthetic import grid_counts

ROUNDS = 40


def test_panel_fills_weeks_without_appeals_with_zero():
    counts = pl.DataFrame(
        {
            "grid_code": ["A", "A", "B"],
            "category": ["x", "x", "x"],
            "week_start": [dt.date(2025, 1, 6), dt.date(2025, 1, 20), dt.date(2025, 1, 13)],
            GRID_COUNT: [2, 1, 4],
        }
    )
    panel = week_panel(counts)
    assert panel.height == 6
    a = panel.filter(pl.col("grid_code") == "A")[GRID_COUNT].to_list()
    assert a == [2.0, 0.0, 1.0]


def test_lag_features_never_read_the_week_they_forecast():
    counts = grid_counts(cells=2, categories=2, weeks=30, seed=5)
    rows = lag_features(week_panel(counts))
    week = sorted(rows["week_start"].unique())[-5]
    changed = counts.with_columns(
        pl.when(pl.col("week_start") >= week).then(pl.col(GRID_COUNT) * 10).otherwise(GRID_COUNT)
    )
    before = rows.filter(pl.col("week_start") == week).drop(GRID_COUNT)
    after = lag_features(week_panel(changed)).filter(pl.col("week_start") == week).drop(GRID_COUNT)
    assert before.equals(after)


def test_seasonal_naive_falls_back_to_naive_on_short_history():
    short = backtest_forecast(grid_counts(weeks=30), weeks=4, num_rounds=ROUNDS)
    assert short.season_fallback == 1.0
    assert short.deviance("seasonal_naive") == short.deviance("naive")
    long = backtest_forecast(grid_counts(weeks=SEASON_WEEKS + 10), weeks=4, num_rounds=ROUNDS)
    assert long.season_fallback == 0.0
    assert long.deviance("seasonal_naive") != long.deviance("naive")


def test_model_deviance_beats_naive_and_seasonal_naive():
    result = backtest_forecast(grid_counts(weeks=70), weeks=6, num_rounds=ROUNDS)
    assert result.met_goal()
    assert result.scores["method"].to_list() == ["model", "naive", "seasonal_naive"]
    assert len(result.weeks) == 6 and result.rows == 6 * 6 * 3
    text = str(result)
    assert "Poisson deviance" in text and "MAE" in text and "seasonal_naive" in text


def test_a_zero_forecast_is_scored_not_refused():
    y = np.array([0.0, 2.0])
    scores = forecast_scores(y, np.array([0.0, 0.0]))
    assert np.isfinite(scores["poisson_deviance"])
    assert scores["poisson_deviance"] > forecast_scores(y, np.array([0.5, 1.5]))["poisson_deviance"]
    assert scores["mae"] == 1.0
    assert MIN_FORECAST > 0


def test_forecast_next_week_for_every_cell_and_category_and_round_trip(tmp_path):
    counts = grid_counts(cells=3, categories=2, weeks=40, seed=7)
    model = fit_forecaster(counts, num_rounds=ROUNDS)
    next_week = model.forecast(counts)
    last = counts["week_start"].max()
    assert next_week["week_start"].unique().to_list() == [last + dt.timedelta(weeks=1)]
    assert next_week.height == 6 and (next_week["expected_appeals"] > 0).all()
    loaded = GridForecaster.load(model.save(tmp_path / "grid.json"))
    assert loaded.forecast(counts).equals(next_week)
    assert loaded.trained_through == last


def test_too_short_a_history_is_refused():
    with pytest.raises(ValueError, match="too few"):
        backtest_forecast(grid_counts(weeks=5), weeks=8)
