"""Check-digit arithmetic shared by masks, free-text scrubbing and the leak scanner.

Citizen ID (GB 11643-1999): weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 over the
first 17 digits, sum mod 11 indexes "10X98765432". Bank cards: Luhn.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    """The check character of an 18-character citizen ID from its first 17 digits."""
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def _plausible_date(yyyymmdd: str) -> bool:
    try:
        d = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return 1880 <= d.year <= 2100


def is_citizen_id18(value: str) -> bool:
    """18 characters, digits then digit/X, a real birth date and a valid check character."""
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit():
        return False
    last = value[17].upper()
    if not (last.isdigit() or last == "X"):
        return False
    return _plausible_date(value[6:14]) and id_check_char(value[:17]) == last


def is_citizen_id15(value: str) -> bool:
    """A plausible pre-1999 15-digit number: digits, region code not 0, real birth date."""
    if len(value) != 15 or not value.isascii() or not value.isdigit() or value[0] == "0":
        return False
    return _plausible_date("19" + value[6:12])


def upgrade_id15(value: str) -> str:
    """15 → 18 digits: insert "19" before the 2-digit year and compute the check character."""
    first17 = value[:6] + "19" + value[6:]
    return first17 + id_check_char(first17)


def luhn_ok(digits: str) -> bool:
    """True when a digit string passes the Luhn check."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def halfwidth(text: str) -> str:
    """Full-width digits and letters to half-width (NFKC), surrounding spaces removed."""
    return unicodedata.normalize("NFKC", text).strip()
