"""Leak scanner core: count values that look like unmasked personal information.

Looks in every text, integer and float column (and in free text inside them) for:

- ``citizen_id``: 18 characters with a valid check character — also written 6-8-4 with
  spaces or dashes — or a plausible 15-digit number (region code, birth date); and a number
  stored as a float (``1.10105194912310E+17``, ``110105194912310000.0``, a DOUBLE column),
  whose last digits the float lost: region and birth date are all that can be checked
- ``citizen_id_embedded``: a verified citizen ID at the start or end of a 19–24-digit run,
  as in a 残疾人证号 (ID + 2 digits); see ``masking.text.embedded_citizen_ids`` for what
  keeps ordinary long numbers out
- ``residence_permit``: a city's 16-digit permit number (county code, year, sequence), a
  港澳台居民居住证 or a foreigner's permanent residence card (GB 11643 form)
- ``mobile``: 1[3-9] + 9 digits (``+86``/``0086``/``86``, spaces, dashes, dots allowed)
- ``landline``: ``010-12345678``, ``(010)12345678``, ``0755 1234567``
- ``bank_card``: 16–19 digits passing Luhn with an issuer prefix or after a card cue
  (``masking.cards``, the scrubber's rule); in a column of card numbers (``card_columns``:
  the catalogue's PII kind ``bank_card``) every such run counts as cued
- ``email``, ``plate`` (京A12345, 京AD12345)
- ``person_name``: a full name from the resident registry (``known_names``)

Masked values (138****5678, 110105********002X, 张*), pseudonyms and other hex words
(digests, key ids, UUIDs: their digit runs are chance) and ciphertexts are not leaks.
JSON's ``\\uXXXX`` escapes are read as the characters they stand for. The result gives
counts per kind and per column and a few sample locations (row, column) — never a value.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from catalog.days import beijing_day
from catalog.identifiers import (
    FULL_TO_HALF,
    NAME_IN_PARTS,
    PADDED_PAIR,
    citizen_id15_plausible_str,
    citizen_id_valid_str,
    halfwidth_str,
    name_dots_str,
)
from masking.cards import CARD_CUE, CARD_RE, bank_card_str, card_cue_before
from masking.crypto import CIPHERTEXT
from masking.names import NAME_BEFORE, KnownNames
from masking.text import (
    CITIZEN_ID15_RE,
    CITIZEN_ID18_RE,
    CITIZEN_ID_SPLIT_RE,
    EMAIL_RE,
    ID_PROVINCES,
    LANDLINE_RE,
    MOBILE_RE,
    PLATE_RE,
    RESIDENCE_PERMIT_RE,
    embedded_citizen_ids,
    permit_holder_id,
    residence_permit_str,
)

KINDS = (
    "citizen_id",
    "citizen_id_embedded",
    "residence_permit",
    "mobile",
    "landline",
    "bank_card",
    "email",
    "plate",
    "person_name",
)
_PSEUDONYM = r"^[0-9a-f]{16,64}$"
# A column of pseudonyms (keyed digests, 20 hex characters) holds, now and then, one of
# digits alone: 1 in (16/10)**20, about 11,500. Such a value is looked at as a number, and
# one in tens of thousands of 20-digit numbers carries a valid ID at its start or end
# (``masking.text.embedded_citizen_ids``): at 200,000 residents the sensor readings' row
# pseudonyms (12 million cells) held one in about every seventh run, and the run failed its
# no-unmasked-personal-information check. Where a column's hex words with a letter show it
# to be one of digests (:data:`PSEUDONYM_EVIDENCE` of them of one length at least), its
# all-digit values of that length are counted as digests as long as there are no more of
# them than chance gives (:func:`_chance_digests`); more, and every one is read as a number.
PSEUDONYM_EVIDENCE = 100


def _lettered_digest(text: pl.Expr) -> pl.Expr:
    """A digest's shape (:data:`_PSEUDONYM`) with a letter: its digit runs are chance."""
    return text.str.contains(_PSEUDONYM) & text.str.contains("[a-f]")


