"""Validators: mobiles, region codes, coordinates, mojibake (identifiers: tests/catalog)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.street import get_street
from quality import validators as v


def col(values, f) -> list:
    frame = pl.DataFrame({"s": values}, schema={"s": pl.String})
    return frame.select(f(pl.col("s")).alias("s"))["s"].to_list()


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


def test_landlines_in_any_spelling_become_area_dash_number():
    spellings = ["010-65123456", "(010)65123456", "010 6512 3456", "+86 10 6512 3456"]
    spellings += ["0086-10-65123456", "86 10 65123456", "01065123456"]
    assert col(spellings, v.landline_canonical) == ["010-65123456"] * len(spellings)
    assert col(["0755 8600 1234", "057188888888"], v.landline_canonical) == [
        "0755-86001234",
        "0571-88888888",
    ]


def test_what_is_no_valid_landline_is_null():
    others = ["13812345678", "010-6512345", "021-1234567", "010-65123456-801", "无", "", None]
    assert col(others, v.landline_canonical) == [None] * len(others)


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from(["10", "21", "755", "571", "20"]),
    st.integers(2_000_000, 9_999_999),
    st.sampled_from(["0{a}-{n}", "(0{a}){n}", "+86 {a} {n}", "0{a} {n}", "0086{a}{n}"]),
)
def test_landline_agrees_with_phonenumbers_formatting(area, number, spelling):
    """The oracle: libphonenumber's own national format, separators aside."""
    import phonenumbers

    n = f"{number}{number % 10}" if area in ("10", "21", "20") else str(number)
    got = col([spelling.format(a=area, n=n)], v.landline_canonical)[0]
    parsed = phonenumbers.parse(f"0{area}{n}", "CN")
    if phonenumbers.is_valid_number(parsed):
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        assert got is not None and got.replace("-", "") == national.replace(" ", "")
        assert got.startswith(f"0{area}-")
    else:
        assert got is None


def test_the_standardiser_repairs_a_landline():
    from quality.standardise import std_phone

    frame = pl.DataFrame({"p": ["+86 10 6512 3456", "13812345678", "０１０－６５１２３４５６"]})
    got = frame.select(std_phone(pl.col("p")))["p"].to_list()
    assert got == ["010-65123456", "13812345678", "010-65123456"]
