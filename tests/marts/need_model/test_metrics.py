"""The need models' figures in NumPy are scikit-learn's, to the bit; LightGBM loads without
scikit-learn and trains as with it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as sk

from marts.need_model.metrics import average_precision, mean_absolute_error, mean_poisson_deviance


def test_the_figures_are_scikit_learns_on_scores_with_ties():
    rng = np.random.default_rng(11)
    compared = 0
    for _ in range(200):
        n = int(rng.integers(1, 300))
        y = rng.random(n) < rng.random()
        scores = np.round(rng.random(n), int(rng.integers(1, 4)))  # many ties
        if y.any():
            assert average_precision(y, scores) == sk.average_precision_score(y, scores)
            compared += 1
        counts, forecast = rng.poisson(1.5, n).astype(float), rng.random(n) * 3 + 0.01
        assert mean_poisson_deviance(counts, forecast) == sk.mean_poisson_deviance(counts, forecast)
        assert mean_absolute_error(counts, forecast) == sk.mean_absolute_error(counts, forecast)
    assert compared > 150
    assert np.isnan(average_precision(np.zeros(5, dtype=bool), np.arange(5.0)))
    assert average_precision([True, False, True], [0.9, 0.5, 0.1]) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="above 0"):
        mean_poisson_deviance(np.ones(3), np.array([1.0, 0.0, 2.0]))


def test_lightgbm_loads_without_scikit_learn_which_still_imports_after():
    """In a fresh process: LightGBM from :func:`lightgbm` trains with scikit-learn (and its
    ~66 MB) never loaded; scikit-learn imported afterwards is whole."""
    code = """
import sys
import numpy as np
from marts.need_model.metrics import lightgbm
lgb = lightgbm()
assert "sklearn" not in sys.modules, "LightGBM loaded scikit-learn"
x = np.random.default_rng(1).random((400, 3))
booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, label=x[:, 0] > 0.5), 5)
assert booster.predict(x).shape == (400,)
assert "sklearn" not in sys.modules
from sklearn.metrics import average_precision_score
print(average_precision_score([0, 1], [0.2, 0.8]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1.0"