# What a cell needs before it is looked at value by value (vectorised, in polars' regex
# engine, which has no look-arounds): a match of a loosened form of one of the detectors
# above. Each form matches wherever its detector can: a look-around "no digit/letter before
# or after" becomes "start, end or a character that is not one" (the same for a contains
# test), the look-arounds it cannot write so are left out, and the check a detector makes
# after its regex is kept only where a regex says it exactly (the province codes, month and
# day, a permit's year). A hex word is blanked before the detectors run, but it can only
# stand between characters that are not letters or digits, so the characters beside a
# number are the same with it or without it. A cell with a full-width character or a JSON
# escape is always looked at (the detectors read it half-width, unescaped), and so is one
# with a digit outside ASCII (the detectors' \\d reads it; the forms here read 0-9 only:
# a regex of ASCII classes runs several times faster).
_B = r"(?:^|[^0-9A-Za-z])"  # (?<![0-9A-Za-z])
_E = r"(?:$|[^0-9A-Za-z])"  # (?![0-9A-Za-z])
_PROVINCE = "(?:" + "|".join(sorted(ID_PROVINCES)) + ")"
_MONTH_DAY = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
_ID18_SHAPE_P = _PROVINCE + r"[0-9]{4}(?:18|19|20)[0-9]{2}" + _MONTH_DAY + r"[0-9]{3}[0-9Xx]"
_WIDE_FORM = r"[\x{FF01}-\x{FF5E}\x{3000}]|[\d&&[^0-9]]|\\u[0-9a-fA-F]{4}"  # full-width, escape
_ID18 = r"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}" + _MONTH_DAY + r"[0-9]{3}[0-9Xx]" + _E
_ID15 = r"[1-9][0-9]{7}" + _MONTH_DAY + r"[0-9]{3}" + _E
_CARD = r"[2-69](?:[0-9]{3}(?:[ -][0-9]{4}){3}|[0-9]{15,18}(?:$|[^0-9Xx]))"
_PERMIT = _PROVINCE + r"[0-9]{4}(?:199[0-9]|20[0-9][0-9])[0-9]{6}" + _E


def _digit_forms(before: str, before_card: str) -> tuple[str, ...]:
    """The forms of the detectors :func:`_digit_kinds` runs; ``before``, ``before_card``:
    what may stand before an ID, permit or card (the ID and card detectors' look-behinds)."""
    return (
        _WIDE_FORM,
        before + _ID18,  # ID (18)
        _B + r"[1-9][0-9]{5}[ -](?:18|19|20)[0-9]{6}[ -][0-9]{3}[0-9Xx]" + _E,  # ID 6-8-4
        before + _ID15,  # ID (15)
        _B + _ID18_SHAPE_P + r"[0-9Xx]{1,6}" + _E,  # an ID at the start of a longer run
        _B + r"[0-9Xx]{1,6}" + _ID18_SHAPE_P + _E,  # … or at its end
        r"[1-9]\.[0-9]{1,17}[Ee]\+?[0-9]{1,2}|[1-9][0-9]{10,18}\.0",  # a float's number
        r"(?:^|[^0-9+]|86[ -]?)1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?:$|[^0-9])",  # mobile
        r"1[3-9][0-9]\.[0-9]{4}\.[0-9]{4}",  # mobile 138.1234.5678
        r"(?:\(0[0-9]{2,3}\)\s?|(?:^|[^0-9])0[0-9]{2,3}[- ])[0-9]{7,8}(?:$|[^0-9])",  # landline
        before_card + _CARD,  # a card
        "(?:" + CARD_CUE.pattern + r")[^0-9]{0,12}[0-9]{4}",  # a card after its cue
        before + _PERMIT,  # residence permit
    )


_EMAIL_FORM = r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2}"
_PLATE_FORM = PLATE_RE.pattern.replace("(?![A-Za-z0-9])", "(?:$|[^A-Za-z0-9])")
_CANDIDATE_FORMS = (*_digit_forms(_B, r"(?:^|[^0-9])"), _EMAIL_FORM, _PLATE_FORM)
# The digit detectors' forms for a text as they read it (half-width, its hex words blanked:
# :func:`_long_digit_kinds`), where what stands before a number is what they see: an ID,
# permit or card also has no decimal point after a digit before it (``_NOT_DECIMAL``; a
# float's fraction is none of them). On a cell as stored, a hex word blanked later may end
# in that digit (``…0123.``), so :data:`_CANDIDATE_FORMS` leave the decimal point out.
_PIECE_FORMS = _digit_forms(
    r"(?:^\.?|[^0-9A-Za-z.]|[^0-9]\.)",  # (?<![0-9]\.)(?<![0-9A-Za-z])
    r"(?:^\.?|[^0-9.]|[^0-9]\.)",  # (?<![0-9]\.)(?<![0-9])
)
# every detector but the names', on a text as they read it (:func:`names_alone`)
_READ_CANDIDATE = "|".join((*_PIECE_FORMS, _EMAIL_FORM, _PLATE_FORM))
_CANDIDATE = "|".join(_CANDIDATE_FORMS)
_ESCAPE = r"\\u[0-9a-fA-F]{4}"
FEW_NAMES = 1_000
# a hex word standing on its own (a SHA-256 in a landed file's path, a key id, a run's UUID):
# 12+ characters of 0-9a-f with at least one letter, or a UUID. Its digit runs are chance, not
# numbers (an 11-digit run reading as a mobile turns up in about 1 of 2,000 16-character
# digests, and in about 1 of 3,000 UUIDs). The price: a number glued to hex letters only
# (``abc13812345678``) is not read.
_HEX_WORD = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|(?=[0-9]*[a-f])[0-9a-f]{12,})(?![0-9A-Za-z])"
)
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# a number as a float writes it: 1.10105194912310E+17, 13812345678.0
_FLOAT_SCI = re.compile(r"(?<![0-9.])([1-9])\.([0-9]{1,17})[Ee]\+?([0-9]{1,2})(?![0-9])")
_FLOAT_DEC = re.compile(r"(?<![0-9.])([1-9][0-9]{10,18})\.0+(?![0-9])")
_FLOAT_TYPES = (pl.Float32, pl.Float64)
_TEXT_TYPES = (pl.String, pl.Categorical, pl.Enum)


