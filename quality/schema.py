"""Catalogue → pandera (polars backend) schemas.

:func:`dataset_schema` turns a :class:`~catalog.model.Dataset` into a
``pandera.polars.DataFrameSchema`` over the *standardised* frame: the
catalogue's types, required (``nullable=False``), unique fields and keys,
patterns, allowed values, ranges and every named check of ``FieldSpec.checks``
(the expressions of ``quality.gate_checks``, so pandera and the gate's plain
masks agree by construction).

``for_gate=True`` builds the variant the row gate runs: uniqueness is left to
the gate (it tells duplicates from conflicting keys), and the checks that read
the delivered text (unparseable values) are added.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from catalog.model import Dataset, FieldSpec
from catalog.street import Street
from quality.gate_checks import RowCheck, field_checks, unparseable_check
from quality.standardise import DTYPES

BUILTIN = ("pattern", "allowed_values", "range")


def _custom(rc: RowCheck) -> pa.Check:
    expr = rc.passes.alias(rc.name)

    def _fn(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(expr)

    return pa.Check(_fn, name=rc.name, error=rc.name)


def _builtin(f: FieldSpec, kind: str) -> pa.Check:
    if kind == "pattern":
        return pa.Check.str_matches(f.pattern, error="pattern")
    if kind == "allowed_values":
        return pa.Check.isin(f.allowed_values, error="allowed_values")
    assert f.range is not None
    lo, hi = f.range.min, f.range.max
    if lo is not None and hi is not None:
        return pa.Check.in_range(lo, hi, error="range")
    return pa.Check.ge(lo, error="range") if lo is not None else pa.Check.le(hi, error="range")


def column_checks(
    dataset: Dataset, f: FieldSpec, street: Street | None = None, *, for_gate: bool = False
) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if for_gate:
        checks.append(_custom(unparseable_check(f)))
    for rc in field_checks(dataset, f, street):
        checks.append(_builtin(f, rc.name) if rc.name in BUILTIN else _custom(rc))
    return checks


def dataset_schema(
    dataset: Dataset, *, street: Street | None = None, for_gate: bool = False
) -> pa.DataFrameSchema:
    """The pandera schema of a dataset's standardised (staged) frame."""
    columns = {
        f.name: pa.Column(
            DTYPES[f.type],
            nullable=not f.required,
            unique=f.unique and not for_gate,
            checks=column_checks(dataset, f, street, for_gate=for_gate),
            required=True,
            description=f.label_zh,
        )
        for f in dataset.fields
    }
    composite = len(dataset.key) > 1 and not for_gate
    return pa.DataFrameSchema(
        columns,
        name=f"{dataset.code}",
        strict=False,
        unique=list(dataset.key) if composite else None,
        description=dataset.name_zh,
    )
