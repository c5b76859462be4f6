"""The need model against the simulator's truth (simulated streets only), for ``streethub
models backtest``: what no real street can know, read by ``quality.evaluation`` and mapped
to the hub's pseudonyms here (a citizen ID pseudonymised as the master resident index does).

- **ceiling**: the true probabilities' PR-AUC on the registered backtest's own rows (its
  test cut-offs' stored features and their labels from the lake), beside the model's and the
  rule's;
- **grid forecast**: the true expected counts (before each week's shock) scored like the
  forecasts, on the registered backtest's test weeks — the deviance no forecast can expect
  to beat;
- **elderly alert**: precision and recall of weekly alert lists (the mart's SQL as of past
  dates, nothing published) against the planted elderly events whose decline the doors saw.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.loader import load_catalogue
from catalog.marts import MARTS_DIR, load_marts
from catalog.model import PiiKind
from catalog.settings import Settings
from marts.alert_quality import AlertQuality, against_events, alert_lists
from marts.need_model.backtest import backtest_cutoffs
from marts.need_model.forecast import (
    BACKTEST_WEEKS,
    forecast_scores,
    lag_features,
    week_panel,
)
from marts.need_model.grid import grid_counts
from marts.need_model.labels import labels
from marts.need_model.metrics import average_precision
from marts.need_model.registry import ModelVersion
from marts.need_model.spec import GRID_COUNT, GRID_KEYS, HORIZON_DAYS, KEYS, NEEDS
from marts.need_model.store import read_features, stored_cutoffs
from marts.need_model.train import training_frame
from masking.pseudonym import pseudonymise_series
from pipelines.protection import Protection
from quality.evaluation import read_need_truth

ALERT_WEEKS = 26
"""The elderly alert is judged on weekly lists over the half year before the last day."""
TRUE_EXPECTED = "true_expected"  # the grid forecast table's row of the truth


@dataclass(frozen=True)
class NeedTruth:
    """The need truth under hub pseudonyms (``person_id``): ``probabilities`` (keys, one
    column per need), ``elderly_events`` (``person_id``, ``event_date``, the doors saw the
    decline) and ``grid_expected`` (grid keys, ``expected``)."""

    probabilities: pl.DataFrame
    elderly_events: pl.DataFrame
    grid_expected: pl.DataFrame


def load_need_truth(settings: Settings, actor: str) -> tuple[NeedTruth, Protection] | None:
    """The simulator's need truth beside ``settings``' home and the protection (for
    ``actor``) that pseudonymised it, or None (no keys are opened then)."""
    raw = read_need_truth(settings.sim_dir_abs)
    if raw is None:
        return None
    protection = Protection.from_settings(settings, actor=actor)

    def pseudonymised(frame: pl.DataFrame) -> pl.DataFrame:
        pid = pseudonymise_series(frame["_person"], protection.keyring, kind=PiiKind.citizen_id)
        return frame.with_columns(pid.alias("person_id")).drop("_person")

    probabilities = pseudonymised(raw["probabilities"]).select(
        *KEYS, *(pl.col(f"p_{n}").alias(n) for n in NEEDS)
    )
    events = pseudonymised(raw["elderly_events"]).filter(pl.col("smart_door"))
    people = events.select("person_id", "event_date")
    return NeedTruth(probabilities, people, raw["grid_expected"]), protection


def with_ceiling(
    con: duckdb.DuckDBPyConnection,
    protection: Protection,
    version: ModelVersion,
    table: pl.DataFrame,
    truth: NeedTruth,
) -> pl.DataFrame:
    """The registered need backtest ``table`` with ``pr_auc_ceiling`` and
    ``model_to_ceiling`` filled, and ``rows_with_truth`` (the rows the ceiling is on)."""
    tests = backtest_cutoffs(version.training_cutoffs, HORIZON_DAYS, int(table["cutoffs"].max()))
    keys = read_features(con, protection, tests).select(KEYS)
    rows = training_frame(keys, labels(con, keys)).join(
        truth.probabilities, on=list(KEYS), how="inner", suffix="_true"
    )
    ceiling = {
        n: average_precision(rows[n].to_numpy(), rows[f"{n}_true"].to_numpy()) for n in NEEDS
    }
    return table.with_columns(
        pl.col("need").replace_strict(ceiling, default=None).alias("pr_auc_ceiling"),
        pl.lit(rows.height).alias("rows_with_truth"),
    ).with_columns((pl.col("pr_auc_model") / pl.col("pr_auc_ceiling")).alias("model_to_ceiling"))


def with_true_expected(
    con: duckdb.DuckDBPyConnection, version: ModelVersion, table: pl.DataFrame, truth: NeedTruth
) -> pl.DataFrame:
    """The registered grid forecast backtest ``table`` with a :data:`TRUE_EXPECTED` row: the
    true expected counts scored on the same test weeks (the counts of weeks ending by the
    version's cut-off, the last :data:`~marts.need_model.forecast.BACKTEST_WEEKS`)."""
    rows = lag_features(week_panel(grid_counts(con, until=max(version.training_cutoffs))))
    weeks = sorted(rows["week_start"].unique().to_list())[-BACKTEST_WEEKS:]
    test = rows.filter(pl.col("week_start").is_in(weeks)).join(
        truth.grid_expected, on=list(GRID_KEYS), how="left"
    )
    scores = forecast_scores(test[GRID_COUNT].to_numpy(), test["expected"].fill_null(0).to_numpy())
    return pl.concat([table, pl.DataFrame([{"method": TRUE_EXPECTED} | scores])], how="diagonal")


def alert_quality(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    protection: Protection,
    truth: NeedTruth,
    last: dt.date,
) -> AlertQuality:
    """The elderly alert's weekly lists of the :data:`ALERT_WEEKS` weeks ending ``last``
    against the planted events (``marts.alert_quality.against_events``)."""
    dates = [last - dt.timedelta(weeks=k) for k in reversed(range(ALERT_WEEKS))]
    lists = alert_lists(con, load_catalogue(settings.catalog_dir), load_marts(MARTS_DIR),
                        protection, dates)  # fmt: skip
    return against_events(lists, truth.elderly_events)


def last_scored(con: duckdb.DuckDBPyConnection) -> dt.date:
    """The latest cut-off of the feature table (the day the residents were last scored)."""
    return stored_cutoffs(con)[-1]