@dataclass
class LeakCounts:
    """Cells holding each kind (a cell counts once per kind it holds); ``by_kind`` and the
    per-column counts list only the kinds found."""

    by_kind: Counter = field(default_factory=Counter)
    by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: list[tuple[int, str, str]] = field(default_factory=list)  # (row, column, kind)
    cells_scanned: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def add(self, other: LeakCounts, max_samples: int = 10) -> None:
        """Fold another scan's counts into these (the parts of one file or table)."""
        self.by_kind.update(other.by_kind)
        for column, kinds in other.by_column.items():
            mine = self.by_column.setdefault(column, {})
            for kind, n in kinds.items():
                mine[kind] = mine.get(kind, 0) + n
        room = max_samples - len(self.samples)
        self.samples.extend(other.samples[: max(room, 0)])
        self.cells_scanned += other.cells_scanned


def unescape_json(text: str) -> str:
    """``\\uXXXX`` escapes (JSON written ASCII-only, as Dagster writes its events) as the
    characters they stand for, so names and full-width digits are seen."""
    if "\\u" not in text:
        return text
    return _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _birth_date_real(yyyymmdd: str) -> bool:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= beijing_day()


def float_citizen_id(digits: str) -> bool:
    """An 18-digit integer a float made of a citizen ID: a float keeps 15–16 significant
    digits, so the check character is lost; the province code and a real birth date from
    1900 to today are what is left to check (about 1 in 6,000 random 18-digit numbers)."""
    return len(digits) == 18 and digits[:2] in ID_PROVINCES and _birth_date_real(digits[6:14])


def _float_kinds(digits: str) -> set[str]:
    """Kinds a number written by a float (its integer digits) may be."""
    if len(digits) == 18 and float_citizen_id(digits):
        return {"citizen_id"}
    if len(digits) == 15 and citizen_id15_plausible_str(digits):
        return {"citizen_id"}
    if len(digits) == 11 and re.fullmatch(r"1[3-9]\d{9}", digits):
        return {"mobile"}
    return set()


def _sci_digits(m: re.Match) -> str | None:
    lead, frac, exp = m.group(1), m.group(2), int(m.group(3))
    if exp < len(frac):  # not an integer
        return None
    return lead + frac + "0" * (exp - len(frac))


def _digit_kinds(half: str, from_float: bool = False, card_column: bool = False) -> set[str]:
    kinds: set[str] = set()
    for m in CITIZEN_ID18_RE.finditer(half):
        cid = m.group().upper()
        if citizen_id_valid_str(cid):
            kinds.add("residence_permit" if permit_holder_id(cid) else "citizen_id")
        elif from_float and float_citizen_id(cid):
            kinds.add("citizen_id")
    for m in CITIZEN_ID_SPLIT_RE.finditer(half):
        if citizen_id_valid_str(re.sub(r"[ -]", "", m.group()).upper()):
            kinds.add("citizen_id")
    for m in CITIZEN_ID15_RE.finditer(half):
        if citizen_id15_plausible_str(m.group()):
            kinds.add("citizen_id")
    for m in _FLOAT_SCI.finditer(half):
        digits = _sci_digits(m)
        if digits is not None:
            kinds |= _float_kinds(digits)
    for m in _FLOAT_DEC.finditer(half):
        kinds |= _float_kinds(m.group(1))
    embedded = embedded_citizen_ids(half)
    if embedded:
        kinds.add("citizen_id_embedded")
    if MOBILE_RE.search(half):
        kinds.add("mobile")
    if LANDLINE_RE.search(half):
        kinds.add("landline")
    cards: set[tuple[int, int]] = set()
    for m in CARD_RE.finditer(half):
        if m.span() in embedded:  # a document number that carries an ID is no card
            continue
        digits = "".join(c for c in m.group() if c.isdigit())
        card = bank_card_str(digits, cued=card_column or card_cue_before(half, m.start()))
        if card and not citizen_id_valid_str(digits):  # an ID that also passes Luhn is an ID
            kinds.add("bank_card")
            cards.add(m.span())
    for m in RESIDENCE_PERMIT_RE.finditer(half):
        if m.span() not in cards and residence_permit_str(m.group()):
            kinds.add("residence_permit")
    return kinds


