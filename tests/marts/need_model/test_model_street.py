"""The need model on the need street (a year of simulated history, ``need_street``): the
backtest's models rank residents above the street's rule (home care, health events, financial
assistance, and all needs together) and the true
probabilities are known for every scored row (the ceiling); the grid forecast's deviance is
below naive and seasonal-naive; every score of the latest cut-off is explained in phrases;
fairness and drift tables cover every group and input. Figures are printed (``-s``)."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from catalog.model import PiiKind
from lakehouse.lake import open_lake
from marts.need_model import labels as need_labels
from marts.need_model import step
from marts.need_model.backtest import backtest, backtest_rows
from marts.need_model.drift import WARN, feature_drift
from marts.need_model.explain import TOP, explain, load_templates
from marts.need_model.fairness import OVERALL, fairness_table
from marts.need_model.features import load_feature_set
from marts.need_model.forecast import backtest_forecast
from marts.need_model.grid import grid_counts
from marts.need_model.spec import KEYS, NEEDS
from marts.need_model.store import read_features
from marts.need_model.train import ROWS_ORDER, train_need_models
from masking.pseudonym import pseudonymise_series


@pytest.fixture(scope="module")
def frames(need_street):
    """The street's features with complete labels, their labels, and the true probabilities
    under the hub's pseudonyms."""
    with open_lake(need_street.settings, read_only=True) as con:
        until = need_labels.complete_until(con)
        features = need_street.features.filter(pl.col("cutoff") <= until)
        labels = need_labels.labels(con, features.select(KEYS))
    raw = need_street.truth("probabilities")
    keyring = need_street.protection().keyring
    truth = raw.select(
        pseudonymise_series(raw["_person"], keyring, kind=PiiKind.citizen_id).alias("person_id"),
        "cutoff",
        *(pl.col(f"p_{n}").alias(n) for n in NEEDS),
    )
    return features, labels, truth


@pytest.fixture(scope="module")
def result(frames):
    features, labels, truth = frames
    return backtest(features, labels, load_feature_set().inputs, truth=truth, num_rounds=60)


def test_models_rank_above_the_rule_with_the_ceiling_known(result):
    print(result)
    needs = result.needs
    assert needs["need"].to_list() == list(NEEDS)
    assert (needs["positives"] > 0).all()
    # the street's few months with complete labels (tested at September, trained on June
    # alone) hold only dozens of financial and emergency cases: those ratios swing around
    # 1x-5x from street to street (the printed backtest of `streethub models backtest` is the
    # measure). Here: home care 2.1x, health events 3.1x, financial 2.0x, emergency 0.9x,
    # all needs together 2.0x the rule
    model = dict(zip(needs["need"], needs["pr_auc_model"], strict=True))
    rule = dict(zip(needs["need"], needs["pr_auc_rule"], strict=True))
    assert model["home_care"] > 1.5 * rule["home_care"]
    assert model["health_event"] > 2 * rule["health_event"]
    assert model["financial_assistance"] > 1.3 * rule["financial_assistance"]
    assert needs["pr_auc_model"].sum() > 1.7 * needs["pr_auc_rule"].sum()
    assert needs["pr_auc_ceiling"].is_not_nan().all()
    assert (needs["ece"] < 0.05).all()


def test_grid_forecast_beats_naive_and_seasonal_naive(need_street):
    with open_lake(need_street.settings, read_only=True) as con:
        counts = grid_counts(con)
    forecast = backtest_forecast(counts, weeks=4, num_rounds=60)
    print(forecast)
    assert forecast.season_fallback == 0.0  # a year of weeks before every test week
    assert forecast.met_goal()


