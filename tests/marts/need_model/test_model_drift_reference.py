"""Drift against the latest training cut-off: the early cut-offs of a street's history (a
door feature the hub could not compute yet: missing) make a stable street look shifted when
pooled into the reference; against the latest training cut-off it is stable, and a feature
that really moved still warns."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from marts.need_model.drift import REFERENCE_CUTOFFS, WARN, feature_drift, reference_cutoffs

CUTOFFS = [dt.date(2026, m, 1) for m in range(1, 9)]
N = 1500


def cutoff_rows(rng: np.random.Generator, cutoff: dt.date, door_known: bool, shift: float = 0.0):
    door = rng.normal(shift, 1.0, N)
    return pl.DataFrame(
        {
            "cutoff": [cutoff] * N,
            "door_decline_pct": door if door_known else [None] * N,
            "age": rng.normal(60, 15, N),
        },
        schema_overrides={"door_decline_pct": pl.Float64},
    )


def test_stable_against_the_latest_training_cutoff_and_a_shift_still_warns():
    rng = np.random.default_rng(16)
    # door history began in the 4th month: the first three cut-offs have none
    training = pl.concat([cutoff_rows(rng, c, door_known=i >= 3) for i, c in enumerate(CUTOFFS)])
    latest = cutoff_rows(rng, dt.date(2026, 11, 30), door_known=True)
    columns = ["door_decline_pct", "age"]

    pooled = feature_drift(training, latest, columns)
    assert pooled.filter(pl.col("feature") == "door_decline_pct")["psi"][0] >= WARN

    assert reference_cutoffs(reversed(CUTOFFS)) == CUTOFFS[-REFERENCE_CUTOFFS:]
    reference = training.filter(pl.col("cutoff").is_in(reference_cutoffs(CUTOFFS)))
    stable = feature_drift(reference, latest, columns)
    assert (stable["psi"] < WARN).all(), stable

    moved = cutoff_rows(rng, dt.date(2026, 11, 30), door_known=True, shift=0.6)
    shifted = feature_drift(reference, moved, columns)
    assert shifted.filter(pl.col("psi") >= WARN)["feature"].to_list() == ["door_decline_pct"]
