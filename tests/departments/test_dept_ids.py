"""Identifier arithmetic against python-stdnum as the oracle."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.cn import ric, uscc

from departments import ids
from departments.dirt import DATE_SPELLINGS, PHONE_SPELLINGS

births = st.dates(min_value=dt.date(1920, 1, 1), max_value=dt.date(2025, 12, 31))


@given(births, st.integers(0, 999))
def test_citizen_id_check_char_agrees_with_stdnum(birth, seq):
    cid = ids.citizen_id("110105", birth, seq)
    assert ric.calc_check_digit(cid) == cid[-1]  # stdnum ignores the last character
    assert ric.is_valid(cid)
    assert ids.id_birth(cid) == birth
    assert ids.id_gender(cid) == ("男" if seq % 2 else "女")
    assert not ric.is_valid(ids.wrong_check_char(cid))


@given(st.dates(min_value=dt.date(1920, 1, 1), max_value=dt.date(1998, 12, 31)),
       st.integers(0, 999))  # fmt: skip
def test_15_digit_upgrade_round_trips(birth, seq):
    cid = ids.citizen_id("110105", birth, seq)
    old = ids.to_15_digit(cid)
    assert len(old) == 15 and ids.upgrade_15(old) == cid


def test_standard_example():
    assert ids.citizen_id("110105", dt.date(1949, 12, 31), 2) == "11010519491231002X"


@given(st.text(alphabet=ids.USCC_ALPHABET, min_size=9, max_size=9), st.sampled_from(["91", "92"]))
def test_credit_code_agrees_with_stdnum(body, org):
    code = ids.credit_code(org, "110105", body)
    assert uscc.is_valid(code)


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_luhn_agrees_with_stdnum(prefix):
    assert luhn.is_valid(ids.luhn_complete(prefix))


def test_a_dozen_date_spellings_and_phone_spellings_differ():
    d = dt.date(2023, 1, 5)
    spellings = {f(d) for f in DATE_SPELLINGS}
    assert len(spellings) == len(DATE_SPELLINGS) >= 12
    assert {"2023/1/5", "2023年1月5日", "20230105", "2023.1.5", "2023-1-5 00:00:00"} <= spellings
    phones = {f("13812345678") for f in PHONE_SPELLINGS}
    assert "+86 138 1234 5678" in phones and "138-1234-5678" in phones