# A text this long (a model file's one line, a Dagster event's JSON) is read for digits in
# pieces cut at commas, each piece looked at only where the pre-filter picks it
# (:func:`_long_digit_kinds`). Read whole, the detectors' look-behind regexes took ~0.6
# microseconds a character: the need model's file (one 558,000-character line of numbers)
# 364 ms, in pieces 60 ms (2026-12-07), nearly all of it in pieces no detector can match.
# Each text's pieces cost ~4 ms of the forms' compiling whatever its length: a Dagster
# event's JSON of 3,000-6,000 characters was slower so, of 8,000 and more faster.
LONG_TEXT = 8_192
PIECE = 256  # about as many characters a piece (cut at the first comma after them)


def _digit_kinds_of(half: str, from_float: bool, card_column: bool) -> set[str]:
    """:func:`_digit_kinds` of a half-width text, a long one in pieces."""
    if not _DIGIT.search(half):
        return set()
    if len(half) >= LONG_TEXT:
        return _long_digit_kinds(half, from_float, card_column)
    return _digit_kinds(half, from_float, card_column)


def _long_digit_kinds(half: str, from_float: bool, card_column: bool) -> set[str]:
    """:func:`_digit_kinds` of a long text, the same kinds: the text cut at commas into
    pieces of about :data:`PIECE` characters, and only the pieces the vectorised pre-filter
    (:data:`_PIECE_FORMS`, which match wherever a detector can) picks are read.

    Why a comma cut changes nothing: no detector's match holds a comma, and every
    look-around beside a match (no digit, letter or decimal point before or after) reads a
    comma as it reads the start or end of a text; so a match stands whole in one piece and
    is found there as in the whole text, and what a detector checks beside its match (an ID
    carried in a longer run, a card that is an ID) is within that match. The one thing
    read from further back, a card's cue word (卡号 …) up to a few characters before the
    number, may stand across a comma: a text with a cue word anywhere is read whole, and so
    is one of a card column (any digit run of a card's length may be its card)."""
    if card_column or CARD_CUE.search(half):
        return _digit_kinds(half, from_float, card_column)
    pieces, start = [], 0
    while True:
        cut = half.find(",", start + PIECE)
        if cut < 0:
            pieces.append(half[start:])
            break
        pieces.append(half[start:cut])
        start = cut + 1
    if len(pieces) == 1:
        return _digit_kinds(half, from_float, card_column)
    # the forms one at a time: on such pieces polars ran their alternation ~6 times slower
    series = pl.Series(pieces, dtype=pl.String)
    picked = functools.reduce(operator.or_, (series.str.contains(f) for f in _PIECE_FORMS))
    kinds: set[str] = set()
    for piece, pick in zip(pieces, picked, strict=True):
        if pick:
            kinds |= _digit_kinds(piece, from_float, card_column)
    return kinds


def cell_kinds(
    text: str,
    names: KnownNames | None = None,
    *,
    from_float: bool = False,
    whole_names: bool = False,
    card_column: bool = False,
    names_alone: bool = False,
) -> set[str]:
    """The kinds of personal information one text holds (empty: none). ``whole_names``: a
    registry name counts only as the whole text (a structured column: see
    :func:`scan_frame`), not inside it. ``card_column``: the text stands in a column of
    card numbers, where a card needs no cue. ``names_alone``: only registry names are
    looked for (the caller knows no other detector can flag the text)."""
    text = unescape_json(text)
    kinds: set[str] = set()
    if not names_alone:
        half = _detectors_read(text)
        kinds = _digit_kinds_of(half, from_float, card_column)
        if "@" in half and EMAIL_RE.search(half):
            kinds.add("email")
        if PLATE_RE.search(half):
            kinds.add("plate")
    if names and not text.isascii():
        text = name_dots_str(text)  # a name in parts as the registry holds it (one for one)
        if whole_names:
            named = text.strip() in names
        elif _without_ascii(names):  # a name stands inside one run of non-ASCII characters
            named = any(names.occurs_in(run) for run in _NON_ASCII_RUN.findall(text))
            named = named or next(names.padded_spans(text), None) is not None  # 王 芳
        else:
            named = names.occurs_in(text)
        if named:
            kinds.add("person_name")
    return kinds


