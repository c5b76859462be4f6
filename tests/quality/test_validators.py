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


def _mojibake_char_by_char(text: str) -> bool:
    """The earlier rule, a character at a time: the reference of :func:`v.is_mojibake`."""
    if text.isascii():
        return False
    chunks = []
    for c in text:
        if c in "?\ufffd":
            chunks.append(b"\x80")
            continue
        try:
            chunks.append(c.encode("gbk"))
        except UnicodeEncodeError:
            return False
    decoded = b"".join(chunks).decode("utf-8", errors="replace")
    cjk = sum(1 for c in decoded if "\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef")
    return cjk >= 1 and decoded.count("\ufffd") * 4 <= cjk


# genuine names, their garbled forms (with ? or U+FFFD for unmapped bytes), ASCII, full
# width, symbols GBK lacks, the euro (GBK's one-byte 0x80), kana, Hangul
MIXED = st.text(
    "王李张刘陈杨赵黄文伟芳锟斤拷烫屯鍚嶅瓧寮犱笁鏉庡洓?\ufffd€ａＢ１　、。ab1 -·ア한😀é",
    max_size=14,
)


@settings(max_examples=300, deadline=None)
@given(MIXED)
def test_mojibake_same_as_the_character_by_character_rule(text):
    assert v.is_mojibake(text) == _mojibake_char_by_char(text)
    garbled = text.encode("utf-8").decode("gbk", errors="replace")
    assert v.is_mojibake(garbled) == _mojibake_char_by_char(garbled)
    frame = pl.DataFrame({"s": [text, garbled, None]}, schema={"s": pl.String})
    got = frame.select(v.mojibake(pl.col("s")))["s"].to_list()
    assert got == [_mojibake_char_by_char(text), _mojibake_char_by_char(garbled), None]


def test_phones_staged_and_hashed_by_the_one_rule():
    """The standardiser stages a phone as catalog.identifiers.phone_canonical spells it, and
    the pseudonymiser normalises a delivered phone to that same staged value."""
    from masking.pseudonym import normalise_expr
    from quality.standardise import std_phone

    delivered = ["+86 10 6512 3456", "13812345678", "０１０－６５１２３４５６", "+86 138 1234 5678"]
    delivered += ["13812345678转8001", "010-1234567", " 12345 "]
    staged = [
        "010-65123456",
        "13812345678",
        "010-65123456",
        "13812345678",
        "13812345678",
        "010-1234567",  # no valid landline (7 digits after 010): kept for the gate to judge
        "12345",
    ]
    frame = pl.DataFrame({"p": delivered})
    assert frame.select(std_phone(pl.col("p")))["p"].to_list() == staged
    for kind in ("mobile", "landline"):
        assert frame.select(normalise_expr(pl.col("p"), kind))["p"].to_list() == staged
