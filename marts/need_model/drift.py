"""Feature drift (特征漂移): the population stability index of each feature between the
features a model was trained on and the latest features it scores.

PSI = Σ over bins (a − e) · ln(a / e), with ``e`` and ``a`` each bin's share of the training
and the latest rows. Bins are the training values' deciles for a numeric feature and the
values themselves for one with few distinct values (booleans, small counts) or of text
categories; missing values are a bin of their own, and so are values training never saw. The usual reading: below 0.1 stable, 0.1–0.25 a shift worth a look
(warn), 0.25 and above a shift that calls for retraining (alarm).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from marts.need_model.train import category_levels, feature_matrix

WARN = 0.1
ALARM = 0.25
BINS = 10
EPSILON = 1e-4
"""The least share a bin is taken to have, so an empty bin does not make PSI infinite."""
REFERENCE_CUTOFFS = 1
"""The latest features are compared with those of the model's latest training cut-off(s)
only: the earlier ones hold the street as the hub first knew it (weeks of door records, or
none), which the latest features would always differ from."""


def reference_cutoffs(training: Iterable[dt.date], n: int = REFERENCE_CUTOFFS) -> list[dt.date]:
    """The latest ``n`` of a model's training cut-offs: the features drift is measured from."""
    return sorted(set(training))[-n:]


def bin_edges(expected: np.ndarray, bins: int = BINS) -> np.ndarray | None:
    """Inner edges of ``expected``'s quantile bins, or None when it has at most ``bins``
    distinct values (then each value is a bin)."""
    values = expected[~np.isnan(expected)]
    distinct = np.unique(values)
    if len(distinct) <= bins:
        return None
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def bin_shares(values: np.ndarray, edges: np.ndarray | None, levels: np.ndarray) -> np.ndarray:
    """Each bin's share of ``values``, the missing-value bin last."""
    missing = np.isnan(values)
    present = values[~missing]
    if edges is None:
        counts = np.array([(present == v).sum() for v in levels], dtype=float)
        counts = np.append(counts, (~np.isin(present, levels)).sum())  # values never trained on
    else:
        counts = np.bincount(
            np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1
        )
    counts = np.append(counts.astype(float), missing.sum())
    return counts / max(len(values), 1)


def population_stability_index(
    expected: np.ndarray, actual: np.ndarray, bins: int = BINS, categorical: bool = False
) -> float:
    """PSI of ``actual`` against ``expected`` (NaN = missing, a bin of its own);
    ``categorical``: every value a bin, however many."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    edges = None if categorical else bin_edges(e, bins)
    levels = np.unique(e[~np.isnan(e)]) if edges is None else np.array([])
    e_share = np.maximum(bin_shares(e, edges, levels), EPSILON)
    a_share = np.maximum(bin_shares(a, edges, levels), EPSILON)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def status(psi: float) -> str:
    """``ok`` below :data:`WARN`, ``warn`` below :data:`ALARM`, else ``alarm``."""
    return "ok" if psi < WARN else "warn" if psi < ALARM else "alarm"


def feature_drift(
    training: pl.DataFrame, latest: pl.DataFrame, columns: Sequence[str]
) -> pl.DataFrame:
    """One row per feature column: ``feature``, ``psi``, ``status``; the largest PSI first."""
    rows = []
    categories = category_levels(training, columns)
    for column in columns:
        e, a = (  # PSI's bins over the values as they are
            feature_matrix(f, [column], categories, np.float64)[:, 0].copy()
            for f in (training, latest)
        )
        if column in categories:  # a value training never saw: a bin of its own, not missing
            unseen = latest[column].is_not_null().to_numpy() & np.isnan(a)
            a[unseen] = -1.0
        psi = population_stability_index(e, a, categorical=column in categories)
        rows.append({"feature": column, "psi": psi, "status": status(psi)})
    schema = {"feature": pl.String, "psi": pl.Float64, "status": pl.String}
    return pl.DataFrame(rows, schema=schema).sort("psi", descending=True)
