"""The need models: deterministic training, save/load, the time split, and a backtest that
beats the street's rule on synthetic data where the rule cannot see the signal."""

from __future__ import annotations

import datetime as dt
from functools import partial

import numpy as np
import polars as pl
import pytest

from marts.need_model.backtest import (
    GOAL_RATIO,
    backtest,
    backtest_cutoffs,
    backtest_rows,
    training_cutoffs,
)
from marts.need_model.baseline import rule_scores
from marts.need_model.spec import HORIZON_DAYS, KEYS, NEEDS
from marts.need_model.train import (
    MATRIX_DTYPE,
    ROWS_ORDER,
    RULE_SCORE,
    NeedModels,
    TrainingRows,
    category_levels,
    feature_matrix,
    in_rows_order,
    stacked_rows,
    train_booster,
    train_need_models,
    train_rows,
    training_frame,
    training_rows,
)
from tests.marts.need_model.synthetic import INPUTS, need_frames

ROUNDS = 40
SMALL = {"min_data_in_leaf": 20}  # leaves of the default size hold 400 residents' rows whole


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return need_frames(people=400, cutoffs=6, seed=1)


@pytest.fixture(scope="module")
def result(frames):
    features, labels, truth = frames
    return backtest(features, labels, INPUTS, truth=truth, num_rounds=ROUNDS, params=SMALL)


def test_training_is_deterministic_and_survives_save_and_load(frames, tmp_path):
    features, labels, _ = frames
    a = train_need_models(features, labels, INPUTS, num_rounds=ROUNDS, calibration="isotonic")
    b = train_need_models(features, labels, INPUTS, num_rounds=ROUNDS, calibration="isotonic")
    assert a.to_dict() == b.to_dict()
    loaded = NeedModels.load(a.save(tmp_path / "models.json"))
    predicted = a.predict(features)
    assert predicted.columns == [*KEYS, *NEEDS]
    assert predicted.equals(loaded.predict(features))
    assert loaded.trained_on["positives"] == {n: int(labels[n].sum()) for n in NEEDS}
    other = train_need_models(
        features, labels, INPUTS, num_rounds=ROUNDS, calibration="isotonic", seed=99
    )  # another seed holds other residents out for the calibrator
    assert not other.predict(features).equals(predicted)


def test_probabilities_are_probabilities_in_row_order(frames):
    features, labels, _ = frames
    models = train_need_models(features, labels, INPUTS, num_rounds=ROUNDS)
    shuffled = features.sample(fraction=1.0, shuffle=True, seed=3)
    predicted = models.predict(shuffled)
    assert predicted.select(KEYS).equals(shuffled.select(KEYS))
    values = predicted.select(list(NEEDS)).to_numpy()
    assert ((values > 0) & (values < 1)).all()


def test_a_load_refuses_a_file_of_another_kind(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="format"):
        NeedModels.load(path)


def test_missing_input_column_is_named(frames):
    features, labels, _ = frames
    with pytest.raises(KeyError, match="noise"):
        train_need_models(features.drop("noise"), labels, INPUTS, num_rounds=ROUNDS)


def test_the_rule_flags_80_and_over_living_alone():
    frame = pl.DataFrame(
        {"age": [79, 80, 95, None, 85], "living_alone": [True, True, False, True, None]}
    )
    assert rule_scores(frame).tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]


def test_time_split_trains_only_on_cutoffs_whose_labels_were_known():
    cutoffs = [dt.date(2025, 1, 1) + dt.timedelta(days=30 * k) for k in range(6)]
    test = cutoffs[4]
    train = training_cutoffs(cutoffs, test, HORIZON_DAYS)
    assert train and all(c + dt.timedelta(days=HORIZON_DAYS) <= test for c in train)
    assert cutoffs[2] not in train  # 60 days before: its 90-day labels were not complete
    assert backtest_cutoffs(cutoffs, HORIZON_DAYS, last=2) == cutoffs[-2:]
    assert cutoffs[0] not in backtest_cutoffs(cutoffs, HORIZON_DAYS)


