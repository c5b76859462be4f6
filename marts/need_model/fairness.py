"""Fairness (公平性) of the need scores: the same metrics per group of residents — gender,
registered vs migrant (户籍/流动), age band: the features frame's fairness groups, which are
never model inputs (features.yaml) — the figures fairlearn's ``MetricFrame`` gave, counted per
group with numpy and sklearn; kept with the model (the registry stores the frame; Dagster
shows it as metadata).

A score is advice to visit: a resident counts as *selected* when the need's score is within
the top :data:`FLAG_SHARE` of the scored residents (one threshold for everyone, set on all
rows). Per group: its size, positives, selection rate, recall, precision, and PR-AUC where
the group has a positive (null where a figure is undefined: recall and PR-AUC of a group
without positives, precision of a group nobody in was selected).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from marts.need_model.features import load_feature_set
from marts.need_model.metrics import average_precision
from marts.need_model.spec import KEYS

FLAG_SHARE = 0.1
"""Share of residents a worklist at the fairness threshold would flag."""

OVERALL = "overall"

FIGURES = ("n", "positives", "selection_rate", "recall", "precision", "pr_auc")


def _figures(y: np.ndarray, s: np.ndarray, selected: np.ndarray) -> tuple[float, ...]:
    """:data:`FIGURES` of one group's labels ``y`` (bool), scores ``s`` and ``selected`` rows —
    the ratios as sklearn's recall and precision (zero_division NaN) and a bool mean give
    them: a count divided by a count, correctly rounded either way."""
    n, positives = len(y), int(np.count_nonzero(y))
    flagged, hits = int(np.count_nonzero(selected)), int(np.count_nonzero(y & selected))
    nan = float("nan")
    return (
        float(n),
        float(positives),
        flagged / n if n else nan,
        hits / positives if positives else nan,
        hits / flagged if flagged else nan,
        average_precision(y, s),  # NaN without positives
    )


def with_groups(scored: pl.DataFrame, groups: pl.DataFrame, kinds: Sequence[str]) -> pl.DataFrame:
    """``scored``'s rows with their ``kinds`` from ``groups`` (the rows whose keys both
    have): side by side where ``groups`` holds ``scored``'s keys in its order (the groups
    the need model's step reads for its backtest do), else joined on the keys. The join's
    hash table on the text keys was most of the fairness table's memory: 177 MB against 1 MB
    side by side, with 517,193 rows at 200,000 residents."""
    keys = list(KEYS)
    if groups.height == scored.height and groups.select(keys).equals(scored.select(keys)):
        return pl.concat([scored, groups.select(kinds)], how="horizontal")
    return scored.join(groups.select(*keys, *kinds), on=keys, how="inner")


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
    fairness groups of features.yaml: the features frame has them). The rows are grouped
    once per kind (groups in sorted order, each group's rows in the frame's order, as
    fairlearn's ``MetricFrame`` had them: it handed the metrics a row at a time in Python,
    ~49 s at 200,000 residents; tests compare with it)."""
    kinds = list(kinds or load_feature_set().groups)
    frame = with_groups(scored, groups, kinds)
    slices: dict[str, tuple[list[str], list[np.ndarray]]] = {}
    for kind in kinds:
        sensitive = frame[kind].cast(pl.String).fill_null("未知")
        names = sensitive.unique().sort()
        codes = sensitive.cast(pl.Enum(names)).to_physical().to_numpy()
        order = np.argsort(codes, kind="stable")
        bounds = np.cumsum(np.bincount(codes, minlength=len(names)))[:-1]
        slices[kind] = (names.to_list(), np.split(order, bounds))
    rows: list[tuple] = []
    for need in needs:
        y = frame[need].cast(pl.Boolean).fill_null(False).to_numpy()
        s = frame[f"{need}_score"].to_numpy()
        threshold = float(np.quantile(s, 1 - flag_share))
        selected = s >= threshold
        overall = _figures(y, s, selected)
        for kind, (names, members) in slices.items():
            rows.append((need, kind, OVERALL, *overall, threshold))
            rows.extend(
                (need, kind, name, *_figures(y[i], s[i], selected[i]), threshold)
                for name, i in zip(names, members, strict=True)
            )
    return pl.DataFrame(
        rows,
        schema=[
            ("need", pl.String),
            ("group_kind", pl.String),
            ("group", pl.String),
            *((f, pl.Float64) for f in FIGURES),
            ("threshold", pl.Float64),
        ],
        orient="row",
    ).with_columns(
        pl.col("n", "positives").cast(pl.Int64),
        *(pl.col(f).fill_nan(None) for f in FIGURES[2:]),
    )


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
