"""What real exports write besides the simulator's dirt: each repaired by a catalogue rule,
counted, and — where it cannot be repaired — quarantined for the right reason."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from stdnum.cn import ric

from catalog.loader import load_catalogue
from catalog.model import Dataset, Department, MonthDates, SlashDates, Standardising
from catalog.street import get_street
from quality import standardise as s
from quality.gate import gate


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


def dataset(cat, ref: str, **rules) -> Dataset:
    _, ds = cat.dataset(ref)
    if rules:
        ds = ds.model_copy(update={"standardising": Standardising(**rules)})
    return ds


def raw_frame(ds: Dataset, n: int, **columns: list) -> pl.DataFrame:
    """n rows of a dataset's raw text columns: the given columns, the rest blank."""
    data = {f.name: columns.get(f.name, [None] * n) for f in ds.fields}
    frame = pl.DataFrame(data, schema={f.name: pl.String for f in ds.fields})
    return frame.with_columns(
        _delivery_id=pl.lit("d1"), _source_row=pl.int_range(2, n + 2, dtype=pl.Int64)
    )


def one_field(ds: Dataset, name: str, values: list, **rules) -> tuple[list, dict]:
    """Standardised values of one field and its repair counts (kind → n)."""
    if rules:
        ds = ds.model_copy(update={"standardising": Standardising(**rules)})
    out = s.standardise(raw_frame(ds, len(values), **{name: values}), ds)
    counts = {
        r["kind"]: r["count"] for r in out.repairs.iter_rows(named=True) if r["field"] == name
    }
    return out.frame[name].to_list(), counts


# -- placeholders ---------------------------------------------------------------------------


