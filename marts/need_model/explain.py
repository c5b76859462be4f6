"""Explanations (评分解释): every need score's top contributing factors, as short Chinese
phrases a community worker understands (近30天门禁出入次数下降62%, 独居, 慢病随访逾期).

The factors are LightGBM's ``pred_contrib`` (each input's additive share of the score's
log-odds, TreeSHAP); only inputs that push the score up are kept, largest first, at most
:data:`TOP`. Each becomes the phrase features.yaml gives it (:mod:`marts.need_model.features`):
a number's placeholder (``{n}``, ``{pct}``, ``{days}`` …) is filled with the value rounded to a
whole number (a negative value says nothing: 下降-30% is not a decline); a phrase without a
placeholder states a condition, said only when the value is true; a category's phrase is
followed by its value (房屋性质：公租房). A missing value says nothing.
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from marts.need_model.features import FEATURES_YAML, load_feature_set
from marts.need_model.spec import KEYS
from marts.need_model.train import NeedModels

TOP = 3
"""Factors per score."""

BATCH = 20_000
"""Rows explained at a time (:func:`explain`)."""


def load_templates(path: Path = FEATURES_YAML) -> dict[str, str]:
    """Feature name → its phrase in features.yaml."""
    return {f.name: f.phrase for f in load_feature_set(path).features}


@functools.cache
def placeholders(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def phrase(template: str, value: Any) -> str | None:
    """The template said of ``value``, or None when it says nothing of it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    names = placeholders(template)
    if isinstance(value, str):
        return template.format_map(dict.fromkeys(names, value)) if names else f"{template}：{value}"
    if not names:
        return template if value else None
    if value < 0:
        return None
    return template.format_map(dict.fromkeys(names, round(value)))


def top_factors(
    contributions: np.ndarray,
    values: Sequence[Any],
    inputs: Sequence[str],
    templates: Mapping[str, str],
    top: int = TOP,
) -> tuple[list[str], list[str]]:
    """(phrases, feature names) of one row's inputs that raise the score most, at most ``top``;
    an input without a template or whose phrase says nothing is passed over."""
    order = np.argsort(-contributions, kind="stable")
    phrases: list[str] = []
    names: list[str] = []
    for i in order:
        if contributions[i] <= 0 or len(phrases) == top:
            break
        template = templates.get(inputs[i])
        said = phrase(template, values[i]) if template else None
        if said:
            phrases.append(said)
            names.append(inputs[i])
    return phrases, names


def may_speak(
    rows: pl.DataFrame, inputs: Sequence[str], templates: Mapping[str, str]
) -> np.ndarray:
    """Rows x inputs: False where :func:`phrase` surely says nothing of the value (no template,
    a missing value, a false condition, a negative number); True where it may."""
    columns = []
    for name in inputs:
        template, column = templates.get(name), rows[name]
        if not template:
            columns.append(np.zeros(rows.height, dtype=bool))
            continue
        known = column.is_not_null()
        if column.dtype.is_float():
            known &= column.is_not_nan()
        if column.dtype == pl.Boolean:
            known &= column if not placeholders(template) else known
        elif column.dtype.is_numeric():
            known &= (column >= 0) if placeholders(template) else (column != 0)
        columns.append(known.fill_null(False).to_numpy())
    return np.column_stack(columns) if columns else np.zeros((rows.height, 0), dtype=bool)


def phrases_of(template: str, values: pl.Series) -> pl.Series:
    """:func:`phrase` of each of ``values`` (values :func:`may_speak` lets through: none
    missing, NaN, a false condition or a negative number), as text: a condition's phrase is
    the template; a number's is made once per whole number it rounds to (a float by
    ``np.rint``: half to even, as ``round``); any other value's once per distinct value."""
    names = placeholders(template)
    numeric = values.dtype.is_integer() or values.dtype.is_float()
    if not names and (numeric or values.dtype == pl.Boolean):
        return pl.Series(values.name, [template] * values.len(), dtype=pl.String)
    if names and numeric:
        numbers = values.to_numpy()
        numbers = np.rint(numbers) if values.dtype.is_float() else numbers
        distinct, where = np.unique(numbers, return_inverse=True)
        said = [template.format_map(dict.fromkeys(names, int(d))) for d in distinct.tolist()]
        return pl.Series(values.name, np.asarray(said, dtype=object)[where], dtype=pl.String)
    if values.dtype in (pl.Categorical,) or isinstance(values.dtype, pl.Enum):
        values = values.cast(pl.String)
    distinct = values.unique().to_list()
    said = [phrase(template, d) for d in distinct]
    return values.replace_strict(distinct, said, return_dtype=pl.String)


