"""Bank card numbers: the one rule the text scrubber and the leak scanner share.

A run of 16–19 digits (``CARD_RE``: groups of four allowed) is a card when it passes
Luhn (ISO/IEC 7812) and either

- starts with an issuer prefix (IIN) of a scheme that issues cards of its length
  (``ISSUERS``: UnionPay 62, Visa 4, Mastercard 51–55, JCB 3528–3589, Discover
  6011/644–649/65, the domestic 60 ranges and ICBC's old 9558 cards), or
- stands after a card cue (``CARD_CUE``: 卡号, 银行卡, 账号 …) within ``CUE_REACH``
  characters, with no digit and no sentence end between, or
- stands in a column that holds card numbers (the catalogue's PII kind ``bank_card``:
  ``cued=True``).

Mastercard's 2-series (2221–2720) is left out of the prefixes: 22…27 is how a number
that starts with a year (yymmdd…, 2024…) begins, and Chinese banks issue 62/4/5 cards;
such a card is found after its cue. Luhn alone is not enough: one number in ten passes it by chance, and order, waybill and
work-order numbers of 16–19 digits are common in hotline texts (a platform's order number
``2025030812345678903`` passes Luhn and is no card). The price: a card whose issuer prefix
is not listed, written with no cue, is not found; a number on a listed prefix that passes
Luhn by chance is masked.
"""

from __future__ import annotations

import re

from catalog.identifiers import luhn_valid_str

# (first digits low, high, lengths): a prefix of len(low) digits between low and high
ISSUERS: tuple[tuple[str, str, range], ...] = (
    ("62", "62", range(16, 20)),  # China UnionPay
    ("60", "60", range(16, 20)),  # domestic ranges (601382 Bank of China, 603… city banks)
    ("65", "65", range(16, 20)),  # Discover / RuPay
    ("6011", "6011", range(16, 20)),  # Discover
    ("644", "649", range(16, 20)),  # Discover
    ("4", "4", range(16, 17)),  # Visa (16; its 19-digit cards are rare, order numbers are not)
    ("51", "55", range(16, 17)),  # Mastercard
    ("3528", "3589", range(16, 20)),  # JCB
    ("9558", "9558", range(19, 20)),  # ICBC's pre-UnionPay cards
)

# _NOT_DECIMAL: never the digits after a decimal point; not followed by an X (17 digits and
# an X are a citizen ID, whatever Luhn says)
CARD_RE = re.compile(
    r"(?<![0-9]\.)(?<![0-9])(?:\d{4}(?:[ -]\d{4}){3}(?:[ -]?\d{1,3})?|\d{16,19})(?![0-9Xx])"
)
CARD_CUE = re.compile(r"卡号|银行卡|信用卡|储蓄卡|借记卡|社保卡|工资卡|账号|帐号|账户|帐户")
CUE_REACH = 12  # characters from the cue's end to the number
_BETWEEN = re.compile(r"[0-9。；;！!？?\n]")


def issuer_prefix(digits: str) -> bool:
    """``digits`` start with an issuer prefix of a scheme issuing cards of their length."""
    return any(
        low <= digits[: len(low)] <= high and len(digits) in lengths
        for low, high, lengths in ISSUERS
    )


def card_cue_before(text: str, start: int) -> bool:
    """A card cue ends within ``CUE_REACH`` characters before ``start``, with no digit or
    sentence end between it and the number."""
    window = text[max(0, start - CUE_REACH - 4) : start]
    for cue in reversed(list(CARD_CUE.finditer(window))):
        between = window[cue.end() :]
        return len(between) <= CUE_REACH and not _BETWEEN.search(between)
    return False


def bank_card_str(digits: str, *, cued: bool = False) -> bool:
    """16–19 ASCII digits that are a card: Luhn, and an issuer prefix or a cue (``cued``)."""
    return 16 <= len(digits) <= 19 and luhn_valid_str(digits) and (cued or issuer_prefix(digits))


def card_spans(text: str, *, cued: bool = False) -> list[tuple[int, int]]:
    """Spans of the card numbers in ``text`` (half-width); ``cued``: every run counts as
    cued (a column of card numbers)."""
    out = []
    for m in CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if bank_card_str(digits, cued=cued or card_cue_before(text, m.start())):
            out.append(m.span())
    return out
