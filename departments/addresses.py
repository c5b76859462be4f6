"""A home address as people and hand-kept ledgers spell it (地址写法).

The housing register and the police write a unit's address in full
(北京市朝阳区建外街道光华里社区3号楼2单元501室); a civil-affairs ledger or a 12345 operator
writes what they hear or are used to, at the rates of :data:`ADDRESS_RATES`, in one of
:data:`SPELLINGS` (picked uniformly). The spelling is the record's true value (no defect);
``_unit`` in the truth names the unit it means.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from departments import ids
from departments.world import CITY_DISTRICT, STREET_NAME, Unit, World

# dataset → share of its addresses spelled otherwise than the register (documented in
# departments/README.md; written to the manifest)
ADDRESS_RATES = {"mzj.elderly_alone": 0.30, "rx.appeals": 0.40}
_DIGITS = "零一二三四五六七八九"


def chinese_number(n: int) -> str:
    """三, 十二, 二十三, 一百零五, 一百一十二 (1–999: a street of 200,000 residents has
    buildings past 99)."""
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        tens, ones = divmod(rest, 10)
        if not tens:
            return _DIGITS[ones]
        return (_DIGITS[tens] if tens > 1 else "") + "十" + (_DIGITS[ones] if ones else "")
    if not rest:
        return _DIGITS[hundreds] + "百"
    if rest < 10:
        return _DIGITS[hundreds] + "百零" + _DIGITS[rest]
    tail = chinese_number(rest)
    return _DIGITS[hundreds] + "百" + ("一" + tail if rest < 20 else tail)


def _parts(u: Unit) -> tuple[str, int, int, str]:
    return u.building.community.name, u.building.no, u.entrance, u.room


SPELLINGS: dict[str, Callable[[Unit], str]] = {
    # no city and district
    "no_district": lambda u: "{}{}社区{}号楼{}单元{}室".format(STREET_NAME, *_parts(u)),
    # the community only
    "community_only": lambda u: "{}社区{}号楼{}单元{}室".format(*_parts(u)),
    # building-entrance-room
    "dashed": lambda u: "{}{}-{}-{}".format(*_parts(u)),
    # 小区, 栋, 门, no 室
    "colloquial": lambda u: "{}小区{}栋{}门{}".format(*_parts(u)),
    # 居委会, Chinese numerals for building and entrance, 号 for 室
    "numerals": lambda u: (
        f"{CITY_DISTRICT}{STREET_NAME}{u.building.community.name}社区居委会"
        f"{chinese_number(u.building.no)}号楼{chinese_number(u.entrance)}单元{u.room}号"
    ),
    # full-width digits
    "fullwidth": lambda u: ids.fullwidth(u.address),
    # with the floor
    "floor": lambda u: (
        f"{u.building.community.name}社区{u.building.no}号楼{u.entrance}单元{u.floor}层{u.room}室"
    ),
}


def address_rng(w: World, dataset: str) -> random.Random:
    """The spellings' own random stream for ``dataset`` (the rest of the street as before)."""
    return random.Random(f"{w.seed}:address:{dataset}")


def spelled(rng: random.Random, dataset: str, u: Unit) -> str:
    """``u``'s address as ``dataset`` writes it: the register's, or at its rate a spelling."""
    if rng.random() >= ADDRESS_RATES[dataset]:
        return u.address
    return SPELLINGS[rng.choice(sorted(SPELLINGS))](u)
