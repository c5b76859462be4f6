"""Identifier rules, one home for each (quality/ and masking/ both import this module).

- citizen ID (公民身份号码, GB 11643-1999): 18 characters = region (6) + birth date (8) +
  sequence (3) + check character; weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 over the
  first 17 digits, sum mod 11 indexes ``10X98765432``. A 15-digit pre-1999 number is
  upgraded by inserting ``19`` before its 2-digit year and adding the check character;
- unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters over
  ``0123456789ABCDEFGHJKLMNPQRTUWXY``, check = (31 − Σ value·weight mod 31) mod 31;
- Luhn (ISO/IEC 7812, bank cards);
- phones: mainland mobiles (1[3-9] + 9 digits) written with a country prefix, separators
  or an extension; landlines in any spelling → ``010-65123456`` (libphonenumber);
- full-width → half-width: U+FF01–FF5E → U+0021–007E and the ideographic space U+3000 →
  a space, one character for one (offsets in a text line up);
- a name in parts (少数民族 and transliterated foreign names: 买买提·艾力, 约翰·史密斯) is
  joined by the interpunct U+00B7, as the resident ID card prints it; exports and typed
  text also join them with look-alikes (• ・ ‧ ∙ ⋅ ･) or a full stop (. ．), which
  ``name_dots`` folds into U+00B7 between Han characters;
- a two-character name padded to a roster's width (王　芳, 王 芳: forms align two-character
  names with three-character ones) is the name without its padding (``name_unpadded``).

Columns are checked with the polars expressions (``id_check_char``, ``upgrade_id_15``,
``citizen_id_valid``, ``uscc_valid``, ``luhn_valid``, ``phone_canonical``, ``halfwidth``
…). The ``*_str`` forms check one string, for callers that hold one: the free-text
scanners verifying a number a regex found inside a text, the catalogue checking a provider
code; they use the same constants. python-stdnum and libphonenumber are the independent
oracles the tests compare both forms with (the department simulator keeps a copy of its
own).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from functools import cache

import phonenumbers
import polars as pl
from phonenumbers import PhoneNumberType

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
ID18 = r"^\d{17}[\dX]$"
ID15 = r"^\d{15}$"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
USCC = r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"
LUHN_MAX_DIGITS = 19

# full-width ASCII forms and the ideographic space → their half-width forms
# Han characters (汉字) a Chinese name or text may hold, as a regex character class's body:
# the unified ideographs, their extensions A to H (the 生僻字 of some residents' names: 䶮
# U+4DAE, 𠮷 U+20BB7) and the compatibility ideographs
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U000323af"
FULL_TO_HALF = {chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)} | {"\u3000": " "}
_FULL_TO_HALF_TABLE = str.maketrans(FULL_TO_HALF)  # for ``str.translate``

# the interpunct of a name in parts, its look-alikes, and the full stops that stand for it
# in some exports (. ．: between Han characters of free text they may end a sentence too)
NAME_DOT = "\u00b7"
NAME_DOT_LOOKALIKES = "\u2022\u2027\u2219\u22c5\u30fb\uff65"
NAME_STOPS = ".\uff0e"
_NAME_JOINS = f"[{NAME_DOT}{NAME_DOT_LOOKALIKES}{NAME_STOPS}]"
# a text that may hold a name in parts (polars' regex: no look-around)
NAME_IN_PARTS = rf"[{HAN}]{_NAME_JOINS}[{HAN}]"
_NAME_JOIN_RE = re.compile(rf"(?<=[{HAN}]){_NAME_JOINS}(?=[{HAN}])")
_NAME_LOOKALIKE_RE = re.compile(rf"(?<=[{HAN}])[{NAME_DOT_LOOKALIKES}](?=[{HAN}])")
_ID18_RE = re.compile(r"\d{17}[\dX]")
_DIGITS_RE = re.compile(r"\d+")


# -- full-width → half-width -------------------------------------------------------------


def halfwidth(text: pl.Expr) -> pl.Expr:
    """Full-width ASCII forms (U+FF01–FF5E) and U+3000 → half-width, one for one."""
    return text.str.replace_many(list(FULL_TO_HALF), list(FULL_TO_HALF.values()))


def halfwidth_str(text: str) -> str:
    """:func:`halfwidth` of one string."""
    return text.translate(_FULL_TO_HALF_TABLE)


# -- names in parts ----------------------------------------------------------------------


def name_dots(name: pl.Expr) -> pl.Expr:
    """A name field's value with its parts joined by U+00B7: where the whole value is Han
    parts joined by a look-alike or a full stop, with any spaces around it (买买提 . 艾力 →
    买买提·艾力); any other value as it is."""
    in_parts = name.str.contains(rf"^[{HAN}]+(?:\s*{_NAME_JOINS}\s*[{HAN}]+)+$")
    return (
        pl.when(in_parts)
        .then(name.str.replace_all(rf"\s*{_NAME_JOINS}\s*", NAME_DOT))
        .otherwise(name)
    )


# two Han characters with whitespace between (U+3000, spaces): no name is written so but
# to fill a form's cell; longer names with a space are left (a part's boundary, perhaps)
NAME_PADDED = rf"^[{HAN}]\s+[{HAN}]$"


_NAME_PADDED_RE = re.compile(NAME_PADDED)
# a padded two-character name inside a text (after half-width folding, U+3000 is a space)
_PADDING = r"[ \u3000]{1,2}"
PADDED_PAIR = rf"[{HAN}]{_PADDING}[{HAN}]"
_PADDED_IN_TEXT = re.compile(rf"(?=([{HAN}]){_PADDING}([{HAN}]))")  # overlapping pairs


def name_unpadded_str(name: str) -> str:
    """:func:`name_unpadded` of one string."""
    return re.sub(r"\s", "", name) if _NAME_PADDED_RE.match(name) else name


def padded_pairs(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, the two characters) of every two Han characters with one or two spaces
    between in ``text``: where a padded two-character name may stand."""
    if " " not in text and "\u3000" not in text:
        return
    for m in _PADDED_IN_TEXT.finditer(text):
        yield m.start(), m.end(2), m.group(1) + m.group(2)


