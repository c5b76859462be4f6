"""Leak scanner core: count values that look like unmasked personal information.

Looks in every text (and integer) column, inside free text too, for:

- ``citizen_id``: 18 characters with a valid check character, or a plausible
  15-digit number (region code, birth date)
- ``citizen_id_embedded``: a verified citizen ID at the start or end of a 19–24-digit run,
  as in a 残疾人证号 (ID + 2 digits); see ``masking.text.embedded_citizen_ids`` for what
  keeps ordinary long numbers out
- ``mobile``: 1[3-9] + 9 digits (+86, spaces, dashes allowed)
- ``bank_card``: 16–19 digits from a card issuer (first digit 2–6) passing Luhn
- ``person_name``: a full name from the resident registry (``known_names``)

Masked values (138****5678, 110105********002X, 张*), pseudonyms (hex) and
ciphertexts (``e<version>:…``) are not leaks. The result gives counts per kind and per
column and a few sample locations (row index, column) — never a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import polars as pl

from catalog.identifiers import (
    citizen_id15_plausible_str,
    citizen_id_valid_str,
    halfwidth_str,
    luhn_valid_str,
)
from masking.crypto import CIPHERTEXT
from masking.names import KnownNames
from masking.text import (
    CARD_FIRST_DIGITS,
    CARD_RE,
    CITIZEN_ID15_RE,
    CITIZEN_ID18_RE,
    MOBILE_RE,
    embedded_citizen_ids,
)

KINDS = ("citizen_id", "citizen_id_embedded", "mobile", "bank_card", "person_name")
_PSEUDONYM = r"^[0-9a-f]{16,64}$"
_DIGITS_HINT = r"[0-9０-９]{3}[ -]?[0-9０-９]{4}"
# a hex digest standing as a word of its own (a landed file's SHA-256 in its path, a key id):
# 16+ characters of 0-9a-f with at least one letter. Its digit runs are chance, not numbers
# (an 11-digit run reading as a mobile turns up in about 1 of 2,000 16-character digests).
_HEX_DIGEST = re.compile(r"(?<![0-9A-Za-z])(?=[0-9]*[a-f])[0-9a-f]{16,}(?![0-9A-Za-z])")


@dataclass
class LeakCounts:
    by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: list[tuple[int, str, str]] = field(default_factory=list)  # (row, column, kind)
    cells_scanned: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def __bool__(self) -> bool:
        return self.total > 0


def _digit_kinds(text: str) -> set[str]:
    half = _HEX_DIGEST.sub(" ", halfwidth_str(text))
    kinds: set[str] = set()
    for m in CITIZEN_ID18_RE.finditer(half):
        if citizen_id_valid_str(m.group().upper()):
            kinds.add("citizen_id")
    for m in CITIZEN_ID15_RE.finditer(half):
        if citizen_id15_plausible_str(m.group()):
            kinds.add("citizen_id")
    embedded = embedded_citizen_ids(half)
    if embedded:
        kinds.add("citizen_id_embedded")
    if MOBILE_RE.search(half):
        kinds.add("mobile")
    for m in CARD_RE.finditer(half):
        if m.span() in embedded:  # a document number that carries an ID is no card
            continue
        digits = "".join(c for c in m.group() if c.isdigit())
        card = 16 <= len(digits) <= 19 and digits[0] in CARD_FIRST_DIGITS and luhn_valid_str(digits)
        if card and not citizen_id_valid_str(digits):  # an ID that also passes Luhn is an ID
            kinds.add("bank_card")
    return kinds


def scan_frame(
    frame: pl.DataFrame,
    *,
    known_names: set[str] | frozenset[str] | None = None,
    max_samples: int = 10,
) -> LeakCounts:
    """Count cells per kind that hold unmasked personal information."""
    result = LeakCounts()
    names = KnownNames.of(known_names)
    for name, dtype in frame.schema.items():
        if dtype not in (pl.String, pl.Int64, pl.Int32, pl.UInt64, pl.Categorical):
            continue
        col = frame[name].cast(pl.String)
        pseudonym = col.str.contains(_PSEUDONYM) & col.str.contains("[a-f]")  # digits alone: scan
        skip = pseudonym | col.str.contains(CIPHERTEXT)
        base = pl.DataFrame({"v": col, "skip": skip}).with_row_index("row")
        base = base.filter(pl.col("v").is_not_null() & ~pl.col("skip").fill_null(False))
        result.cells_scanned += base.height
        hint = base["v"].str.contains(_DIGITS_HINT)
        per_col: dict[str, int] = {}
        for row, value, has_digits in zip(base["row"], base["v"], hint, strict=True):
            kinds = _digit_kinds(value) if has_digits else set()
            if names and names.occurs_in(value):
                kinds.add("person_name")
            for kind in kinds:
                result.by_kind[kind] += 1
                per_col[kind] = per_col.get(kind, 0) + 1
                if len(result.samples) < max_samples:
                    result.samples.append((int(row), name, kind))
        if per_col:
            result.by_column[name] = per_col
    return result
