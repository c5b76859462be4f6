"""Small synthetic frames for the need model's tests, shaped as :mod:`marts.need_model.spec`
says, with a known signal: each need's true probability rises with a drop in door activity,
chronic disease and past appeals — signals the street's rule (80+ and living alone) does not
see — and with living in an old estate (a text category), so a model must beat the rule on
them; grid appeals are Poisson around a cell level and
a season, so a model must beat last week's count."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from marts.need_model.spec import GRID_COUNT, GRID_KEYS, NEEDS

INPUTS = ["age", "living_alone", "chronic", "access_drop", "past_appeals", "housing", "noise"]
"""The synthetic features the models take as inputs."""

WEIGHTS = {
    # need: (intercept, age≥80 & alone, chronic, access_drop, past_appeals)
    "home_care": (-3.8, 0.3, 0.4, 3.0, 0.1),
    "health_event": (-3.8, 0.3, 1.6, 2.0, 0.0),
    "financial_assistance": (-4.0, 0.2, 0.3, 0.8, 1.3),
    "emergency_help": (-3.7, 0.3, 0.8, 2.6, 0.2),
}


def need_frames(
    people: int = 400, cutoffs: int = 6, seed: int = 1
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(features, labels, truth) for ``people`` residents at ``cutoffs`` month-ends of 2025;
    truth holds each need's true probability."""
    rng = np.random.default_rng(seed)
    age0 = rng.integers(18, 96, people)
    alone = rng.random(people) < np.where(age0 >= 70, 0.45, 0.1)
    chronic = rng.random(people) < np.where(age0 >= 60, 0.5, 0.1)
    gender = rng.choice(["男", "女"], people)
    resident_type = np.where(rng.random(people) < 0.3, "migrant", "registered")
    housing = rng.choice(["商品房", "公租房", "老旧小区"], people, p=[0.6, 0.2, 0.2])
    frames, labels, truth = [], [], []
    for k in range(cutoffs):
        cutoff = dt.date(2025, 1, 31) + dt.timedelta(days=30 * k)
        drop = np.clip(rng.beta(1.2, 6.0, people), 0, 1)
        appeals = rng.poisson(0.5, people)
        features = pl.DataFrame(
            {
                "person_id": [f"p{i:05d}" for i in range(people)],
                "cutoff": [cutoff] * people,
                "age": age0 + k // 12,
                "living_alone": alone,
                "chronic": chronic,
                "access_drop": drop,
                "past_appeals": appeals,
                "housing": housing,
                "noise": rng.normal(size=people),
                "gender": gender,
                "resident_type": resident_type,
            }
        ).with_columns(
            age_band=pl.when(pl.col("age") >= 80)
            .then(pl.lit("80+"))
            .when(pl.col("age") >= 60)
            .then(pl.lit("60-79"))
            .otherwise(pl.lit("0-59"))
        )
        rule = (age0 >= 80) & alone
        probs = {}
        for need, (b0, b_rule, b_chronic, b_drop, b_appeals) in WEIGHTS.items():
            z = b0 + b_rule * rule + b_chronic * chronic + b_drop * drop * 3 + b_appeals * appeals
            z = z + 0.8 * (housing == "老旧小区")
            probs[need] = 1 / (1 + np.exp(-z))
        frames.append(features)
        truth.append(features.select("person_id", "cutoff").with_columns(**probs))
        labels.append(
            features.select("person_id", "cutoff").with_columns(
                **{n: rng.random(people) < probs[n] for n in NEEDS}
            )
        )
    return pl.concat(frames), pl.concat(labels), pl.concat(truth)


def grid_counts(
    cells: int = 6, categories: int = 3, weeks: int = 70, seed: int = 2
) -> pl.DataFrame:
    """Appeals per cell × category × week (Mondays from 2024-01-01): Poisson with a cell and
    category level and a yearly season; rows with no appeal are left out, as a count of
    recorded appeals would."""
    rng = np.random.default_rng(seed)
    rows = []
    start = dt.date(2024, 1, 1)
    for c in range(cells):
        for g in range(categories):
            level = rng.uniform(0.3, 4.0)
            for w in range(weeks):
                season = 1 + 0.5 * np.sin(2 * np.pi * w / 52)
                n = int(rng.poisson(level * season))
                if n:
                    rows.append((f"G{c:02d}", f"cat{g}", start + dt.timedelta(weeks=w), n))
    return pl.DataFrame(rows, schema=[*GRID_KEYS, GRID_COUNT], orient="row")
