"""Training the need models (需求预测模型): one LightGBM binary classifier per need over the
features frame joined to the labels frame (:mod:`marts.need_model.spec`), deterministic (a
fixed seed, LightGBM's deterministic mode, one thread: on a busy machine
OpenMP threads wait on each other far longer than the small frames take).

The trained set is one :class:`NeedModels`: ``predict(features)`` gives one probability
column per need beside the frame's keys; ``save(path)`` writes it as one JSON text file (each
booster as LightGBM's own model text, each calibrator as numbers — nothing pickled), which
``NeedModels.load(path)`` reads back to the same predictions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import polars as pl

from marts.need_model.baseline import rule_scores
from marts.need_model.booster_doc import booster_document, booster_text
from marts.need_model.calibration import Calibrator, Method, fit_calibrator
from marts.need_model.metrics import lightgbm
from marts.need_model.spec import KEYS, NEEDS
from masking.crypto import copied_columns

if TYPE_CHECKING:  # LightGBM where it is used (metrics.lightgbm)
    import lightgbm as lgb

FORMAT = "streethub-need-models/1"
"""The saved file's format tag, checked on load."""

SEED = 16
"""The default seed of training and of the calibration slice."""

NUM_ROUNDS = 200
"""Boosting rounds of each need's model."""

PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 3,
    "min_data_in_leaf": 100,
    "lambda_l2": 10.0,
    "feature_fraction": 0.7,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
"""LightGBM parameters of every need's model (``seed`` is added from the call): shallow trees
on large leaves — a need is rare (1-2 % of residents in 90 days) and each resident recurs at
every cut-off, so deeper trees learn residents, not needs. On a 2,000-resident street with a
year of history (14 monthly cut-offs, backtest over the latest 3) 15-leaf trees of 20 rows
scored PR-AUC 0.07 / 0.11 / 0.01 / 0.04 against 0.14 / 0.20 / 0.02 / 0.05 for 3-leaf trees.

Leaves of 100 rows with a stronger L2 penalty (10) and 70 % of the inputs a tree were chosen by
time-split validation, never on the backtest's test cut-offs: on two need streets (2,000
residents seed 16, 5,000 seed 7) each backtested at the three cut-offs before its test
cut-offs (whose labels complete before the first test cut-off), against leaves of 200 rows,
L2 1, every input: the model's PR-AUC over the rule's, geometric mean over the 4 needs and 2
streets, 2.86x -> 3.09x (leaves of 50: 3.11x, of 200 with the rest: 2.92x; 7 leaves, 400 or
100 rounds, bagging, positive-class weight 5: none better)."""

MATRIX_DTYPE = np.float32
"""The inputs' matrix's floats. Every input but three (door_baseline_per_day,
door_decline_vs_street, appeals_90d_vs_grid) is a count, a flag or a category code, exact in
float32; those three are rounded to float32's 24 bits. LightGBM bins a float32 matrix as it
bins the same values in float64 (adjacent values stay apart, in the same order): the same
trees, leaves and scores; only the thresholds it writes, midpoints of adjacent values, move
by that rounding (at 200,000 residents the scores, their explanations, the backtest's
figures and the fairness table came out identical to float64's). Half the memory of
float64: there (777,000 rows of 28 inputs) the matrix was the training's largest block."""

CALIBRATION_SHARE = 0.2
"""Share of residents held out of training to fit the calibrator on, when one is asked for."""


def categorical_inputs(features: pl.DataFrame, inputs: Sequence[str]) -> list[str]:
    """The inputs holding text categories (a housing type, a community code)."""
    return [c for c in inputs if features.schema[c] in (pl.String, pl.Categorical)]


def levels_of(values: pl.Series) -> list[str]:
    """A categorical input's levels: the values it holds, as text, sorted — a value's
    position is its code in the model (a value never seen is missing)."""
    return sorted(values.drop_nulls().unique().cast(pl.String).to_list())