def test_backtest_beats_the_rule_and_stays_under_the_ceiling(result):
    needs = result.needs
    assert needs["need"].to_list() == list(NEEDS)
    assert all(result.met_goal().values())
    assert (needs["ratio"] >= GOAL_RATIO).all()
    # the true probabilities rank best: no model beats its ceiling by more than noise
    assert (needs["pr_auc_ceiling"] > needs["pr_auc_model"]).all()
    assert (needs["ece"] < 0.1).all()
    by_cutoff = result.by_cutoff
    assert by_cutoff["cutoff"].n_unique() == needs["cutoffs"][0] == 3
    assert (by_cutoff["train_cutoffs"] >= 1).all()
    assert result.predictions.height == needs["rows"][0]


def test_backtest_prints_a_table_of_every_need(result):
    text = str(result)
    for need, label in NEEDS.items():
        assert need in text and label in text
    assert "PR-AUC" in text and "ceiling" in text and "ECE" in text and "reliability" in text


def test_backtest_without_two_cutoffs_far_enough_apart_says_so(frames):
    features, labels, _ = frames
    near = features.filter(pl.col("cutoff") <= pl.col("cutoff").min() + dt.timedelta(days=60))
    with pytest.raises(ValueError, match="90 days"):
        backtest(near, labels, INPUTS, num_rounds=ROUNDS)


def test_reliability_curve_counts_every_test_row(result):
    for need in NEEDS:
        curve = result.reliability.filter(pl.col("need") == need)
        assert curve["n"].sum() == result.predictions.height
        assert np.all(np.diff(curve["bin_low"].to_numpy()) > 0)


def test_a_text_category_is_an_input_and_an_unseen_value_is_missing(frames):
    features, labels, _ = frames
    models = train_need_models(features, labels, INPUTS, num_rounds=ROUNDS)
    assert models.categories["housing"] == sorted(features["housing"].unique().to_list())
    old = features.head(50).with_columns(pl.lit("老旧小区").alias("housing"))
    new = old.with_columns(pl.lit("商品房").alias("housing"))
    # living in an old estate raises every need in the synthetic street
    raised = models.predict(old)["home_care"] > models.predict(new)["home_care"]
    assert raised.mean() > 0.8
    unseen = models.predict(old.with_columns(pl.lit("人才公寓").alias("housing")))
    assert unseen.select(list(NEEDS)).null_count().sum_horizontal()[0] == 0


def test_backtest_scores_the_rows_the_whole_join_holds(frames, result):
    """The backtest joins each test cut-off's rows alone (memory): the rows it scored, their
    order and labels, are those of the whole features-labels join at the test cut-offs (the
    old path), and a model trained beside other columns is the one trained on the inputs."""
    features, labels, _ = frames
    tests = result.by_cutoff["cutoff"].unique().implode()
    whole = training_frame(features, labels).filter(pl.col("cutoff").is_in(tests))
    expected = whole.select(*KEYS, *(pl.col(n).cast(pl.Boolean).fill_null(False) for n in NEEDS))
    assert result.predictions.height > 0
    assert result.predictions.select(expected.columns).equals(expected)
    wider = features.with_columns(pl.lit("a context column").alias("context"))
    a = train_need_models(wider, labels, INPUTS, num_rounds=ROUNDS, params=SMALL)
    b = train_need_models(features.select(*KEYS, *INPUTS), labels, INPUTS, num_rounds=ROUNDS,
                          params=SMALL)  # fmt: skip
    assert a.to_dict() == b.to_dict()