def name_unpadded(name: pl.Expr) -> pl.Expr:
    """A name field's value without the padding of a two-character name (王　芳 → 王芳);
    any other value as it is."""
    return (
        pl.when(name.str.contains(NAME_PADDED))
        .then(name.str.replace_all(r"\s", ""))
        .otherwise(name)
    )


def name_dots_str(text: str, *, stops: bool = True) -> str:
    """Every look-alike of the interpunct between Han characters → U+00B7, one character
    for one (offsets in a text line up); ``stops``: full stops too (a name, or a text
    searched for known names; not where a full stop may end a sentence)."""
    if text.isascii():
        return text
    return (_NAME_JOIN_RE if stops else _NAME_LOOKALIKE_RE).sub(NAME_DOT, text)


# -- citizen ID (GB 11643-1999) ----------------------------------------------------------

_ID_CHUNKS = ((0, 5), (5, 4), (9, 4), (13, 4))  # (start, length): the 17 digits in 4 chunks


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

    The number is cut into four chunks and each chunk's share of Σ digitᵢ·weightᵢ is
    looked up in a table (:func:`_id_chunk_sums`): a handful of integer operations per row
    instead of 17 slices or divisions.
    """
    parts = [
        pl.lit(_id_chunk_sums(start, length)).gather(
            (n // 10 ** (17 - start - length)) % 10**length
        )
        for start, length in _ID_CHUNKS
    ]
    total = pl.sum_horizontal(parts)  # a null number (non-ASCII digits) sums to 0
    return pl.lit(pl.Series(list(ID_CHECK), dtype=pl.String)).gather(total % 11)


def id_check_char(first17: pl.Expr) -> pl.Expr:
    """GB 11643 check character of the first 17 digits (null when they are not digits)."""
    n = first17.str.slice(0, 17).cast(pl.Int64, strict=False)
    return pl.when(first17.str.contains(r"^\d{17}")).then(_id_check_of_number(n))


def id_check_char_str(first17: str) -> str:
    """:func:`id_check_char` of one string of 17 ASCII digits."""
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


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


def _real_date(yyyymmdd: str) -> bool:
    try:
        dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True


def citizen_id_valid_str(cid: str) -> bool:
    """:func:`citizen_id_valid` of one string (upper-case X; no null)."""
    return (
        _ID18_RE.fullmatch(cid) is not None
        and cid.isascii()
        and id_check_char_str(cid[:17]) == cid[17]
        and _real_date(cid[6:14])
    )


def citizen_id15_plausible_str(cid: str) -> bool:
    """A pre-1999 15-digit number: ASCII digits, region code not starting with 0, a real
    birth date in 19YYMMDD. No check character exists, so this is all that can be checked."""
    return (
        len(cid) == 15
        and cid.isascii()
        and cid.isdigit()
        and cid[0] != "0"
        and _real_date("19" + cid[6:12])
    )


# -- mainland mobile numbers ------------------------------------------------------------

MOBILE = r"^1[3-9]\d{9}$"
_PHONE_SEPARATORS = r"[\s\-()（）]"
LANDLINE_WRITTEN = r"^0\d{2,3}-\d{7,8}$"  # the staged spelling of a landline
# +86 / 0086 / 86 before, an extension after (转8001, 分机8001, ext.8001, x8001, #8001)
_MOBILE_SPELLING = r"^(?:\+86|0086|86)?(1\d{10})(?:(?:转|分机|[eE][xX][tT]\.?|[xX#])\d{1,6})?$"


def mobile_digits(phone: pl.Expr) -> pl.Expr:
    """The 11-digit mobile a value spells (``+86 138-1234-5678``, ``0086(138)12345678``,
    ``13812345678转8001``: a mobile has no extension), or null when it spells none
    (landlines included). Input: half-width text."""
    digits = phone.str.replace_all(_PHONE_SEPARATORS, "").str.extract(_MOBILE_SPELLING, 1)
    return pl.when(digits.str.contains(MOBILE)).then(digits)


def _landline(value: str) -> str | None:
    """``0<area>-<subscriber>`` of a valid mainland fixed-line number, else None."""
    try:
        number = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException:
        return None
    if (
        number.country_code != 86
        or number.extension
        or phonenumbers.number_type(number) is not PhoneNumberType.FIXED_LINE
        or not phonenumbers.is_valid_number(number)
    ):
        return None
    nsn = phonenumbers.national_significant_number(number)
    area = phonenumbers.length_of_geographical_area_code(number)
    return f"0{nsn[:area]}-{nsn[area:]}" if area else None


def landline_canonical(phone: pl.Expr) -> pl.Expr:
    """A mainland fixed-line number in any spelling (``+86 10 6512 3456``, ``(010)65123456``,
    ``0086-10-65123456``, ``01065123456``) → ``010-65123456``: the area code with its
    trunk 0, a dash, the subscriber number. Null for anything libphonenumber does not take
    for a valid CN fixed line (mobiles, numbers with an extension, a wrong length or area
    code). Google's libphonenumber (``phonenumbers``) knows every area code and its
    subscriber-number lengths; it runs once per distinct value that is not already an
    11-digit mobile (input: half-width text).
    """

    def _batch(s: pl.Series) -> pl.Series:
        values = s.drop_nulls().unique()
        values = values.filter(
            ~values.str.contains(MOBILE) & (values.str.count_matches(r"\d") >= 7)
        )
        found = {v: c for v in values.to_list() if (c := _landline(v)) is not None}
        return s.replace_strict(found, default=None, return_dtype=pl.String)

    return phone.map_batches(_batch, return_dtype=pl.String)


def phone_canonical(phone: pl.Expr) -> pl.Expr:
    """A phone as it is staged: :func:`mobile_digits`, else :func:`landline_canonical`, else
    null (the standardiser then keeps the value as delivered, and the gate judges it). A
    value already written ``0AA-NNNNNNNN`` is that spelling: it is kept without asking
    libphonenumber (the per-value call is the expensive part), so an unknown area code
    there is left to the catalogue's pattern, as before."""
    mobile = mobile_digits(phone)
    written = phone.str.contains(LANDLINE_WRITTEN)
    other = pl.when(mobile.is_null() & ~written).then(phone)
    return pl.coalesce(mobile, pl.when(written).then(phone), landline_canonical(other))


