"""Explanations (评分解释): every need score's top contributing factors, as short Chinese
phrases a community worker understands (近30天门禁出入次数下降62%, 独居, 慢病随访逾期).

The factors are LightGBM's ``pred_contrib`` (each input's additive share of the score's
log-odds, TreeSHAP); only inputs that push the score up are kept, largest first, at most
:data:`TOP`. Each becomes a phrase from its template in the features file (features.yaml):
placeholders are filled from the resident's value — ``{value}`` as is, ``{pct}`` as a
percentage (a share 0.62 → 62, a magnitude ≥ 1 taken as a percentage already), ``{days}`` and
``{n}`` as whole numbers. A template without placeholders (独居) states a condition and is said
only when the value is true (non-zero); a missing value says nothing.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from marts.need_model.spec import KEYS
from marts.need_model.train import NeedModels, feature_matrix

TOP = 3
"""Factors per score."""

TEMPLATE_KEYS = ("template", "explain_zh", "phrase")
"""Keys a feature's entry may carry its phrase template under (the first found is used)."""


def load_templates(source: str | Path | Mapping[str, Any] | Iterable[Any]) -> dict[str, str]:
    """Feature name → phrase template from features.yaml (a path, or its parsed content: a
    list of entries or a mapping with ``features``; each entry has ``name`` and a template);
    an entry without a template falls back to its ``label_zh``."""
    data: Any = source
    if isinstance(source, str | Path):
        data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    if isinstance(data, Mapping):
        data = data.get("features", data)
    if isinstance(data, Mapping):  # name → entry
        data = [
            {"name": k, **(v if isinstance(v, Mapping) else {"template": v})}
            for k, v in data.items()
        ]
    templates = {}
    for entry in data:
        phrase = next((entry[k] for k in TEMPLATE_KEYS if entry.get(k)), entry.get("label_zh"))
        if phrase:
            templates[entry["name"]] = str(phrase)
    return templates


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _whole(value: float) -> int:
    return round(abs(value))


def phrase(template: str, value: float) -> str | None:
    """The template said of ``value``, or None when it says nothing of it (a missing value; a
    condition template of a false value)."""
    if value is None or np.isnan(value):
        return None
    if not placeholders(template):
        return template if value else None
    pct = abs(value) * 100 if abs(value) <= 1 else abs(value)
    shown = int(value) if float(value).is_integer() else round(value, 1)
    fields = {"value": shown, "pct": round(pct), "days": _whole(value), "n": _whole(value)}
    try:
        return template.format_map(fields)
    except (KeyError, ValueError, IndexError):
        return None


def top_factors(
    contributions: np.ndarray,
    values: np.ndarray,
    inputs: list[str],
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


def explain(
    models: NeedModels,
    features: pl.DataFrame,
    templates: Mapping[str, str],
    top: int = TOP,
) -> pl.DataFrame:
    """One row per resident, cut-off and need: the keys, ``need``, ``score``, ``factors``
    (the Chinese phrases, strongest first) and ``factor_features`` (their feature names)."""
    matrix = feature_matrix(features, models.inputs)
    scores = models.predict(features)
    parts = []
    for need in models.needs:
        contributions = models.contributions(need, features)[:, :-1]
        said = [
            top_factors(contributions[r], matrix[r], models.inputs, templates, top)
            for r in range(matrix.shape[0])
        ]
        parts.append(
            features.select(KEYS).with_columns(
                pl.lit(need).alias("need"),
                scores[need].alias("score"),
                pl.Series("factors", [p for p, _ in said], dtype=pl.List(pl.String)),
                pl.Series("factor_features", [n for _, n in said], dtype=pl.List(pl.String)),
            )
        )
    return pl.concat(parts)
