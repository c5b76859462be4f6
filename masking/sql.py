"""The masking rules as SQL functions on a DuckDB connection, and how strict each rule is.

A mart's SQL reads sensitive curated values in plain text inside its build and must publish
them through the function named after the column's rule (``masking/masks.py`` and
``masking/generalise.py`` stay the one home of each mask; here they are only registered, as
vectorised Arrow UDFs: one polars pass per DuckDB vector, never a Python call per value):

=============================  ==========================  ===========================
SQL                            rule                        example
=============================  ==========================  ===========================
``mask_name(x)``               ``mask_name``               张*
``mask_mobile(x)``             ``mask_mobile``             138****5678
``mask_id(x)``                 ``mask_id``                 110105********002X
``mask_document(x)``           ``mask_document``           110105**********2X01
``mask_address(x)``            ``mask_address``            …建外社区
``mask_bank_card(x)``          ``mask_bank_card``          ***************1234
``mask_email(x)``              ``mask_email``              a***@example.com
``mask_plate(x)``              ``mask_plate``              京A·***45
``generalise_age(b, as_of)``   ``generalise_age``          60-69 (age on ``as_of``)
``generalise_year(d)``         ``generalise_year``         1954
``generalise_month(d)``        ``generalise_month``        2026-11
``generalise_flag(x)``         ``generalise_flag``         true (holds a value)
``scrub_text(t)``              ``scrub_text``              free text, PII masked
=============================  ==========================  ===========================

``count(x)`` / ``count(DISTINCT x)`` publish no value of ``x`` (``COUNTS``).

Strictness (:data:`STRICTNESS`): how little of a value a rule lets a reader of the published
table learn. A source field's rule is met by that rule or by any rule of a higher rank
(:func:`satisfies`); rules of one rank but different kinds (a name mask and a mobile mask)
do not stand in for each other. Where a column combines sources, every source's rule must
be met, so the strictest one decides (:func:`strictest`: the least strict rule meeting them
all); what a value passed through is the highest-ranked mask on its way (:func:`strongest`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import duckdb
import polars as pl
import pyarrow as pa

from catalog.model import MaskingRule
from masking import generalise as gen
from masking.masks import DISPLAY_MASKS

R = MaskingRule
# rank: what a reader of the published value learns (higher: less)
STRICTNESS: dict[MaskingRule, int] = {
    R.none: 0,  # the value
    R.mask_id: 1, R.mask_document: 1, R.mask_mobile: 1, R.mask_name: 1, R.mask_address: 1,
    R.mask_bank_card: 1, R.mask_email: 1, R.mask_plate: 1,  # part of it
    R.scrub_text: 1, R.generalise_month: 1, R.generalise_grid: 1,  # the text less PII; a month
    R.generalise_year: 2,  # a year
    R.generalise_age: 3,  # a ten-year age band
    R.pseudonymise: 4,  # which rows hold the same value
    R.encrypt: 5,  # whether there is a value (the value itself with authority only)
    R.generalise_flag: 6,  # whether there is a value, to everyone
    R.suppress: 7,  # nothing
}  # fmt: skip
assert set(STRICTNESS) == set(MaskingRule), "every masking rule needs a strictness rank"

# aggregates that publish no value of what they read (a count publishes how many)
COUNTS = frozenset({"count"})
COUNTED = R.suppress  # the rule a counted value is published under: none of it


def satisfies(applied: MaskingRule, required: MaskingRule) -> bool:
    """``applied`` meets ``required``: the same rule, or a strictly stricter one."""
    return applied is required or STRICTNESS[applied] > STRICTNESS[required]


def strictest(rules: Iterable[MaskingRule]) -> MaskingRule:
    """The least strict rule that meets every one of ``rules`` (``none`` for none): the
    strictest of them, or, where the strictest are two kinds of one rank (a name mask and a
    mobile mask), the first rule of a higher rank."""
    wanted = set(rules)
    for rule in sorted(MaskingRule, key=lambda r: STRICTNESS[r]):  # stable: enum order in a rank
        if all(satisfies(rule, r) for r in wanted):
            return rule
    return R.suppress  # unreachable: suppress meets every rule


def strongest(applied: Iterable[MaskingRule]) -> MaskingRule:
    """Of rules a value passed through one after another (masks nested on its way out, a
    pseudonym made upstream), the one of highest rank (``none`` for none; ties keep the
    first): never a rule it did not pass through."""
    out = R.none
    for rule in applied:
        if STRICTNESS[rule] > STRICTNESS[out]:
            out = rule
    return out


def _column(values: pa.Array | pa.ChunkedArray, dtype: pl.DataType = pl.String) -> pl.Series:
    return pl.Series("v", pl.from_arrow(values)).cast(dtype, strict=False)


def _unary(mask: Callable[[pl.Expr], pl.Expr], dtype: pl.DataType = pl.String):
    def udf(values: pa.Array) -> pa.Array:
        frame = _column(values).to_frame()
        return frame.select(mask(pl.col("v")).cast(dtype)).to_series().to_arrow()

    return udf


def _age_band(birth: pa.Array, as_of: pa.Array) -> pa.Array:
    frame = pl.DataFrame({"b": _column(birth), "d": _column(as_of, pl.Date)})
    return frame.select(gen.age_band(gen.age_on(pl.col("b"), pl.col("d")))).to_series().to_arrow()


def _scrub(values: pa.Array) -> pa.Array:
    from masking.text import scrub_series

    return scrub_series(_column(values)).cast(pl.String).to_arrow()


VARCHAR, DATE, BOOLEAN = (
    duckdb.sqltype("VARCHAR"),
    duckdb.sqltype("DATE"),
    duckdb.sqltype("BOOLEAN"),
)
# SQL name → (rule, function over Arrow arrays, parameter types, return type)
SQL_MASKS: dict[str, tuple[MaskingRule, Callable, list, duckdb.sqltype]] = {
    **{
        rule.value: (rule, _unary(mask), [VARCHAR], VARCHAR) for rule, mask in DISPLAY_MASKS.items()
    },
    R.generalise_age.value: (R.generalise_age, _age_band, [VARCHAR, DATE], VARCHAR),
    R.generalise_year.value: (R.generalise_year, _unary(gen.to_year), [VARCHAR], VARCHAR),
    R.generalise_month.value: (R.generalise_month, _unary(gen.to_month), [VARCHAR], VARCHAR),
    R.generalise_flag.value: (
        R.generalise_flag,
        _unary(gen.holds_value, pl.Boolean),
        [VARCHAR],
        BOOLEAN,
    ),
    R.scrub_text.value: (R.scrub_text, _scrub, [VARCHAR], VARCHAR),
}


def mask_rule(function: str) -> MaskingRule | None:
    """The rule a SQL function applies (``mask_name`` → mask_name; ``count`` → what a count
    publishes, nothing of the value); None for any other function."""
    name = function.lower()
    if name in COUNTS:
        return COUNTED
    entry = SQL_MASKS.get(name)
    return None if entry is None else entry[0]


UDF_PREFIX = "streethub_"  # the Arrow UDF behind each SQL mask (the macro casts its inputs)


def register_masks(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Make every mask of :data:`SQL_MASKS` callable on ``con``; the names.

    Each mask is an Arrow UDF of the database (registered once per DuckDB instance, so a
    cursor shares it) behind a temporary macro of the connection that casts its inputs
    (a DATE or TIMESTAMP to text for the date rules, ``as_of`` to DATE), so
    ``generalise_month(e.at)`` works on any type.
    """
    have = {
        name
        for (name,) in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE starts_with(function_name, ?)",
            [UDF_PREFIX],
        ).fetchall()
    }
    for name, (_, fn, params, returns) in SQL_MASKS.items():
        udf = UDF_PREFIX + name
        if udf not in have:
            con.create_function(
                udf, fn, params, returns, type="arrow", null_handling="special", side_effects=False
            )
        args = [f"a{i}" for i in range(len(params))]
        casts = ", ".join(f"CAST({a} AS {t})" for a, t in zip(args, params, strict=True))
        # the UDF named in its catalogue (``system``, where DuckDB keeps a connection's Python
        # functions): a bare name is looked up in the default catalogue first, which on a
        # cursor of the lake is a DuckLake transaction of its own (~1.5 ms CPU a macro)
        con.execute(
            f"CREATE OR REPLACE TEMP MACRO {name}({', '.join(args)}) AS system.main.{udf}({casts})"
        )
    return list(SQL_MASKS)


__all__ = [
    "COUNTED",
    "COUNTS",
    "SQL_MASKS",
    "STRICTNESS",
    "mask_rule",
    "register_masks",
    "satisfies",
    "strictest",
    "strongest",
]
