"""Calibration (校准) of need scores: does a score of 0.3 mean that 3 in 10 such residents have
the need? The reliability curve bins scores and compares each bin's mean score with the
rate observed in it; the expected calibration error (ECE) is the bins' gap weighted by their
share of residents. A :class:`Calibrator` maps raw model scores to calibrated probabilities —
isotonic regression or Platt's logistic fit, learnt on a slice the model did not train on —
and is stored as plain numbers (no pickle), so a saved model is a text file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

BINS = 10
"""Equal-width score bins of the reliability curve and the ECE."""

Method = Literal["isotonic", "platt"]

TIE_BREAK = 1e-6
"""The isotonic map's slope added on its flat steps: a step function would tie residents the
model tells apart (and a ranking's PR-AUC with them); this keeps the model's order and moves
no probability by more than a millionth."""


def reliability_curve(y_true: np.ndarray, scores: np.ndarray, bins: int = BINS) -> pl.DataFrame:
    """One row per non-empty equal-width score bin: ``bin_low``, ``bin_high``, ``n``,
    ``mean_score`` (the mean predicted probability) and ``observed_rate`` (the share with the
    need)."""
    y = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    index = np.minimum((p * bins).astype(int), bins - 1)
    rows = [
        {
            "bin_low": b / bins,
            "bin_high": (b + 1) / bins,
            "n": int(mask.sum()),
            "mean_score": float(p[mask].mean()),
            "observed_rate": float(y[mask].mean()),
        }
        for b in range(bins)
        if (mask := index == b).any()
    ]
    schema = {
        "bin_low": pl.Float64,
        "bin_high": pl.Float64,
        "n": pl.Int64,
        "mean_score": pl.Float64,
        "observed_rate": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def expected_calibration_error(y_true: np.ndarray, scores: np.ndarray, bins: int = BINS) -> float:
    """Σ over bins of (bin share) × |mean score − observed rate|: 0 is perfectly calibrated."""
    curve = reliability_curve(y_true, scores, bins)
    total = curve["n"].sum()
    if not total:
        return float("nan")
    gap = (curve["mean_score"] - curve["observed_rate"]).abs()
    return float((gap * curve["n"]).sum() / total)


def log_odds(scores: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """log(p / (1 − p)), the probabilities kept off 0 and 1 by ``eps``."""
    p = np.clip(np.asarray(scores, dtype=float), eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


@dataclass
class Calibrator:
    """Raw score → calibrated probability. ``isotonic``: a monotone step function stored as
    its knots (``x``, ``y``), applied by linear interpolation; ``platt``: ``1 / (1 + exp(-(a·z
    + b)))`` on the raw score's log-odds ``z``."""

    method: Method
    params: dict[str, list[float]] = field(default_factory=dict)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            stepped = np.interp(s, self.params["x"], self.params["y"])
            return np.clip(stepped + TIE_BREAK * s, 0.0, 1.0)
        a, b = self.params["coef"]
        return 1.0 / (1.0 + np.exp(-(a * log_odds(s) + b)))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(method=data["method"], params=data["params"])


def fit_calibrator(y_true: np.ndarray, scores: np.ndarray, method: Method) -> Calibrator:
    """Learn a :class:`Calibrator` from held-out raw scores and their outcomes."""
    from sklearn.isotonic import IsotonicRegression  # sklearn: where it is used (~1 s)
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        knots = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
        return Calibrator("isotonic", knots)
    if method == "platt":
        fit = LogisticRegression(C=1e6).fit(log_odds(s).reshape(-1, 1), y.astype(int))
        return Calibrator("platt", {"coef": [float(fit.coef_[0, 0]), float(fit.intercept_[0])]})
    raise ValueError(f"calibration method must be isotonic or platt, not {method!r}")