def test_one_binned_set_relabelled_per_need_gives_the_boosters_of_a_set_each(frames):
    """:func:`train_rows` bins the matrix once for every need and relabels it per need:
    each need's booster is the one a set binned for it alone gives (:func:`train_booster`)."""
    features, labels, _ = frames
    data = training_rows(features, labels, INPUTS)
    models = train_rows(data, num_rounds=ROUNDS, params=SMALL)
    for need in NEEDS:
        y = data.rows[need].cast(pl.Float64).fill_null(0.0).to_numpy()
        alone = train_booster(data.matrix, y, INPUTS, num_rounds=ROUNDS, params=SMALL,
                              categorical=list(data.categories))  # fmt: skip
        assert models.boosters[need].model_to_string() == alone.model_to_string(), need


def test_rows_released_once_binned_give_the_same_boosters_and_hold_no_matrix(frames):
    """``release``: the caller's rows (a backtest's fold) let their matrix go once LightGBM
    has binned it; the boosters are those of rows kept (with calibration nothing is let go:
    the calibrator reads the matrix)."""
    features, labels, _ = frames
    kept = training_rows(features, labels, INPUTS)
    released = training_rows(features, labels, INPUTS)
    a = train_rows(kept, num_rounds=ROUNDS, params=SMALL)
    b = train_rows(released, num_rounds=ROUNDS, params=SMALL, release=True)
    assert a.to_dict() == b.to_dict()
    assert kept.matrix.shape[0] == kept.rows.height > 0 and released.matrix.size == 0
    calibrated = training_rows(features, labels, INPUTS)
    train_rows(calibrated, num_rounds=ROUNDS, params=SMALL, calibration="isotonic", release=True)
    assert calibrated.matrix.shape[0] == calibrated.rows.height


def test_float32_inputs_give_the_scores_of_float64_inputs(frames):
    """The matrix is float32 (:data:`MATRIX_DTYPE`): LightGBM bins its values as it bins the
    float64 ones, so each need's booster splits the same rows into the same leaves and scores
    every row the same, from either matrix; only its thresholds move with the rounding."""
    features, labels, _ = frames
    frame = training_frame(features, labels)
    categories = category_levels(frame, INPUTS)
    narrow = feature_matrix(frame, INPUTS, categories)
    wide = feature_matrix(frame, INPUTS, categories, np.float64)
    assert narrow.dtype == MATRIX_DTYPE == training_rows(features, labels, INPUTS).matrix.dtype
    assert not np.array_equal(narrow, wide, equal_nan=True)  # some inputs are rounded
    for need in NEEDS:
        y = frame[need].cast(pl.Float64).to_numpy()
        fit = partial(train_booster, y=y, inputs=INPUTS, num_rounds=ROUNDS, params=SMALL,
                      categorical=list(categories))  # fmt: skip
        a, b = fit(narrow), fit(wide)
        assert a.model_to_string() != b.model_to_string()  # the thresholds
        for matrix in (narrow, wide):
            assert np.array_equal(a.predict(matrix), b.predict(wide)), need