def category_levels(features: pl.DataFrame, inputs: Sequence[str]) -> dict[str, list[str]]:
    """Each categorical input's levels in ``features`` (:func:`levels_of`)."""
    return {c: levels_of(features[c]) for c in categorical_inputs(features, inputs)}


def feature_matrix(
    features: pl.DataFrame,
    inputs: Sequence[str],
    categories: dict[str, list[str]] | None = None,
    dtype: type[np.floating] = MATRIX_DTYPE,
) -> np.ndarray:
    """The model inputs as a float matrix in ``inputs`` order (booleans 0/1, categories their
    code in ``categories``, missing and unseen categories NaN), of ``dtype``, row-major."""
    missing = [c for c in inputs if c not in features.columns]
    if missing:
        raise KeyError(f"features frame lacks input columns {missing}")
    categories = categories or {}
    # filled a column at a time: the frame of float columns and its 2-D copy never both held;
    # row-major (ROWS_ORDER): a block of rows is a view LightGBM takes as it is
    matrix = np.empty((features.height, len(inputs)), dtype=dtype)
    for j, name in enumerate(inputs):
        matrix[:, j] = input_values(features, name, categories.get(name))
    return matrix


def input_values(features: pl.DataFrame, name: str, levels: list[str] | None) -> np.ndarray:
    """One input column as the matrix holds it: floats (booleans 0/1), a category its code in
    ``levels`` (None: not a category), missing and unseen categories NaN."""
    column = pl.col(name)
    if levels is not None:
        codes = {v: float(i) for i, v in enumerate(levels)}
        column = column.cast(pl.String).replace_strict(codes, default=None, return_dtype=pl.Float64)
    return features.select(column.cast(pl.Float64)).to_series().to_numpy()


def category_codes(values: pl.Series) -> tuple[list[str], np.ndarray]:
    """A categorical column's levels (:func:`levels_of`) and each row's code among them
    (missing: NaN), as :func:`input_values` gives them, from its categories' codes: no text
    column of its rows is made (at 200,000 residents one was 40 MB at the training's peak)."""
    seen = values.unique().drop_nulls()
    texts = seen.cast(pl.String).to_list()
    levels = levels_of(seen)
    position = {v: float(i) for i, v in enumerate(levels)}
    physical = seen.to_physical().to_numpy().astype(np.intp)
    lookup = np.full(int(physical.max(initial=-1)) + 2, np.nan)  # the last: missing
    lookup[physical] = [position[v] for v in texts]
    rows = values.to_physical().fill_null(len(lookup) - 1).to_numpy()
    return levels, lookup[rows]


def recoded(codes: np.ndarray, levels: Sequence[str], to: Sequence[str]) -> np.ndarray:
    """Category ``codes`` (positions in ``levels``, NaN: missing) as positions in ``to``
    (a value ``to`` lacks: NaN) — what :func:`input_values` gives with ``to`` as levels."""
    position = {v: float(i) for i, v in enumerate(to)}
    lookup = np.array([position.get(v, np.nan) for v in levels] + [np.nan])
    return lookup[np.where(np.isnan(codes), len(levels), codes).astype(np.intp)]


def input_columns(features: pl.DataFrame, inputs: Sequence[str]) -> pl.DataFrame:
    """The frame's keys and those of ``inputs`` it has (no copy): what a model is trained
    on, without the columns a join would copy for nothing (a missing input is named by
    :func:`feature_matrix`)."""
    return features.select(*KEYS, *(c for c in inputs if c in features.columns))


