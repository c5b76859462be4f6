"""Identifier arithmetic the department systems use: citizen IDs, credit codes, bank cards.

Self-contained on purpose (departments/ imports nothing of ours); tests check it
against python-stdnum.
"""

from __future__ import annotations

import datetime as dt

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
FULLWIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")


def id_check_char(first17: str) -> str:
    """GB 11643-1999 check character of the first 17 digits."""
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def citizen_id(region: str, birth: dt.date, sequence: int) -> str:
    """An 18-character citizen ID; ``sequence`` (0–999) odd for men, even for women."""
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + id_check_char(first17)


def to_15_digit(cid18: str) -> str:
    """The old 15-digit form (1984–1999 cards): drop the century and the check character."""
    return cid18[:6] + cid18[8:17]


def upgrade_15(cid15: str) -> str:
    first17 = cid15[:6] + "19" + cid15[6:]
    return first17 + id_check_char(first17)


def wrong_check_char(cid18: str) -> str:
    """Same ID with a different, hence wrong, check character."""
    right = cid18[-1]
    idx = (ID_CHECK.index(right) + 3) % 11
    return cid18[:-1] + ID_CHECK[idx]


def uscc_check_char(first17: str) -> str:
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def credit_code(org_type: str, region: str, body: str) -> str:
    """A GB 32100-2015 unified social credit code: 2-char type, 6-digit region, 9-char body."""
    first17 = f"{org_type}{region}{body}"
    return first17 + uscc_check_char(first17)


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit to ``prefix``."""
    total = 0
    for i, c in enumerate(reversed(prefix)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


def fullwidth(text: str) -> str:
    return text.translate(FULLWIDTH)


def id_gender(cid18: str) -> str:
    return "男" if int(cid18[16]) % 2 else "女"


def id_birth(cid18: str) -> dt.date:
    return dt.date(int(cid18[6:10]), int(cid18[10:12]), int(cid18[12:14]))
