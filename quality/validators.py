"""Vectorised validators for Chinese identifiers and codes, as polars expressions.

Each function takes an expression over *standardised* text (half-width, trimmed,
upper-case X) and returns an expression; nothing here loops over rows in Python
except :func:`is_mojibake`, which the gate runs over distinct values only.

- citizen ID (公民身份号码, GB 11643-1999): check character, 15→18 upgrade,
  birth date and gender carried in the number;
- unified social credit code (统一社会信用代码, GB 32100-2015);
- Luhn (bank cards), mobiles, region codes (GB/T 2260, retired codes kept),
  coordinates inside the street.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from importlib import resources

import polars as pl

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
ID18 = r"^\d{17}[\dX]$"
ID15 = r"^\d{15}$"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
USCC = r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"
MOBILE = r"^1[3-9]\d{9}$"


ID_CHUNKS = ((0, 5), (5, 4), (9, 4), (13, 4))  # (start, length): the 17 digits in 4 chunks


@cache
def _id_chunk_sums(start: int, length: int) -> pl.Series:
    """Σ digit·weight of one chunk of the 17 digits, for every chunk value 0 … 10^length − 1."""
    value = pl.int_range(0, 10**length, eager=True)
    terms = (
        ((value // 10 ** (length - 1 - i)) % 10) * ID_WEIGHTS[start + i] for i in range(length)
    )
    return pl.Series(sum(terms)).cast(pl.Int64)


def _id_check_of_number(n: pl.Expr) -> pl.Expr:
    """GB 11643 check character of the 17 leading digits given as one integer.

    The number is cut into four chunks and each chunk's share of Σ digitᵢ·weightᵢ
    is looked up in a table (:func:`_id_chunk_sums`): a handful of integer
    operations per row instead of 17 slices or divisions.
    """
    parts = [
        pl.lit(_id_chunk_sums(start, length)).gather(
            (n // 10 ** (17 - start - length)) % 10**length
        )
        for start, length in ID_CHUNKS
    ]
    total = pl.sum_horizontal(parts)  # a null number (non-ASCII digits) sums to 0, as before
    return pl.lit(pl.Series(list(ID_CHECK), dtype=pl.String)).gather(total % 11)


def id_check_char(first17: pl.Expr) -> pl.Expr:
    """GB 11643 check character of the first 17 digits (null when they are not digits)."""
    n = first17.str.slice(0, 17).cast(pl.Int64, strict=False)
    return pl.when(first17.str.contains(r"^\d{17}")).then(_id_check_of_number(n))


def id_birth_date(cid: pl.Expr) -> pl.Expr:
    """Birth date carried by an 18-character ID (null when it is not a real date)."""
    return cid.str.slice(6, 8).str.to_date("%Y%m%d", strict=False)


def id_gender(cid: pl.Expr) -> pl.Expr:
    """男 when the sequence number (17th character) is odd, 女 when even."""
    seq = cid.str.slice(16, 1).cast(pl.Int32, strict=False)
    return pl.when(seq % 2 == 1).then(pl.lit("男")).when(seq.is_not_null()).then(pl.lit("女"))


def upgrade_id_15(cid: pl.Expr) -> pl.Expr:
    """15-digit pre-1999 numbers → 18 characters (insert 19, add the check); others unchanged."""
    # arithmetic on the number, not string slices: each use of it is cheap to re-evaluate
    old = pl.when(cid.str.len_bytes() == 15).then(cid.cast(pl.Int64, strict=False))
    n = (old // 10**9) * 10**11 + 19 * 10**9 + old % 10**9  # region + 19 + the rest
    spliced = cid.str.slice(0, 6) + pl.lit("19") + cid.str.slice(6, 9)  # non-ASCII digits
    first17 = pl.coalesce(n.cast(pl.String).str.zfill(17), spliced)
    return pl.when(cid.str.contains(ID15)).then(first17 + _id_check_of_number(n)).otherwise(cid)


def citizen_id_check_ok(cid: pl.Expr) -> pl.Expr:
    """True when the check character is right; null when the ID is not 18 characters."""
    return pl.when(cid.str.contains(ID18)).then(cid.str.slice(17, 1) == id_check_char(cid))


def citizen_id_valid(cid: pl.Expr) -> pl.Expr:
    """Form, check character and embedded birth date all right (null stays null)."""
    return (
        pl.when(cid.is_null())
        .then(None)
        .otherwise(
            cid.str.contains(ID18).fill_null(False)
            & citizen_id_check_ok(cid).fill_null(False)
            & id_birth_date(cid).is_not_null()
        )
    )


def uscc_check_char(first17: pl.Expr) -> pl.Expr:
    """GB 32100 check character of the first 17 characters (null on a foreign character)."""
    value = {c: i for i, c in enumerate(USCC_ALPHABET)}
    parts = [
        first17.str.slice(i, 1).replace_strict(value, default=None, return_dtype=pl.Int64) * w
        for i, w in enumerate(USCC_WEIGHTS)
    ]
    total = pl.sum_horizontal(parts, ignore_nulls=False)
    return ((31 - total % 31) % 31).replace_strict(
        dict(enumerate(USCC_ALPHABET)), default=None, return_dtype=pl.String
    )


def uscc_valid(code: pl.Expr) -> pl.Expr:
    """Form and check character of a unified social credit code (null stays null)."""
    ok = code.str.contains(USCC).fill_null(False) & (
        code.str.slice(17, 1) == uscc_check_char(code)
    ).fill_null(False)
    return pl.when(code.is_null()).then(None).otherwise(ok)


def luhn_valid(number: pl.Expr, max_len: int = 19) -> pl.Expr:
    """Luhn (ISO/IEC 7812) over a string of digits (non-digits → False, null stays null)."""
    rev = number.str.reverse()
    terms = []
    for i in range(max_len):
        d = rev.str.slice(i, 1).cast(pl.Int32, strict=False).fill_null(0)
        if i % 2:
            d = pl.when(d * 2 > 9).then(d * 2 - 9).otherwise(d * 2)
        terms.append(d)
    ok = (pl.sum_horizontal(terms) % 10 == 0) & number.str.contains(r"^\d+$").fill_null(False)
    ok = ok & (number.str.len_chars() <= max_len)
    return pl.when(number.is_null()).then(None).otherwise(ok)


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


def is_mojibake(text: str) -> bool:
    """UTF-8 bytes that were read as GBK (the classic 锟斤拷 family of garbling).

    The garbled text is rebuilt into bytes (each ``?`` stands for one byte the
    GBK decoder could not map) and decoded as UTF-8: mojibake comes back as
    mostly CJK text, a genuine GBK-representable string comes back as noise.
    """
    if text.isascii():
        return False
    chunks = []
    for c in text:
        if c in "?\ufffd":
            chunks.append(b"\x80")
            continue
        try:
            chunks.append(c.encode("gbk"))
        except UnicodeEncodeError:
            return False
    decoded = b"".join(chunks).decode("utf-8", errors="replace")
    cjk = sum(1 for c in decoded if "\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef")
    bad = decoded.count("\ufffd")
    return cjk >= 1 and bad * 4 <= cjk


def mojibake(text: pl.Expr) -> pl.Expr:
    """Vectorised wrapper of :func:`is_mojibake`: Python runs once per distinct value."""

    def _batch(s: pl.Series) -> pl.Series:
        uniq = s.drop_nulls().unique()
        flags = {v: is_mojibake(v) for v in uniq.to_list()}
        bad = [v for v, f in flags.items() if f]
        return s.is_in(pl.Series(bad, dtype=pl.String).implode())

    return text.map_batches(_batch, return_dtype=pl.Boolean)
