"""``jsonPredicateHints`` and ``limitHint``: which of a query's files to hand out (提示裁剪).

Both hints are best effort (the protocol's words): :func:`prune` never fails and never
drops a file some row of which may match. A file goes only when its statistics
(``numRecords``, ``minValues``, ``maxValues``, ``nullCount``: ``files.file_stats``) *prove*
that no row matches the predicate, under SQL's three-valued logic (a comparison with a
null is never true). Anything it cannot read — bad JSON, an unknown op or value type, a
column the files do not have, a literal that does not parse, a statistic left out (a long
string's maximum, a boolean's bounds) — keeps the file.

The predicate tree (Delta Sharing protocol, "JSON predicates for Filtering"): leaves
``column`` (``name``, ``valueType``) and ``literal`` (``value``, ``valueType``); ``isNull``
(one child); ``equal``, ``lessThan``, ``lessThanOrEqual``, ``greaterThan``,
``greaterThanOrEqual`` (two leaves); ``and``, ``or`` (two or more); ``not`` (one). Value
types ``bool``, ``int``, ``long``, ``string``, ``date``, ``float``, ``double``,
``timestamp``. ``not`` is pushed down to the leaves (De Morgan; ``not a < b`` is
``a >= b`` in three-valued logic too), so a negated comparison is judged by the bounds as
well. Column names match case-insensitively, as the protocol's names do.

``limitHint``: files are kept in their order until the kept ones hold ``limit_hint`` rows
(by ``numRecords``); the Python client applies the limit itself on what it reads.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

if TYPE_CHECKING:
    from share_api.sharing.files import SharedFile

MAX_DEPTH = 64  # a deeper tree is not read (no recursion limit reached by a client's input)
MAX_HINT_CHARS = 1 << 20  # a longer hint is not parsed
log = logging.getLogger("streethub.share.sharing")

# the comparison a negated one becomes (three-valued logic: NOT (a < b) is a >= b)
_NEGATED = {
    "equal": "notEqual",
    "notEqual": "equal",
    "lessThan": "greaterThanOrEqual",
    "lessThanOrEqual": "greaterThan",
    "greaterThan": "lessThanOrEqual",
    "greaterThanOrEqual": "lessThan",
}


class Unreadable(Exception):
    """A part of the predicate the evaluator cannot judge: it keeps the file."""


# -- values: one comparable form per kind of value --------------------------------------------


def _timestamp(value: Any) -> dt.datetime:
    """A timestamp as naive UTC (a zone-less one is taken as UTC, as the statistics are)."""
    text = str(value).strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise Unreadable("a boolean is not a number")
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise Unreadable("not a boolean")
    return text == "true"


_PARSE: dict[str, Callable[[Any], Any]] = {
    "number": _number,
    "string": str,
    "date": lambda v: dt.date.fromisoformat(str(v).strip()),
    "timestamp": _timestamp,
    "bool": _boolean,
}

_KIND_OF_VALUE_TYPE = {
    "bool": "bool",
    "int": "number",
    "long": "number",
    "float": "number",
    "double": "number",
    "string": "string",
    "date": "date",
    "timestamp": "timestamp",
}


def _kind_of_arrow(typ: pa.DataType) -> str | None:
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "number"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
        return "string"
    if pa.types.is_date(typ):
        return "date"
    if pa.types.is_timestamp(typ):
        return "timestamp"
    if pa.types.is_boolean(typ):
        return "bool"
    return None


# -- a leaf's bounds in one file ---------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """What a file's statistics say of a leaf: every non-null value lies in [low, high]
    (None: unbounded on that side); ``nulls`` of ``rows`` values are null (None: unknown)."""

    low: Any
    high: Any
    nulls: int | None
    rows: int | None

    @property
    def all_null(self) -> bool:
        return self.nulls is not None and self.rows is not None and self.nulls >= self.rows


@dataclass(frozen=True)
class Leaf:
    """A parsed ``column`` (``name`` set) or ``literal`` (``value`` set) of a known kind."""

    kind: str | None  # None: a column of a type without an order
    name: str | None = None
    value: Any = None


def _leaf(node: Any, columns: dict[str, tuple[str, str | None]]) -> Leaf:
    """A ``column`` of the files (its kind: the files' type; a declared ``valueType`` of
    another kind is not judged) or a ``literal`` of a known ``valueType``."""
    if not isinstance(node, dict):
        raise Unreadable("a leaf is not an object")
    op = node.get("op")
    value_type = node.get("valueType")
    declared = _KIND_OF_VALUE_TYPE.get(value_type.lower()) if isinstance(value_type, str) else None
    if op == "column":
        name = node.get("name")
        if not isinstance(name, str) or name.lower() not in columns:
            raise Unreadable("a column the files do not have")
        actual, kind = columns[name.lower()]
        if value_type is not None and declared != kind:
            raise Unreadable("a column compared as another type than the files hold")
        return Leaf(kind, name=actual)
    if op == "literal":
        if declared is None or node.get("value") is None:
            raise Unreadable("a literal without a known value type")
        return Leaf(declared, value=node["value"])
    raise Unreadable("a comparison's child is not a column or a literal")


def _bounds(leaf: Leaf, stats: dict) -> Bounds:
    if leaf.kind is None:
        raise Unreadable("a column of a type without an order")
    parse = _PARSE[leaf.kind]
    if leaf.name is None:
        value = parse(leaf.value)
        return Bounds(value, value, 0, None)
    counts = _null_counts(leaf.name, stats)
    low = (stats.get("minValues") or {}).get(leaf.name)
    high = (stats.get("maxValues") or {}).get(leaf.name)
    return Bounds(None if low is None else parse(low), None if high is None else parse(high),
                  counts.nulls, counts.rows)  # fmt: skip


def _null_counts(name: str, stats: dict) -> Bounds:
    rows = stats.get("numRecords")
    nulls = (stats.get("nullCount") or {}).get(name)
    return Bounds(None, None, nulls if isinstance(nulls, int) else None,
                  rows if isinstance(rows, int) else None)  # fmt: skip


def _compare(op: str, a: Bounds, b: Bounds) -> bool:
    """May ``a op b`` be true for some row? (Unbounded sides: yes.)"""
    if a.all_null or b.all_null:
        return False  # a comparison with null is never true
    if op == "equal":
        return not (_below(a.high, b.low) or _below(b.high, a.low))
    if op == "notEqual":
        one = a.low is not None and a.low == a.high == b.low == b.high
        return not one
    if op == "lessThan":
        return a.low is None or b.high is None or a.low < b.high
    if op == "lessThanOrEqual":
        return a.low is None or b.high is None or a.low <= b.high
    if op == "greaterThan":
        return a.high is None or b.low is None or a.high > b.low
    if op == "greaterThanOrEqual":
        return a.high is None or b.low is None or a.high >= b.low
    raise Unreadable("an unknown comparison")


def _below(high: Any, low: Any) -> bool:
    return high is not None and low is not None and high < low


# -- the tree ----------------------------------------------------------------------------------


class Predicate:
    """A parsed predicate tree, judged file by file against the files' statistics."""

    def __init__(self, tree: dict, schema: pa.Schema) -> None:
        self.tree = tree
        self.columns = {f.name.lower(): (f.name, _kind_of_arrow(f.type)) for f in schema}

    def may_match(self, stats: dict) -> bool:
        """False only when ``stats`` prove no row of the file matches."""
        rows = stats.get("numRecords")
        if isinstance(rows, int) and rows == 0:
            return False
        try:
            return self._may(self.tree, False, stats, 0)
        except Exception:  # best effort: what cannot be judged keeps the file
            return True

    def _may(self, node: Any, negate: bool, stats: dict, depth: int) -> bool:
        if depth > MAX_DEPTH or not isinstance(node, dict):
            raise Unreadable("too deep or not an object")
        op = node.get("op")
        children = node.get("children") or []
        if not isinstance(children, list):
            raise Unreadable("children is not a list")
        if op in ("and", "or"):
            if not children:
                raise Unreadable("and/or without children")
            results = (self._judged(c, negate, stats, depth + 1) for c in children)
            # NOT (a AND b) is (NOT a) OR (NOT b), and the reverse
            return all(results) if (op == "and") != negate else any(results)
        if op == "not":
            if len(children) != 1:
                raise Unreadable("not takes one child")
            return self._may(children[0], not negate, stats, depth + 1)
        if op == "isNull":
            if len(children) != 1:
                raise Unreadable("isNull takes one child")
            leaf = _leaf(children[0], self.columns)
            if leaf.name is None:
                return negate  # a literal with a value is never null
            column = _null_counts(leaf.name, stats)
            if negate:  # is some value not null?
                return not column.all_null
            return column.nulls is None or column.nulls > 0
        if op in _NEGATED:
            if len(children) != 2:
                raise Unreadable("a comparison takes two children")
            left, right = (_leaf(c, self.columns) for c in children)
            if left.kind != right.kind:
                raise Unreadable("a comparison of two kinds of value")
            a, b = _bounds(left, stats), _bounds(right, stats)
            return _compare(_NEGATED[op] if negate else op, a, b)
        raise Unreadable("an unknown op")

    def _judged(self, node: Any, negate: bool, stats: dict, depth: int) -> bool:
        """One child of and/or: a child that cannot be judged may match (keeps the file)."""
        try:
            return self._may(node, negate, stats, depth)
        except Exception:  # best effort, as in may_match
            return True


