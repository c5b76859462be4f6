"""Find and mask personal information in Chinese free text (12345 appeals, grid reports).

Detectors (spans, then overlaps resolved longest-first, then masked from the end):

- citizen IDs: 18 characters with a birth date and a valid check character, or a
  15-digit number with a plausible birth date, or a verified ID at the start or end of a
  19–24-digit document number (``embedded_citizen_ids``); an 18-digit number with a birth date
  but a wrong check character is still masked (``verified=False``). Digit look-arounds
  ``(?<!\\d)…(?!\\d)`` — never ``\\b``, which does not fire between 号 and a digit. An ID
  written 6-8-4 with spaces or dashes (``110105 19491231 002X``) counts when it verifies.
- mobiles (``+86``/``0086``/``86``, spaces, dashes, dots), landlines (``010-12345678``, ``(010)…``)
- residence-permit numbers of cities (16 digits: county code, year of issue, sequence)
- bank cards: 16–19 digits (groups of 4 allowed) passing Luhn, with an issuer prefix or
  after a card cue (卡号, 银行卡, 账号 …): ``masking.cards``, the rule the leak scanner uses too
- plates (京A12345, new-energy 京AD12345), e-mails
- addresses below the community: building + unit / room (``1号楼2单元502室``,
  ``3-2-501``, ``502室``); a building alone (``15号楼附近``) is a place, kept
- person names (``masking.text_names``): after a cue (市民, 户主, 用户, 反映人, 来电人, 请 …),
  at a sentence's start before 反映/称/投诉/来电/家/的身份证 …, before a title (阿姨, 大爷,
  师傅, 老师 …), alone in brackets, jieba's ``nr`` tag (no common word, no place), and
  ``known_names``; a cue-found name wins over jieba's guess where they overlap.

Masks: IDs/phones/cards/plates/e-mails as their display masks, names → 张*,
addresses → ``***``. Findings carry kind and span, never the value.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import polars as pl

from catalog.days import beijing_day
from catalog.identifiers import (
    citizen_id15_plausible_str,
    citizen_id_valid_str,
    halfwidth_str,
)
from masking.cards import bank_card_str, card_cue_before, card_spans
from masking.names import COMPOUND_SURNAMES, KnownNames
from masking.text_names import name_spans


@dataclass(frozen=True)
class Finding:
    kind: str  # citizen_id, mobile, landline, bank_card, plate, email, address, person_name
    start: int
    end: int
    source: str  # which detector: regex, embedded, cue_before, cue_after, jieba, known
    verified: bool = True


# digit look-arounds; and never the digits after a decimal point (2082.17951700135 is a
# duration, not a mobile)
_NOT_DECIMAL = r"(?<![0-9]\.)"
CITIZEN_ID18_RE = re.compile(
    _NOT_DECIMAL
    + r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])"
)
CITIZEN_ID15_RE = re.compile(_NOT_DECIMAL + r"(?<![0-9A-Za-z])[1-9]\d{14}(?![0-9A-Za-z])")
# a run of 19–24 digits (an X allowed where an ID at its start or end would have it)
_LONG_RUN = re.compile(
    r"(?<![0-9A-Za-z])\d{17}[\dXx]\d{1,6}(?![0-9A-Za-z])|(?<![0-9A-Za-z])\d{1,6}\d{17}[\dXx](?![0-9A-Za-z])"
)
# GB/T 2260 province-level codes an ID can start with (81/82/83: HK, Macao, Taiwan residents)
ID_PROVINCES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "81", "82", "83",
})  # fmt: skip
_ID18_SHAPE = re.compile(
    r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dX]"
)
# a citizen ID written in groups of 6-8-4 (region, birth date, sequence + check character),
# one separator used twice: 110105 19491231 002X, 110105-19491231-002X
CITIZEN_ID_SPLIT_RE = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}([ -])(?:18|19|20)\d{6}\1\d{3}[\dXx](?![0-9A-Za-z])"
)
# a residence-permit number (居住证编号) as cities issue it: the issuing county's GB/T 2260
# code, the year of issue and a 6-digit sequence (16 digits). Permits for Hong Kong, Macao
# and Taiwan residents (81/82/83 0000 …) and foreigners' permanent residence cards (9 …)
# follow GB 11643 and are found as citizen IDs (see ``permit_holder_id``).
RESIDENCE_PERMIT_RE = re.compile(
    _NOT_DECIMAL + r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{2}\d{6}(?![0-9A-Za-z])"
)
# 1[3-9] + 9 digits; +86 / 0086 / 86 before; 3-4-4 groups by spaces or dashes, or by dots
# used twice (138.1234.5678: a single dot would read decimals such as 138.12345678)
MOBILE_RE = re.compile(
    _NOT_DECIMAL + r"(?<![0-9+])(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?![0-9])"
    r"|(?<![0-9+.])(?:(?:\+|00)?86[ .]?)?1[3-9]\d\.\d{4}\.\d{4}(?![0-9]|\.[0-9])"
)
LANDLINE_RE = re.compile(r"(?<![0-9])(?:\(0\d{2,3}\)\s?|0\d{2,3}[- ])\d{7,8}(?:-\d{1,4})?(?![0-9])")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PLATE_RE = re.compile(
    r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Z][·•\s]?[A-HJ-NP-Z0-9]{5,6}(?![A-Za-z0-9])"
)
_NUM = r"(?:\d+|[一二三四五六七八九十百]+)"
_ADDRESS = re.compile(
    rf"{_NUM}(?:号楼|号院|栋|幢|座|楼|号)\s*(?:{_NUM}(?:单元|门))?\s*(?:\d+层)?\s*\d+(?:室|号|户)"
    rf"|{_NUM}(?:号楼|栋|幢|座)\s*{_NUM}单元"
    rf"|(?<![0-9]){_NUM}单元\s*\d+(?:室|号|户)?"
    r"|(?<![0-9-])\d{1,3}-\d{1,2}-\d{3,4}(?![0-9-])"
    r"|(?<![0-9])\d{3,4}室"
)
_PRIORITY = {
    "citizen_id": 0,
    "bank_card": 1,
    "email": 2,
    "mobile": 3,
    "landline": 4,
    "plate": 5,
    "residence_permit": 6,
    "address": 7,
    "person_name": 8,
}

_NAME_SOURCE = {"known": 0, "dotted": 1, "cue_before": 1, "cue_weak": 2, "cue_after": 2, "cue_verb": 2,
                "edge": 2, "paren": 2, "jieba": 3}  # fmt: skip


def residence_permit_str(number: str, today: dt.date | None = None) -> bool:
    """A 16-digit number shaped as a city's residence-permit number: a province-level code
    of GB/T 2260 first, a year of issue from 1990 to this year (``RESIDENCE_PERMIT_RE``)."""
    year = int(number[6:10]) if number[6:10].isdigit() else 0
    return (
        len(number) == 16
        and number.isascii()
        and number[:2] in ID_PROVINCES
        and 1990 <= year <= (today or beijing_day()).year
    )


def permit_holder_id(cid: str) -> bool:
    """A verified 18-character number of GB 11643 form that is a residence document, not a
    mainland citizen ID: 港澳台居民居住证 (810000/820000/830000 …) or a foreigner's permanent
    residence card (外国人永久居留身份证, 9 …)."""
    return cid[:1] == "9" or cid[:6] in ("810000", "820000", "830000")


def _id_findings(text: str) -> list[Finding]:
    out = []
    for m in CITIZEN_ID_SPLIT_RE.finditer(text):
        if citizen_id_valid_str(re.sub(r"[ -]", "", m.group()).upper()):
            out.append(Finding("citizen_id", m.start(), m.end(), "regex"))
    for m in CITIZEN_ID18_RE.finditer(text):
        value = m.group().upper()
        if citizen_id_valid_str(value):
            out.append(Finding("citizen_id", m.start(), m.end(), "regex"))
        elif value[17] != "X" and bank_card_str(value, cued=card_cue_before(text, m.start())):
            out.append(Finding("bank_card", m.start(), m.end(), "regex"))
        else:  # birth date and region look right, check character wrong: mask anyway
            out.append(Finding("citizen_id", m.start(), m.end(), "regex", verified=False))
    for m in CITIZEN_ID15_RE.finditer(text):
        if citizen_id15_plausible_str(m.group()):
            out.append(Finding("citizen_id", m.start(), m.end(), "regex"))
    # a document number carrying an ID (残疾人证号): masked as one, first 6 and last 4 kept
    out.extend(Finding("citizen_id", s, e, "embedded") for s, e in embedded_citizen_ids(text))
    return out


def _issued_citizen_id(window: str, today: dt.date) -> bool:
    """An 18-character window that is a verified ID a living person can hold."""
    if not (_ID18_SHAPE.fullmatch(window) and window[:2] in ID_PROVINCES):
        return False
    born = window[6:14]
    return "19000101" <= born <= f"{today:%Y%m%d}" and citizen_id_valid_str(window)


def embedded_citizen_ids(text: str) -> list[tuple[int, int]]:
    """Spans of digit runs (19–24 characters) that carry a citizen ID at their start or end.

    Identity documents built on the ID add a short code to it: a 残疾人证号 is the ID and two
    digits (category, grade). The digit look-arounds of the ID detector deliberately refuse
    an ID inside a longer run, so this looks at those runs on their own. A run counts when
    its first or last 18 characters are a verified ID: a province code of GB/T 2260, a real
    birth date from 1900 to today, the GB 11643 check character. Trade-off: only those two
    windows, and only runs of up to 24 characters, are tried, so an ordinary 20-digit number
    passes by chance about once in 35,000 (per window: province 34/100, birth date ~1/2,150,
    check character 1/11; measured: 6 of 300,000 random 20-digit numbers); an ID buried in
    the middle of a longer number is not told from chance and is not looked for. ``text`` is
    half-width (``catalog.identifiers.halfwidth_str``).
    """
    today = beijing_day()
    spans = []
    for m in _LONG_RUN.finditer(text):
        run = m.group().upper()
        if _issued_citizen_id(run[:18], today) or _issued_citizen_id(run[-18:], today):
            spans.append((m.start(), m.end()))
    return spans


def _regex_findings(text: str) -> list[Finding]:
    out = _id_findings(text)
    out.extend(Finding("bank_card", s, e, "regex") for s, e in card_spans(text))
    for kind, pattern in (
        ("mobile", MOBILE_RE),
        ("landline", LANDLINE_RE),
        ("email", EMAIL_RE),
        ("plate", PLATE_RE),
        ("address", _ADDRESS),
    ):
        out.extend(Finding(kind, m.start(), m.end(), "regex") for m in pattern.finditer(text))
    out.extend(
        Finding("residence_permit", m.start(), m.end(), "regex")
        for m in RESIDENCE_PERMIT_RE.finditer(text)
        if residence_permit_str(m.group())
    )
    return out


def _name_findings(
    text: str, known_names: frozenset[str] | set[str] | None, use_jieba: bool
) -> list[Finding]:
    spans = name_spans(text, known_names, use_jieba)
    return [Finding("person_name", start, end, source) for start, end, source in spans]


def _resolve(findings: list[Finding]) -> list[Finding]:
    """Keep non-overlapping findings: structured kinds (IDs, phones …) before names, longer
    spans first; among names, the cue-delimited ones before jieba's guesses."""
    ranked = sorted(
        findings,
        key=lambda f: (
            f.kind == "person_name",
            _NAME_SOURCE.get(f.source, 0),
            -(f.end - f.start),
            _PRIORITY[f.kind],
            f.start,
        ),
    )
    taken: list[Finding] = []
    for f in ranked:
        if all(f.end <= t.start or f.start >= t.end for t in taken):
            taken.append(f)
    return sorted(taken, key=lambda f: f.start)


