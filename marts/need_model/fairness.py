"""Fairness (公平性) of the need scores: the same metrics per group of residents — gender,
registered vs migrant (户籍/流动), age band: the features frame's fairness groups, which are
never model inputs (features.yaml) — with fairlearn's ``MetricFrame``, kept with the model (the registry stores the frame; Dagster shows it as metadata).

A score is advice to visit: a resident counts as *selected* when the need's score is within
the top :data:`FLAG_SHARE` of the scored residents (one threshold for everyone, set on all
rows). Per group: its size, positives, selection rate, recall, precision, and PR-AUC where
the group has a positive (null where a figure is undefined: recall and PR-AUC of a group
without positives, precision of a group nobody in was selected).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
import polars as pl

from marts.need_model.features import load_feature_set
from marts.need_model.spec import KEYS

FLAG_SHARE = 0.1
"""Share of residents a worklist at the fairness threshold would flag."""

OVERALL = "overall"

FIGURES = ("n", "positives", "selection_rate", "recall", "precision", "pr_auc")


def _selected(scores: np.ndarray, threshold: float) -> np.ndarray:
    return np.asarray(scores) >= threshold


def _metrics(threshold: float) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    from sklearn.metrics import average_precision_score, precision_score, recall_score

    sel = partial(_selected, threshold=threshold)

    def pr_auc(y: np.ndarray, s: np.ndarray) -> float:
        y = np.asarray(y, dtype=bool)
        return float(average_precision_score(y, s)) if y.any() else float("nan")

    return {
        "n": lambda y, s: float(len(y)),
        "positives": lambda y, s: float(np.asarray(y, dtype=bool).sum()),
        "selection_rate": lambda y, s: float(sel(s).mean()) if len(s) else float("nan"),
        "recall": lambda y, s: float(recall_score(y, sel(s), zero_division=np.nan)),
        "precision": lambda y, s: float(precision_score(y, sel(s), zero_division=np.nan)),
        "pr_auc": pr_auc,
    }


def fairness_table(
    scored: pl.DataFrame,
    groups: pl.DataFrame,
    needs: Sequence[str],
    kinds: Sequence[str] | None = None,
    flag_share: float = FLAG_SHARE,
) -> pl.DataFrame:
    """Per need, group kind and group: :data:`FIGURES` (and ``threshold``), plus one
    ``overall`` row per need and kind.

    ``scored``: keys, each need's label (``<need>``) and score (``<need>_score``) — the
    backtest's predictions; ``groups``: keys and the ``kinds`` columns (by default the
    fairness groups of features.yaml: the features frame has them)."""
    from fairlearn.metrics import MetricFrame  # fairlearn, sklearn: where used (~1 s)

    kinds = list(kinds or load_feature_set().groups)
    frame = scored.join(groups.select(*KEYS, *kinds), on=list(KEYS), how="inner")
    parts: list[pl.DataFrame] = []
    for need in needs:
        y = frame[need].cast(pl.Boolean).fill_null(False).to_numpy()
        s = frame[f"{need}_score"].to_numpy()
        threshold = float(np.quantile(s, 1 - flag_share))
        for kind in kinds:
            sensitive = frame[kind].cast(pl.String).fill_null("未知").to_numpy()
            mf = MetricFrame(
                metrics=_metrics(threshold), y_true=y, y_pred=s, sensitive_features=sensitive
            )
            by_group = pl.from_pandas(mf.by_group.reset_index()).rename(
                {mf.by_group.index.name or "sensitive_feature_0": "group"}
            )
            overall = pl.DataFrame([{"group": OVERALL} | dict(mf.overall.items())])
            parts.append(
                pl.concat([overall, by_group], how="diagonal_relaxed").select(
                    pl.lit(need).alias("need"),
                    pl.lit(kind).alias("group_kind"),
                    pl.col("group").cast(pl.String),
                    pl.col("n", "positives").cast(pl.Int64),
                    *(pl.col(f).cast(pl.Float64).fill_nan(None) for f in FIGURES[2:]),
                    pl.lit(threshold).alias("threshold"),
                )
            )
    return pl.concat(parts)


def group_metrics(table: pl.DataFrame) -> Mapping[str, float]:
    """The largest gap between groups per need, kind and figure (``<need>.<kind>.<figure>_gap``)
    where two groups or more have the figure — the numbers a registry logs beside the table."""
    gaps = (
        table.filter(pl.col("group") != OVERALL)
        .group_by("need", "group_kind")
        .agg(
            *(
                pl.when(pl.col(f).count() >= 2).then(pl.col(f).max() - pl.col(f).min()).alias(f)
                for f in ("selection_rate", "recall", "precision")
            )
        )
    )
    return {
        f"{r['need']}.{r['group_kind']}.{f}_gap": float(r[f])
        for r in gaps.iter_rows(named=True)
        for f in ("selection_rate", "recall", "precision")
        if r[f] is not None
    }