def may_hold_personal(values: pl.Series) -> pl.Series:
    """Per text value, the pre-filter of :func:`scan_frame` without a registry, and a cue
    word before a name (填表人, 联系人 …): False where no detector can find anything."""
    text = values.cast(pl.String)
    return (text.str.contains(_CANDIDATE) | text.str.contains(NAME_BEFORE)).fill_null(False)


def readable(text: str) -> str:
    """A text (its JSON escapes read already) as the detectors read it: half-width."""
    return halfwidth_str(text) if _FULL_WIDTH.search(text) else text


def _detectors_read(unescaped: str) -> str:
    """A text (its JSON escapes read already) as the detectors but the names' read it:
    half-width, its hex words blanked."""
    return _HEX_WORD.sub(" ", readable(unescaped))


# a picked value this long is read again by :func:`names_alone`; one of LONG_TEXT or more is
# read in pieces instead (one alternation of the forms over a 558,000-character line took
# polars ~0.4 s, its pieces all forms ~0.03 s)
ALONE_CHARS = 1_000


def names_alone(values: pl.Series) -> set[str]:
    """Of the values the pre-filter picked, those that only registry names can flag: a
    value with a full-width form or a JSON escape, or one of :data:`ALONE_CHARS` characters
    or more (and fewer than :data:`LONG_TEXT`), whose text as the detectors read it
    (unescaped, half-width, hex words blanked: :func:`_detectors_read`) none of their forms
    picks (:data:`_READ_CANDIDATE`: a decimal point before a number read as they read it,
    now that no hex word stands there).

    So a Dagster event's JSON, which escapes every Chinese character of a text of kilobytes,
    and a long text whose only candidates were a float's fraction (a pass rate's
    ``0.9215686274509803``, picked by the cell's card form) are read for names alone: their
    dozen detectors found nothing in them, at a microsecond a character."""
    length = values.str.len_chars()
    looked = values.filter(
        values.str.contains(_WIDE_FORM) | ((length >= ALONE_CHARS) & (length < LONG_TEXT))
    )
    if looked.len() == 0:
        return set()
    read = pl.Series([_detectors_read(unescape_json(v)) for v in looked], dtype=pl.String)
    return set(looked.filter(~read.str.contains(_READ_CANDIDATE)).to_list())


_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{2,}")
# a character ``halfwidth_str`` changes (without one, a text is its own half-width form)
_FULL_WIDTH = re.compile("[" + "".join(map(re.escape, FULL_TO_HALF)) + "]")
_DIGIT = re.compile(r"\d")
_WITHOUT_ASCII: dict[int, tuple[KnownNames, bool]] = {}


def _without_ascii(names: KnownNames) -> bool:
    """No name holds an ASCII character (worked out once per set of names): then only the
    text's runs of other characters need looking at (a Dagster snapshot is megabytes of
    JSON with a few Chinese words)."""
    kept = _WITHOUT_ASCII.get(id(names))
    if kept is None or kept[0] is not names:
        kept = (names, not any(c.isascii() for n in names for c in n))
        _WITHOUT_ASCII.clear()
        _WITHOUT_ASCII[id(names)] = kept
    return kept[1]


def _as_text(series: pl.Series) -> pl.Series:
    """A binary or nested column as text (the other types: :func:`_text_expr`)."""
    if series.dtype == pl.Binary:
        return series.map_elements(lambda b: b.decode("utf-8", "replace"), return_dtype=pl.String)
    return pl.Series(series.name, [None if v is None else str(v) for v in series.to_list()],
                     dtype=pl.String)  # fmt: skip


@dataclass(frozen=True)
class FrameScan:
    """One frame of :func:`scan_frames`, read as :func:`scan_frame` reads it: rows counted
    from ``row_offset``, ``whole_name_columns`` and ``card_columns`` its own."""

    frame: pl.DataFrame
    row_offset: int = 0
    whole_name_columns: Collection[str] = ()
    card_columns: Collection[str] = ()