def _mask_span(kind: str, value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if kind in ("citizen_id", "residence_permit"):
        return value[:6] + "*" * (len(value) - 10) + value[-4:]
    if kind == "mobile":
        digits = digits[-11:]
        return digits[:3] + "****" + digits[-4:]
    if kind == "landline":
        return digits[:3] + "****" + digits[-4:] if len(digits) >= 10 else "*" * len(digits)
    if kind == "bank_card":
        return "*" * (len(digits) - 4) + digits[-4:]
    if kind == "plate":
        plate = re.sub(r"[·•\s]", "", value)
        return plate[:2] + "·" + "*" * (len(plate) - 4) + plate[-2:]
    if kind == "email":
        return value[0] + "***@" + value.split("@", 1)[1]
    if kind == "person_name":
        surname = value[:2] if len(value) >= 3 and value[:2] in COMPOUND_SURNAMES else value[:1]
        return surname + "*"
    return "***"


def scrub(
    text: str | None,
    *,
    known_names: set[str] | frozenset[str] | None = None,
    use_jieba: bool = True,
) -> tuple[str | None, list[Finding]]:
    """Mask the PII found in ``text``; return the masked text and the findings."""
    if not text:
        return text, []
    half = halfwidth_str(text)
    findings = _regex_findings(half)
    findings += _name_findings(half, known_names, use_jieba)
    kept = _resolve(findings)
    out = text
    for f in reversed(kept):
        out = out[: f.start] + _mask_span(f.kind, half[f.start : f.end]) + out[f.end :]
    return out, kept


def scrub_series(
    series: pl.Series,
    *,
    known_names: set[str] | frozenset[str] | None = None,
    use_jieba: bool = True,
) -> pl.Series:
    """Scrub every value of a text column (duplicates scrubbed once)."""
    values = series.cast(pl.String)
    uniques = values.unique().drop_nulls().to_list()
    names = KnownNames.of(known_names) if known_names else None
    masked = {v: scrub(v, known_names=names, use_jieba=use_jieba)[0] for v in uniques}
    return values.replace_strict(masked, default=None, return_dtype=pl.String).alias(series.name)


def count_findings(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return counts
