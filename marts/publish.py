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

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.marts import Mart, load_marts
from catalog.model import Catalogue
from lakehouse.lake import insert_frame, memory_limit
from marts.build import MartBuild, MartMaskingError, build_mart
from marts.checks import check_columns
from marts.deidentification import carrying_rule, sensitive_columns
from marts.lineage import MartError

PUBLISH_MEMORY = 128 * 2**20
"""The most (bytes) the lake's DuckDB holds while a frame mart is published (its parts
staged, checked, built and written; its own limit restored after): the staged rows are a
temporary table, and within the lake's limit (512 MB) DuckDB kept them all in memory — at
200,000 residents need_scores' 777,000 rows grew the run by ~120 MB while they were handed
over. Bounded, what does not fit spills under the lake, encrypted; every step of the
publication (appends, DISTINCT, a projection into the result, the lake's write) can spill."""


@dataclass(frozen=True)
class Publication:
    """What :func:`publish_frame` published: the build, and how many rows it left out for
    residents in ``leave_out``."""

    build: MartBuild
    left_out: int


def frame_marts(marts: Mapping[str, Mart]) -> list[str]:
    """The marts made from a frame in Python (``made_from``): not built from the lake alone."""
    return sorted(n for n, m in marts.items() if m.made_from is not None)


def check_values(mart: Mart, column: str, rule: str, values: pl.Series) -> None:
    """Refuse the distinct non-null ``values`` of the mart's ``column`` unless every one
    carries ``rule`` (:func:`marts.deidentification.carrying_rule`)."""
    carrying = carrying_rule(values, rule)
    if carrying != values.len():
        raise MartMaskingError(
            f"column {column!r}: {values.len() - carrying} of its {values.len()} distinct "
            f"values do not carry the rule {rule}",
            dataset=mart.name,
            field=column,
        )


def _frame_mart(marts: Mapping[str, Mart], name: str) -> Mart:
    mart = marts.get(name)
    if mart is None or mart.made_from is None:
        raise MartError(
            "not a mart made from a frame (its catalogue entry names no made_from)", dataset=name
        )
    return mart


def _stage(con: duckdb.DuckDBPyConnection, table: str, part: pl.DataFrame, first: bool) -> None:
    """``part``'s rows appended to the temporary table ``table`` (created by the first part,
    with its columns' types), by replacement scan: no view stays registered."""
    if first:
        _streethub_part = part.head(0).to_arrow()  # read by DuckDB by its name
        con.execute(f'CREATE OR REPLACE TEMP TABLE "{table}" AS SELECT * FROM _streethub_part')
    insert_frame(con, "temp", table, part)


def publish_parts(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    name: str,
    parts: Iterable[pl.DataFrame],
    *,
    leave_out: Collection[str] = (),
    marts: Mapping[str, Mart] | None = None,
) -> Publication:
    """Publish the rows of ``parts`` (in their order) as ``marts.<name>``, as
    :func:`publish_frame` publishes one frame, each part taken as it comes: its columns
    checked, the residents in ``leave_out`` dropped, its rows appended to a temporary table
    of ``con`` named as the mart's ``made_from`` (the relation its SQL reads), so Python
    holds one part at a time and DuckDB the rows (within :data:`PUBLISH_MEMORY`; what does
    not fit spills encrypted). The masking check is made on each sensitive column's distinct
    values in that table, before anything is written; the table is dropped whatever
    happens."""
    marts = dict(load_marts() if marts is None else marts)
    mart = _frame_mart(marts, name)
    staged = str(mart.made_from)
    subject = mart.subject_column
    refused = sorted(leave_out)
    before = after = 0
    first = True
    with memory_limit(con, PUBLISH_MEMORY):
        try:
            for part in parts:
                if set(part.columns) == set(mart.column_names):
                    part = part.select(mart.column_names)
                check_columns(mart, list(part.columns))
                before += part.height
                if subject is not None and refused:
                    part = part.filter(~pl.col(subject).is_in(refused))
                after += part.height
                _stage(con, staged, part, first)
                first = False
                del part
            if first:
                raise MartError("no rows handed over: not even an empty frame", dataset=name)
            for column, _level, rule in sensitive_columns(mart):
                values = con.execute(
                    f'SELECT DISTINCT "{column}" FROM temp.main."{staged}" '
                    f'WHERE "{column}" IS NOT NULL'
                ).pl()[column]
                check_values(mart, column, rule, values)
                del values
            build = build_mart(con, catalogue, marts, name, None, staged=[staged])
        finally:
            con.execute(f'DROP TABLE IF EXISTS temp.main."{staged}"')
    return Publication(build=build, left_out=before - after)


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
    return publish_parts(con, catalogue, name, [frame], leave_out=leave_out, marts=marts)


__all__ = [
    "Publication",
    "check_values",
    "frame_marts",
    "publish_frame",
    "publish_parts",
]
