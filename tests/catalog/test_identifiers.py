"""Identifier rules (catalog.identifiers): the polars forms and the one-string forms both
agree with python-stdnum, the independent oracle, and with each other."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.cn import ric, uscc

from catalog import identifiers as ids

DIGITS = "0123456789"
bodies = st.text(DIGITS, min_size=17, max_size=17)
uscc_bodies = st.text(ids.USCC_ALPHABET, min_size=17, max_size=17)


def ric_check(first17: str) -> str:
    """stdnum's ric.calc_check_digit wants the whole number (it drops the last character)."""
    return ric.calc_check_digit(first17 + "0")


def col(values, f) -> list:
    frame = pl.DataFrame({"s": values}, schema={"s": pl.String})
    return frame.select(f(pl.col("s")).alias("s"))["s"].to_list()


@settings(max_examples=50, deadline=None)
@given(st.lists(bodies, min_size=1, max_size=50))
def test_id_check_char_agrees_with_stdnum(first17s):
    want = [ric_check(b) for b in first17s]
    assert col(first17s, ids.id_check_char) == want
    assert [ids.id_check_char_str(b) for b in first17s] == want


@settings(max_examples=50, deadline=None)
@given(bodies, st.integers(0, 17), st.sampled_from(DIGITS + "X"))
def test_any_single_character_change_is_caught(body, pos, char):
    cid = body + ric_check(body)
    changed = cid[:pos] + char + cid[pos + 1 :]
    ok = col([cid, changed], ids.citizen_id_check_ok)
    assert ok[0] is True
    if changed != cid and changed[:17].isdigit():
        assert ok[1] is False


@settings(max_examples=100, deadline=None)
@given(st.one_of(bodies.map(lambda b: b + ric_check(b)), st.text(DIGITS + "X", max_size=19)))
def test_citizen_id_valid_both_forms_agree_with_stdnum(cid):
    # stdnum's ric.is_valid also wants a known region: that is the gate's region_code check
    want = len(cid) == 18 and cid[:17].isdigit() and cid[17] == ric_check(cid[:17])
    try:
        want = want and ric.get_birth_date(cid) is not None
    except Exception:  # stdnum raises on an impossible date
        want = False
    assert col([cid], ids.citizen_id_valid) == [want]
    assert ids.citizen_id_valid_str(cid) is want


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(DIGITS, min_size=15, max_size=15), min_size=1, max_size=30))
def test_15_digit_upgrade(cids):
    up = col(cids, ids.upgrade_id_15)
    for old, new in zip(cids, up, strict=True):
        first17 = old[:6] + "19" + old[6:]
        assert new == first17 + ric_check(first17)


def test_upgrade_leaves_anything_but_15_ascii_digits_alone():
    others = ["11010519491231002X", "11010549123100", "1101054912310021", "abcdefghijklmno", ""]
    assert col(others, ids.upgrade_id_15) == others


def test_15_digit_plausibility():
    assert ids.citizen_id15_plausible_str("110105491231002")
    assert not ids.citizen_id15_plausible_str("010105491231002")  # no region starts with 0
    assert not ids.citizen_id15_plausible_str("110105491331002")  # month 13
    assert not ids.citizen_id15_plausible_str("１10105491231002")  # not ASCII


def test_birth_date_and_gender_from_the_standard_example():
    cid = "11010519491231002X"
    assert col([cid], ids.id_birth_date) == [dt.date(1949, 12, 31)]
    assert col([cid, "110105194912310011"], ids.id_gender) == ["女", "男"]
    assert col([cid, "11010519491331002X", "110105194912310021"], ids.citizen_id_valid) == [
        True,
        False,  # month 13
        False,  # check digit
    ]
    assert [ids.citizen_id_valid_str(c) for c in (cid, "11010519491331002X")] == [True, False]


