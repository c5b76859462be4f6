"""Fairness: per-group figures from fairlearn's MetricFrame, checked against the same figures
counted by hand for each group."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from marts.need_model.backtest import backtest
from marts.need_model.fairness import FLAG_SHARE, OVERALL, fairness_table, group_metrics
from marts.need_model.spec import KEYS, NEEDS
from tests.marts.need_model.synthetic import INPUTS, need_frames


@pytest.fixture(scope="module")
def scored() -> tuple[pl.DataFrame, pl.DataFrame]:
    features, labels, _ = need_frames(people=400, cutoffs=5, seed=8)
    result = backtest(features, labels, INPUTS, num_rounds=30, last=1)
    return result.predictions, features


def test_every_group_of_every_kind_per_need(scored):
    predictions, groups = scored
    kinds = ["gender", "resident_type", "age_band"]
    table = fairness_table(predictions, groups, list(NEEDS), kinds=kinds)
    assert set(table["need"]) == set(NEEDS) and set(table["group_kind"]) == set(kinds)
    residency = table.filter(
        (pl.col("need") == "home_care") & (pl.col("group_kind") == "resident_type")
    )
    assert set(residency["group"]) == {OVERALL, "registered", "migrant"}
    overall = residency.filter(pl.col("group") == OVERALL)
    assert overall["n"][0] == predictions.height
    # the top FLAG_SHARE by score, and every resident tied with the last of them
    assert FLAG_SHARE <= overall["selection_rate"][0] < 2 * FLAG_SHARE
    assert residency.filter(pl.col("group") != OVERALL)["n"].sum() == predictions.height


def test_group_figures_match_a_count_by_hand(scored):
    predictions, groups = scored
    table = fairness_table(predictions, groups, ["health_event"], kinds=["gender"])
    row = table.filter(pl.col("group") == "女").row(0, named=True)
    frame = predictions.join(groups, on=list(KEYS)).filter(pl.col("gender") == "女")
    y = frame["health_event"].to_numpy()
    s = frame["health_event_score"].to_numpy()
    flagged = s >= row["threshold"]
    assert row["n"] == frame.height and row["positives"] == y.sum()
    assert row["selection_rate"] == pytest.approx(flagged.mean())
    assert row["recall"] == pytest.approx((flagged & y).sum() / y.sum())
    assert row["precision"] == pytest.approx((flagged & y).sum() / flagged.sum())
    assert row["pr_auc"] == pytest.approx(average_precision_score(y, s))


def test_a_group_without_positives_has_no_pr_auc_or_recall():
    scored = pl.DataFrame(
        {
            "person_id": ["a", "b", "c", "d"],
            "cutoff": [dt.date(2025, 6, 30)] * 4,
            "home_care": [True, False, False, False],
            "home_care_score": [0.9, 0.2, 0.8, 0.1],
        }
    )
    groups = scored.select(KEYS).with_columns(
        gender=pl.Series(["男", "男", "女", "女"]),
    )
    table = fairness_table(scored, groups, ["home_care"], kinds=["gender"], flag_share=0.5)
    women = table.filter(pl.col("group") == "女").row(0, named=True)
    assert women["pr_auc"] is None and women["recall"] is None
    assert women["precision"] == 0.0 and women["selection_rate"] == 0.5
    gaps = group_metrics(table)
    assert gaps["home_care.gender.selection_rate_gap"] == 0.0
    assert "home_care.gender.recall_gap" not in gaps  # one group has no recall: no gap
