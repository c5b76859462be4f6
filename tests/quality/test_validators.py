"""Validators: vectorised polars checks against python-stdnum as the oracle."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.cn import ric, uscc

from catalog.street import get_street
from quality import validators as v

DIGITS = "0123456789"
bodies = st.text(DIGITS, min_size=17, max_size=17)
uscc_bodies = st.text(v.USCC_ALPHABET, min_size=17, max_size=17)


def ric_check(first17: str) -> str:
    """stdnum's ric.calc_check_digit wants the whole number (it drops the last character)."""
    return ric.calc_check_digit(first17 + "0")


def col(values, f) -> list:
    frame = pl.DataFrame({"s": values}, schema={"s": pl.String})
    return frame.select(f(pl.col("s")).alias("s"))["s"].to_list()


@settings(max_examples=50, deadline=None)
@given(st.lists(bodies, min_size=1, max_size=50))
def test_id_check_char_agrees_with_stdnum(first17s):
    assert col(first17s, v.id_check_char) == [ric_check(b) for b in first17s]


@settings(max_examples=50, deadline=None)
@given(bodies, st.integers(0, 17), st.sampled_from(DIGITS + "X"))
def test_any_single_character_change_is_caught(body, pos, char):
    cid = body + ric_check(body)
    changed = cid[:pos] + char + cid[pos + 1 :]
    ok = col([cid, changed], v.citizen_id_check_ok)
    assert ok[0] is True
    if changed != cid and changed[:17].isdigit():
        assert ok[1] is False


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(DIGITS, min_size=15, max_size=15), min_size=1, max_size=30))
def test_15_digit_upgrade(cids):
    up = col(cids, v.upgrade_id_15)
    for old, new in zip(cids, up, strict=True):
        first17 = old[:6] + "19" + old[6:]
        assert new == first17 + ric_check(first17)


def test_birth_date_and_gender_from_the_standard_example():
    cid = "11010519491231002X"
    assert col([cid], v.id_birth_date) == [dt.date(1949, 12, 31)]
    assert col([cid, "110105194912310011"], v.id_gender) == ["女", "男"]
    assert col([cid, "11010519491331002X", "110105194912310021"], v.citizen_id_valid) == [
        True,
        False,  # month 13
        False,  # check digit
    ]


def test_id_check_char_of_anything_but_17_digits_is_null():
    junk = ["-1234567890123456", "+1234567890123456", " 1234567890123456", "12345678901234.56"]
    junk += ["abc", "", None, "1234567890123456"]
    assert col(junk, v.id_check_char) == [None] * len(junk)
    assert col(junk, v.citizen_id_check_ok) == [None] * len(junk)


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=0, max_size=20))
def test_id_check_char_never_raises(text):
    got = col([text], v.id_check_char)
    if len(text) >= 17 and text[:17].isascii() and text[:17].isdigit():
        assert got == [ric_check(text[:17])]
    elif not (len(text) >= 17 and text[:17].isdigit()):
        assert got == [None]


@settings(max_examples=50, deadline=None)
@given(st.lists(uscc_bodies, min_size=1, max_size=40))
def test_uscc_check_char_agrees_with_stdnum(first17s):
    assert col(first17s, v.uscc_check_char) == [uscc.calc_check_digit(b) for b in first17s]


@settings(max_examples=50, deadline=None)
@given(
    st.text(v.USCC_ALPHABET[:10], min_size=8, max_size=8),
    st.text(v.USCC_ALPHABET, min_size=9, max_size=9),
    st.integers(0, 17),
    st.sampled_from(v.USCC_ALPHABET),
)
def test_uscc_single_change_is_caught(head, tail, pos, char):
    body = head + tail
    code = body + uscc.calc_check_digit(body)
    changed = code[:pos] + char + code[pos + 1 :]
    ok = col([code, changed], v.uscc_valid)
    assert ok[0] is True
    if changed != code:
        assert ok[1] is False


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(DIGITS, min_size=12, max_size=19), min_size=1, max_size=40))
def test_luhn_agrees_with_stdnum(numbers):
    assert col(numbers, v.luhn_valid) == [luhn.is_valid(n) for n in numbers]


@settings(max_examples=30, deadline=None)
@given(st.text(DIGITS, min_size=15, max_size=18), st.integers(0, 14), st.sampled_from(DIGITS))
def test_luhn_single_digit_change_is_caught(prefix, pos, d):
    card = prefix + luhn.calc_check_digit(prefix)
    changed = card[:pos] + d + card[pos + 1 :]
    assert col([card], v.luhn_valid) == [True]
    if changed != card:
        assert col([changed], v.luhn_valid) == [False]


def test_mobiles():
    assert col(["13812345678", "12812345678", "1381234567", None], v.mobile_valid) == [
        True,
        False,
        False,
        None,
    ]


def test_region_codes_include_retired_ones():
    assert col(["110105", "110103", "999999", "110105194912310021"], v.region_code_valid) == [
        True,
        True,  # 崇文区, retired in 2010: still on IDs
        False,
        True,
    ]
    assert len(v.region_codes()) > 3000


def test_coordinates_in_the_street():
    frame = pl.DataFrame({"lon": [116.45, 116.50, None], "lat": [39.91, 39.91, 39.91]})
    street = get_street()
    got = frame.select(v.in_bbox(pl.col("lon"), pl.col("lat"), street.bbox))["lon"].to_list()
    assert got == [True, False, None]


NAMES = st.text(
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文伟芳娜敏静秀英丽强磊军洋勇艳杰娟涛明超霞平刚桂兰红玉华",
    min_size=2,
    max_size=12,
)


@settings(max_examples=100, deadline=None)
@given(NAMES)
def test_mojibake_found_and_genuine_text_left_alone(name):
    garbled = name.encode("utf-8").decode("gbk", errors="replace").replace("\ufffd", "?")
    assert v.is_mojibake(garbled)
    assert not v.is_mojibake(name)
