"""A grant's row scope (行范围): a structured filter compiled to a sqlglot AST, never a string.

A request names its rows as JSON (``share_api.requests`` stores it, a grant keeps it), e.g.
"residents of community X aged 60 and over"::

    {"and": [
        {"field": "community_code", "op": "eq", "value": "110105001001"},
        {"field": "birth_date", "op": "age_ge", "value": 60}
    ]}

A node is ``{"and": [node, …]}``, ``{"or": [node, …]}``, ``{"not": node}`` or a comparison
``{"field", "op", "value"}``:

==============================  ==========================================================
op                              value
==============================  ==========================================================
``eq ne lt le gt ge``           a string, number or boolean
``in not_in``                   a list of 1–1,000 of those
``between``                     ``[low, high]`` (both included)
``is_null not_null``            none (omit it)
``prefix``                      a string: the field starts with it (a grid's, a community's
                                codes)
``age_ge age_lt``               whole years (0–150): the field is a birth date, the age on
                                the day of the data read (the lake snapshot's day in
                                Beijing: ``catalog.days``)
==============================  ==========================================================

:func:`compile_filter` checks every field against the columns the caller allows (the
resource's, from the catalogue) and every value against the field's catalogue type, then builds the condition as a
sqlglot expression: field names become quoted identifiers, values literals
(``exp.convert``), so no input is ever pasted into SQL text and a value such as
``x' OR 1=1 --`` is compared as the string it is. Errors (:class:`RowFilterError`) name the
position in the filter (``and[1].value``) and the field, never a value.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlglot import exp

from catalog.days import beijing_day
from catalog.errors import StreethubError

COMPARISONS = {
    "eq": exp.EQ,
    "ne": exp.NEQ,
    "lt": exp.LT,
    "le": exp.LTE,
    "gt": exp.GT,
    "ge": exp.GTE,
}
LIST_OPS = ("in", "not_in")
NULL_OPS = ("is_null", "not_null")
AGE_OPS = ("age_ge", "age_lt")
OPS = (*COMPARISONS, *LIST_OPS, "between", *NULL_OPS, "prefix", *AGE_OPS)
MAX_DEPTH = 8
MAX_NODES = 200
MAX_LIST = 1_000
MAX_TEXT = 200  # characters of one string value
MAX_AGE = 150


class RowFilterError(StreethubError):
    """A row filter that cannot be compiled: where in the filter, and why (never a value)."""

    def __init__(self, message: str, *, at: str, field: str | None = None) -> None:
        self.at = at
        super().__init__(f"row filter at {at or 'top'}: {message}", field=field)


# the values a field of each catalogue type (``catalog.model.FieldType``) is compared with
NUMBER_TYPES = frozenset({"integer", "decimal"})
DATE_TYPES = frozenset({"date", "datetime"})
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?$")


def _typed(value: Any, kind: str | None, at: str, field: str) -> None:
    """Refuse a value the field's type cannot be compared with (a number for a text field
    is fine: it is compared as text only if the field is text, so it must be text)."""
    if kind is None:
        return
    if kind in NUMBER_TYPES:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind in DATE_TYPES:
        ok = isinstance(value, str) and ISO_DATE.match(value) is not None
    else:
        ok = isinstance(value, str)
    if not ok:
        raise RowFilterError(
            f"the value does not fit the field's type ({kind})", at=at, field=field
        )


def _scalar(value: Any, at: str, field: str) -> exp.Expression:
    if isinstance(value, bool | int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise RowFilterError("a number must be finite", at=at, field=field)
        return exp.convert(value)
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise RowFilterError(
                f"a string value is over {MAX_TEXT} characters", at=at, field=field
            )
        return exp.convert(value)
    raise RowFilterError("a value must be a string, number or boolean", at=at, field=field)


Today = dt.date | Callable[[], dt.date]


def _age(value: Any, at: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AGE:
        raise RowFilterError(f"an age is whole years from 0 to {MAX_AGE}", at=at, field=field)
    return value


def _column(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _birthday_bound(years: int, today: dt.date) -> exp.Expression:
    """The last birth date of someone ``years`` old on ``today``: today - years (a date
    literal, not the SQL session's ``current_date``: that is the day in UTC, 8 hours behind
    the street's)."""
    interval = exp.Interval(this=exp.convert(str(years)), unit=exp.var("YEAR"))
    day = exp.cast(exp.convert(today.isoformat()), "DATE")
    return exp.Sub(this=day, expression=interval)


class _Compiler:
    def __init__(self, fields: Iterable[str] | Mapping[str, str], today: Today) -> None:
        self._today = today
        self.types: dict[str, str | None] = (
            {k: str(v) for k, v in fields.items()}
            if isinstance(fields, Mapping)
            else dict.fromkeys(fields)
        )
        self.fields = set(self.types)
        self.nodes = 0
        self.used: set[str] = set()

    def node(self, node: Any, at: str, depth: int) -> exp.Expression:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise RowFilterError(f"more than {MAX_NODES} nodes", at=at)
        if depth > MAX_DEPTH:
            raise RowFilterError(f"nested deeper than {MAX_DEPTH}", at=at)
        if not isinstance(node, Mapping):
            raise RowFilterError("a node must be an object", at=at)
        keys = set(node)
        for joiner, build in (("and", exp.and_), ("or", exp.or_)):
            if keys == {joiner}:
                parts = node[joiner]
                if not isinstance(parts, list) or not parts:
                    raise RowFilterError(f"'{joiner}' takes a non-empty list", at=f"{at}{joiner}")
                compiled = [
                    self.node(p, f"{at}{joiner}[{i}].", depth + 1) for i, p in enumerate(parts)
                ]
                return exp.paren(build(*compiled, copy=False), copy=False)
        if keys == {"not"}:
            return exp.not_(self.node(node["not"], f"{at}not.", depth + 1), copy=False)
        return self.comparison(node, at)

    def comparison(self, node: Mapping, at: str) -> exp.Expression:
        keys = set(node)
        if not {"field", "op"} <= keys or keys - {"field", "op", "value"}:
            raise RowFilterError(
                "a node is {and: […]}, {or: […]}, {not: …} or {field, op, value}", at=at
            )
        field, op = node["field"], node["op"]
        if not isinstance(field, str) or field not in self.fields:
            raise RowFilterError("names no column of this resource", at=f"{at}field")
        if op not in OPS:
            raise RowFilterError(f"op must be one of {', '.join(OPS)}", at=f"{at}op", field=field)
        self.used.add(field)
        col, vat = _column(field), f"{at}value"
        if op in NULL_OPS:
            if "value" in node:
                raise RowFilterError(f"{op} takes no value", at=vat, field=field)
            return col.is_(exp.null()) if op == "is_null" else exp.not_(col.is_(exp.null()))
        if "value" not in node:
            raise RowFilterError(f"{op} needs a value", at=vat, field=field)
        value, kind = node["value"], self.types[field]
        if op in COMPARISONS:
            _typed(value, kind, vat, field)
            return COMPARISONS[op](this=col, expression=_scalar(value, vat, field))
        if op in LIST_OPS:
            if not isinstance(value, list) or not 0 < len(value) <= MAX_LIST:
                raise RowFilterError(f"{op} takes a list of 1 to {MAX_LIST}", at=vat, field=field)
            for i, v in enumerate(value):
                _typed(v, kind, f"{vat}[{i}]", field)
            items = [_scalar(v, f"{vat}[{i}]", field) for i, v in enumerate(value)]
            inside = col.isin(*items, copy=False)
            return inside if op == "in" else exp.not_(inside)
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise RowFilterError("between takes [low, high]", at=vat, field=field)
            for i, v in enumerate(value):
                _typed(v, kind, f"{vat}[{i}]", field)
            low, high = (_scalar(v, f"{vat}[{i}]", field) for i, v in enumerate(value))
            return exp.Between(this=col, low=low, high=high)
        if op == "prefix":
            if not isinstance(value, str) or not value:
                raise RowFilterError("prefix takes a non-empty string", at=vat, field=field)
            if kind is not None and kind not in ("string", "text"):
                raise RowFilterError(
                    f"prefix applies to text, not {kind}", at=f"{at}op", field=field
                )
            return exp.func("starts_with", exp.cast(col, "VARCHAR"), _scalar(value, vat, field))
        if kind is not None and kind not in DATE_TYPES | {"string"}:
            raise RowFilterError(
                f"{op} applies to a date field, not {kind}", at=f"{at}op", field=field
            )
        years = _age(value, vat, field)
        born = exp.TryCast(this=exp.cast(col, "VARCHAR"), to=exp.DataType.build("DATE"))
        if callable(self._today):  # asked once, and only by a filter on an age
            self._today = self._today()
        bound = _birthday_bound(years, self._today)
        if op == "age_ge":  # born on or before the day ``years`` ago
            return exp.LTE(this=born, expression=bound)
        return exp.GT(this=born, expression=bound)


def compile_filter(
    row_filter: Mapping | None,
    fields: Iterable[str] | Mapping[str, str],
    *,
    today: Today = beijing_day,
) -> exp.Expression | None:
    """The condition a row filter stands for, over ``fields`` only (given as a mapping of
    name → catalogue type, each value is also checked against its field's type); None for
    no filter. ``today``: the day ages are counted on, or what tells it (called only when
    the filter compares an age; default: today in Beijing)."""
    if row_filter is None:
        return None
    return _Compiler(fields, today).node(row_filter, "", 0)


def filter_fields(
    row_filter: Mapping | None, fields: Iterable[str] | Mapping[str, str]
) -> set[str]:
    """The fields a (valid) row filter reads."""
    if row_filter is None:
        return set()
    compiler = _Compiler(fields, beijing_day)
    compiler.node(row_filter, "", 0)
    return compiler.used


def to_sql(condition: exp.Expression) -> str:
    """The condition in DuckDB's dialect (sqlglot renders identifiers and literals)."""
    return condition.sql(dialect="duckdb")


__all__ = ["OPS", "RowFilterError", "compile_filter", "filter_fields", "to_sql"]
