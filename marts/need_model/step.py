"""The need model's step (需求模型步骤): what a run does with the model, as plain functions
``pipelines/`` wires into Dagster assets and the main job.

1. **features** — the feature table (:mod:`marts.need_model.store`) holds every cut-off the
   step needs: the monthly training cut-offs whose 90-day labels are complete, and the
   scoring cut-off; a cut-off already stored is not computed again (what was known by a
   cut-off does not change).
2. **training** — only when no version is promoted, or when asked: a backtest over the
   latest cut-offs against the street's rule, fairness per group on the backtest's rows,
   then one model trained on every training cut-off and registered with its figures
   (:mod:`marts.need_model.registry`).
3. **scores** — the promoted version scores the residents at the scoring cut-off, each score
   with its top factors in Chinese, as the ``need_scores`` frame the publication takes; the
   residents who refused automated assessment are left out before scoring.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from curated.golden import Revealer
from lakehouse.snapshots import current_snapshot
from marts.lineage import MartError
from marts.need_model import labels as need_labels
from marts.need_model.backtest import BacktestResult, backtest_cutoffs, backtest_rows
from marts.need_model.baseline import rule_columns
from marts.need_model.drift import feature_drift, reference_cutoffs
from marts.need_model.explain import explained, load_templates
from marts.need_model.fairness import fairness_table, group_metrics
from marts.need_model.features import (
    FEATURES_YAML,
    features_for,
    known_relations,
    load_feature_set,
    monthly_cutoffs,
)
from marts.need_model.forecast import INPUTS as FORECAST_INPUTS
from marts.need_model.forecast import GridForecaster, backtest_forecast, fit_forecaster
from marts.need_model.grid import grid_counts
from marts.need_model.registry import FORECAST_MODEL, ModelVersion, Registry
from marts.need_model.spec import HORIZON_DAYS, KEYS, NEEDS
from marts.need_model.store import (
    read_features,
    read_slices,
    stored_cutoffs,
    stored_rows,
    write_features,
)
from marts.need_model.train import (
    NeedModels,
    TrainingRows,
    stacked_rows,
    train_rows,
)

TRAINING_MONTHS = 14
"""Monthly training cut-offs (the 1st of each month, as the feature table's), ending at the
last whose labels are complete (marts/README.md: 14 on the need street)."""

BACKTEST_CUTOFFS = 3
"""The latest training cut-offs the backtest tests on (each trained on those 90+ days before)."""

CALIBRATION = None
"""Uncalibrated: on the need street isotonic calibration (a fifth of the residents held out)
lowered PR-AUC for no gain in ECE, already <= 0.005 (marts/README.md)."""
SCORES_MART = "need_scores"


@dataclass(frozen=True)
class Training:
    """A trained and registered version, with the figures it was registered with."""

    version: ModelVersion
    backtest: BacktestResult
    fairness: pl.DataFrame


def training_cutoffs(
    con: duckdb.DuckDBPyConnection, months: int = TRAINING_MONTHS
) -> list[dt.date]:
    """Cut-offs on the 1st of each month, ending at the last whose labels the outcome records
    cover, none before the first recorded outcome (the history the hub holds); none when the
    lake has no outcome records, or not the datasets that hold them."""
    try:
        days = need_labels.outcomes(con)["day"]
    except (MartError, duckdb.Error):  # a lake without the outcome datasets
        return []
    if days.is_empty():
        return []
    return cutoffs_between(days.min(), days.max(), months)


def cutoffs_between(
    first: dt.date, newest: dt.date, months: int = TRAINING_MONTHS
) -> list[dt.date]:
    """The monthly cut-offs of outcomes recorded from ``first`` to ``newest``: the 1st of
    each month from the first on or after ``first`` to the last whose horizon ``newest``
    covers, the latest ``months``."""
    last = (newest - dt.timedelta(days=HORIZON_DAYS)).replace(day=1)
    return [c for c in monthly_cutoffs(last, months) if c >= first] if last >= first else []


def can_train(cutoffs: Sequence[dt.date]) -> bool:
    """Whether the cut-offs carry a backtest: test cut-offs with training cut-offs at
    least the horizon before them."""
    return len(cutoffs) >= BACKTEST_CUTOFFS + 1 and (cutoffs[-1] - cutoffs[0]).days >= HORIZON_DAYS


def store_features(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    cutoffs: Sequence[dt.date],
    between: Callable[[], object] | None = None,
) -> list[dt.date]:
    """Compute and store the features of those ``cutoffs`` not stored yet, a cut-off at a time
    (each written in a lake transaction of its own: one cut-off's frame held at once, never
    all of them); the cut-offs computed. ``between``: called before each cut-off's query
    (the pipeline's heap trim: what the last cut-off's encryption and write freed stayed
    resident under the next query, ~130 MB a cut-off at 200,000 residents, where the
    queries were the need model's peak).

    Not all of them in one transaction, though that would save each write's commit and
    keep DuckLake's table statistics between the queries (~0.25 of a 1,000-resident run's
    ~33 s of user CPU, 2026-12-05) and would hold no rows (DuckLake writes an insert's Parquet files
    at once, the commit only records them: 12 million rows inserted in one transaction left
    the process at ~150 MB): a feature query that runs out of memory inside a transaction
    aborts it, and :func:`marts.need_model.features.bounded_query` could not run it again."""
    missing = sorted(set(cutoffs) - set(stored_cutoffs(con)))
    if not missing:
        return missing
    # each staged dataset's first load computed once for all, its rows copied when few
    with known_relations(con, queries=len(missing)):
        for cutoff in missing:
            if between is not None:
                between()
            write_features(con, features_for(con, protection, [cutoff]), protection.keyring)
    return missing


def feature_rows(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    cutoffs: Sequence[dt.date],
    between: Callable[[], object] | None = None,
) -> dict[dt.date, int]:
    """The rows of each of ``cutoffs`` in the feature table, those not stored yet computed and
    stored first (:func:`store_features`, with ``between``); no feature is read back."""
    store_features(con, protection, cutoffs, between)
    return stored_rows(con, cutoffs)


def ensure_features(
    con: duckdb.DuckDBPyConnection, protection: Revealer, cutoffs: Sequence[dt.date]
) -> pl.DataFrame:
    """The features of ``cutoffs``: those not stored yet computed and stored first."""
    store_features(con, protection, cutoffs)
    return read_features(con, protection, cutoffs)


def training_data(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    cutoffs: Sequence[dt.date],
    inputs: Sequence[str],
    groups: Sequence[str],
    between: Callable[[], object] | None = None,
) -> tuple[TrainingRows, pl.DataFrame]:
    """The rows the backtest and the final training take (:func:`stacked_rows`, with the
    rule's scores) and, of the cut-offs the backtest tests on, the fairness groups (keys
    and ``groups`` as polars categoricals, in ROWS_ORDER: the order of the backtest's
    predictions, which the fairness table takes side by side with them, without a join):
    the features of ``cutoffs`` (computed and stored first where missing) read a slice of a
    cut-off's residents at a time (:func:`marts.need_model.store.read_slices`), each let go
    once its inputs are in the matrix (at 200,000 residents every cut-off's features at once
    and their join with the labels were the run's peak, later a whole cut-off's read). Only
    the columns used are read (and so decrypted and audited): the inputs and the rule's,
    and the groups of the cut-offs tested.
    ``between``: called once each slice is read, once all are, once the rows are made and
    once the groups are (the pipeline's heap trim: at 200,000 residents each gives back
    ~100 MB polars freed, which LightGBM and NumPy would otherwise stand on)."""
    counts = feature_rows(con, protection, cutoffs, between)
    present = [c for c in sorted(set(cutoffs)) if counts.get(c)]
    tested = set(backtest_cutoffs(present, HORIZON_DAYS, BACKTEST_CUTOFFS))
    trim = between if between is not None else lambda: None
    used = list(dict.fromkeys([*inputs, *rule_columns()]))  # the rule's are inputs too

    def parts() -> Iterator[pl.DataFrame]:
        for cutoff in present:
            columns = [*used, *groups] if cutoff in tested else used
            # in the table's order (person order: the cut-offs come oldest first, so the
            # rows are in ROWS_ORDER as they come, and stacked_rows sorts nothing), a slice
            # of residents at a time (a whole cut-off's read was the training's peak)
            for piece in read_slices(con, protection, cutoff, columns, stored=counts[cutoff]):
                frame = [piece]
                del piece
                trim()  # what the read freed, and the last slice's rows, given back
                yield frame.pop()  # held by the consumer alone, let go once it is done with it
        trim()  # the reads' freed pages, before stacked_rows codes the categories

    height = sum(counts[c] for c in present)
    # every outcome read once, before any cut-off's features: its query (~50 MB of DuckDB
    # at 200,000 residents, 0.5 CPU s) ran again for every cut-off, on top of the matrix
    # and the parts' rows, and what it gives is small (36,000 rows there)
    labels_of = need_labels.labeller(con)
    # the groups carried in the rows as categoricals, in their order: as text with their
    # own keys, beside the rows, they were ~47 MB of the backtest's level
    data = stacked_rows(parts(), height, inputs, labels_of, rule=True, carry=groups)
    trim()  # what coding the categories freed
    # the tested cut-offs are the latest: their rows are the last (ROWS_ORDER), a slice
    cutoff_of = data.rows.get_column("cutoff")
    first = int((cutoff_of < min(tested)).sum()) if tested else data.rows.height
    tested_groups = data.rows.slice(first).select(*KEYS, *groups)
    data.rows = data.rows.drop(groups)
    return data, tested_groups


def backtest_metrics(result: BacktestResult, fairness: pl.DataFrame) -> dict[str, float]:
    """The figures logged with a version: per need the backtest's PR-AUC (model, rule,
    ceiling when known), their ratio and the calibration error; the largest group gaps."""
    wanted = ("pr_auc_model", "pr_auc_rule", "ratio", "pr_auc_ceiling", "ece")
    out = {
        f"{row['need']}.{key}": float(row[key])
        for row in result.needs.iter_rows(named=True)
        for key in wanted
        if row.get(key) is not None and row[key] == row[key]  # not NaN
    }
    return out | dict(group_metrics(fairness))


def train_and_register(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    registry: Registry,
    *,
    cutoffs: Sequence[dt.date] | None = None,
    truth: pl.DataFrame | None = None,
    between: Callable[[], object] | None = None,
    **training: Any,
) -> Training:
    """Backtest, fairness, final training and registration on ``cutoffs`` (default: the
    :func:`training_cutoffs`). ``truth``: the true probabilities, for the ceiling (tests
    and evaluation only); ``between``: :func:`training_data`'s; ``training``: passed to the
    backtest and the trainer (rounds …)."""
    cutoffs = sorted(cutoffs or training_cutoffs(con))
    if not can_train(cutoffs):
        raise ValueError(f"{len(cutoffs)} cut-off(s) with complete labels: too few to backtest")
    fs = load_feature_set()
    data, groups = training_data(con, protection, cutoffs, fs.inputs, fs.groups, between)
    result = backtest_rows(data, truth=truth, last=BACKTEST_CUTOFFS, calibration=CALIBRATION,
                           between=between, **training)  # fmt: skip
    needs = data.needs
    # the final model before the fairness table, the training rows let go in between: the
    # table's join of the backtest's predictions with the groups stood on top of every
    # cut-off's rows (at 200,000 residents the training's peak)
    model = train_rows(data, calibration=CALIBRATION, release=True, **training)
    del data
    tested = pl.col("cutoff").is_in(result.predictions["cutoff"].unique().implode())
    fairness = fairness_table(result.predictions, groups.filter(tested), needs,
                              kinds=fs.groups)  # fmt: skip
    del groups
    version = registry.register(
        model,
        metrics=backtest_metrics(result, fairness),
        features=fs.inputs,
        lake_snapshot=current_snapshot(con),
        fairness=fairness,
        backtest=result.needs,
        training_cutoffs=cutoffs,
    )
    return Training(version, result, fairness)


def score_parts(
    model: NeedModels,
    version: ModelVersion,
    features: pl.DataFrame,
    leave_out: Collection[str] = (),
) -> Iterator[pl.DataFrame]:
    """The ``need_scores`` rows a part at a time (:func:`marts.need_model.explain.explained`:
    one need's scores of a batch of residents), in the order :func:`score_frame` holds
    them: one row per resident and need — probability, the model version and cut-off, the
    top factors as Chinese phrases joined by '；'. Residents in ``leave_out`` (refused
    automated assessment) are not scored at all. The parts go to
    :func:`marts.publish.publish_parts` as they are made (at 200,000 residents the whole
    frame held in Python beside DuckDB's copy of it was the step's peak)."""
    scored = features.filter(~pl.col("person_id").is_in(sorted(leave_out)))
    del features  # only the residents scored are held while the parts are made

    def finish(explained: pl.DataFrame) -> pl.DataFrame:  # a batch's rows as the mart's
        return explained.select(
            "person_id",
            "need",
            pl.col("need").replace_strict(NEEDS).alias("need_zh"),
            pl.col("score").alias("probability"),
            pl.lit(f"{version.name}/{version.version}").alias("model_version"),
            "cutoff",
            pl.col("factors").list.join("；").alias("explanation"),
        )

    return explained(model, scored, load_templates(FEATURES_YAML), finish=finish)


def score_frame(
    model: NeedModels,
    version: ModelVersion,
    features: pl.DataFrame,
    leave_out: Collection[str] = (),
) -> pl.DataFrame:
    """The ``need_scores`` frame: :func:`score_parts`' parts, every need's rows together."""
    return pl.concat(score_parts(model, version, features, leave_out))


def drift(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    version: ModelVersion,
    latest: dt.date,
    features: Sequence[str],
) -> pl.DataFrame:
    """Each input's population stability between the features of ``version``'s latest
    training cut-off(s) (:func:`marts.need_model.drift.reference_cutoffs`) and those of the
    ``latest`` cut-off (:func:`marts.need_model.drift.feature_drift`)."""
    reference = reference_cutoffs(version.training_cutoffs)
    # the inputs compared alone, as distributions: in no particular order
    training = read_features(con, protection, reference, features, in_key_order=False)
    latest_rows = read_features(con, protection, [latest], features, in_key_order=False)
    return feature_drift(training, latest_rows, features)


# -- the grid forecast: expected appeals per cell and category next week -------------------

FORECAST_MART = "grid_demand_forecast"
FORECAST_PURPOSE = (
    "For each grid cell and appeal category, the expected appeal count in the week "
    "after the cut-off, so that the street puts its services where demand will be. Counts "
    "only: no person is scored."
)


def train_forecaster(
    con: duckdb.DuckDBPyConnection, registry: Registry, cutoff: dt.date, **training: Any
) -> ModelVersion:
    """Backtest the grid forecast against naive and seasonal-naive on the weeks before
    ``cutoff``, train it on all of them and register it (no fairness table: no person)."""
    counts = grid_counts(con, until=cutoff)
    result = backtest_forecast(counts, **training)
    model = fit_forecaster(counts, **training)
    metrics = {
        f"{row['method']}.{key}": float(row[key])
        for row in result.scores.iter_rows(named=True)
        for key in ("poisson_deviance", "mae")
    }
    return registry.register(
        model,
        metrics=metrics,
        features=list(FORECAST_INPUTS),
        lake_snapshot=current_snapshot(con),
        fairness=None,
        backtest=result.scores,
        training_cutoffs=[cutoff],
        purpose=FORECAST_PURPOSE,
        name=FORECAST_MODEL,
    )


def forecast_frame(
    con: duckdb.DuckDBPyConnection, model: GridForecaster, version: ModelVersion, cutoff: dt.date
) -> pl.DataFrame:
    """The ``grid_demand_forecast`` frame: next week's expected appeals per cell and
    category from the complete weeks by ``cutoff``, with the model version and cut-off."""
    return model.forecast(grid_counts(con, until=cutoff)).with_columns(
        pl.lit(f"{version.name}/{version.version}").alias("model_version"),
        pl.lit(cutoff).alias("cutoff"),
    )
