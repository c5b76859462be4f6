"""De-identification measured on what the marts publish (去标识化率).

For every published mart (a ``catalog/marts/*.yaml`` whose table is in the lake) and every
column the catalogue files as L3/L4, each non-null cell is one sensitive value published.
It *carries its masking rule* when it has the form the column's rule publishes (the
presets in ``masking/masks.py`` and ``masking/generalise.py``: ``张*``, ``138****5678``,
``60-69``, a yes/no flag …) and the leak scanner (``masking.leaks.cell_kinds``) finds no
identifier in the clear in it. The forms here are written from the presets' documented
outputs, not by calling the masks again, so a mask that stopped masking is caught.

``measure_deidentification`` writes ``marts.deidentification``: one row per (mart, column)
with its level, rule, ``sensitive_values`` and ``carrying_rule``; the governance scorecard
sums them (de-identification rate = carrying ÷ sensitive values). No value is kept.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import polars as pl

from catalog.marts import Mart
from catalog.model import Level, MaskingRule
from lakehouse.lake import has_table
from marts.catalogue_tables import replace_tables
from masking.leaks import cell_kinds
from masking.pseudonym import PSEUDONYM_PATTERN

TABLE = "deidentification"
SCHEMA = {
    "mart": pl.String,
    "column": pl.String,
    "level": pl.String,
    "masking": pl.String,
    "sensitive_values": pl.Int64,
    "carrying_rule": pl.Int64,
}
_STARRED = r"|^\*+$"  # a value too short for its preset is starred whole
# the published form of each rule's output (text rules); None: no text form
RULE_FORMS: dict[str, str | None] = {
    MaskingRule.mask_name: r"^[^\s*\d]{1,2}\*+$" + _STARRED,
    MaskingRule.mask_mobile: r"^\d{3}\*{4}\d{4}$" + _STARRED,
    MaskingRule.mask_id: r"^\d{6}\*{8}\d{3}[\dX]$" + _STARRED,
    MaskingRule.mask_document: r"^[0-9A-Z]{2,6}\*+[0-9A-Z]{2,4}$" + _STARRED,
    MaskingRule.mask_bank_card: r"^\*+\d{4}$" + _STARRED,
    MaskingRule.mask_email: r"^[^@]\*{3}@[^@]+$" + _STARRED,
    MaskingRule.mask_plate: r"^..·\*+..$" + _STARRED,
    MaskingRule.mask_address: r"^\D*$",  # cut to the community: no number below it
    MaskingRule.generalise_age: r"^\d{1,3}-\d{1,3}$|^\d{1,3}\+$",  # 60-69, 80+
    MaskingRule.generalise_year: r"^\d{4}$",
    MaskingRule.generalise_month: r"^\d{4}-\d{2}$",
    MaskingRule.generalise_grid: r"^[\w.\-]+$",
    MaskingRule.scrub_text: r"(?s)^.*$",  # the leak scan decides
    MaskingRule.pseudonymise: PSEUDONYM_PATTERN,
    MaskingRule.encrypt: r"^(a1|g1):",
}
# rules whose values are never text the leak scanner should read (ciphertext, digests)
_OPAQUE = {MaskingRule.pseudonymise, MaskingRule.encrypt}
_FLAG = "generalise_flag"  # MaskingRule.generalise_flag (a yes/no): a boolean column


def carrying_rule(values: pl.Series, rule: str) -> int:
    """How many non-null ``values`` carry ``rule`` (see the module doc)."""
    values = values.drop_nulls()
    if values.is_empty():
        return 0
    if values.dtype == pl.Boolean:  # a yes/no holds less than any band, year or month
        return values.len() if rule == _FLAG or rule.startswith("generalise_") else 0
    if rule == _FLAG:
        return 0
    if rule == MaskingRule.generalise_year and values.dtype.is_integer():
        return int(values.is_between(1000, 9999).sum())
    if rule == MaskingRule.generalise_grid and values.dtype.is_float():
        return values.len()  # a cell centre (to_grid): a number that names no one
    form = RULE_FORMS.get(rule)
    if form is None or values.dtype not in (pl.String, pl.Categorical):
        return 0  # none, suppress (published anyway), or a value with no text form
    text = values.cast(pl.String)
    shaped = text.filter(text.str.contains(form))
    if rule in _OPAQUE:
        return shaped.len()
    # the scan is a function of the text: each distinct value scanned once, counted as often
    # as it occurs (an age band column of 200,000 residents holds ten values)
    counted = shaped.value_counts(name="n")
    return sum(int(n) for v, n in counted.iter_rows() if not cell_kinds(v))


def sensitive_columns(mart: Mart) -> list[tuple[str, str, str]]:
    """(column, level, masking rule) of the mart's L3/L4 columns."""
    return [
        (c.name, Level(str(getattr(c.level, "value", c.level))).value, str(c.masking.value))
        for c in mart.columns
        if Level(str(getattr(c.level, "value", c.level))).sensitive
    ]


def measure(con: duckdb.DuckDBPyConnection, marts: Mapping[str, Mart]) -> pl.DataFrame:
    """One row per sensitive column of every mart in the lake (see the module doc)."""
    rows: list[dict] = []
    for name, mart in sorted(marts.items()):
        columns = sensitive_columns(mart)
        if not columns or not has_table(con, "marts", name):
            continue
        select = ", ".join(f'"{c}"' for c, _, _ in columns)
        frame = con.execute(f'SELECT {select} FROM marts."{name}"').pl()
        for column, level, rule in columns:
            rows.append(
                {
                    "mart": name,
                    "column": column,
                    "level": level,
                    "masking": rule,
                    "sensitive_values": frame[column].drop_nulls().len(),
                    "carrying_rule": carrying_rule(frame[column], rule),
                }
            )
    return pl.DataFrame(rows, schema=SCHEMA)


def measure_deidentification(
    con: duckdb.DuckDBPyConnection, marts: Mapping[str, Mart]
) -> pl.DataFrame:
    """Measure and replace ``marts.deidentification`` in one transaction."""
    frame = measure(con, marts)
    replace_tables(con, {TABLE: frame})
    return frame
