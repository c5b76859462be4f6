"""Generalisation (GB/T 37964 泛化) as polars expressions.

- ages → bands (``30-39``; width configurable)
- birth dates → year (``1954``); dates / times → month (``2026-11``)
- coordinates → the centre of a grid cell of about 500 m (0.0045° of latitude;
  0.0059° of longitude, which is 500 m at Beijing's 40° N)

Outputs are text (bands, years, months) or floats (grid centres); nulls stay null and
anything that does not parse becomes null (never the original value).
"""

from __future__ import annotations

import polars as pl

LAT_STEP = 0.0045  # ≈ 500 m
LON_STEP = 0.0059  # ≈ 500 m at 40° N (cos 40° ≈ 0.766)
_LON_NAMES = ("lon", "lng", "longitude", "经度")


def age_band(expr: pl.Expr, width: int = 10) -> pl.Expr:
    """Age → ``lo-hi`` band of ``width`` years (``30-39``)."""
    age = expr.cast(pl.Int64, strict=False)
    lo = (age // width) * width
    return pl.concat_str([lo.cast(pl.String), pl.lit("-"), (lo + width - 1).cast(pl.String)])


def _year_month(expr: pl.Expr) -> pl.Expr:
    """A struct of year and zero-padded month from a date, datetime or standard text."""
    text = expr.cast(pl.String).str.strip_chars()
    return text.str.extract_groups(r"^(?P<y>\d{4})(?:[-/.年]?(?P<m>\d{1,2}))?")


def to_year(expr: pl.Expr) -> pl.Expr:
    """Birth date (date, datetime or ``YYYY-MM-DD`` text) → ``YYYY``."""
    return _year_month(expr).struct.field("y")


def to_month(expr: pl.Expr) -> pl.Expr:
    """Date or time → ``YYYY-MM``."""
    ym = _year_month(expr)
    month = ym.struct.field("m").str.zfill(2)
    return (
        pl.when(month.is_not_null())
        .then(pl.concat_str([ym.struct.field("y"), pl.lit("-"), month]))
        .otherwise(None)
    )


def to_grid(expr: pl.Expr, axis: str = "lat", step: float | None = None) -> pl.Expr:
    """Coordinate → centre of its ~500 m grid cell (``axis`` "lat" or "lon")."""
    step = step or (LON_STEP if axis == "lon" else LAT_STEP)
    value = expr.cast(pl.Float64, strict=False)
    return ((value / step).floor() * step + step / 2).round(6)


def axis_of(field_name: str) -> str:
    """ "lon" for longitude-like field names, else "lat"."""
    name = field_name.lower()
    return "lon" if any(k in name for k in _LON_NAMES) else "lat"


def age_on(birth_date: pl.Expr, as_of: pl.Expr) -> pl.Expr:
    """Whole years from a birth date (date or ``YYYY-MM-DD`` text) to ``as_of`` (a date):
    one less before the birthday of that year; null where either does not parse."""
    born = birth_date.cast(pl.String).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    day = as_of.cast(pl.Date, strict=False)
    before_birthday = (day.dt.month() < born.dt.month()) | (
        (day.dt.month() == born.dt.month()) & (day.dt.day() < born.dt.day())
    )
    return (day.dt.year() - born.dt.year() - before_birthday.cast(pl.Int32)).cast(pl.Int64)


def holds_value(expr: pl.Expr) -> pl.Expr:
    """A specific identity or health value → whether there is one (``generalise_flag``):
    true for any non-blank value, false for null or blank; the value itself never leaves."""
    return expr.cast(pl.String).str.strip_chars().str.len_chars().fill_null(0) > 0
