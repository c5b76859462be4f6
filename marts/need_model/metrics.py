"""The need models' figures in NumPy (指标), and LightGBM without scikit-learn.

The backtest, the fairness table and the grid forecast need three figures scikit-learn
has: average precision (PR-AUC), the mean Poisson deviance and the mean absolute error.
Here each is computed as ``sklearn.metrics`` computes it, in the same order of operations
(tests compare them with scikit-learn's on data with ties), so that a run need not load
scikit-learn and SciPy: ~66 MB resident for the rest of the process, from the first
figure on, at the need model's training, the run's memory peak at 200,000 residents.

:func:`lightgbm` imports LightGBM the same way: LightGBM imports scikit-learn when it is
installed, for its optional scikit-learn estimators (``lightgbm.compat``), which the hub
does not use; the hub trains with ``lightgbm.train`` and ``Booster`` alone.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

import numpy as np

_IMPORTING = threading.Lock()


def lightgbm() -> ModuleType:
    """The ``lightgbm`` module, imported without its scikit-learn interface when scikit-learn
    is not loaded yet (scikit-learn is hidden from ``sys.modules`` while LightGBM imports,
    one thread at a time, and can be imported normally after)."""
    loaded = sys.modules.get("lightgbm")
    if loaded is not None:
        return loaded
    with _IMPORTING:
        hide = "sklearn" not in sys.modules
        if hide:
            sys.modules["sklearn"] = None  # type: ignore[assignment]  # import raises ImportError
        try:
            import lightgbm as lgb
        finally:
            if hide and sys.modules.get("sklearn", 0) is None:
                del sys.modules["sklearn"]
    return lgb


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision, the area under the precision-recall curve, as
    ``sklearn.metrics.average_precision_score``: the precision at each distinct score
    (highest first), weighted by the recall it adds; NaN without positives."""
    y = np.asarray(y_true, dtype=bool)
    if not y.any():
        return float("nan")
    s = np.asarray(scores, dtype=float)
    order = np.argsort(s, kind="mergesort")[::-1]
    s, hits = s[order], y[order].astype(float)
    at = np.r_[np.where(np.diff(s))[0], hits.size - 1]  # the last row of each distinct score
    tps = np.cumsum(hits, dtype=np.float64)[at]
    fps = 1 + at - tps
    precision = np.hstack((np.divide(tps, tps + fps)[::-1], 1.0))
    recall = np.hstack(((tps / tps[-1])[::-1], 0.0))
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def mean_poisson_deviance(y_true: np.ndarray, forecast: np.ndarray) -> float:
    """The mean Poisson deviance of positive ``forecast``s, as
    ``sklearn.metrics.mean_poisson_deviance``: 2 (y log(y / f) - y + f), y log(y / f) = 0
    where y = 0."""
    y, f = np.asarray(y_true, dtype=float), np.asarray(forecast, dtype=float)
    if np.any(f <= 0):
        raise ValueError("a Poisson deviance needs forecasts above 0")
    ratio = np.divide(y, f, out=np.ones_like(y), where=y > 0)
    return float(np.average(2 * (y * np.log(ratio) - y + f)))


def mean_absolute_error(y_true: np.ndarray, forecast: np.ndarray) -> float:
    """The mean absolute error, as ``sklearn.metrics.mean_absolute_error``."""
    y, f = np.asarray(y_true, dtype=float), np.asarray(forecast, dtype=float)
    return float(np.average(np.abs(f - y)))


__all__ = ["average_precision", "lightgbm", "mean_absolute_error", "mean_poisson_deviance"]