def test_rows_stacked_a_cutoff_at_a_time_are_those_of_the_joined_frames(frames):
    """The training path (:func:`stacked_rows`: a cut-off's features at a time, no frame of
    every cut-off nor its join with the labels) gives the old path's rows, matrix and
    categories — the features joined to the labels in :data:`ROWS_ORDER`,
    :func:`feature_matrix` — so the same backtest and the same models, whether the parts
    come in that order (the feature table's: not sorted) or in any other (sorted); keys
    without labels are left out with their categories."""
    features, labels, truth = frames
    first = features["cutoff"].min()
    only = (pl.col("cutoff") == first) & (pl.col("person_id") == features["person_id"][0])
    features = features.with_columns(
        pl.when(pl.col("age") > 85).then(None).otherwise(pl.col("housing")).alias("housing")
    ).with_columns(pl.when(only).then(pl.lit("只在无标签行")).otherwise("housing").alias("housing"))
    labels = labels.filter(~only)  # its only row has no labels: its category is not a level
    ordered = features.sort(ROWS_ORDER)
    old = training_frame(ordered, labels).sort(ROWS_ORDER)
    categories = category_levels(old, INPUTS)
    cutoffs = sorted(features["cutoff"].unique().to_list())
    shuffled = [  # cut-offs newest first, each in another order: the rows come out in order
        features.filter(pl.col("cutoff") == c).sample(fraction=1.0, shuffle=True, seed=5)
        for c in reversed(cutoffs)
    ]
    in_order = [ordered.filter(pl.col("cutoff") == c) for c in cutoffs]
    assert not in_rows_order(pl.concat(shuffled)) and in_rows_order(pl.concat(in_order))
    asked: list[pl.DataFrame] = []
    new = stacked_rows(iter(shuffled), features.height, INPUTS,
                       lambda keys: asked.append(keys) or labels, rule=True)  # fmt: skip
    assert len(asked) == len(shuffled) and pl.concat(asked).sort(KEYS).equals(
        ordered.sort(KEYS).select(KEYS)
    )
    came = stacked_rows(iter(in_order), features.height, INPUTS, lambda keys: labels, rule=True)
    assert "只在无标签行" not in new.categories["housing"] and new.categories == categories
    assert came.categories == categories
    for stacked in (new, came):
        assert np.array_equal(
            stacked.matrix, feature_matrix(old, INPUTS, categories), equal_nan=True
        )
        assert stacked.rows.select(*KEYS, *NEEDS).equals(old.select(*KEYS, *NEEDS))
        assert np.array_equal(stacked.rows[RULE_SCORE].to_numpy(), rule_scores(old))
    a = backtest(ordered, labels, INPUTS, truth=truth, num_rounds=ROUNDS, params=SMALL)
    b = backtest_rows(new, truth=truth, num_rounds=ROUNDS, params=SMALL)
    assert a.predictions.equals(b.predictions) and a.needs.equals(b.needs, null_equal=True)
    trained = train_need_models(ordered, labels, INPUTS, num_rounds=ROUNDS, params=SMALL)
    assert trained.to_dict() == train_rows(new, num_rounds=ROUNDS, params=SMALL).to_dict()


def test_a_folds_rows_are_views_of_the_matrix_unless_recoded(frames):
    """In :data:`ROWS_ORDER` a backtest fold's training rows (the cut-offs up to one) and its
    test rows (one cut-off) are blocks: :meth:`TrainingRows.subset` gives views of the
    matrix, no copy, which train the boosters a copy trains; rows whose categories must be
    recoded get a copy of their own, and the matrix they came from is left as it was."""
    features, labels, _ = frames
    data = training_rows(features, labels, INPUTS, rule=True)
    cutoffs = data.rows["cutoff"]
    every = sorted(cutoffs.unique().to_list())
    head = data.subset(cutoffs.is_in(every[:3]).to_numpy())
    block = data.subset((cutoffs == every[3]).to_numpy(), data.categories)
    for part in (head, block):
        assert part.matrix.flags["C_CONTIGUOUS"] and np.shares_memory(part.matrix, data.matrix)
        assert part.matrix.shape[0] == part.rows.height > 0
    assert head.rows.equals(data.rows.filter(cutoffs.is_in(every[:3])))
    copied = TrainingRows(head.rows, head.matrix.copy(), head.inputs, head.categories)
    a = train_rows(head, num_rounds=ROUNDS, params=SMALL, release=True)
    assert a.to_dict() == train_rows(copied, num_rounds=ROUNDS, params=SMALL).to_dict()
    before = data.matrix.copy()
    fewer = {"housing": data.categories["housing"][1:]}  # one level unknown: recoded
    recoded_rows = data.subset((cutoffs == every[0]).to_numpy(), fewer)
    assert not np.shares_memory(recoded_rows.matrix, data.matrix)
    assert np.isnan(recoded_rows.matrix[:, INPUTS.index("housing")]).any()
    assert np.array_equal(data.matrix, before, equal_nan=True)
