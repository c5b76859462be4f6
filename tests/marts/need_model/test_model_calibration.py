"""Calibration: the reliability curve and ECE against hand-worked figures, and calibrators
that repair a score known to be miscalibrated."""

from __future__ import annotations

import numpy as np
import pytest

from marts.need_model.backtest import backtest
from marts.need_model.calibration import (
    Calibrator,
    expected_calibration_error,
    fit_calibrator,
    reliability_curve,
)
from tests.marts.need_model.synthetic import INPUTS, need_frames


def test_reliability_curve_and_ece_by_hand():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.15, 0.95, 0.95, 0.95])
    curve = reliability_curve(y, p)
    assert curve["n"].to_list() == [1, 2, 3]
    assert curve["observed_rate"].to_list() == pytest.approx([0.0, 0.5, 2 / 3])
    # bins: |0.05-0| * 1/6 + |0.15-0.5| * 2/6 + |0.95-2/3| * 3/6
    expected = 0.05 / 6 + 0.35 * 2 / 6 + (0.95 - 2 / 3) * 3 / 6
    assert expected_calibration_error(y, p) == pytest.approx(expected)


def test_a_calibrated_score_has_a_small_ece_and_a_squashed_one_a_large_one():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = rng.random(p.size) < p
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, p**3) > 0.15


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrators_repair_a_miscalibrated_score_and_round_trip(method):
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.99, 8_000)
    y = rng.random(p.size) < p
    raw = p**3  # monotone, far too low
    calibrator = fit_calibrator(y[:4000], raw[:4000], method)
    fixed = calibrator.apply(raw[4000:])
    assert expected_calibration_error(y[4000:], fixed) < 0.03
    assert expected_calibration_error(y[4000:], raw[4000:]) > 0.15
    again = Calibrator.from_dict(calibrator.to_dict())
    assert np.array_equal(again.apply(raw), calibrator.apply(raw))


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="isotonic or platt"):
        fit_calibrator(np.array([0, 1]), np.array([0.1, 0.9]), "beta")  # type: ignore[arg-type]


def test_backtest_with_calibration_reports_its_ece():
    features, labels, _ = need_frames(people=300, cutoffs=5, seed=4)
    result = backtest(features, labels, INPUTS, num_rounds=30, calibration="platt", last=1)
    assert result.needs["ece"].is_not_nan().all()
    assert (result.needs["ece"] < 0.15).all()