def parse(json_predicate_hints: str | None, schema: pa.Schema) -> Predicate | None:
    """The hint as a :class:`Predicate`, or None when there is none or it is not JSON."""
    if not json_predicate_hints or not isinstance(json_predicate_hints, str):
        return None
    if len(json_predicate_hints) > MAX_HINT_CHARS:
        return None
    try:
        tree = orjson.loads(json_predicate_hints)
    except orjson.JSONDecodeError:
        return None
    return Predicate(tree, schema) if isinstance(tree, dict) else None


def prune(
    files: list[SharedFile],
    json_predicate_hints: str | None,
    limit_hint: int | None,
    schema: pa.Schema,
) -> list[SharedFile]:
    """The files of ``files`` (in order) a query must still hand out: without those whose
    statistics prove no row matches ``json_predicate_hints``, and none after the kept ones
    hold ``limit_hint`` rows. Best effort: never raises; a hint it cannot use prunes
    nothing."""
    try:
        predicate = parse(json_predicate_hints, schema)
    except Exception as exc:  # best effort: a hint never fails a query
        log.info("a predicate hint was not used: %s", type(exc).__name__)
        predicate = None
    kept: list[SharedFile] = []
    covered = 0
    limit = limit_hint if isinstance(limit_hint, int) and not isinstance(limit_hint, bool) else None
    for file in files:
        if limit is not None and limit >= 0 and covered >= limit:
            break
        stats = file.stats if isinstance(file.stats, dict) else {}
        if predicate is not None and not predicate.may_match(stats):
            continue
        kept.append(file)
        rows = stats.get("numRecords", file.rows)
        covered += rows if isinstance(rows, int) else 0
    return kept


__all__ = ["MAX_DEPTH", "Bounds", "Predicate", "parse", "prune"]
