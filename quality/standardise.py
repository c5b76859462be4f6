"""Standardisers (标准化): delivered text → the catalogue's typed, canonical values.

Plain polars expressions over the raw zone's text columns:

- trim (spaces, tabs, the ideographic space U+3000), blank → null;
- full-width → half-width (digits, letters, punctuation, U+3000) for codes,
  identifiers, phones, numbers and dates — never for names or free text,
  where Chinese punctuation is part of the value;
- citizen IDs: upper-case X, 15 → 18 characters;
- phones: +86 / 0086 / 86- prefixes, spaces and dashes → 11 digits;
- dates: every spelling the departments use (2023/1/5, 2023年1月5日, 20230105,
  2023.1.5, 2023-1-5 00:00:00, 2023-01-05T00:00:00, Excel serials, …);
- datetimes: the same plus compact 20230105083000, ISO with offsets (→ Beijing
  time) and epoch milliseconds.

What real exports write besides, repaired by the dataset's catalogue rules
(:class:`catalog.model.Standardising`, given per department or dataset):

- placeholders for a missing value (无, 不详, NULL, -, / …) → null: an optional
  field stays empty, a required one is quarantined as blank (a field whose
  ``allowed_values`` list a placeholder keeps it as a value);
- zero-width characters (U+200B …) anywhere but in free text → removed;
- dashes inside a citizen ID (110105-19491231-0021) → removed;
- numbers with their catalogue ``unit`` (2400元, 2400 元/月) and, for money,
  ¥/￥/RMB before them → the number;
- d/m/yyyy dates (31/10/2026; ``slash_dates`` says day or month first);
- a month-only date (2026年10月, 2026-10): ``month_dates: first_of_month``
  (default) stages the month's first day and counts it; ``quarantine`` leaves it
  unreadable. A birth date is always exact: a month-only one is quarantined;
- a mobile with an extension (13812345678转8001) → the mobile (a mobile has no
  extension; landlines keep theirs);
- an "unknown" date (1900-01-01, ``unknown_dates``) → null, like a placeholder;
- a code of the department's system for an allowed value (the field's ``codes``:
  GB/T 2261.1's ``1``, ``男性`` → 男; catalog/codes.py) → the value; a code for no
  value (``0`` 未知的性别) → null, like a placeholder.

:func:`standardise` also counts, per field and kind of repair, how many values
it changed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import polars as pl

from catalog.days import BEIJING_OFFSET_MIN
from catalog.identifiers import (
    FULL_TO_HALF,
    ID15,
    MOBILE,
    NAME_PADDED,
    halfwidth,
    name_dots,
    name_unpadded,
    phone_canonical,
    upgrade_id_15,
)
from catalog.model import (
    ConnectorKind,
    Dataset,
    FieldSpec,
    FieldType,
    MonthDates,
    PiiKind,
    SlashDates,
    Standardising,
)

LINEAGE = ("_delivery_id", "_source_row", "_loaded_at")
MISSING_PREFIX = "_missing__"  # standardise(): a placeholder / unknown date was delivered

DTYPES: dict[FieldType, pl.DataType] = {
    FieldType.string: pl.String(),
    FieldType.text: pl.String(),
    FieldType.integer: pl.Int64(),
    FieldType.decimal: pl.Float64(),
    FieldType.boolean: pl.Boolean(),
    FieldType.date: pl.Date(),
    FieldType.datetime: pl.Datetime("us"),
}
TRUE_WORDS = ["true", "t", "1", "y", "yes", "是", "真"]
FALSE_WORDS = ["false", "f", "0", "n", "no", "否", "假"]

# a date may carry the midnight its system stores it at: 0:00, 00:00:00, a zero fraction
# (SQL Server's .000, JDBC's .0) and a zone (a serialiser's Z): the date is as written
_DATE_RE = (
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:[ T]0{1,2}:0{1,2}(?::0{1,2}(?:\.0{1,9})?)?(?: ?(?:Z|[+-]\d{2}:?\d{2}))?)?$"
)
_DATETIME_RE = (
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:\.(\d{1,6}))?)?"
    r" ?(Z|[+-]\d{2}:?\d{2})?$"
)
_COMPACT_DT_RE = r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$"
_DMY_RE = r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$"  # 31/10/2026 (or 10/31/2026)
_MONTH_RE = r"^(\d{4})(?:[-/.]|年)(\d{1,2})月?$"  # 2026年10月, 2026-10
# a mobile followed by an extension, spaces and dashes already removed
_EXTENSION_MARK = r"转|分机|[eE][xX][tT]|[xX#]\s*\d{1,6}$"
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
_ZERO_WIDTH_CLASS = "[" + "".join(ZERO_WIDTH) + "]"
_DASH_CLASS = "[-\u2010\u2011\u2012\u2013\u2014\u2015\u2212]"
# Excel's text markers around a value an export wants Excel to keep as text (a long number
# would otherwise show as 1.10105E+17): the formula form ="…" and a leading apostrophe
_EXCEL_FORMULA_TEXT = r'^="(.*)"$'
_NUMBER = r"[-+]?[\d,]*\.?\d+"
_HALF_TO_FULL = {h: f for f, h in FULL_TO_HALF.items() if h != " "}
# the canonical spellings (almost every delivered value): parsed directly, no regex groups
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
ISO_DATETIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


def halfwidth_visible(s: pl.Expr) -> pl.Expr:
    """:func:`halfwidth` and zero-width characters removed, in one pass."""
    keys, values = list(FULL_TO_HALF), list(FULL_TO_HALF.values())
    return s.str.replace_many(keys + ZERO_WIDTH, values + [""] * len(ZERO_WIDTH))


def without_excel_markers(t: pl.Expr) -> pl.Expr:
    """Trimmed text without Excel's text markers: ``="11010519491231002X"`` and
    ``'11010519491231002X`` → ``11010519491231002X`` (an export's guard against Excel
    reading an ID, a phone or a long code as a number; never part of such a value)."""
    inner = pl.coalesce(t.str.extract(_EXCEL_FORMULA_TEXT, 1), t.str.strip_prefix("'"))
    return inner.str.strip_chars()


def without_zero_width(s: pl.Expr) -> pl.Expr:
    return s.str.replace_many(ZERO_WIDTH, [""] * len(ZERO_WIDTH))


def placeholder_spellings(f: FieldSpec, rules: Standardising) -> list[str]:
    """Every spelling of the rules' placeholders for one field, and of its codes that stand
    for no value (GB/T 2261.1's 0 未知的性别): half- and full-width, upper, lower and title
    case; none that the field's ``allowed_values`` accept as a value, nor a code of it that
    stands for one (a system's ``-`` for 未办结 is no placeholder)."""
    nulls = tuple(code for code, value in f.code_values.items() if value is None)
    coded = tuple(code for code, value in f.code_values.items() if value is not None)
    placeholders = (*rules.placeholders, *rules.extra_placeholders, *nulls)
    return list(_spellings(placeholders, (*(f.allowed_values or ()), *coded)))


def code_spellings(f: FieldSpec) -> dict[str, str]:
    """Every spelling of the field's codes that stand for a value (catalog/codes.py), as a
    placeholder's are spelled, → the value: ``1``, ``１`` → 男; ``男性`` → 男."""
    coded = tuple((code, value) for code, value in f.code_values.items() if value is not None)
    return dict(_code_spellings(coded))


@functools.lru_cache(maxsize=256)
def _code_spellings(coded: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for code, value in coded:
        for spelling in _spellings((code,), ()):
            out.setdefault(spelling, value)
    return tuple(out.items())


@functools.lru_cache(maxsize=1024)
def _spellings(placeholders: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """:func:`placeholder_spellings` of these words (each field asks three times a
    delivery: ~1 ms a time made afresh)."""
    out: set[str] = set()
    for p in placeholders:
        for v in (p, p.upper(), p.lower(), p.title()):
            out.update((v, "".join(_HALF_TO_FULL.get(c, c) for c in v)))
    return tuple(sorted(out - set(allowed)))


def is_placeholder(f: FieldSpec, trimmed: pl.Expr, rules: Standardising) -> pl.Expr:
    """Trimmed delivered text that is one of the rules' placeholders for a missing value."""
    return trimmed.is_in(placeholder_spellings(f, rules))


def is_birth_date(f: FieldSpec) -> bool:
    return f.pii is PiiKind.birth_date or (f.concept or "").endswith(".birth_date")


def unit_pattern(f: FieldSpec) -> str | None:
    """The regex reading the number out of ``2400元`` / ``￥2,400.00`` for a field with a
    catalogue ``unit`` (group 1); None without one."""
    if f.unit is None or f.type not in (FieldType.integer, FieldType.decimal):
        return None
    unit = "".join("\\" + c if c in r".^$*+?{}[]\|()/-" else c for c in f.unit)
    if "元" in f.unit:  # money: a currency sign before, the unit or a bare 元 after
        return rf"^(?:[¥￥]|RMB|CNY)?\s*({_NUMBER})\s*(?:{unit}|元)?$"
    return rf"^({_NUMBER})\s*(?:{unit})?$"


def blank_to_null(s: pl.Expr) -> pl.Expr:
    return pl.when(s.str.len_bytes() > 0).then(s)


def clean_text(s: pl.Expr, *, to_halfwidth: bool = False) -> pl.Expr:
    """Trim (U+3000 included), optionally half-width, blank → null."""
    if to_halfwidth:
        s = halfwidth(s)
    return blank_to_null(s.str.strip_chars())


def squeeze_code(t: pl.Expr) -> pl.Expr:
    """No spaces anywhere, upper case (on cleaned text)."""
    return t.str.replace_all(r"\s+", "").str.to_uppercase()


def std_citizen_id(s: pl.Expr) -> pl.Expr:
    """Half-width, no spaces, upper-case X, 15 → 18 characters."""
    return upgrade_id_15(squeeze_code(clean_text(s, to_halfwidth=True)))


def std_code(s: pl.Expr) -> pl.Expr:
    """Codes (credit codes, bank cards, region codes): half-width, no spaces, upper case."""
    return squeeze_code(clean_text(s, to_halfwidth=True))


def phone_from_clean(t: pl.Expr) -> pl.Expr:
    """:func:`std_phone` on text already cleaned (half-width, trimmed, blank → null)."""
    other = pl.when(~t.str.contains(MOBILE)).then(t)  # already 11 digits: nothing to do
    # a mobile's prefix, separators, extension; a landline → 010-65123456; else as it came
    return pl.coalesce(phone_canonical(other), t)


def std_phone(s: pl.Expr) -> pl.Expr:
    """Mobiles written with +86, 0086, 86-, spaces, dashes or an extension (转8001) → 11
    digits; others trimmed."""
    return phone_from_clean(clean_text(s, to_halfwidth=True))


def _pad2(e: pl.Expr) -> pl.Expr:
    return e.str.zfill(2)


def date_groups(t: pl.Expr) -> pl.Expr:
    """Year, month, day of a separated date spelling, as a struct (cleaned text in; null
    for the canonical spelling, which :func:`date_from_groups` parses directly)."""
    return pl.when(~t.str.contains(ISO_DATE)).then(t).str.extract_groups(_DATE_RE)


def dmy_groups(t: pl.Expr) -> pl.Expr:
    """The three numbers of a d/m/yyyy (or m/d/yyyy) date, as a struct (cleaned text in)."""
    return pl.when(~t.str.contains(ISO_DATE)).then(t).str.extract_groups(_DMY_RE)


def month_groups(t: pl.Expr) -> pl.Expr:
    """Year and month of a month-only date (2026年10月, 2026-10), as a struct."""
    return pl.when(~t.str.contains(ISO_DATE)).then(t).str.extract_groups(_MONTH_RE)


def _ymd(y: pl.Expr, m: pl.Expr, d: pl.Expr) -> pl.Expr:
    return (y + "-" + _pad2(m) + "-" + _pad2(d)).str.to_date("%Y-%m-%d", strict=False)


def date_from_groups(
    t: pl.Expr,
    g: pl.Expr,
    *,
    excel_serials: bool = False,
    dmy: pl.Expr | None = None,
    month: pl.Expr | None = None,
    rules: Standardising | None = None,
) -> pl.Expr:
    """:func:`parse_date` from cleaned text and its :func:`date_groups` (and, to read
    d/m/yyyy and month-only dates by ``rules``, its :func:`dmy_groups` and
    :func:`month_groups`; ``month`` None: a month-only date stays unread)."""
    iso = g.struct[0] + "-" + _pad2(g.struct[1]) + "-" + _pad2(g.struct[2])
    parts = [
        pl.when(t.str.contains(ISO_DATE)).then(t.str.to_date("%Y-%m-%d", strict=False)),
        iso.str.to_date("%Y-%m-%d", strict=False),
        pl.when(t.str.contains(r"^\d{8}(?:0{6})?$")).then(  # 20261031, 20261031000000
            t.str.slice(0, 8).str.to_date("%Y%m%d", strict=False)
        ),
    ]
    rules = rules or Standardising()
    parts.append(beijing_midnight(t))
    if dmy is not None:
        a, b, y = dmy.struct[0], dmy.struct[1], dmy.struct[2]
        day_first = rules.slash_dates is SlashDates.day_first
        parts.append(_ymd(y, b, a) if day_first else _ymd(y, a, b))
    if month is not None and rules.month_dates is MonthDates.first_of_month:
        parts.append(_ymd(month.struct[0], month.struct[1], pl.lit("1")))
    out = pl.coalesce(parts)
    if excel_serials:
        out = pl.coalesce(out, excel_serial_date(t))
    return out


def parse_date(
    s: pl.Expr, *, excel_serials: bool = False, rules: Standardising | None = None
) -> pl.Expr:
    """Any delivered date spelling → pl.Date (null when it cannot be read). With ``rules``,
    d/m/yyyy and month-only dates are read as they say."""
    t = clean_text(s, to_halfwidth=True)
    if rules is None:
        return date_from_groups(t, date_groups(t), excel_serials=excel_serials)
    return date_from_groups(
        t,
        date_groups(t),
        excel_serials=excel_serials,
        dmy=dmy_groups(t),
        month=month_groups(t),
        rules=rules,
    )


# a timestamp with its zone (2026-10-30T16:00:00.000Z): what a serialiser set to UTC writes
# for a date its system stores as Beijing's midnight (groups: the day, hours, minutes, a
# zero second with a zero fraction, the zone)
_ZONED = (
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2}):00(?:\.0{1,9})?"
    r" ?(Z|[+-]\d{2}:?\d{2})$"
)


ZONED_MIN_BYTES = len("2026-10-30T16:00:00Z")


def beijing_midnight(t: pl.Expr) -> pl.Expr:
    """The day of a zoned timestamp that is midnight in Beijing (``2026-10-30T16:00:00Z`` →
    2026-10-31); null for any other text (a date is a day in Beijing: another time of day
    is no date). It runs on every date cell: the regex only on text long enough to be one
    (a date is 10 bytes, a zoned timestamp at least 20), then integer arithmetic."""
    g = pl.when(t.str.len_bytes() >= ZONED_MIN_BYTES).then(t).str.extract_groups(_ZONED)
    zone = g.struct[3]
    offset = pl.when(zone == "Z").then(0).otherwise(
        (zone.str.slice(1, 2).cast(pl.Int32, strict=False) * 60
         + zone.str.slice(-2, 2).cast(pl.Int32, strict=False))
        * pl.when(zone.str.starts_with("-")).then(-1).otherwise(1)
    )  # fmt: skip
    local = g.struct[1].cast(pl.Int32, strict=False) * 60 + g.struct[2].cast(pl.Int32, strict=False)
    beijing = local - offset + BEIJING_OFFSET_MIN  # minutes from the written day's start
    day = g.struct[0].str.to_date("%Y-%m-%d", strict=False)
    return pl.when(beijing % 1440 == 0).then(day + pl.duration(days=beijing // 1440))


def excel_serial_date(t: pl.Expr) -> pl.Expr:
    """An Excel day number (1900 date system, epoch 1899-12-30) → pl.Date."""
    n = t.str.extract(r"^(\d{4,5})(?:\.0+)?$").cast(pl.Int64, strict=False)
    return pl.when(n.is_not_null()).then(pl.lit(0).cast(pl.Date) + pl.duration(days=n - 25569))


def datetime_groups(t: pl.Expr) -> pl.Expr:
    """Date, time, fraction and offset of a separated timestamp, as a struct (null for the
    canonical spelling, which :func:`datetime_from_groups` parses directly)."""
    return _not_iso_datetime(t).str.extract_groups(_DATETIME_RE)


def _not_iso_datetime(t: pl.Expr) -> pl.Expr:
    return pl.when(~t.str.contains(ISO_DATETIME)).then(t)


def compact_groups(t: pl.Expr) -> pl.Expr:
    """The six parts of a compact 20230105083000, as a struct."""
    return _not_iso_datetime(t).str.extract_groups(_COMPACT_DT_RE)


def datetime_from_groups(t: pl.Expr, g: pl.Expr, c: pl.Expr) -> pl.Expr:
    """:func:`parse_datetime` from cleaned text, its :func:`datetime_groups` and
    :func:`compact_groups`."""
    text = pl.coalesce(
        g.struct[0]
        + "-"
        + _pad2(g.struct[1])
        + "-"
        + _pad2(g.struct[2])
        + " "
        + _pad2(g.struct[3].fill_null("0"))
        + ":"
        + _pad2(g.struct[4].fill_null("0"))
        + ":"
        + _pad2(g.struct[5].fill_null("0")),
        c.struct[0] + "-" + c.struct[1] + "-" + c.struct[2] + " "
        + c.struct[3] + ":" + c.struct[4] + ":" + c.struct[5],
    )  # fmt: skip
    local = text.str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us", strict=False)
    micros = g.struct[6].str.pad_end(6, "0").cast(pl.Int64, strict=False).fill_null(0)
    off = g.struct[7]
    off_min = (
        pl.when(off == "Z")
        .then(0)
        .when(off.is_not_null())
        .then(
            (off.str.slice(1, 2).cast(pl.Int64) * 60 + off.str.slice(-2, 2).cast(pl.Int64))
            * pl.when(off.str.starts_with("-")).then(-1).otherwise(1)
        )
        .otherwise(BEIJING_OFFSET_MIN)
    )
    parsed = (
        local + pl.duration(microseconds=micros) - pl.duration(minutes=off_min - BEIJING_OFFSET_MIN)
    )
    millis = t.str.extract(r"^(\d{13})$").cast(pl.Int64, strict=False)
    from_epoch = pl.from_epoch(millis, time_unit="ms").cast(pl.Datetime("us")) + pl.duration(
        minutes=BEIJING_OFFSET_MIN
    )
    canonical = t.str.contains(ISO_DATETIME)
    direct = pl.when(canonical).then(
        t.str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us", strict=False)
    )
    return pl.coalesce(direct, parsed, pl.when(millis.is_not_null()).then(from_epoch))


def parse_datetime(s: pl.Expr) -> pl.Expr:
    """Any delivered timestamp → naive Beijing time pl.Datetime("us") (null when unreadable)."""
    t = clean_text(s, to_halfwidth=True)
    return datetime_from_groups(t, datetime_groups(t), compact_groups(t))


def integer_from_clean(t: pl.Expr) -> pl.Expr:
    t = t.str.replace_all(",", "")
    f = t.cast(pl.Float64, strict=False)
    whole = pl.when(f.is_finite() & (f == f.round(0)) & (f.abs() < 9e15)).then(f.cast(pl.Int64))
    return pl.coalesce(t.cast(pl.Int64, strict=False), whole)


def parse_integer(s: pl.Expr) -> pl.Expr:
    return integer_from_clean(clean_text(s, to_halfwidth=True))


def decimal_from_clean(t: pl.Expr) -> pl.Expr:
    return t.str.replace_all(",", "").cast(pl.Float64, strict=False)


def parse_decimal(s: pl.Expr) -> pl.Expr:
    return decimal_from_clean(clean_text(s, to_halfwidth=True))


def boolean_from_clean(t: pl.Expr) -> pl.Expr:
    t = t.str.to_lowercase()
    return pl.when(t.is_in(TRUE_WORDS)).then(True).when(t.is_in(FALSE_WORDS)).then(False)


def parse_boolean(s: pl.Expr) -> pl.Expr:
    return boolean_from_clean(clean_text(s, to_halfwidth=True))


def is_phone(f: FieldSpec) -> bool:
    return f.pii in (PiiKind.mobile, PiiKind.landline)


def is_code(f: FieldSpec) -> bool:
    """Identifier-like strings: half-width is safe and right for them."""
    return f.pattern is not None or f.pii in (PiiKind.credit_code, PiiKind.bank_card)


def is_plain_text(f: FieldSpec) -> bool:
    """Names and free text: trimmed only, never half-width (Chinese punctuation is content)."""
    return f.type in (FieldType.string, FieldType.text) and not (
        f.pii is PiiKind.citizen_id or is_phone(f) or is_code(f)
    )


def typed_from_clean(
    f: FieldSpec,
    t: pl.Expr,
    groups: pl.Expr | None = None,
    compact: pl.Expr | None = None,
    *,
    excel_serials: bool = False,
    rules: Standardising | None = None,
) -> pl.Expr:
    """The standardised value of one field from its cleaned text ``t`` (:func:`clean_field`).

    ``groups``/``compact``: the field's :func:`date_groups` (dates) or
    :func:`datetime_groups` and :func:`compact_groups` (datetimes), computed from
    ``t`` when not given. For dates, ``compact`` may carry the :func:`dmy_groups` and
    ``rules`` decide how d/m/yyyy and month-only dates read (see :func:`date_value`).
    """
    if f.type is FieldType.date:
        return date_value(f, t, groups, compact, excel_serials=excel_serials, rules=rules)
    if f.type is FieldType.datetime:
        g = datetime_groups(t) if groups is None else groups
        c = compact_groups(t) if compact is None else compact
        return datetime_from_groups(t, g, c)
    if f.type is FieldType.integer:
        return integer_from_clean(t)
    if f.type is FieldType.decimal:
        return decimal_from_clean(t)
    if f.type is FieldType.boolean:
        return boolean_from_clean(t)
    if f.pii is PiiKind.citizen_id:
        return upgrade_id_15(t)
    if is_phone(f):
        return phone_from_clean(t)
    return t


def date_value(
    f: FieldSpec,
    t: pl.Expr,
    groups: pl.Expr | None = None,
    dmy: pl.Expr | None = None,
    month: pl.Expr | None = None,
    *,
    excel_serials: bool = False,
    rules: Standardising | None = None,
) -> pl.Expr:
    """A date field's value from its cleaned text, by the rules: d/m/yyyy in the rules'
    order; a month-only date as its first day where ``month_dates`` says so — never for a
    birth date, which must be exact (left unread, so the row is quarantined)."""
    rules = rules or Standardising()
    g = date_groups(t) if groups is None else groups
    d = dmy_groups(t) if dmy is None else dmy
    m = None
    if rules.month_dates is MonthDates.first_of_month and not is_birth_date(f):
        m = month_groups(t) if month is None else month
    return date_from_groups(t, g, excel_serials=excel_serials, dmy=d, month=m, rules=rules)


def without_unknown_dates(f: FieldSpec, value: pl.Expr, rules: Standardising) -> pl.Expr:
    """A date field's value, null where it is one of the rules' "unknown" dates (1900-01-01)."""
    if f.type is not FieldType.date or not rules.unknown_dates:
        return value
    return pl.when(~value.is_in(list(rules.unknown_dates))).then(value)


def clean_field(f: FieldSpec, trimmed: pl.Expr, rules: Standardising | None = None) -> pl.Expr:
    """Trimmed (half-width where safe) text → the cleaned text :func:`typed_from_clean` reads:
    blank or a placeholder → null; citizen IDs and codes without spaces (IDs without dashes),
    in upper case; numbers without their catalogue unit; a person's name in parts joined by
    U+00B7 (买买提•艾力, 买买提 . 艾力 → 买买提·艾力), a two-character one unpadded (王　芳 → 王芳);
    a code of the field's ``codes`` as the value it stands for (1, 男性 → 男)."""
    rules = rules or Standardising()
    t = pl.when(~is_placeholder(f, trimmed, rules)).then(blank_to_null(trimmed))
    coded = code_spellings(f)
    if coded:  # a code of the department's system: the value it stands for
        t = t.replace(coded)
    unit = unit_pattern(f)
    if unit is not None:
        return pl.coalesce(t.str.extract(unit, 1), t)
    if f.type not in (FieldType.string, FieldType.text) or is_phone(f):
        return t
    if f.pii is PiiKind.citizen_id:
        return squeeze_code(t).str.replace_all(_DASH_CLASS, "")
    if is_code(f):
        return squeeze_code(t)
    if f.person_name:  # a name in parts joined by U+00B7, as the ID card has it; unpadded
        return name_dots(name_unpadded(t))
    return t


def trimmed_text(f: FieldSpec, raw: pl.Expr) -> pl.Expr:
    """Delivered text trimmed; half-width where safe; zero-width characters removed except
    in free text."""
    if f.type is FieldType.text:
        return raw.str.strip_chars()
    if is_plain_text(f):
        return without_zero_width(raw).str.strip_chars()
    return without_excel_markers(halfwidth_visible(raw).str.strip_chars())


def missing_col(f: FieldSpec) -> pl.Expr:
    """The flag :func:`standardise` puts beside the fields: the delivered text stood for no
    value (one of the rules' placeholders, or for a date one of its "unknown" dates). The
    gate's required and unparseable checks read it as blank, so such a row is quarantined as
    a blank required field, never as unreadable."""
    return pl.col(f"{MISSING_PREFIX}{f.name}")


def field_expr(
    f: FieldSpec, *, excel_serials: bool = False, rules: Standardising | None = None
) -> pl.Expr:
    """The standardised, typed value of one field from its raw text column (one expression)."""
    rules = rules or Standardising()
    t = clean_field(f, trimmed_text(f, pl.col(f.name).cast(pl.String)), rules)
    value = typed_from_clean(f, t, excel_serials=excel_serials, rules=rules)
    return without_unknown_dates(f, value, rules)


def _tmp(f: FieldSpec, stage: str) -> str:
    return f"__std_{stage}__{f.name}"


def _staged(raw: pl.DataFrame, dataset: Dataset, serials: bool) -> pl.DataFrame:
    """Every field standardised in stages, each intermediate computed once.

    A polars expression that names a sub-expression twice evaluates it twice, and
    the parsers name theirs many times (a regex's groups, the cleaned text); so
    half-width text, trimmed text, cleaned text and regex groups are materialised
    as columns, stage by stage (each stage runs its fields in parallel).
    """
    fields, rules = dataset.fields, dataset.rules
    raw_s = {f.name: pl.col(f.name).cast(pl.String) for f in fields}
    work = raw.with_columns(
        halfwidth_visible(raw_s[f.name]).alias(_tmp(f, "hw"))
        for f in fields
        if not is_plain_text(f)
    )

    def trim(f: FieldSpec) -> pl.Expr:
        if not is_plain_text(f):
            return without_excel_markers(pl.col(_tmp(f, "hw")).str.strip_chars())
        return trimmed_text(f, raw_s[f.name])

    work = work.with_columns(trim(f).alias(_tmp(f, "trim")) for f in fields)
    work = work.with_columns(
        clean_field(f, pl.col(_tmp(f, "trim")), rules).alias(_tmp(f, "t")) for f in fields
    )
    groups = []
    for f in fields:
        t = pl.col(_tmp(f, "t"))
        if f.type is FieldType.date:
            groups += [
                date_groups(t).alias(_tmp(f, "g")),
                dmy_groups(t).alias(_tmp(f, "d")),
                month_groups(t).alias(_tmp(f, "m")),
            ]
        elif f.type is FieldType.datetime:
            groups += [
                datetime_groups(t).alias(_tmp(f, "g")),
                compact_groups(t).alias(_tmp(f, "c")),
            ]
    if groups:
        work = work.with_columns(groups)

    def parsed(f: FieldSpec) -> pl.Expr:
        t = pl.col(_tmp(f, "t"))
        if f.type is FieldType.date:
            g, d, m = (pl.col(_tmp(f, k)) for k in "gdm")
            return date_value(f, t, g, d, m, excel_serials=serials, rules=rules)
        g = pl.col(_tmp(f, "g")) if f.type is FieldType.datetime else None
        c = pl.col(_tmp(f, "c")) if f.type is FieldType.datetime else None
        return typed_from_clean(f, t, g, c, excel_serials=serials, rules=rules)

    def typed(f: FieldSpec) -> pl.Expr:
        value = without_unknown_dates(f, parsed(f), rules)
        return value.cast(DTYPES[f.type]).alias(_tmp(f, "v"))

    unknown = [
        parsed(f).is_in(list(rules.unknown_dates)).fill_null(False).alias(_tmp(f, "u"))
        for f in fields
        if f.type is FieldType.date and rules.unknown_dates
    ]
    # lazily: the parsers name a few sub-expressions more than once (shared once computed)
    return work.lazy().with_columns(*[typed(f) for f in fields], *unknown).collect()


def repair_flags(
    f: FieldSpec, *, excel_serials: bool = False, rules: Standardising | None = None
) -> dict[str, pl.Expr]:
    """Kind of repair → boolean expression over the frame of :func:`_staged`: standardisation
    changed this value that way."""
    rules = rules or Standardising()
    raw = pl.col(f.name).cast(pl.String)
    present = raw.is_not_null()
    trimmed = pl.col(_tmp(f, "trim"))
    value = pl.col(_tmp(f, "v"))
    nonblank = trimmed.str.len_bytes() > 0
    placeholder = nonblank & is_placeholder(f, trimmed, rules)
    real = nonblank & ~placeholder
    flags: dict[str, pl.Expr] = {"placeholder": placeholder}
    coded = code_spellings(f)
    if coded:
        flags["coded_value"] = real & trimmed.is_in(list(coded))
    if f.type is not FieldType.text:
        flags["zero_width"] = present & raw.str.contains(_ZERO_WIDTH_CLASS)
    if is_plain_text(f):
        # trimmed is raw.strip here (zero-width removed); blank ⇔ blank after half-width
        visible = raw if f.type is FieldType.text else without_zero_width(raw)
        flags["blank_to_null"] = present & (trimmed == "")
        flags["whitespace"] = real & (trimmed != visible)
        if f.person_name:
            padded = real & trimmed.str.contains(NAME_PADDED)
            flags["name_padded"] = padded
            flags["name_dot"] = real & ~padded & (pl.col(_tmp(f, "t")) != trimmed)
        return flags
    hw = pl.col(_tmp(f, "hw"))
    t = pl.col(_tmp(f, "t"))
    flags["blank_to_null"] = present & (raw.str.strip_chars() == "")
    stripped = hw.str.strip_chars()
    flags["fullwidth"] = real & (hw != without_zero_width(raw))
    flags["whitespace"] = real & (stripped != hw)
    flags["excel_text"] = real & (trimmed != stripped)
    if unit_pattern(f) is not None:
        flags["unit"] = real & (t != trimmed)
    if f.pii is PiiKind.citizen_id:
        flags["lowercase_x"] = trimmed.str.ends_with("x")
        flags["id_15_to_18"] = t.str.contains(ID15)
        flags["id_separators"] = real & trimmed.str.contains(_DASH_CLASS)
    elif is_phone(f):
        std = value if f.type is FieldType.string else phone_from_clean(t)
        changed = real & (std != trimmed)
        extension = trimmed.str.contains(_EXTENSION_MARK)
        flags["phone_extension"] = changed & extension
        flags["phone_format"] = changed & ~extension
    elif f.type is FieldType.date:
        g, d, m = (pl.col(_tmp(f, k)) for k in "gdm")
        iso = trimmed.str.contains(ISO_DATE)
        day_month = d.struct[0].is_not_null() & value.is_not_null()
        month_only = m.struct[0].is_not_null() & value.is_not_null()
        unknown = pl.col(_tmp(f, "u")) if rules.unknown_dates else pl.lit(False)
        flags["unknown_date"] = unknown
        flags["dmy_date"] = day_month
        flags["month_precision"] = month_only
        parsed = value if not excel_serials else date_from_groups(t, g)
        parsed = parsed.is_not_null()
        flags["date_format"] = parsed & ~iso & ~day_month & ~month_only & ~unknown
        if excel_serials:
            flags["excel_serial"] = ~parsed & excel_serial_date(trimmed).is_not_null()
    elif f.type is FieldType.datetime:
        canonical = trimmed.str.contains(ISO_DATETIME)
        millis = trimmed.str.contains(r"^\d{13}$")
        flags["epoch_millis"] = millis.fill_null(False)
        flags["datetime_format"] = ~canonical & ~millis & value.is_not_null()
    return flags


@dataclass
class Standardised:
    """The typed frame (lineage + fields, then a :func:`missing_col` flag per field) and how
    many values each kind of repair changed."""

    frame: pl.DataFrame
    repairs: pl.DataFrame


REPAIRS_SCHEMA = {"field": pl.String, "kind": pl.String, "count": pl.Int64}
# rows standardised at once (:func:`standardise`): its intermediate columns, several a
# field, are held for one batch only
STANDARDISE_BATCH_ROWS = 50_000


def uses_excel_serials(dataset: Dataset) -> bool:
    """Only Excel deliveries carry dates as day numbers; elsewhere 1956 is a year, not a date."""
    return dataset.delivery.kind is ConnectorKind.excel


def standardise(
    raw: pl.DataFrame,
    dataset: Dataset,
    *,
    count_repairs: bool = True,
    batch_rows: int = STANDARDISE_BATCH_ROWS,
) -> Standardised:
    """Raw text columns → typed, standardised columns (lineage columns carried through).

    In batches of ``batch_rows`` rows: every standardiser reads its own row only, and the
    intermediate columns of :func:`_staged` (several a field) are held one batch at a time
    (a 174,000-row register's are hundreds of MB); the repairs are summed over the batches.
    The result equals standardising the frame whole (tests/quality/test_standardise_batches.py).
    """
    if raw.height <= batch_rows:
        return _standardise(raw, dataset, count_repairs=count_repairs)
    parts = [
        _standardise(raw.slice(start, batch_rows), dataset, count_repairs=count_repairs)
        for start in range(0, raw.height, batch_rows)
    ]
    frame = pl.concat([p.frame for p in parts], how="vertical")
    repairs = pl.concat([p.repairs for p in parts], how="vertical")
    if repairs.height:  # the whole frame's order: by field, then kind (as repair_flags lists)
        order = {
            (f.name, kind): i
            for i, (f, kind) in enumerate(
                (f, kind)
                for f in dataset.fields
                for kind in repair_flags(
                    f, excel_serials=uses_excel_serials(dataset), rules=dataset.rules
                )
            )
        }
        rows = repairs.group_by("field", "kind", maintain_order=True).agg(pl.col("count").sum())
        repairs = pl.DataFrame(
            sorted(rows.iter_rows(), key=lambda r: order[(r[0], r[1])]),
            schema=REPAIRS_SCHEMA,
            orient="row",
        )
    return Standardised(frame, repairs)


def _standardise(raw: pl.DataFrame, dataset: Dataset, *, count_repairs: bool) -> Standardised:
    """:func:`standardise` of one batch."""
    serials = uses_excel_serials(dataset)
    lineage = [c for c in LINEAGE if c in raw.columns]
    work = _staged(raw, dataset, serials)
    rules = dataset.rules
    missing = []
    for f in dataset.fields:
        flag = is_placeholder(f, pl.col(_tmp(f, "trim")), rules).fill_null(False)
        if f.type is FieldType.date and rules.unknown_dates:
            flag = flag | pl.col(_tmp(f, "u"))
        missing.append(flag.alias(f"{MISSING_PREFIX}{f.name}"))
    frame = work.select(
        *lineage, *[pl.col(_tmp(f, "v")).alias(f.name) for f in dataset.fields], *missing
    )
    repairs = pl.DataFrame(schema=REPAIRS_SCHEMA)
    if count_repairs and raw.height:
        exprs, keys = [], []
        for f in dataset.fields:
            for kind, flag in repair_flags(f, excel_serials=serials, rules=dataset.rules).items():
                keys.append((f.name, kind))
                exprs.append(flag.fill_null(False).sum().alias(f"{len(keys) - 1}"))
        counts = work.select(exprs).row(0)
        rows = [(fn, k, int(n)) for (fn, k), n in zip(keys, counts, strict=True) if n]
        repairs = pl.DataFrame(rows, schema=REPAIRS_SCHEMA, orient="row")
    return Standardised(frame, repairs)