def test_latest_scores_explained_and_groups_and_drift_covered(frames, result, need_street):
    features, labels, _ = frames
    feature_set = load_feature_set()
    models = train_need_models(features, labels, feature_set.inputs, num_rounds=60)
    latest = need_street.features.filter(pl.col("cutoff") == need_street.features["cutoff"].max())
    explained = explain(models, latest, load_templates())
    assert explained.height == latest.height * len(NEEDS)
    said = explained["factors"].list.len()
    # a low score may have no factor (only inputs pushing a score up are said): the share of
    # all scores explained is a property of the street drawn (0.85-0.90 in three draws), but
    # a score a worker looks at, in the top tenth of its need, is always explained
    top = explained.with_columns(said.alias("said")).filter(
        pl.col("score").rank("ordinal", descending=True).over("need") <= pl.len().over("need") // 10
    )
    assert said.max() == TOP and (said > 0).mean() > 0.75
    assert top.height > 0 and (top["said"] > 0).all()
    assert not explained["factors"].explode().drop_nulls().str.contains("{", literal=True).any()

    fairness = fairness_table(result.predictions, features, list(NEEDS))
    assert set(fairness["group_kind"]) == set(feature_set.groups)
    assert (fairness.filter(pl.col("group") == OVERALL)["n"] == result.predictions.height).all()

    training = features.filter(pl.col("cutoff") < latest["cutoff"][0])
    drift = feature_drift(training, latest, feature_set.inputs)
    assert sorted(drift["feature"]) == sorted(feature_set.inputs)
    assert drift["psi"].is_finite().all()


def test_no_input_drifts_from_the_latest_training_cut_off_to_the_latest(frames, need_street):
    """Between the latest cut-off with complete labels (a model's latest training cut-off)
    and the latest, two months into autumn, no input's PSI reaches the warning: the door
    decline the model reads is the person's less the street's over the same days, in which
    the season's fewer passes cancel (the person's own decline, kept for workers, moves more)."""
    features, _, _ = frames
    inputs = load_feature_set().inputs
    reference = features.filter(pl.col("cutoff") == features["cutoff"].max())
    latest = need_street.features.filter(pl.col("cutoff") == need_street.features["cutoff"].max())
    drift = feature_drift(reference, latest, [*inputs, "door_decline_pct"])
    print(drift)
    psi = dict(zip(drift["feature"], drift["psi"], strict=True))
    assert all(psi[name] < WARN for name in inputs), drift
    assert psi["door_decline_vs_street"] < psi["door_decline_pct"]


def test_the_steps_groups_line_up_with_its_backtests_predictions(need_street, monkeypatch):
    """The fairness groups the need model's step reads hold its backtest's predictions' keys
    in their order, so the fairness table takes them side by side: no join on the text keys
    (177 MB of the training's memory at 200,000 residents)."""
    feature_set = load_feature_set()
    with open_lake(need_street.settings, read_only=True) as con:
        data, groups = step.training_data(
            con, need_street.protection(), step.training_cutoffs(con),
            feature_set.inputs, feature_set.groups,
        )  # fmt: skip
        tests = sorted(groups["cutoff"].unique().to_list())
        stored = read_features(con, need_street.protection(), tests, feature_set.groups)
    result = backtest_rows(data, last=step.BACKTEST_CUTOFFS, num_rounds=5)
    assert result.predictions.height > 0
    assert groups.select(KEYS).equals(result.predictions.select(KEYS))
    assert sorted(result.predictions["cutoff"].unique().to_list()) == tests
    as_text = groups.with_columns(pl.col(feature_set.groups).cast(pl.String))
    assert as_text.equals(stored.sort(ROWS_ORDER).select(groups.columns))  # each row's own
    assert not set(feature_set.groups) & set(data.rows.columns)  # not in the training rows
    shuffled = groups.sample(fraction=1.0, shuffle=True, seed=3)  # not in order: joined
    joined = fairness_table(result.predictions, shuffled, data.needs, kinds=feature_set.groups)

    def no_join(*args, **kwargs):
        raise AssertionError("the fairness table joined groups that were in order")

    monkeypatch.setattr(pl.DataFrame, "join", no_join)
    side_by_side = fairness_table(result.predictions, groups, data.needs, kinds=feature_set.groups)
    assert_frame_equal(side_by_side, joined)