# -- unified social credit code (GB 32100-2015) -----------------------------------------


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


_USCC_RE = re.compile(USCC)
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}


def uscc_valid_str(code: str) -> bool:
    """:func:`uscc_valid` of one string (the catalogue's provider codes)."""
    if _USCC_RE.fullmatch(code) is None:
        return False
    total = sum(_USCC_VALUE[c] * w for c, w in zip(code[:17], USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31] == code[17]


# -- Luhn (ISO/IEC 7812) ------------------------------------------------------------------


def luhn_valid(number: pl.Expr, max_len: int = LUHN_MAX_DIGITS) -> pl.Expr:
    """Luhn over a string of ASCII digits (anything else → False, null stays null)."""
    rev = number.str.reverse()
    terms = []
    for i in range(max_len):
        d = rev.str.slice(i, 1).cast(pl.Int32, strict=False).fill_null(0)
        if i % 2:
            d = pl.when(d * 2 > 9).then(d * 2 - 9).otherwise(d * 2)
        terms.append(d)
    ok = (pl.sum_horizontal(terms) % 10 == 0) & number.str.contains(r"^[0-9]+$").fill_null(False)
    ok = ok & (number.str.len_chars() <= max_len)
    return pl.when(number.is_null()).then(None).otherwise(ok)


def luhn_valid_str(number: str, max_len: int = LUHN_MAX_DIGITS) -> bool:
    """:func:`luhn_valid` of one string."""
    if not (number.isascii() and _DIGITS_RE.fullmatch(number)) or len(number) > max_len:
        return False
    total = 0
    for i, c in enumerate(reversed(number)):
        d = ord(c) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0