def test_placeholders_become_null_and_are_counted(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    values = ["无", " 不详 ", "NULL", "null", "-", "/", "－", "ＮＵＬＬ", "N/A", "暂无", "张三"]
    got, counts = one_field(ds, "name", values)
    assert got == [None] * 10 + ["张三"]
    assert counts["placeholder"] == 10
    got, counts = one_field(ds, "registered_on", ["无", "-", "2026-10-31"])
    assert got == [None, None, dt.date(2026, 10, 31)]
    assert counts == {"placeholder": 2}


def test_a_value_the_catalogue_allows_is_no_placeholder(cat):
    _, base = cat.dataset("mzj.elderly_alone")
    f = base.field("care_level").model_copy(update={"allowed_values": ["一级", "二级", "无"]})
    fields = [f if g.name == "care_level" else g for g in base.fields]
    ds = base.model_copy(update={"fields": fields})
    got, counts = one_field(ds, "care_level", ["无", "不详", "二级"])
    assert got == ["无", None, "二级"]
    assert counts == {"placeholder": 1}


def test_placeholders_are_a_catalogue_setting(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    got, _ = one_field(ds, "address", ["未填写", "-"], placeholders=["未填写"])
    assert got == [None, "-"]  # the dataset's own list replaces the default
    got, _ = one_field(ds, "address", ["未填写", "-", "地址"], extra_placeholders=["未填写"])
    assert got == [None, None, "地址"]  # extra ones add to it


def test_the_gate_reads_the_standardisers_missing_flag(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    out = s.standardise(
        raw_frame(ds, 2, name=["无", "张三"], registered_on=["1900-01-01", None]), ds
    )
    assert out.frame.select(s.missing_col(ds.field("name")))[:, 0].to_list() == [True, False]
    f = ds.field("registered_on")
    assert out.frame.select(s.missing_col(f))[:, 0].to_list() == [True, False]


def test_department_rules_reach_its_datasets_and_a_dataset_overrides_key_by_key(cat):
    dept = cat.departments["mzj"]
    raw = dept.model_dump(mode="json", exclude_none=True)
    raw["standardising"] = {"placeholders": ["未填写"], "slash_dates": "month_first"}
    raw["datasets"][1]["standardising"] = {"placeholders": ["缺"]}
    d = Department.model_validate(raw)
    first, second = d.datasets[0].rules, d.datasets[1].rules
    assert first.placeholders == ("未填写",) and first.slash_dates is SlashDates.month_first
    assert second.placeholders == ("缺",) and second.slash_dates is SlashDates.month_first
    assert second.month_dates is MonthDates.first_of_month  # set nowhere: the default
    assert Dataset.model_validate(raw["datasets"][2] | {"standardising": None}).rules == (
        Standardising()
    )


def test_blank_placeholder_is_refused():
    with pytest.raises(ValueError, match="placeholder"):
        Standardising(placeholders=[" 无"])


# -- citizen IDs ----------------------------------------------------------------------------


def test_dashes_and_zero_width_characters_inside_a_citizen_id(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    values = [
        "110105-19491231-0021",
        "110105\u200b19491231002X",
        "\ufeff11010519491231002x",
        "110105－19491231－0021",
        "110105–491231–002",
    ]
    got, counts = one_field(ds, "citizen_id", values)
    assert got == ["110105194912310021", "11010519491231002X", "11010519491231002X",
                   "110105194912310021", "11010519491231002X"]  # fmt: skip
    assert counts["id_separators"] == 3
    assert counts["zero_width"] == 2
    assert counts["id_15_to_18"] == 1


def test_zero_width_characters_leave_names_and_codes_but_not_free_text(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    got, counts = one_field(ds, "name", ["张\u200b三", "李四"])
    assert got == ["张三", "李四"] and counts == {"zero_width": 1}
    _, ds = cat.dataset("cgj.violation_cases")
    text = next(f for f in ds.fields if f.type.value == "text")
    got, counts = one_field(ds, text.name, ["家\u200d人"])
    assert got == ["家\u200d人"] and "zero_width" not in counts


def test_a_name_in_parts_is_joined_by_the_interpunct_as_the_id_card_has_it(cat):
    # 少数民族 and transliterated names: exports join their parts with look-alikes of U+00B7
    # or a full stop; one spelling, so that the registry's 买买提·艾力 is this resident too
    ds = dataset(cat, "mzj.elderly_alone")
    values = ["买买提•艾力", "买买提.艾力", "买买提 ． 艾力", "阿卜杜勒・阿齐兹‧买买提", "约·翰·逊",
              "买买提·艾力", "张三"]  # fmt: skip
    got, counts = one_field(ds, "name", values)
    assert got == ["买买提·艾力"] * 3 + [
        "阿卜杜勒·阿齐兹·买买提",
        "约·翰·逊",
        "买买提·艾力",
        "张三",
    ]
    assert counts == {"name_dot": 4}
    _, ds = cat.dataset("cgj.violation_cases")  # free text keeps its full stops
    text = next(f for f in ds.fields if f.type.value == "text")
    got, counts = one_field(ds, text.name, ["已处理.谢谢"])
    assert got == ["已处理.谢谢"] and "name_dot" not in counts


# -- money and units ------------------------------------------------------------------------


def test_money_with_a_unit_or_a_currency_sign(cat):
    ds = dataset(cat, "mzj.old_age_allowance")
    values = ["2400元", "￥2400", "¥2,400.00", "2,400.00", "2400 元/月", "RMB 2400", "2400"]
    got, counts = one_field(ds, "allowance_cny", values)
    assert got == [2400] * 7
    assert counts == {"unit": 5}


def test_another_unit_or_currency_is_not_read_as_this_one(cat):
    ds = dataset(cat, "mzj.old_age_allowance")
    got, _ = one_field(ds, "allowance_cny", ["2400美元", "$2400", "2400元元"])
    assert got == [None, None, None]
    ds = dataset(cat, "zjj.housing_units")
    got, counts = one_field(ds, "area_m2", ["85.5㎡", "85.5 ㎡", "￥85.5", "85.5元"])
    assert got == [85.5, 85.5, None, None]
    assert counts == {"unit": 2}


# -- dates ----------------------------------------------------------------------------------


def test_day_first_and_month_first_slash_dates(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    values = ["31/10/2026", "1/2/2026", "01.02.2026", "10/31/2026"]
    got, counts = one_field(ds, "registered_on", values)
    assert got == [dt.date(2026, 10, 31), dt.date(2026, 2, 1), dt.date(2026, 2, 1), None]
    assert counts == {"dmy_date": 3}
    got, _ = one_field(ds, "registered_on", values, slash_dates="month_first")
    assert got == [None, dt.date(2026, 1, 2), dt.date(2026, 1, 2), dt.date(2026, 10, 31)]


def test_month_only_dates_by_policy_and_never_for_a_birth_date(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    values = ["2026年10月", "2026-10", "2026/3", "2026年13月"]
    got, counts = one_field(ds, "registered_on", values)
    assert got == [dt.date(2026, 10, 1), dt.date(2026, 10, 1), dt.date(2026, 3, 1), None]
    assert counts == {"month_precision": 3}
    got, counts = one_field(ds, "registered_on", values, month_dates="quarantine")
    assert got == [None] * 4 and counts == {}
    got, counts = one_field(ds, "birth_date", ["1949年12月"])
    assert got == [None] and counts == {}


def test_unknown_dates_become_null_in_every_spelling(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    values = ["1900-01-01", "1900/1/1", "19000101", "1900年1月1日", "1949-12-31"]
    got, counts = one_field(ds, "registered_on", values)
    assert got == [None] * 4 + [dt.date(1949, 12, 31)]
    assert counts == {"unknown_date": 4}
    got, _ = one_field(ds, "registered_on", ["1900-01-01"], unknown_dates=[])
    assert got == [dt.date(1900, 1, 1)]


# -- phones ---------------------------------------------------------------------------------


def test_a_mobile_with_an_extension(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    values = ["13812345678转8001", "138 1234 5678 转 12", "13812345678-转801", "13812345678ext.5",
              "+86 13812345678 x 9", "13812345678#1", "010-12345678转8001"]  # fmt: skip
    got, counts = one_field(ds, "mobile", values)
    assert got == ["13812345678"] * 6 + ["010-12345678转8001"]  # a landline keeps its own
    assert counts == {"phone_extension": 6}


def test_excel_text_markers_around_ids_phones_and_numbers(cat):
    # ="…" and a leading apostrophe, an export's guard against Excel reading a long number
    ds = dataset(cat, "mzj.elderly_alone")
    ids = ['="11010519491231002X"', "'11010519491231002X", " '11010519491231002X ", '=""']
    got, counts = one_field(ds, "citizen_id", ids)
    assert got == ["11010519491231002X"] * 3 + [None]
    assert counts == {"excel_text": 3, "whitespace": 1}  # the third also had spaces
    got, counts = one_field(ds, "mobile", ["'13812345678", '="138 1234 5678"'])
    assert got == ["13812345678"] * 2
    assert counts["excel_text"] == 2
    # free text keeps what it was given: an apostrophe may be its own
    assert one_field(ds, "name", ["'张三"])[0] == ["'张三"]


# -- the gate: repaired rows staged, unrepairable ones quarantined for the right reason -----


def citizen_id(seq: int) -> str:
    """A valid ID of a man born 1949-12-31 (python-stdnum computes the check character)."""
    body = f"11010519491231{2 * seq + 1:03d}"
    return body + ric.calc_check_digit(body + "0")  # it reads the first 17 characters


def test_gate_quarantines_each_row_for_the_right_reason(cat):
    ds = dataset(cat, "mzj.elderly_alone")
    n = 6
    raw = raw_frame(
        ds,
        n,
        name=["张三", "无", "李四", "王五", "赵六", "孙七"],
        gender=["男"] * n,
        citizen_id=[citizen_id(i)[:6] + "-" + citizen_id(i)[6:14] + "-" + citizen_id(i)[14:]
                    for i in range(n)],
        birth_date=["1949-12-31", "1949-12-31", "1900-01-01", "1949年12月", "1949-12-31",
                    "31/12/1949"],
        mobile=["13812345678转8001", "-", None, None, "NULL", None],
        community_name=[get_street().community_names[0]] * n,
        address=["地址"] * n,
        registered_on=["2026年10月", None, None, None, "/", "1900-01-01"],
    )  # fmt: skip
    res = gate(raw, ds)
    reasons = {
        (r["_source_row"], r["field"], r["check_name"])
        for r in res.quarantine.iter_rows(named=True)
    }
    assert reasons == {
        (3, "name", "required"),  # a placeholder in a required field: blank
        (4, "birth_date", "required"),  # 1900-01-01: unknown, and required
        (5, "birth_date", "unparseable"),  # a month is not a birth date
    }
    staged = {r["_source_row"]: r for r in res.staged.iter_rows(named=True)}
    assert staged[2]["mobile"] == "13812345678" and staged[2]["registered_on"] == dt.date(
        2026, 10, 1
    )
    assert staged[6]["mobile"] is None and staged[6]["registered_on"] is None
    assert staged[7]["birth_date"] == dt.date(1949, 12, 31)
    assert staged[7]["registered_on"] is None  # an unknown optional date: null, not quarantined


def test_a_two_character_name_padded_to_a_rosters_width_is_the_name(cat):
    # rosters pad 王芳 to the width of 欧阳娜 (a full-width space, or spaces): one spelling,
    # so that the registry's 王芳 is this resident too
    ds = dataset(cat, "mzj.elderly_alone")
    values = ["王\u3000芳", "王 芳", " 王  芳", "欧阳 娜娜", "王芳"]
    got, counts = one_field(ds, "name", values)
    assert got == ["王芳", "王芳", "王芳", "欧阳 娜娜", "王芳"]
    assert counts == {"name_padded": 3, "whitespace": 1}


# -- codes of a department's system (catalog/codes.py) ---------------------------------------


def test_a_gender_code_is_staged_as_the_value_it_stands_for(cat):
    # GB/T 2261.1: 1 男性, 2 女性, 0 未知的性别, 9 未说明的性别 (in any width)
    ds = dataset(cat, "mzj.elderly_alone")
    values = ["1", "２", " 男性 ", "女性", "女", "0", "9", "未说明的性别", "M", "男"]
    got, counts = one_field(ds, "gender", values)
    assert got == ["男", "女", "男", "女", "女", None, None, None, "M", "男"]
    assert counts == {"coded_value": 4, "placeholder": 3, "whitespace": 1}
    out = s.standardise(raw_frame(ds, 3, gender=["0", "1", None]), ds)
    f = ds.field("gender")  # a code for no value reads as blank to the gate, as a placeholder
    assert out.frame.select(s.missing_col(f))[:, 0].to_list() == [True, False, False]


def test_codes_are_the_fields_own_and_only_where_the_catalogue_says(cat):
    _, base = cat.dataset("rx.appeals")
    f = base.field("status")
    own = {"01": "已受理", "02": "已派单", "03": "已办结", "99": None}
    coded = f.model_copy(update={"codes": own})
    ds = base.model_copy(update={"fields": [coded if g is f else g for g in base.fields]})
    got, counts = one_field(ds, "status", ["01", "03", "99", "已派单", "04", "1"])
    assert got == ["已受理", "已办结", None, "已派单", "04", "1"]  # 04, 1: no such code
    assert counts == {"coded_value": 2, "placeholder": 1}
    got, counts = one_field(base, "status", ["01", "已受理"])  # the shipped field has none
    assert got == ["01", "已受理"] and "coded_value" not in counts
    dash = f.model_copy(update={"codes": {"-": "已受理", "99": None}})  # a code, no placeholder
    ds = base.model_copy(update={"fields": [dash if g is f else g for g in base.fields]})
    got, counts = one_field(ds, "status", ["-", "/", "99"])
    assert got == ["已受理", None, None] and counts == {"coded_value": 1, "placeholder": 2}