def test_id_check_char_of_anything_but_17_digits_is_null():
    junk = ["-1234567890123456", "+1234567890123456", " 1234567890123456", "12345678901234.56"]
    junk += ["abc", "", None, "1234567890123456"]
    assert col(junk, ids.id_check_char) == [None] * len(junk)
    assert col(junk, ids.citizen_id_check_ok) == [None] * len(junk)


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=0, max_size=20))
def test_id_check_char_never_raises(text):
    got = col([text], ids.id_check_char)
    if len(text) >= 17 and text[:17].isascii() and text[:17].isdigit():
        assert got == [ric_check(text[:17])]
    elif not (len(text) >= 17 and text[:17].isdigit()):
        assert got == [None]


@settings(max_examples=50, deadline=None)
@given(st.lists(uscc_bodies, min_size=1, max_size=40))
def test_uscc_check_char_agrees_with_stdnum(first17s):
    assert col(first17s, ids.uscc_check_char) == [uscc.calc_check_digit(b) for b in first17s]


@settings(max_examples=50, deadline=None)
@given(
    st.text(ids.USCC_ALPHABET[:10], min_size=8, max_size=8),
    st.text(ids.USCC_ALPHABET, min_size=9, max_size=9),
    st.integers(0, 17),
    st.sampled_from(ids.USCC_ALPHABET),
)
def test_uscc_single_change_is_caught(head, tail, pos, char):
    body = head + tail
    code = body + uscc.calc_check_digit(body)
    changed = code[:pos] + char + code[pos + 1 :]
    ok = col([code, changed], ids.uscc_valid)
    assert ok[0] is True
    if changed != code:
        assert ok[1] is False


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(DIGITS, min_size=12, max_size=19), min_size=1, max_size=40))
def test_luhn_agrees_with_stdnum(numbers):
    want = [luhn.is_valid(n) for n in numbers]
    assert col(numbers, ids.luhn_valid) == want
    assert [ids.luhn_valid_str(n) for n in numbers] == want


@settings(max_examples=30, deadline=None)
@given(st.text(DIGITS, min_size=15, max_size=18), st.integers(0, 14), st.sampled_from(DIGITS))
def test_luhn_single_digit_change_is_caught(prefix, pos, d):
    card = prefix + luhn.calc_check_digit(prefix)
    changed = card[:pos] + d + card[pos + 1 :]
    assert col([card], ids.luhn_valid) == [True]
    assert ids.luhn_valid_str(card)
    if changed != card:
        assert col([changed], ids.luhn_valid) == [False]
        assert not ids.luhn_valid_str(changed)


def test_luhn_refuses_non_digits_and_overlong_numbers():
    values = ["4539 1488 0343 6467", "４５３９１４８８０３４３６４６７", "00000000000000000000", ""]
    assert col(values, ids.luhn_valid) == [False] * 4
    assert [ids.luhn_valid_str(v) for v in values] == [False] * 4


def test_full_width_table_is_one_for_one_and_complete():
    full = "".join(chr(c) for c in range(0xFF01, 0xFF5F)) + "\u3000"
    half = "".join(chr(c) for c in range(0x21, 0x7F)) + " "
    assert ids.halfwidth_str(full) == half
    assert col([full, "张三（北京）１号", None], ids.halfwidth) == [half, "张三(北京)1号", None]
    # nothing outside the table moves: CJK, the middle dot of names, the ideographic comma
    kept = "欧阳·娜娜、。「」"
    assert ids.halfwidth_str(kept) == kept
    assert col([kept], ids.halfwidth) == [kept]


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        uscc_bodies.map(lambda b: b + uscc.calc_check_digit(b)),
        st.text(ids.USCC_ALPHABET + "IOSVZ", min_size=17, max_size=19),
    )
)
def test_uscc_valid_both_forms_agree(code):
    """stdnum also wants 8 leading digits; GB 32100 lets the first two be letters."""
    want = col([code], ids.uscc_valid)[0]
    assert ids.uscc_valid_str(code) is want
    if code[:8].isdigit():
        assert want is uscc.is_valid(code)


def test_shipped_provider_codes_pass_the_one_rule():
    from catalog.loader import load_catalogue

    codes = [d.provider_code for d in load_catalogue().departments.values()]
    assert codes and all(ids.uscc_valid_str(c) for c in codes)
    assert not ids.uscc_valid_str(codes[0][:17] + ("0" if codes[0][17] != "0" else "1"))


