"""Vectorised validators for mobiles, region codes, coordinates and mojibake (polars).

Each function takes an expression over *standardised* text (half-width, trimmed,
upper-case X) and returns an expression; nothing here loops over rows in Python
except :func:`is_mojibake`, which the gate runs over distinct values only.

- mobiles, region codes (GB/T 2260, retired codes kept), coordinates inside the street.

The citizen ID (GB 11643: check character, 15→18 upgrade, birth date, gender), the unified
social credit code (GB 32100), Luhn, the spellings of mobiles and landlines and the full-width table have their one home in
:mod:`catalog.identifiers`, which masking uses too.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import polars as pl

from catalog.identifiers import MOBILE


def mobile_valid(phone: pl.Expr) -> pl.Expr:
    """An 11-digit mainland mobile number 1[3-9]xxxxxxxxx."""
    return phone.str.contains(MOBILE)


@lru_cache(maxsize=1)
def region_codes() -> frozenset[str]:
    """Every 6-digit administrative division code python-stdnum knows, retired ones included.

    IDs keep the region code they were issued under (崇文区 110103, retired in
    2010, still appears), so validation accepts any code that ever existed.
    """
    text = resources.files("stdnum").joinpath("cn/loc.dat").read_text(encoding="utf-8")
    codes: set[str] = set()
    province = None
    for line in text.splitlines():
        if m := re.match(r"^(\d{2}) ", line):
            province = m.group(1)
            codes.add(province + "0000")
        elif (m := re.match(r"^\s+(\d{4}) ", line)) and province:
            codes.add(province + m.group(1))
    return frozenset(codes)


def region_code_valid(code: pl.Expr) -> pl.Expr:
    """The first 6 characters are a known county-level division code."""
    return code.str.slice(0, 6).is_in(sorted(region_codes()))


def in_bbox(
    lon: pl.Expr,
    lat: pl.Expr,
    bbox: tuple[float, float, float, float],
    margin: float = 0.0,
) -> pl.Expr:
    """The point lies in the bounding box (with a margin); null when either part is null."""
    x0, y0, x1, y1 = bbox
    return lon.is_between(x0 - margin, x1 + margin) & lat.is_between(y0 - margin, y1 + margin)


_CJK = re.compile("[\u3000-\u9fff\uff00-\uffef]")


def is_mojibake(text: str) -> bool:
    """UTF-8 bytes that were read as GBK (the classic 锟斤拷 family of garbling).

    The garbled text is rebuilt into bytes (each ``?`` stands for one byte the
    GBK decoder could not map) and decoded as UTF-8: mojibake comes back as
    mostly CJK text, a genuine GBK-representable string comes back as noise.
    The whole text is encoded at once (GBK is stateless, and no GBK character's
    bytes hold ``?``: its trail bytes start at 0x40), so a ``?`` byte is exactly
    where a ``?`` or U+FFFD stood.
    """
    if text.isascii():
        return False
    try:
        data = text.replace("\ufffd", "?").encode("gbk").replace(b"?", b"\x80")
    except UnicodeEncodeError:
        return False
    decoded = data.decode("utf-8", errors="replace")
    cjk = len(_CJK.findall(decoded))
    return cjk >= 1 and decoded.count("\ufffd") * 4 <= cjk


def mojibake(text: pl.Expr) -> pl.Expr:
    """Vectorised wrapper of :func:`is_mojibake`: Python runs once per distinct value."""

    def _batch(s: pl.Series) -> pl.Series:
        uniq = s.drop_nulls().unique()
        flags = {v: is_mojibake(v) for v in uniq.to_list()}
        bad = [v for v, f in flags.items() if f]
        return s.is_in(pl.Series(bad, dtype=pl.String).implode())

    return text.map_batches(_batch, return_dtype=pl.Boolean)
