"""Fairness: the table counted per group with numpy equals, value for value, the one fairlearn's
``MetricFrame`` made with sklearn's metrics (the old computation, kept here as the reference):
several group kinds, a group of one resident, a group with one class only, a group nobody in
was selected, missing groups and labels, Chinese and Latin group names, tied scores."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from marts.need_model.fairness import FIGURES, FLAG_SHARE, OVERALL, fairness_table
from marts.need_model.spec import KEYS


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


def metric_frame_table(
    scored: pl.DataFrame,
    groups: pl.DataFrame,
    needs: Sequence[str],
    kinds: Sequence[str],
    flag_share: float = FLAG_SHARE,
) -> pl.DataFrame:
    """The table as fairness_table made it with fairlearn's MetricFrame (before the per-group
    counting)."""
    from fairlearn.metrics import MetricFrame

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


def street(people: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scores of two needs and three group kinds with the awkward groups named above."""
    rng = np.random.default_rng(seed)
    keys = {
        "person_id": [f"p{i:05d}" for i in range(people)],
        "cutoff": [dt.date(2025, 6, 30)] * people,
    }
    score = rng.random(people)
    scored = pl.DataFrame(
        keys
        | {
            "home_care": rng.random(people) < score * 0.4,
            # rounded scores: many ties, also at the threshold
            "home_care_score": np.round(score, 2),
            "health_event": pl.Series(rng.random(people) < 0.1).scatter([3, 9], None),
            "health_event_score": rng.random(people),
        }
    )
    gender = rng.choice(["男", "女"], people).astype(object)
    gender[[5, 17]] = None  # missing: the 未知 group
    age = rng.choice(["18-59", "60-79", "80+"], people).astype(object)
    age[0] = "100+"  # a group of one
    kind = rng.choice(["registered", "migrant", "流动"], people, p=[0.6, 0.3, 0.1]).astype(object)
    # a group whose residents are all negatives and scored low: no positives, nobody selected
    low = np.flatnonzero(score < 0.05)[:6]
    kind[low] = "quiet"
    scored = scored.with_columns(
        pl.when(pl.int_range(people).is_in(low))
        .then(False)
        .otherwise(pl.col("health_event"))
        .alias("health_event"),
        pl.when(pl.int_range(people).is_in(low))
        .then(0.0)
        .otherwise(pl.col("health_event_score"))
        .alias("health_event_score"),
    )
    groups = pl.DataFrame(
        keys | {"gender": gender, "age_band": age, "resident_type": kind},
        schema_overrides={"gender": pl.String, "age_band": pl.String, "resident_type": pl.String},
    )
    return scored, groups


@pytest.mark.parametrize(("people", "seed", "share"), [(600, 1, FLAG_SHARE), (97, 2, 0.3)])
def test_per_group_counting_equals_metric_frame(people, seed, share):
    scored, groups = street(people, seed)
    needs, kinds = ["home_care", "health_event"], ["gender", "age_band", "resident_type"]
    expected = metric_frame_table(scored, groups, needs, kinds, flag_share=share)
    table = fairness_table(scored, groups, needs, kinds=kinds, flag_share=share)
    assert_frame_equal(table, expected, check_exact=True)
    # the awkward groups are there, with their undefined figures null
    quiet = table.filter((pl.col("group") == "quiet") & (pl.col("need") == "health_event"))
    assert quiet["positives"][0] == 0 and quiet["recall"][0] is None
    assert quiet["precision"][0] is None and quiet["pr_auc"][0] is None
    assert {"未知", "100+"} <= set(table["group"])
    assert table.filter(pl.col("group") == "100+")["n"].to_list() == [1, 1]