def scan_frame(
    frame: pl.DataFrame,
    *,
    known_names: set[str] | frozenset[str] | None = None,
    max_samples: int = 10,
    row_offset: int = 0,
    whole_name_columns: Collection[str] = (),
    names_only: bool = False,
    card_columns: Collection[str] = (),
) -> LeakCounts:
    """Count cells per kind that hold unmasked personal information (rows in the samples
    are counted from ``row_offset``). ``names_only``: registry names only (a few names
    new to the registry, looked for in rows already scanned with the others).

    ``whole_name_columns``: structured columns (a catalogue field that is not free text,
    say a shop's or an employer's name) where a registry name counts only as the whole
    cell. Inside such a value it is chance, and chance grows with the registry: a shop
    named 王兴便利店 holds the name 王兴 of one of 200,000 residents (a 200,000-resident
    run flagged thousands of employer names this way). Free text and files keep the
    substring search.

    ``card_columns``: columns of card numbers (the catalogue's PII kind ``bank_card``),
    where a 16–19-digit run passing Luhn is a card with no issuer prefix or cue."""
    scan = FrameScan(frame, row_offset, whole_name_columns, card_columns)
    return scan_frames(
        [scan], known_names=known_names, max_samples=max_samples, names_only=names_only
    )[0]


def scan_frames(
    scans: Sequence[FrameScan],
    *,
    known_names: set[str] | frozenset[str] | None = None,
    max_samples: int = 10,
    names_only: bool = False,
) -> list[LeakCounts]:
    """:func:`scan_frame` of each frame, its counts its own: the vectorised filter runs
    once over all of them (:func:`_candidates`), then each frame's picked values are judged
    column by column. Many small frames cost so about one frame's polars queries instead of
    several each (a first run's leak check reads a hundred tables, most of them of a few
    rows)."""
    results = [LeakCounts() for _ in scans]
    names = KnownNames.of(known_names)
    present = [(scan, result) for scan, result in zip(scans, results, strict=True)
               if scan.frame.height]  # fmt: skip
    if not present:
        return results
    name_list = _name_series(names) if names else None
    candidate_of = functools.partial(
        _candidate, names=names, name_list=name_list, names_only=names_only
    )
    picked = _candidates([s for s, _ in present], candidate_of, [r for _, r in present])
    for (scan, result), (text, candidates) in zip(present, picked, strict=True):
        _judge(scan, text, candidates, names, result, max_samples, names_only)
    return results


def _judge(
    scan: FrameScan,
    text: pl.DataFrame,
    candidates: dict[str, pl.Series],
    names: KnownNames,
    result: LeakCounts,
    max_samples: int,
    names_only: bool,
) -> None:
    """Each picked value of ``scan``'s frame read by the detectors, its cells counted into
    ``result`` column by column in the frame's order (the samples are kept so)."""
    for name in text.columns:
        if name not in candidates:
            continue
        column, values = text[name], candidates[name]
        from_float = scan.frame.schema[name] in _FLOAT_TYPES
        cards = name in scan.card_columns and not names_only
        whole = name in scan.whole_name_columns
        chance = _chance_digests(values, column)
        if chance.len():
            values = values.filter(~values.is_in(chance.implode()))
        alone = names_alone(values) if not (cards or names_only) else set()
        flagged = {}
        for value in values:
            kinds = cell_kinds(
                value,
                names,
                from_float=from_float,
                whole_names=whole,
                card_column=cards,
                names_alone=value in alone,
            )
            if names_only:
                kinds &= {"person_name"}
            if kinds:
                flagged[value] = kinds
        if flagged:
            _count_flagged(result, column, flagged, max_samples, scan.row_offset)


def _kept(v: pl.Expr) -> pl.Expr:
    """The text values a scan reads: not null, not a digest's or a ciphertext's shape."""
    skip = _lettered_digest(v) | v.str.contains(CIPHERTEXT)
    return v.is_not_null() & ~skip.fill_null(False)


def _candidate(
    v: pl.Expr,
    cards: bool | pl.Expr,
    whole_names: bool | pl.Expr,
    *,
    names: KnownNames,
    name_list: pl.Series | None,
    names_only: bool,
) -> pl.Expr:
    """True for a text value that some detector (or a registry name) may flag: the
    vectorised filter of :func:`scan_frame` before it looks value by value. ``cards``: the
    value stands in a column of card numbers; ``whole_names``: in a structured column (a
    registry name counts only as the whole value); each a constant for one column, or an
    expression for values of several (:func:`_candidates`)."""
    candidate = v.str.contains(_ESCAPE if names_only else _CANDIDATE)  # names: unescaped
    if not names_only:
        candidate = candidate | _where(cards, v.str.contains(r"[0-9]"), pl.lit(False))
    if name_list is not None:
        if len(names) <= FEW_NAMES:  # polars' automaton: quick to build for a few
            inside = v.str.contains_any(sorted(names)) | v.str.contains(_ESCAPE)
        else:  # names are looked up in Python (``KnownNames.spans``): polars would
            # build its automaton for 20,000 names again on every call (0.5 s)
            inside = v.str.contains(r"[^\x00-\x7F]")
        candidate = candidate | _where(whole_names, v.str.strip_chars().is_in(name_list), inside)
        # a name in parts joined otherwise than the registry's (买买提•艾力): looked up
        # with its joins folded (``cell_kinds``)
        candidate = candidate | v.str.contains(NAME_IN_PARTS)
        # a two-character name padded to a roster's width (王　芳): its pair looked up
        candidate = candidate | v.str.contains(PADDED_PAIR)
    return candidate


