"""Publish a frame made in Python as a mart (模型产出表的发布): the need model's scores and
forecasts go out through the same build as every mart.

A mart whose catalogue entry names ``made_from`` (``catalog/marts/need_scores.yaml``:
``need_scores_frame``) has a SQL file that reads that relation instead of lake tables; only
the maker that holds the frame publishes it, with :func:`publish_frame`:

1. the frame's columns must be the YAML's (any order: they are put in the YAML's);
2. the residents in ``leave_out`` (the scoring step's :func:`share_api.consent.not_to_score`:
   those who refused automated assessment) are dropped by the mart's subject column, so a
   resident who refused is never written, whatever the maker forgot;
3. the masking check on values, since a frame has no lineage to follow to the catalogue's
   fields: every non-null value of an L3/L4 column must carry the column's rule — a hub
   pseudonym for ``pseudonymise``, text in which the leak scanner finds no identifier for
   ``scrub_text`` … (:func:`marts.deidentification.carrying_rule`, the one judge of the
   published forms) — else :class:`MartMaskingError` naming the mart, the column and how
   many values, never a value;
4. :func:`marts.build.build_mart` with the frame as its input: the SQL's columns and types
   against the YAML, its lineage parsed, k-anonymity when the YAML asks, and the table
   replaced in one lake transaction (its history in time travel).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.marts import Mart, load_marts
from catalog.model import Catalogue
from marts.build import MartBuild, MartMaskingError, build_mart
from marts.checks import check_columns
from marts.deidentification import carrying_rule, sensitive_columns
from marts.lineage import MartError


@dataclass(frozen=True)
class Publication:
    """What :func:`publish_frame` published: the build, and how many rows it left out for
    residents in ``leave_out``."""

    build: MartBuild
    left_out: int


def frame_marts(marts: Mapping[str, Mart]) -> list[str]:
    """The marts made from a frame in Python (``made_from``): not built from the lake alone."""
    return sorted(n for n, m in marts.items() if m.made_from is not None)


def check_frame_masking(mart: Mart, frame: pl.DataFrame) -> None:
    """Refuse a frame with an L3/L4 value that does not carry its column's rule (each value
    judged once: the distinct values)."""
    for column, _level, rule in sensitive_columns(mart):
        values = frame[column].drop_nulls().unique()
        carrying = carrying_rule(values, rule)
        if carrying != values.len():
            raise MartMaskingError(
                f"column {column!r}: {values.len() - carrying} of its {values.len()} distinct "
                f"values do not carry the rule {rule}",
                dataset=mart.name,
                field=column,
            )


def publish_frame(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    name: str,
    frame: pl.DataFrame,
    *,
    leave_out: Collection[str] = (),
    marts: Mapping[str, Mart] | None = None,
) -> Publication:
    """Publish ``frame`` as ``marts.<name>`` (see the module doc); ``con`` an open lake."""
    marts = dict(load_marts() if marts is None else marts)
    mart = marts.get(name)
    if mart is None or mart.made_from is None:
        raise MartError(
            "not a mart made from a frame (its catalogue entry names no made_from)", dataset=name
        )
    if set(frame.columns) == set(mart.column_names):
        frame = frame.select(mart.column_names)
    check_columns(mart, list(frame.columns))
    before = frame.height
    subject = mart.subject_column
    if subject is not None and leave_out:
        frame = frame.filter(~pl.col(subject).is_in(sorted(leave_out)))
    check_frame_masking(mart, frame)
    build = build_mart(con, catalogue, marts, name, None, inputs={mart.made_from: frame})
    return Publication(build=build, left_out=before - frame.height)


__all__ = ["Publication", "check_frame_masking", "frame_marts", "publish_frame"]
