"""k-anonymity over the catalogue's quasi-identifiers (GB/T 37964, GB/T 42460 annex D).

``check_k`` measures it; ``enforce_k`` generalises further, one step at a time on the
quasi-identifier with the most distinct values, then suppresses (drops) the rows still
in classes smaller than k, and refuses when that would drop more than
``max_suppression`` of the rows.

Generalisation ladders, chosen from the column's values:

- integer ages → bands of 5 → 10 → 20 years → ``*``; bands ``30-39`` → 20-year bands → ``*``
- years ``1954`` → 5-year spans ``1950-1954`` → decades ``1950s`` → ``*``
- months ``2026-11`` → year → ``*``; dates ``2026-11-20`` → month → year → ``*``
- region codes of 12 digits (community) → 9 (street) → 6 (county) → ``*``
- anything else → ``*`` (the column says nothing)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from catalog.model import Dataset
from masking.errors import KAnonymityError

Step = Callable[[pl.Expr], pl.Expr]
ALL = "*"


@dataclass
class KReport:
    k: int
    rows: int
    classes: int
    smallest_class: int
    classes_below_k: int
    rows_below_k: int
    worst_class: dict[str, Any] | None  # QI values of the smallest class (generalised values)

    @property
    def ok(self) -> bool:
        return self.classes_below_k == 0


@dataclass
class EnforceReport:
    k: int
    steps: list[str] = field(default_factory=list)
    suppressed_rows: int = 0
    rows_before: int = 0
    final: KReport | None = None


def quasi_identifiers(dataset: Dataset, frame: pl.DataFrame | None = None) -> list[str]:
    """The catalogue's quasi-identifier fields (those present in ``frame`` if given)."""
    return [
        f.name
        for f in dataset.fields
        if f.quasi_identifier and (frame is None or f.name in frame.columns)
    ]


def check_k(frame: pl.DataFrame, qis: list[str], k: int = 5) -> KReport:
    """Equivalence classes over ``qis``: smallest size, how many (and rows) below k, the worst."""
    if not qis:
        raise KAnonymityError("no quasi-identifiers to check k-anonymity over")
    if frame.height == 0:
        return KReport(k, 0, 0, 0, 0, 0, None)
    sizes = frame.group_by(qis).len("n").sort("n")
    below = sizes.filter(pl.col("n") < k)
    worst = sizes.row(0, named=True)
    return KReport(
        k=k,
        rows=frame.height,
        classes=sizes.height,
        smallest_class=int(worst["n"]),
        classes_below_k=below.height,
        rows_below_k=int(below["n"].sum()),
        worst_class={q: worst[q] for q in qis},
    )


def _band(width: int) -> Step:
    def step(e: pl.Expr) -> pl.Expr:
        lo = (e.cast(pl.Int64, strict=False) // width) * width
        return pl.concat_str([lo.cast(pl.String), pl.lit("-"), (lo + width - 1).cast(pl.String)])

    return step


def _widen_band(width: int) -> Step:
    def step(e: pl.Expr) -> pl.Expr:
        lo = e.cast(pl.String).str.extract(r"^(\d+)", 1).cast(pl.Int64, strict=False)
        return _band(width)(lo)

    return step


def _year_span(width: int) -> Step:
    return _widen_band(width)


def _decade(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.String).str.slice(0, 3) + pl.lit("0s")


def _slice(n: int) -> Step:
    return lambda e: e.cast(pl.String).str.slice(0, n)


def _all(e: pl.Expr) -> pl.Expr:
    return pl.lit(ALL, dtype=pl.String)


def ladder(series: pl.Series) -> list[tuple[str, Step]]:
    """Generalisation steps for a column, from its dtype and values."""
    values = series.drop_nulls()
    sample = values.cast(pl.String).head(200).to_list()

    def every(pattern: str) -> bool:
        return bool(sample) and all(re.fullmatch(pattern, str(v)) for v in sample)

    if series.dtype.is_integer():
        return [("5-year bands", _band(5)), ("10-year bands", _band(10)),
                ("20-year bands", _band(20)), ("suppress", _all)]  # fmt: skip
    if every(r"\d+-\d+"):
        return [("20-year bands", _widen_band(20)), ("suppress", _all)]
    if every(r"(18|19|20)\d{2}"):
        return [("5-year spans", _year_span(5)), ("decades", _decade), ("suppress", _all)]
    if every(r"\d{4}-\d{2}"):
        return [("year", _slice(4)), ("suppress", _all)]
    if series.dtype in (pl.Date, pl.Datetime) or every(r"\d{4}-\d{2}-\d{2}.*"):
        return [("month", _slice(7)), ("year", _slice(4)), ("suppress", _all)]
    if every(r"\d{12}"):
        return [("street (9 digits)", _slice(9)), ("county (6 digits)", _slice(6)),
                ("suppress", _all)]  # fmt: skip
    if every(r"\d{9}"):
        return [("county (6 digits)", _slice(6)), ("suppress", _all)]
    return [("suppress", _all)]


def enforce_k(
    frame: pl.DataFrame,
    qis: list[str],
    k: int = 5,
    *,
    max_suppression: float = 0.05,
    ladders: dict[str, list[tuple[str, Step]]] | None = None,
) -> tuple[pl.DataFrame, EnforceReport]:
    """Generalise step by step, then drop the rows still below k; report what was done.

    Raises KAnonymityError when more than ``max_suppression`` of the rows would go.
    Generalisation stops as soon as the rows below k fit within that share.
    """
    report = EnforceReport(k=k, rows_before=frame.height)
    pending = {q: list((ladders or {}).get(q) or ladder(frame[q])) for q in qis}
    out = frame
    allowed = int(max_suppression * frame.height)
    while True:
        current = check_k(out, qis, k)
        if current.rows_below_k <= allowed:
            break
        candidates = [q for q in qis if pending[q]]
        if not candidates:
            break
        q = max(candidates, key=lambda c: out[c].n_unique())
        label, step = pending[q].pop(0)
        out = out.with_columns(step(pl.col(q)).alias(q))
        report.steps.append(f"{q}: {label}")
    current = check_k(out, qis, k)
    if current.rows_below_k > allowed:
        raise KAnonymityError(
            f"k={k} would need suppressing {current.rows_below_k} of {frame.height} rows "
            f"(more than {max_suppression:.0%}) after {len(report.steps)} generalisation step(s)"
        )
    if current.rows_below_k:
        sizes = out.group_by(qis).len("_k_n")
        out = out.join(sizes, on=qis, how="left", nulls_equal=True)
        out = out.filter(pl.col("_k_n") >= k).drop("_k_n")
        report.suppressed_rows = current.rows_below_k
        report.steps.append(f"suppress {current.rows_below_k} row(s) in classes below k")
    report.final = check_k(out, qis, k)
    return out, report
