"""Drift: the population stability index against a hand-worked figure, its thresholds, and
per-feature drift that singles out the feature that moved."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from marts.need_model.drift import ALARM, WARN, feature_drift, population_stability_index, status


def test_psi_of_a_two_valued_feature_by_hand():
    expected = np.array([0.0] * 80 + [1.0] * 20)
    actual = np.array([0.0] * 50 + [1.0] * 50)
    by_hand = (0.5 - 0.8) * math.log(0.5 / 0.8) + (0.5 - 0.2) * math.log(0.5 / 0.2)
    assert population_stability_index(expected, actual) == pytest.approx(by_hand, rel=1e-3)


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    assert population_stability_index(a, rng.normal(size=5000)) < WARN
    assert population_stability_index(a, rng.normal(1.0, 1.0, 5000)) > ALARM


def test_missing_values_and_unseen_values_count_as_drift():
    base = np.array([1.0, 2.0, 3.0] * 100)
    assert population_stability_index(base, base) == pytest.approx(0.0)
    with_missing = base.copy()
    with_missing[:150] = np.nan
    assert population_stability_index(base, with_missing) > ALARM
    unseen = np.array([1.0, 2.0, 9.0] * 100)
    assert population_stability_index(base, unseen) > ALARM


def test_status_thresholds():
    assert [status(x) for x in (0.0, 0.099, 0.1, 0.2, 0.25, 1.0)] == [
        "ok", "ok", "warn", "warn", "alarm", "alarm",
    ]  # fmt: skip


def test_feature_drift_names_the_feature_that_moved():
    rng = np.random.default_rng(1)
    train = pl.DataFrame({"steady": rng.normal(size=2000), "moved": rng.normal(size=2000)})
    latest = pl.DataFrame({"steady": rng.normal(size=2000), "moved": rng.normal(0.8, 1.0, 2000)})
    drift = feature_drift(train, latest, ["steady", "moved"])
    assert drift["feature"].to_list() == ["moved", "steady"]
    assert drift["status"].to_list() == ["alarm", "ok"]


def test_a_text_category_drifts_by_its_values_and_one_never_trained_on():
    train = pl.DataFrame({"housing": ["商品房"] * 70 + ["公租房"] * 30})
    same = pl.DataFrame({"housing": ["公租房"] * 30 + ["商品房"] * 70})
    new = pl.DataFrame({"housing": ["商品房"] * 50 + ["人才公寓"] * 50})
    assert feature_drift(train, same, ["housing"])["psi"][0] == pytest.approx(0.0)
    assert feature_drift(train, new, ["housing"])["status"][0] == "alarm"
