"""Standardisers: every spelling the departments deliver comes out canonical and typed."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from departments.dirt import DATE_SPELLINGS, DATETIME_SPELLINGS, PHONE_SPELLINGS
from departments.ids import fullwidth
from quality import standardise as s


def apply(values, f) -> list:
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    return frame.select(f(pl.col("v")).alias("v"))["v"].to_list()


dates = st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31))
times = st.datetimes(dt.datetime(1950, 1, 1), dt.datetime(2099, 1, 1)).map(
    lambda t: t.replace(microsecond=0)
)


@settings(max_examples=60, deadline=None)
@given(dates)
def test_every_date_spelling(d):
    spelled = [f(d) for f in DATE_SPELLINGS] + [d.isoformat()]
    assert apply(spelled, s.parse_date) == [d] * len(spelled)


@settings(max_examples=60, deadline=None)
@given(times)
def test_every_datetime_spelling(t):
    spelled = [f(t) for f in DATETIME_SPELLINGS] + [f"{t:%Y-%m-%d %H:%M:%S}"]
    assert apply(spelled, s.parse_datetime) == [t] * len(spelled)


def test_datetime_offsets_and_epoch_millis_become_beijing_time():
    got = apply(
        ["2026-11-20T00:30:00Z", "2026-11-20T08:30:00+08:00", "1795134600000", "2026-11-20"],
        s.parse_datetime,
    )
    assert got[:3] == [dt.datetime(2026, 11, 20, 8, 30)] * 3
    assert got[3] == dt.datetime(2026, 11, 20)


def test_excel_serials_only_where_asked():
    assert (
        apply(["45000", "45000.0"], lambda e: s.parse_date(e, excel_serials=True))
        == [dt.date(2023, 3, 15)] * 2
    )
    assert apply(["45000"], s.parse_date) == [None]


@settings(max_examples=60, deadline=None)
@given(dates)
def test_a_date_as_a_system_stores_it_at_midnight(d):
    # SQL Server's datetime, JDBC's Timestamp, a compact timestamp, a zone as written, and a
    # serialiser set to UTC writing Beijing's midnight as the day before at 16:00
    before = d - dt.timedelta(days=1)
    spelled = [f"{d} 00:00:00.000", f"{d} 00:00:00.0", f"{d:%Y%m%d}000000", f"{d}T00:00:00Z",
               f"{d}T00:00:00.000+08:00", f"{before}T16:00:00.000Z", f"{before} 16:00:00+00:00"]  # fmt: skip
    assert apply(spelled, s.parse_date) == [d] * len(spelled)


def test_a_date_with_another_time_of_day_is_no_date():
    spelled = ["2026-10-31 08:30:00", "2026-10-31 00:00:00.5", "20261031083000",
               "2026-10-30T17:00:00Z", "2026-10-30 16:00:00"]  # fmt: skip
    assert apply(spelled, s.parse_date) == [None] * len(spelled)


def test_impossible_dates_stay_null():
    assert apply(["2023-02-30", "2023/13/1", "hello", ""], s.parse_date) == [None] * 4


@pytest.mark.parametrize("spell", PHONE_SPELLINGS)
def test_phone_spellings(spell):
    assert apply([spell("13812345678")], s.std_phone) == ["13812345678"]


def test_landlines_and_junk_are_kept_as_delivered():
    assert apply(["010-65123456", " 0086 138-1234-5678 ", "abc"], s.std_phone) == [
        "010-65123456",
        "13812345678",
        "abc",
    ]


def test_citizen_id_repairs():
    got = apply(
        [fullwidth("11010519491231002x"), " 11010519491231002x\u3000", "110105491231002", "  "],
        s.std_citizen_id,
    )
    assert got == ["11010519491231002X"] * 3 + [None]


def test_halfwidth_and_trim():
    assert apply(["\u3000ＡＢ１２，！ "], lambda e: s.clean_text(e, to_halfwidth=True)) == [
        "AB12,!"
    ]
    assert apply(["  张三 ", "", "，中文标点，"], s.clean_text) == ["张三", None, "，中文标点，"]


def test_numbers_and_booleans():
    assert apply(["12", "12.0", "１２", "1,200", "1.5", "x"], s.parse_integer) == [
        12, 12, 12, 1200, None, None,
    ]  # fmt: skip
    assert apply(["1.25", "-999", "n/a"], s.parse_decimal) == [1.25, -999.0, None]
    assert apply(["是", "false", "Y", "maybe"], s.parse_boolean) == [True, False, True, None]


def test_typed_output_and_repair_counts():
    from catalog.loader import load_catalogue

    _, ds = load_catalogue().dataset("gaj.registered_residents")
    raw = pl.DataFrame(
        {f.name: ["x"] for f in ds.fields}, schema={f.name: pl.String for f in ds.fields}
    ).with_columns(
        citizen_id=pl.lit("110105491231002"),
        birth_date=pl.lit("1949年12月31日"),
        mobile=pl.lit("+86 138 1234 5678"),
        updated_at=pl.lit("2026/11/20 08:00:00"),
        name=pl.lit(" 张三"),
    )
    out = s.standardise(raw, ds)
    for f in ds.fields:
        assert out.frame.schema[f.name] == s.DTYPES[f.type]
    counts = {(r["field"], r["kind"]): r["count"] for r in out.repairs.iter_rows(named=True)}
    assert counts == {
        ("citizen_id", "id_15_to_18"): 1,
        ("name", "whitespace"): 1,
        ("birth_date", "date_format"): 1,
        ("mobile", "phone_format"): 1,
        ("updated_at", "datetime_format"): 1,
    }