def top_factors_of_rows(
    contributions: np.ndarray,
    rows: pl.DataFrame,
    inputs: Sequence[str],
    templates: Mapping[str, str],
    top: int = TOP,
    speaks: np.ndarray | None = None,
) -> tuple[pl.Series, pl.Series]:
    """:func:`top_factors` of every row of ``rows`` (its ``inputs``) and ``contributions``,
    as two list columns (``factors``, ``factor_features``): the rows' inputs ordered by
    contribution at once (numpy), then a step at a time the next raising input of each row
    still short of ``top`` phrases, phrased a column at a time (:func:`phrases_of`) — only
    the inputs that may be said (:func:`may_speak`, ``speaks``), not every value of every
    row, and no Python list per row."""
    if speaks is None:
        speaks = may_speak(rows, inputs, templates)
    candidate = (contributions > 0) & speaks
    order = np.argsort(np.where(candidate, -contributions, np.inf), axis=1, kind="stable")
    count = candidate.sum(axis=1)
    said = np.zeros(rows.height, dtype=np.int64)
    pending = np.flatnonzero((count > 0) & (top > 0))
    parts: list[pl.DataFrame] = []
    step = 0
    while pending.size:
        which = order[pending, step]
        for i in np.unique(which).tolist():
            at = pending[which == i]
            texts = phrases_of(templates[inputs[i]], rows[inputs[i]].gather(at))
            kept = (texts.is_not_null() & (texts != "")).to_numpy()
            said[at[kept]] += 1
            parts.append(
                pl.DataFrame(
                    {"row": at[kept], "step": step, "factors": texts.filter(kept)},
                    schema={"row": pl.Int64, "step": pl.Int64, "factors": pl.String},
                ).with_columns(pl.lit(inputs[i]).alias("factor_features"))
            )
        step += 1
        pending = pending[(said[pending] < top) & (count[pending] > step)]
    lists = (
        pl.concat(parts)
        .sort("row", "step")
        .group_by("row", maintain_order=True)
        .agg("factors", "factor_features")
        if parts
        else pl.DataFrame(
            schema={
                "row": pl.Int64,
                "factors": pl.List(pl.String),
                "factor_features": pl.List(pl.String),
            }
        )
    )
    every = (
        pl.DataFrame({"row": np.arange(rows.height, dtype=np.int64)})
        .join(lists, on="row", how="left", maintain_order="left")
        .with_columns(pl.col("factors", "factor_features").fill_null([]))
    )
    return every["factors"], every["factor_features"]


def explained(
    models: NeedModels,
    features: pl.DataFrame,
    templates: Mapping[str, str],
    top: int = TOP,
    batch: int = BATCH,
    finish: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> Iterator[pl.DataFrame]:
    """:func:`explain`'s rows as they are made, ``batch`` rows of the frame for one need at a
    time: each need's batches in the frame's row order, the needs in the model's order (the
    order :func:`explain` concatenates them in). A caller that hands each part on (the
    scores published a part at a time: :func:`marts.publish.publish_parts`) never holds
    every row's scores and phrases in Python. A batch's inputs are made into a matrix for
    each need (a row's score and factors are its own: the same whatever the batch)."""
    for need in models.needs:
        for start in range(0, max(features.height, 1), batch):
            rows = features.slice(start, batch)
            matrix = models.matrix(rows)
            speaks = may_speak(rows, models.inputs, templates)
            contributions = models.boosters[need].predict(matrix, pred_contrib=True)[:, :-1]
            phrases, names = top_factors_of_rows(
                contributions, rows, models.inputs, templates, top, speaks
            )
            del contributions
            part = rows.select(KEYS).with_columns(
                pl.lit(need).alias("need"),
                pl.Series("score", models.scores(need, matrix)),
                phrases.alias("factors"),
                names.alias("factor_features"),
            )
            yield finish(part) if finish else part


def explain(
    models: NeedModels, features: pl.DataFrame, templates: Mapping[str, str], **options: Any
) -> pl.DataFrame:
    """One row per resident, cut-off and need: the keys, ``need``, ``score``, ``factors``
    (the Chinese phrases, strongest first) and ``factor_features`` (their feature names);
    each need's rows together, in the frame's row order. Worked ``batch`` rows at a time
    (:func:`explained`): a row's score and factors are its own, and the rows' values and
    contributions as Python objects are what took the memory. ``finish``: made of each
    batch's rows as soon as they are explained (the frame is then its parts': the lists of
    every row are never held at once). ``options``: :func:`explained`'s ``top``, ``batch``
    and ``finish``."""
    return pl.concat(explained(models, features, templates, **options))
