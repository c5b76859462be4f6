"""Explanations: phrases from the features file's templates, only factors that raise the
score, at most three, the strongest first."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from marts.need_model.explain import TOP, explain, load_templates, phrase, top_factors
from marts.need_model.features import load_feature_set
from marts.need_model.spec import KEYS, NEEDS
from marts.need_model.train import train_need_models
from tests.marts.need_model.synthetic import INPUTS, need_frames

TEMPLATES = {
    "age": "年龄{n}岁",
    "living_alone": "独居",
    "chronic": "患慢性病",
    "access_drop": "近30天门禁出入次数下降{pct}%",
    "past_appeals": "近期诉求{n}次",
    "housing": "房屋性质",
}  # "noise" has none: it is never said


@pytest.mark.parametrize(
    ("template", "value", "said"),
    [
        ("近30天门禁出入次数下降{pct}%", 61.6, "近30天门禁出入次数下降62%"),
        ("近30天门禁出入次数下降{pct}%", -30.0, None),  # a rise is not a decline
        ("慢病随访逾期{days}天", 14, "慢病随访逾期14天"),
        ("年龄{n}岁", 83, "年龄83岁"),
        ("近30天门禁出入{n}次", 0, "近30天门禁出入0次"),
        ("独居", True, "独居"),
        ("独居", False, None),
        ("独居", None, None),
        ("近30天门禁出入{n}次", float("nan"), None),
        ("房屋性质", "公租房", "房屋性质：公租房"),
    ],
)
def test_phrase(template, value, said):
    assert phrase(template, value) == said


def test_only_factors_that_raise_the_score_and_have_a_phrase():
    inputs = ["a", "b", "c", "d", "e"]
    templates = {"a": "A{n}", "b": "B", "c": "C", "e": "E"}
    contributions = np.array([0.5, 0.9, -0.2, 2.0, 0.1])
    values = [3, False, True, True, True]
    # d has no template, b is a false condition, c pulls the score down
    assert top_factors(contributions, values, inputs, templates) == (["A3", "E"], ["a", "e"])
    assert top_factors(contributions, values, inputs, templates, top=1) == (["A3"], ["a"])


def test_explain_gives_each_score_its_top_phrases():
    features, labels, _ = need_frames(people=300, cutoffs=2, seed=6)
    models = train_need_models(features, labels, INPUTS, num_rounds=30)
    frame = explain(models, features, TEMPLATES)
    assert frame.height == features.height * len(NEEDS)
    assert frame.columns == [*KEYS, "need", "score", "factors", "factor_features"]
    assert frame["factors"].list.len().max() == TOP
    said = set(frame["factor_features"].explode().drop_nulls().to_list())
    assert "noise" not in said and "access_drop" in said
    # the steepest door-activity drops are explained by it, in the words of the template
    steep = features.sort("access_drop", descending=True).head(5).select(KEYS)
    home = frame.filter(pl.col("need") == "home_care").join(steep, on=list(KEYS))
    for factors in home["factors"].to_list():
        assert any(f.startswith("近30天门禁出入次数下降") for f in factors)
    scores = models.predict(features)
    assert frame.filter(pl.col("need") == "home_care")["score"].equals(
        scores["home_care"].alias("score")
    )


def test_every_model_input_of_the_features_file_has_a_phrase():
    feature_set = load_feature_set()
    templates = load_templates()
    assert templates["living_alone"] == "独居"
    assert all(templates.get(name) for name in feature_set.inputs)


def test_explained_in_batches_as_in_one():
    """explain works a batch of rows at a time (memory): the frame equals the one made of every
    row at once (the old path), each need's rows together in the frame's order."""
    features, labels, _ = need_frames(people=120, cutoffs=2, seed=7)
    models = train_need_models(features, labels, INPUTS, num_rounds=20)
    whole = explain(models, features, TEMPLATES, batch=features.height)
    batched = explain(models, features, TEMPLATES, batch=37)  # the last batch a short one
    assert features.height % 37 and whole["factors"].list.len().sum() > 0
    assert batched.equals(whole)
    assert whole["need"].to_list() == [n for n in models.needs for _ in range(features.height)]
