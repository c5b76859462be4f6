"""Address normalisation: every spelling of one flat gives one unit key."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.street import load_street
from curated.address import AddressParser, AddressParts, building_key, parse_addresses, unit_key

STREET = load_street()
FIRST = STREET.communities[0]
SECOND = STREET.communities[1]
PARSER = AddressParser(STREET)
FULL = str.maketrans("0123456789", "０１２３４５６７８９")
CN = "零一二三四五六七八九"


def cn_number(n: int) -> str:
    """12 → 十二, 20 → 二十, 7 → 七 (n < 100)."""
    tens, ones = divmod(n, 10)
    if tens == 0:
        return CN[ones]
    return ("" if tens == 1 else CN[tens]) + "十" + (CN[ones] if ones else "")


@pytest.mark.parametrize(
    "text",
    [
        f"{STREET.district}{STREET.name}{SECOND.name}社区3号楼2单元501室",
        f"{SECOND.name}社区３号楼２单元５０１室",
        f"{STREET.district[3:]}{STREET.name}{SECOND.name}社区居委会三号楼二单元501号",
        f"{SECOND.name}小区3栋2门501",
        f"{SECOND.name}3-2-501",
        f"{SECOND.name}社区3幢2单元5层501室",
        f"  {SECOND.name}社区 3号楼 2单元 0501室 ",
        f"{STREET.district[:2]}{STREET.district[3:]}{SECOND.name}社区3号2单元501",
        f"{SECOND.name}社区3#楼2单元501房",
        f"{SECOND.name}社区3#2单元五〇一室",
    ],
)
def test_spellings_of_one_flat_give_one_key(text: str):
    parts = PARSER.parse(text)
    assert parts == AddressParts(SECOND.code, "3", "2", "501")
    assert unit_key(parts) == f"{SECOND.code}|3|2|501"


def test_a_community_name_inside_the_street_name_is_not_taken_for_the_community():
    # the street's name may begin with a community's name (建外街道 / 建外社区): the street
    # prefix is dropped first, so the community is the one written after it
    text = f"{STREET.district}{STREET.name}{SECOND.name}社区1号楼1单元101室"
    assert PARSER.parse(text).community_code == SECOND.code


def test_parts_an_address_does_not_state_stay_unknown():
    no_community = PARSER.parse("12号楼1单元1202室")
    assert no_community == AddressParts(None, "12", "1", "1202")
    assert unit_key(no_community) is None
    assert unit_key(no_community, FIRST.code) == f"{FIRST.code}|12|1|1202"
    near = PARSER.parse(f"{FIRST.name}社区3号楼附近")
    assert near == AddressParts(FIRST.code, "3", None, None) and not near.is_unit
    assert building_key(near) == f"{FIRST.code}|3"
    assert PARSER.parse(f"{FIRST.name}社区3号楼501室").entrance is None
    assert PARSER.parse(None) == AddressParts(None, None, None, None)


def test_a_courtyard_is_part_of_the_building():
    parts = PARSER.parse(f"{FIRST.name}社区3号院2号楼1单元101室")
    assert parts.building == "3院2" and unit_key(parts) == f"{FIRST.code}|3院2|1|101"
    assert unit_key(PARSER.parse(f"{FIRST.name}社区2号楼1单元101室")) != unit_key(parts)


def test_canonical_form_of_other_addresses():
    a = PARSER.canonical(f"{STREET.district}{STREET.name}{FIRST.name}社区底商12号")
    assert a == PARSER.canonical(f"{FIRST.name}社区 底商１２号") == f"{FIRST.code}|底商12号"
    assert PARSER.canonical(f"{SECOND.name}社区底商12号") != a


def test_parse_addresses_keeps_order_and_nulls():
    values = pl.Series(["x", None, f"{FIRST.name}社区1号楼2单元301室", "x"])
    parts = parse_addresses(values, STREET)
    assert parts.height == 4
    assert parts.row(2) == (FIRST.code, "1", "2", "301")
    assert parts.row(1) == (None, None, None, None)
    assert parts.row(0) == parts.row(3)


@settings(max_examples=300, deadline=None)
@given(
    community=st.sampled_from(STREET.communities),
    building=st.integers(1, 60),
    entrance=st.integers(1, 9),
    floor=st.integers(1, 30),
    room=st.integers(1, 4),
    prefix=st.sampled_from(["", STREET.district, STREET.district + STREET.name, STREET.name]),
    suffix=st.sampled_from(["", "社区", "社区居委会", "居委会", "小区"]),
    b_mark=st.sampled_from(["号楼", "栋", "幢", "座", "#楼"]),
    e_mark=st.sampled_from(["单元", "门"]),
    r_mark=st.sampled_from(["", "室", "号", "户", "房"]),
    chinese=st.booleans(),
    fullwidth=st.booleans(),
    spaces=st.booleans(),
)
def test_any_spelling_parses_to_the_same_flat(
    community, building, entrance, floor, room, prefix, suffix, b_mark, e_mark, r_mark,
    chinese, fullwidth, spaces,
):  # fmt: skip
    room_no = f"{floor}{room:02d}"
    b = cn_number(building) if chinese else str(building)
    e = cn_number(entrance) if chinese else str(entrance)
    body = [f"{b}{b_mark}", f"{e}{e_mark}", f"{room_no}{r_mark}"]
    text = prefix + community.name + suffix + (" " if spaces else "").join(body)
    if fullwidth:
        text = text.translate(FULL)
    parts = PARSER.parse(text)
    assert parts == AddressParts(community.code, str(building), str(entrance), room_no)