def training_frame(features: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Features joined to labels on the frames' keys: only rows present in both."""
    need_columns = [n for n in NEEDS if n in labels.columns]
    return features.join(labels.select(*KEYS, *need_columns), on=list(KEYS), how="inner")


RULE_SCORE = "_rule"
"""The column of :attr:`TrainingRows.rows` holding the street's rule's score of each row."""
LABELLED = "_labelled"  # :func:`stacked_rows`: a key the labels have

ROWS_ORDER: Final = ("cutoff", "person_id")
"""The order of :class:`TrainingRows`' rows (and their matrix's, row-major): by cut-off, then
person. A backtest fold's training rows (every cut-off up to one) are then the first rows and
its test rows (one cut-off) a block, both views of the matrix (:meth:`TrainingRows.subset`):
at 200,000 residents a fold's copy of its rows (52-86 MB) was the training's peak. And the
feature table holds each cut-off in person order, so rows read a cut-off at a time in order
are in this order as they come, with no sort (:func:`stacked_rows`)."""


def in_rows_order(keys: pl.DataFrame) -> bool:
    """Whether ``keys`` (unique) are in :data:`ROWS_ORDER`."""
    cutoff, person = pl.col("cutoff"), pl.col("person_id")
    later = (cutoff > cutoff.shift()) | ((cutoff == cutoff.shift()) & (person > person.shift()))
    return bool(keys.select(later.all()).item())  # the first row's null ignored


@dataclass
class TrainingRows:
    """Rows to train or test on: ``rows`` their keys and one label column per need (and
    :data:`RULE_SCORE` when asked for), ``matrix`` their inputs in the same order
    (:func:`feature_matrix`), the categories coded by ``categories`` (each category input's
    values in these rows, sorted)."""

    rows: pl.DataFrame
    matrix: np.ndarray
    inputs: list[str]
    categories: dict[str, list[str]]

    @property
    def needs(self) -> list[str]:
        return [n for n in NEEDS if n in self.rows.columns]

    def subset(self, mask: np.ndarray, categories: dict[str, list[str]] | None = None):
        """The rows of ``mask`` (in order), their categories coded by ``categories`` (None:
        the values these rows have, as :func:`category_levels` of their frame): the matrix
        :func:`feature_matrix` makes of those rows' frame. Rows that are a block (a backtest
        fold's, :data:`ROWS_ORDER`) whose categories are coded as here are a view of this
        matrix, not a copy: not to be written to."""
        picked = np.flatnonzero(mask)
        block = picked.size > 0 and picked[-1] - picked[0] + 1 == picked.size
        if block:
            first, last = int(picked[0]), int(picked[-1]) + 1
            matrix, rows = self.matrix[first:last], self.rows.slice(first, last - first)
        else:
            matrix, rows = self.matrix[mask], self.rows.filter(pl.Series(mask))
        del picked
        viewed = block
        levels = {}
        for name, had in self.categories.items():
            j = self.inputs.index(name)
            if categories is None:
                seen = np.unique(matrix[:, j][~np.isnan(matrix[:, j])]).astype(np.intp)
                levels[name] = [had[i] for i in seen]
            else:
                levels[name] = categories[name]
            if levels[name] == had:
                continue  # coded as here already
            if viewed:  # recoded in a copy of its own, never in this matrix
                matrix, viewed = matrix.copy(), False
            matrix[:, j] = recoded(matrix[:, j], had, levels[name])
        return TrainingRows(rows, matrix, self.inputs, levels)


def training_rows(
    features: pl.DataFrame, labels: pl.DataFrame, inputs: Sequence[str], *, rule: bool = False
) -> TrainingRows:
    """The rows of ``features`` with labels (:func:`training_frame`) in :data:`ROWS_ORDER`;
    ``rule``: with the rule's score of each row
    (:func:`marts.need_model.baseline.rule_scores`)."""
    trainable = input_columns(features, inputs)
    if rule:
        trainable = trainable.with_columns(pl.Series(RULE_SCORE, rule_scores(features)))
    frame = training_frame(trainable, labels).sort(ROWS_ORDER)
    categories = category_levels(frame, inputs)
    matrix = feature_matrix(frame, inputs, categories)
    rows = frame.select(*KEYS, *(n for n in NEEDS if n in labels.columns), *[RULE_SCORE] * rule)
    return TrainingRows(rows, matrix, list(inputs), categories)


def stacked_rows(
    parts: Iterable[pl.DataFrame],
    height: int,
    inputs: Sequence[str],
    labels_of: Callable[[pl.DataFrame], pl.DataFrame],
    *,
    rule: bool = False,
    carry: Sequence[str] = (),
) -> TrainingRows:
    """:func:`training_rows` of the ``parts`` (feature frames of ``height`` rows in all, keys
    unique) concatenated, in :data:`ROWS_ORDER`, ``labels_of(keys)`` the labels of a part's
    keys (a key's labels are its own) — made a part at a time: each part's inputs go into the
    matrix and its keys get their labels as it comes (its categories kept as codes of
    polars' categorical until every part is read), so no frame of every part's features,
    nor their join with the labels, is ever held. Parts that come in that order (a cut-off
    at a time, oldest first, each in person order: the feature table's) are not sorted;
    otherwise the matrix's rows are put in order in place, a column at a time. ``carry``:
    columns of the parts kept in the rows as polars categoricals (4 bytes a row), null in
    the rows of a part without them (the fairness groups, read for the backtest's tests)."""
    matrix = np.empty((height, len(inputs)), dtype=MATRIX_DTYPE)  # row-major, as ROWS_ORDER's
    parts_rows: list[pl.DataFrame] = []
    texts: dict[str, list[pl.Series]] = {}
    needs: list[str] = []
    start = 0
    for part in parts:
        missing = [c for c in inputs if c not in part.columns]
        if missing:
            raise KeyError(f"features frame lacks input columns {missing}")
        if start + part.height > height:
            raise ValueError(f"the parts hold more than the {height} rows announced")
        texts = texts or {c: [] for c in categorical_inputs(part, inputs)}
        end = start + part.height
        for j, name in enumerate(inputs):
            if name in texts:
                texts[name].append(part.get_column(name).cast(pl.Categorical))
            else:
                matrix[start:end, j] = input_values(part, name, None)
        keys = part.select(copied_columns(part, KEYS))  # not a view that keeps the part's read
        if rule:
            keys = keys.with_columns(pl.Series(RULE_SCORE, rule_scores(part)))
        keys = keys.with_columns(
            part.get_column(c).cast(pl.Categorical)
            if c in part.columns
            else pl.repeat(None, part.height, dtype=pl.Categorical, eager=True).alias(c)
            for c in carry
        )
        del part  # this part's frame goes before its labels are made and the next is read
        labels = labels_of(keys.select(KEYS))
        needs = needs or [n for n in NEEDS if n in labels.columns]
        marked = labels.select(*KEYS, *needs, pl.lit(True).alias(LABELLED))
        parts_rows.append(keys.join(marked, on=list(KEYS), how="left", maintain_order="left"))
        start = end
    if start != height:
        raise ValueError(f"the parts hold {start} rows, not the {height} announced")
    if not parts_rows:
        raise ValueError("no (person_id, cutoff) row is in both the features and the labels")
    rows = pl.concat(parts_rows)
    del parts_rows
    order = None if in_rows_order(rows) else rows.select(pl.arg_sort_by(ROWS_ORDER)).to_series()
    positions = None if order is None else order.to_numpy()
    categories: dict[str, list[str]] = {}
    for j, name in enumerate(inputs):
        if name in texts:
            values = pl.concat(texts.pop(name))
            categories[name], matrix[:, j] = category_codes(
                values if order is None else values.gather(order)
            )
        elif order is not None:
            matrix[:, j] = matrix[positions, j]
    if order is not None:
        rows = rows[order]
    labelled = rows.get_column(LABELLED).fill_null(False).to_numpy()
    data = TrainingRows(
        rows.select(*KEYS, *needs, *[RULE_SCORE] * rule, *carry), matrix, list(inputs), categories
    )
    return data if labelled.all() else data.subset(labelled)  # only rows with labels


def calibration_holdout(person_ids: pl.Series, share: float, seed: int) -> np.ndarray:
    """A boolean mask of the rows whose resident falls in the held-out ``share`` (every row
    of a resident on the same side, so a held-out resident was never trained on)."""
    people = np.sort(person_ids.unique().to_numpy())
    rng = np.random.default_rng(seed)
    held = set(people[rng.random(len(people)) < share].tolist())
    return person_ids.is_in(list(held)).to_numpy()


@dataclass
class NeedModels:
    """One LightGBM booster per need over the same ``inputs``, each with an optional
    calibrator; what was trained on is in ``trained_on``."""

    inputs: list[str]
    boosters: dict[str, lgb.Booster]
    calibrators: dict[str, Calibrator] = field(default_factory=dict)
    trained_on: dict[str, Any] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    def matrix(self, features: pl.DataFrame) -> np.ndarray:
        """The frame's inputs as this model reads them."""
        return feature_matrix(features, self.inputs, self.categories)

    @property
    def needs(self) -> list[str]:
        return list(self.boosters)

    def raw_scores(self, need: str, matrix: np.ndarray) -> np.ndarray:
        """The booster's probability before calibration."""
        return self.boosters[need].predict(matrix)

    def scores(self, need: str, matrix: np.ndarray) -> np.ndarray:
        """The need's probability for each row of ``matrix`` (calibrated when a calibrator
        was fitted)."""
        raw = self.raw_scores(need, matrix)
        calibrator = self.calibrators.get(need)
        return calibrator.apply(raw) if calibrator else raw

    def predict(self, features: pl.DataFrame) -> pl.DataFrame:
        """The frame's keys and one probability column per need, in the frame's row order."""
        matrix = self.matrix(features)
        return features.select(KEYS).with_columns(
            pl.Series(need, self.scores(need, matrix)) for need in self.needs
        )

    def contributions(self, need: str, features: pl.DataFrame) -> np.ndarray:
        """LightGBM's ``pred_contrib`` for the need: one column per input (log-odds it adds
        to the row's score) and the expected value last."""
        return self.boosters[need].predict(self.matrix(features), pred_contrib=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "inputs": self.inputs,
            "categories": self.categories,
            "trained_on": self.trained_on,
            "models": {
                need: {
                    "booster": booster_document(booster.model_to_string()),
                    "calibrator": c.to_dict() if (c := self.calibrators.get(need)) else None,
                }
                for need, booster in self.boosters.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NeedModels:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a saved need-model set (format {data.get('format')!r})")
        models = data["models"]
        lgb = lightgbm()

        return cls(
            inputs=list(data["inputs"]),
            boosters={
                n: lgb.Booster(model_str=booster_text(m["booster"])) for n, m in models.items()
            },
            calibrators={
                n: Calibrator.from_dict(m["calibrator"])
                for n, m in models.items()
                if m["calibrator"]
            },
            trained_on=data.get("trained_on", {}),
            categories=data.get("categories", {}),
        )

    def save(self, path: str | Path) -> Path:
        """Write the set as one JSON file (UTF-8); returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> NeedModels:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def booster_params(seed: int = SEED, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """LightGBM's parameters of a need's model: :data:`PARAMS`, ``params`` over them, ``seed``."""
    return {**PARAMS, **(params or {}), "seed": seed}


def training_set(
    matrix: np.ndarray,
    inputs: Sequence[str],
    seed: int = SEED,
    params: dict[str, Any] | None = None,
    categorical: Sequence[str] = (),
) -> lgb.Dataset:
    """``matrix`` binned as LightGBM trains on it, once for every need: the bins depend on
    the inputs and the parameters alone, so one set relabelled per need (:func:`fit_booster`)
    gives each need the booster a set of its own would (4 needs: 4 times less binning); it
    keeps no reference to ``matrix``. ``categorical``: the inputs holding category codes."""
    lgb = lightgbm()
    return lgb.Dataset(
        matrix,
        feature_name=list(inputs),
        categorical_feature=list(categorical) or "auto",
        params=booster_params(seed, params),
        free_raw_data=True,
    ).construct()


def fit_booster(
    rows: lgb.Dataset,
    y: np.ndarray,
    seed: int = SEED,
    num_rounds: int = NUM_ROUNDS,
    params: dict[str, Any] | None = None,
) -> lgb.Booster:
    """One LightGBM binary classifier of the labels ``y`` on ``rows`` (:func:`training_set`,
    made with the same ``seed`` and ``params``), deterministic for a given seed."""
    lgb = lightgbm()
    rows.set_label(y.astype(float))
    return lgb.train(booster_params(seed, params), rows, num_boost_round=num_rounds)


def train_booster(
    matrix: np.ndarray,
    y: np.ndarray,
    inputs: Sequence[str],
    seed: int = SEED,
    num_rounds: int = NUM_ROUNDS,
    params: dict[str, Any] | None = None,
    categorical: Sequence[str] = (),
) -> lgb.Booster:
    """One LightGBM binary classifier, deterministic for a given seed; ``categorical``: the
    inputs holding category codes."""
    rows = training_set(matrix, inputs, seed, params, categorical)
    return fit_booster(rows, y, seed, num_rounds, params)


def train_need_models(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    inputs: Sequence[str],
    *,
    calibration: Method | None = None,
    seed: int = SEED,
    num_rounds: int = NUM_ROUNDS,
    params: dict[str, Any] | None = None,
) -> NeedModels:
    """Train one model per need found in ``labels`` on the rows present in both frames.

    With ``calibration`` (``isotonic`` or ``platt``) a provisional model is trained without a
    seeded :data:`CALIBRATION_SHARE` of residents and the calibrator fitted on their raw
    scores; the model kept is then trained on every row (the held-out slice would otherwise
    cost the model a fifth of its rare positives)."""
    data = training_rows(features, labels, inputs)  # no other column copied
    return train_rows(
        data, calibration=calibration, seed=seed, num_rounds=num_rounds, params=params
    )


def train_rows(
    data: TrainingRows,
    *,
    calibration: Method | None = None,
    seed: int = SEED,
    num_rounds: int = NUM_ROUNDS,
    params: dict[str, Any] | None = None,
    release: bool = False,
) -> NeedModels:
    """:func:`train_need_models` on rows already made (:class:`TrainingRows`): one model per
    need of ``data``, trained on its matrix as it is. ``release``: ``data`` is the caller's
    no more (a backtest's training rows, made for this fit): without calibration its matrix
    is let go once binned, before the boosters are fitted (at 200,000 residents a fold's
    rows were ~100 MB of the training's peak beside LightGBM's own copy of them)."""
    frame, matrix, inputs, categories = data.rows, data.matrix, data.inputs, data.categories
    if frame.is_empty():
        raise ValueError("no (person_id, cutoff) row is in both the features and the labels")
    needs = data.needs
    held = (
        calibration_holdout(frame["person_id"], CALIBRATION_SHARE, seed)
        if calibration
        else np.zeros(frame.height, dtype=bool)
    )
    boosters: dict[str, lgb.Booster] = {}
    calibrators: dict[str, Calibrator] = {}
    binned = partial(training_set, inputs=inputs, seed=seed, params=params,
                     categorical=list(categories))  # fmt: skip
    fit = partial(fit_booster, seed=seed, num_rounds=num_rounds, params=params)
    rows, held_out = binned(matrix), binned(matrix[~held]) if calibration else None
    if release and not calibration:  # nothing below reads the matrix: LightGBM has its bins
        data.matrix = matrix = np.empty((0, len(inputs)), dtype=matrix.dtype)
    for need in needs:
        y = frame[need].cast(pl.Float64).fill_null(0.0).to_numpy()
        if held_out is not None:  # the map learnt on residents a provisional model never saw
            provisional = fit(held_out, y[~held])
            calibrators[need] = fit_calibrator(
                y[held], provisional.predict(matrix[held]), calibration
            )
        boosters[need] = fit(rows, y)
    trained_on = {
        "rows": frame.height,
        "cutoffs": sorted(str(c) for c in frame["cutoff"].unique().to_list()),
        "positives": {n: int(frame[n].fill_null(False).sum()) for n in needs},
        "calibration": calibration,
        "seed": seed,
        "num_rounds": num_rounds,
    }
    return NeedModels(list(inputs), boosters, calibrators, trained_on, categories)