def test_landlines_in_any_spelling_become_area_dash_number():
    spellings = ["010-65123456", "(010)65123456", "010 6512 3456", "+86 10 6512 3456"]
    spellings += ["0086-10-65123456", "86 10 65123456", "01065123456"]
    assert col(spellings, ids.landline_canonical) == ["010-65123456"] * len(spellings)
    assert col(["0755 8600 1234", "057188888888"], ids.landline_canonical) == [
        "0755-86001234",
        "0571-88888888",
    ]


def test_what_is_no_valid_landline_is_null():
    others = ["13812345678", "010-6512345", "021-1234567", "010-65123456-801", "无", "", None]
    assert col(others, ids.landline_canonical) == [None] * len(others)


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
    got = col([spelling.format(a=area, n=n)], ids.landline_canonical)[0]
    parsed = phonenumbers.parse(f"0{area}{n}", "CN")
    if phonenumbers.is_valid_number(parsed):
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        assert got is not None and got.replace("-", "") == national.replace(" ", "")
        assert got.startswith(f"0{area}-")
    else:
        assert got is None


@pytest.mark.parametrize(
    "spelling",
    ["13812345678", "+86 138 1234 5678", "0086-138-1234-5678", "86 13812345678", "(138)12345678",
     "13812345678转8001", "138 1234 5678 分机 12", "13812345678ext.8001", "13812345678#8001"],
)  # fmt: skip
def test_mobile_spellings(spelling):
    assert col([spelling], ids.mobile_digits) == ["13812345678"]
    assert col([spelling], ids.phone_canonical) == ["13812345678"]


def test_what_spells_no_mobile_is_null():
    others = ["12812345678", "1381234567", "138123456789", "010-65123456", "13812345678转", None]
    assert col(others, ids.mobile_digits) == [None] * len(others)
    assert col(others, ids.phone_canonical) == [None, None, None, "010-65123456", None, None]


@given(
    st.lists(
        st.text(alphabet="买提艾力阿吐尔逊约翰", min_size=1, max_size=4), min_size=2, max_size=4
    ),
    st.lists(
        st.sampled_from(ids.NAME_DOT + ids.NAME_DOT_LOOKALIKES + ids.NAME_STOPS),
        min_size=3,
        max_size=3,
    ),
    st.sampled_from(["", " ", "\u3000"]),
)
def test_name_dots_join_a_name_in_parts_one_way(
    parts: list[str], joins: list[str], pad: str
) -> None:
    written = "".join(
        p + (pad + joins[i % 3] + pad if i < len(parts) - 1 else "") for i, p in enumerate(parts)
    )
    joined = ids.NAME_DOT.join(parts)
    assert pl.select(ids.name_dots(pl.lit(written))).item() == joined
    # the string form keeps offsets (one character for one): no spaces are taken out
    if not pad:
        assert ids.name_dots_str(written) == joined
        lookalikes_only = [j if j in ids.NAME_STOPS else ids.NAME_DOT for j in joins]
        want = "".join(
            p + (lookalikes_only[i % 3] if i < len(parts) - 1 else "") for i, p in enumerate(parts)
        )
        assert ids.name_dots_str(written, stops=False) == want


def test_name_dots_leave_numbers_and_latin_text() -> None:
    values = ["2400.5", "v1.2", "a·b", "3·4", "张三。李四"]
    assert pl.select(ids.name_dots(pl.Series(values))).to_series().to_list() == values
    assert [ids.name_dots_str(v) for v in values] == values


def test_a_two_character_name_padded_to_a_rosters_width_is_unpadded() -> None:
    values = ["王\u3000芳", "王 芳", "王  芳", "王\u3000\u3000芳", "刘 䶮"]
    got = pl.select(ids.name_unpadded(pl.Series(values))).to_series().to_list()
    assert got == ["王芳"] * 4 + ["刘䶮"]
    # a longer name with a space may be a boundary of its parts, Latin text is no Han name
    kept = ["买买提 艾力", "欧阳 娜娜", "王芳", "A B", "王 3", " 王芳"]
    assert pl.select(ids.name_unpadded(pl.Series(kept))).to_series().to_list() == kept