def _where(condition: bool | pl.Expr, then: pl.Expr, otherwise: pl.Expr) -> pl.Expr:
    """``then`` where ``condition`` holds, else ``otherwise`` (a constant picks one)."""
    if isinstance(condition, bool):
        return then if condition else otherwise
    return pl.when(condition).then(then).otherwise(otherwise)


def _text_expr(name: str, dtype: pl.DataType) -> pl.Expr | None:
    """Column ``name`` as the text a scan reads (:func:`_as_text`; an integer only where it
    has more than 10 digits), for the types read in bulk: text, integers, floats."""
    col = pl.col(name)
    if dtype in _TEXT_TYPES:
        return col.cast(pl.String)
    if dtype.is_integer():
        return pl.when(_big(col)).then(col.cast(pl.String))
    if dtype in _FLOAT_TYPES:
        return _float_text(col)
    return None


def _big(integers: pl.Expr) -> pl.Expr:
    """An integer of more than 10 digits (those of 10 or fewer are none of the kinds)."""
    return (integers.cast(pl.Float64).abs() >= 1e10).fill_null(False)


def _float_text(values: pl.Expr) -> pl.Expr:
    """Floats as text: integral values as integers (a float's digits are kept)."""
    f = values.cast(pl.Float64)
    whole = (f.is_finite() & (f == f.floor()) & (f.abs() < 9.2e18)).fill_null(False)
    return (
        pl.when(whole)
        .then(f.cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(f.cast(pl.String))
    )


def _readable(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame's columns a scan reads, in its order, as the text it reads: text, integers
    of more than 10 digits (the others null here), floats (:func:`_text_expr`), binary and
    nested values (:func:`_as_text`); no booleans, dates or times (they hold no personal
    information)."""
    schema = frame.schema
    bulk = frame.select(
        t.alias(n) for n, d in schema.items() if (t := _text_expr(n, d)) is not None
    )
    alone = [_as_text(frame[n]) for n, d in schema.items() if _read_alone(d)]
    if not alone:  # in the frame's order already
        return bulk
    read = bulk.with_columns(alone)
    return read.select(n for n in schema if n in read.columns)


def _candidates(
    scans: Sequence[FrameScan],
    candidate_of: Callable[[pl.Expr, bool | pl.Expr, bool | pl.Expr], pl.Expr],
    results: Sequence[LeakCounts],
) -> list[tuple[pl.DataFrame, dict[str, pl.Series]]]:
    """Each frame as the text a scan reads (:func:`_readable`), and each of its columns'
    distinct values that the vectorised filter picks (:func:`_candidate`), for the columns
    with any; every cell read counted into the frame's result. One query over all the
    frames' columns in long form (column by column, the filters cost ~1 ms a column
    whatever its length: most of a scan of the lake's 1,600 columns; frame by frame, a few
    milliseconds a frame), each distinct value of a column judged once."""
    texts = [_readable(scan.frame) for scan in scans]
    for scan, result in zip(scans, results, strict=True):
        small = [  # an integer's numbers of 10 digits or fewer are scanned cells too
            (pl.col(n).is_not_null() & ~_big(pl.col(n))).sum()
            for n, d in scan.frame.schema.items()
            if d.is_integer()
        ]
        if small:
            result.cells_scanned += sum(scan.frame.select(small).row(0))
    owner: list[tuple[int, str]] = []  # the long form names a column by its position here
    cards: list[str] = []
    whole: list[str] = []
    parts = []
    for k, (scan, text) in enumerate(zip(scans, texts, strict=True)):
        ids = {}
        for n in text.columns:
            ids[n] = str(len(owner))
            owner.append((k, n))
            if n in scan.card_columns:
                cards.append(ids[n])
            if n in scan.whole_name_columns:
                whole.append(ids[n])
        if ids:
            parts.append(text.lazy().rename(ids).unpivot(variable_name="c", value_name="v"))
    out: list[tuple[pl.DataFrame, dict[str, pl.Series]]] = [(text, {}) for text in texts]
    if not parts:
        return out
    column, v = pl.col("c"), pl.col("v")
    distinct = pl.concat(parts).filter(_kept(v)).group_by("c", "v").len("n").collect()
    for position, n in distinct.group_by("c").agg(pl.col("n").sum()).iter_rows():
        results[owner[int(position)][0]].cells_scanned += int(n)
    in_cards, in_whole = (column.is_in(given) if given else False for given in (cards, whole))
    picked = distinct.filter(candidate_of(v, in_cards, in_whole))
    for (position,), part in picked.partition_by("c", as_dict=True).items():
        k, name = owner[int(position)]
        out[k][1][name] = part["v"]
    return out


def _read_alone(dtype: pl.DataType) -> bool:
    """A type whose text :func:`_as_text` makes in Python (binary, nested)."""
    return dtype == pl.Binary or dtype.is_nested()


def _chance_digests(values: pl.Series, column: pl.Series) -> pl.Series:
    """Of the distinct candidate ``values`` of ``column``, those of digits alone shaped like
    a digest (:data:`_PSEUDONYM`) that the column's digests explain: for each length, when
    the column holds :data:`PSEUDONYM_EVIDENCE` distinct digests of it with a letter or
    more, and no more all-digit ones than a Poisson count of their expected number
    (``n · p / (1 − p)``, ``p = (10/16)**length``) reaches but once in millions
    (``λ + 6√λ + 1``). A column of numbers (document numbers, none with a letter) has no such
    evidence: every value of it is read. The price: a number of a digest's length and
    shape standing alone among thousands of digests is taken for one (the hub writes a
    column's pseudonyms all at once, never a value of it in the clear)."""
    digits = values.filter(values.str.contains(_PSEUDONYM))  # those with a letter: skipped
    if digits.is_empty():
        return digits
    lengths = digits.str.len_bytes()
    digests = column.to_frame("v").filter(_lettered_digest(pl.col("v")))["v"]
    evidence = dict(digests.unique().str.len_bytes().value_counts().iter_rows())
    explained = []
    for length, count in lengths.value_counts().iter_rows():
        n = evidence.get(length, 0)
        p = (10 / 16) ** length
        expected = n * p / (1 - p)
        if n >= PSEUDONYM_EVIDENCE and count <= expected + 6 * math.sqrt(expected) + 1:
            explained.append(length)
    return digits.filter(lengths.is_in(explained))


def _name_series(names: KnownNames) -> pl.Series:
    """The registry's names as one polars list (for ``is_in``), made once per set."""
    cached = _NAME_SERIES.get(id(names))
    if cached is None or cached[0] is not names:
        cached = (names, pl.Series("names", sorted(names), dtype=pl.String).implode())
        _NAME_SERIES.clear()
        _NAME_SERIES[id(names)] = cached
    return cached[1]


_NAME_SERIES: dict[int, tuple[KnownNames, pl.Series]] = {}


def _count_flagged(
    result: LeakCounts,
    column: pl.Series,
    flagged: dict[str, set[str]],
    max_samples: int,
    row_offset: int,
) -> None:
    """Add the cells of ``column`` holding a flagged value (value → kinds) to ``result``."""
    name = column.name
    per_col = result.by_column.setdefault(name, {})
    hits = pl.DataFrame({"v": column}).with_row_index().filter(pl.col("v").is_in(list(flagged)))
    for row, value in zip(hits["index"], hits["v"], strict=True):
        for kind in sorted(flagged[value]):
            result.by_kind[kind] += 1
            per_col[kind] = per_col.get(kind, 0) + 1
            if len(result.samples) < max_samples:
                result.samples.append((int(row) + row_offset, name, kind))


def scan_texts(
    texts: Iterable[str],
    *,
    known_names: set[str] | frozenset[str] | None = None,
    column: str = "line",
    batch: int = 20_000,
    first_row: int = 1,
) -> LeakCounts:
    """Scan a stream of texts (a file's lines, a table's cells) in batches of ``batch``;
    sample rows count from ``first_row`` (line numbers)."""
    result = LeakCounts()
    names = KnownNames.of(known_names)
    buf: list[str] = []
    row = first_row
    for text in texts:
        buf.append(text)
        if len(buf) >= batch:
            part = scan_frame(pl.DataFrame({column: buf}, schema={column: pl.String}),
                              known_names=names, row_offset=row)  # fmt: skip
            result.add(part)
            row += len(buf)
            buf = []
    if buf:
        part = scan_frame(pl.DataFrame({column: buf}, schema={column: pl.String}),
                          known_names=names, row_offset=row)  # fmt: skip
        result.add(part)
    return result
