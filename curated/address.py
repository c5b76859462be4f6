"""Address normalisation down to building, entrance (单元) and room (室): 地址标准化.

A housing unit's address and a person's registered or residence address name the same flat
in many spellings::

    北京市朝阳区建外街道光华里社区3号楼2单元501室     (the housing register)
    光华里社区３号楼２单元５０１室                      (full-width digits)
    朝阳区建外街道光华里社区居委会三号楼二单元501号    (Chinese numerals, 居委会, 号 for 室)
    光华里小区3栋2门501                                 (栋 / 幢 / 座, 门 for 单元, no 室)
    光华里3-2-501                                       (building-entrance-room)
    3号楼2单元5层501室                                  (a floor; no community at all)

:func:`parse_address` reads one of them into :class:`AddressParts` (community code, building,
entrance, room), :func:`unit_key` joins the parts into one comparable key. The street's own
file (``street.yaml``: its district, its name and its communities, with their usual suffixes
社区 / 社区居委会 / 居委会 and 小区) says which prefixes to drop and which community a name
means, so nothing here names a street. Parsing is per distinct value
(:func:`parse_addresses` over a column), a few microseconds each.

jionlp's ``parse_location`` was considered: it splits province / city / county well but
knows nothing below the street (社区, 号楼, 单元, 室), which is what a house link needs, and
the street file already names the district and street to drop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from catalog.identifiers import halfwidth_str
from catalog.street import COMMUNITY_SUFFIXES, Street

# what a community name may be followed by in an address (longest first)
COMMUNITY_TAILS = (*COMMUNITY_SUFFIXES, "小区")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
              "六": 6, "七": 7, "八": 8, "九": 9}  # fmt: skip
_CN_NUMBER = re.compile(
    r"[零〇一二两三四五六七八九十百]+(?=号楼|号院|号|#|栋|幢|座|单元|门|层|楼|室|户|房)"
)
_DASHES = re.compile(r"[－—–―‐-]+")
_SPACE = re.compile(r"[\s\u3000\u200b\u200c\u2060\ufeff]+")
# the tail after the community: building, entrance, floor, room in their usual spellings
_BUILDING_MARK = r"(?:号楼|#楼|栋|幢|座)"
# 号, 楼 or # alone mark a building only when an entrance follows (3号2单元, 3楼2门, 3#2单元)
_BUILDING = rf"(?P<b>[0-9]+|[A-Za-z])(?:{_BUILDING_MARK}|[号楼#](?=[0-9]+(?:单元|门)))"
_ENTRANCE = r"(?P<e>[0-9]+)(?:单元|门)"
_FLOOR = r"(?:(?P<f>-?[0-9]+)(?:层|楼))"
_ROOM = r"(?P<r>[0-9]+)(?:室|号|户|房)?"
_COURTYARD = r"(?:(?P<y>[0-9]+)号院)?"
_TAIL = re.compile(rf"{_COURTYARD}{_BUILDING}(?:{_ENTRANCE})?{_FLOOR}?{_ROOM}$")
_DASHED = re.compile(r"(?P<b>[0-9]+|[A-Za-z])-(?P<e>[0-9]+)-(?P<r>[0-9]+)(?:室|号)?$")
_BUILDING_ONLY = re.compile(rf"{_COURTYARD}(?P<b>[0-9]+|[A-Za-z]){_BUILDING_MARK}")


@dataclass(frozen=True)
class AddressParts:
    """What an address says, each part normalised (digits half-width, no leading zeros)."""

    community_code: str | None
    building: str | None
    entrance: str | None
    room: str | None

    @property
    def is_unit(self) -> bool:
        """Names one flat: a building, an entrance and a room (the community may be known
        from elsewhere)."""
        return None not in (self.building, self.entrance, self.room)


def _cn_number(text: str) -> str:
    """一 → 1, 十二 → 12, 二十 → 20, 一百零三 → 103, 五零一 → 501 (digit by digit)."""
    if "十" not in text and "百" not in text:
        return "".join(str(_CN_DIGITS[c]) for c in text)
    total, current = 0, 0
    for c in text:
        if c == "百":
            total += (current or 1) * 100
            current = 0
        elif c == "十":
            total += (current or 1) * 10
            current = 0
        else:
            current = _CN_DIGITS[c]
    return str(total + current)


def clean_address(text: str) -> str:
    """Half-width ASCII, no white space or zero-width characters, one kind of dash, and
    Chinese numerals before 号楼 / 单元 / 室 … as digits."""
    s = _SPACE.sub("", halfwidth_str(text))
    s = _DASHES.sub("-", s)
    return _CN_NUMBER.sub(lambda m: _cn_number(m.group(0)), s)


def _strip_number(value: str | None) -> str | None:
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        return str(int(value))
    return value.upper()


def _building(parts: dict[str, str | None]) -> str | None:
    """The building, after its courtyard when the address names one (3号院2号楼 → 3院2)."""
    building = _strip_number(parts.get("b"))
    yard = _strip_number(parts.get("y"))
    return f"{yard}院{building}" if yard and building else building


class AddressParser:
    """Parses the addresses of one street (its prefixes and communities from ``street``)."""

    def __init__(self, street: Street) -> None:
        self.street = street
        prefixes = {street.district, street.name, street.name + "办事处"}
        # a district written without its city (朝阳区 of 北京市朝阳区) or the city alone
        city = re.match(r"^(.+?市)(.+)$", street.district)
        if city:
            prefixes |= {
                city.group(1),
                city.group(2),
                city.group(1).removesuffix("市") + city.group(2),
            }
        self._prefixes = sorted(prefixes, key=len, reverse=True)
        names = sorted(((c.name, c.code) for c in street.communities), key=lambda x: -len(x[0]))
        self._codes = dict(names)
        tails = "|".join(map(re.escape, COMMUNITY_TAILS))
        alternatives = "|".join(re.escape(n) for n, _ in names)
        self._community = re.compile(rf"(?P<c>{alternatives})(?:{tails})?")

    def _drop_prefixes(self, s: str) -> str:
        changed = True
        while changed:
            changed = False
            for p in self._prefixes:
                if s.startswith(p):
                    s, changed = s[len(p) :], True
        return s

    def _community_and_rest(self, text: str) -> tuple[str | None, str]:
        s = self._drop_prefixes(clean_address(text))
        m = self._community.match(s) or self._community.search(s)
        if m is None:
            return None, s
        return self._codes[m.group("c")], s[m.end() :]

    def canonical(self, text: str | None) -> str | None:
        """``community code|rest`` of any address of the street (a shop's 底商12号, a
        service centre): prefixes dropped, the community by its code, the rest cleaned."""
        if text is None:
            return None
        code, rest = self._community_and_rest(text)
        return f"{code or ''}|{rest}"

    def parse(self, text: str | None) -> AddressParts:
        """The parts of one address; parts it does not state are None."""
        if text is None:
            return AddressParts(None, None, None, None)
        code, s = self._community_and_rest(text)
        tail = _TAIL.search(s) or _DASHED.search(s)
        if tail is not None:
            parts = tail.groupdict()
            return AddressParts(
                code, _building(parts), _strip_number(parts.get("e")), _strip_number(parts["r"])
            )
        building = _BUILDING_ONLY.search(s)
        return AddressParts(code, _building(building.groupdict()) if building else None, None, None)


def unit_key(parts: AddressParts, community_code: str | None = None) -> str | None:
    """``community|building|entrance|room`` of a flat, or None when a part is unknown.

    ``community_code`` stands in for a community the address does not state (the record's
    own community field)."""
    code = parts.community_code or community_code
    if code is None or not parts.is_unit:
        return None
    return f"{code}|{parts.building}|{parts.entrance}|{parts.room}"


def building_key(parts: AddressParts, community_code: str | None = None) -> str | None:
    """``community|building``, or None when either is unknown."""
    code = parts.community_code or community_code
    if code is None or parts.building is None:
        return None
    return f"{code}|{parts.building}"


PARTS_SCHEMA = {
    "address_community": pl.String,
    "building": pl.String,
    "entrance": pl.String,
    "room": pl.String,
}


def parse_addresses(values: pl.Series, street: Street) -> pl.DataFrame:
    """Parts of each address of a column (one row per value, in order; columns
    :data:`PARTS_SCHEMA`), each distinct value parsed once."""
    parser = AddressParser(street)
    distinct = values.drop_nulls().unique()
    parsed = [parser.parse(v) for v in distinct.to_list()]
    table = pl.DataFrame(
        {
            "_value": distinct,
            "address_community": [p.community_code for p in parsed],
            "building": [p.building for p in parsed],
            "entrance": [p.entrance for p in parsed],
            "room": [p.room for p in parsed],
        },
        schema={"_value": pl.String, **PARTS_SCHEMA},
    )
    return (
        values.cast(pl.String)
        .alias("_value")
        .to_frame()
        .join(table, on="_value", how="left", maintain_order="left")
        .drop("_value")
    )
