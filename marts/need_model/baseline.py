"""The rule a street uses today (现行规则): visit residents aged 80 or over who live alone. The
need models are compared against it in the same backtest, on the same features.

The rule gives a flag, not a ranking: its score is 1 for a flagged resident and 0 for every
other, so its PR-AUC (average precision) is the precision of the flagged set times its
recall, plus the base rate over the residents it leaves out.
"""

from __future__ import annotations

import numpy as np
import polars as pl

RULE_AGE = 80
"""The rule's age: residents this old or older."""

AGE_COLUMN = "age"
"""The features frame's column of age in years at the cut-off."""

ALONE_COLUMN = "living_alone"
"""The features frame's column saying the resident lives alone."""


def rule_flag(
    age_column: str = AGE_COLUMN, alone_column: str = ALONE_COLUMN, min_age: int = RULE_AGE
) -> pl.Expr:
    """The rule as a polars expression over the features frame (missing values: not flagged)."""
    return ((pl.col(age_column) >= min_age) & pl.col(alone_column).cast(pl.Boolean)).fill_null(
        False
    )


def rule_columns(flag: pl.Expr | None = None) -> list[str]:
    """The features frame's columns the rule (``flag``, by default :func:`rule_flag`) reads."""
    return (rule_flag() if flag is None else flag).meta.root_names()


def rule_scores(features: pl.DataFrame, flag: pl.Expr | None = None) -> np.ndarray:
    """1.0 for each row the rule (``flag``, by default :func:`rule_flag`) flags, 0.0 for every
    other, in the frame's row order."""
    flag = rule_flag() if flag is None else flag
    missing = [c for c in rule_columns(flag) if c not in features.columns]
    if missing:
        raise KeyError(f"the rule needs feature columns {missing}")
    return features.select(flag.cast(pl.Float64)).to_series().to_numpy()
