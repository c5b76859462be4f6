"""The row gate: every row staged or quarantined, typed output, and its row-level rules."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from test_gate_street import LOADED_AT, Street

from catalog.loader import get_catalogue
from catalog.model import Dataset
from quality.gate import GATE_FAILURE_SCHEMA, gate
from quality.standardise import DTYPES

REFS = sorted(f"{dept.code}.{ds.code}" for dept, ds in get_catalogue().datasets())


def dataset(ref: str) -> Dataset:
    return get_catalogue().dataset(ref)[1]


def test_the_street_has_every_catalogue_dataset(gate_street: Street) -> None:
    assert sorted(gate_street.raw) == REFS


@pytest.mark.parametrize("ref", REFS)
def test_every_row_is_staged_quarantined_or_skipped_once(ref, gate_street: Street):
    raw, ds = gate_street.raw[ref], gate_street.dataset(ref)
    result = gate(raw, ds)
    on = ["_delivery_id", "_source_row"]
    quarantined = result.quarantine.select(on).unique()
    skipped = result.skipped.select(on)
    assert skipped.is_unique().all()
    assert result.staged.height + quarantined.height + skipped.height == raw.height
    assert result.staged.join(quarantined, on=on).height == 0
    assert result.staged.join(skipped, on=on).height == 0
    assert quarantined.join(skipped, on=on).height == 0
    assert dict(result.quarantine.schema) == GATE_FAILURE_SCHEMA
    assert result.staged.columns == ["_delivery_id", "_source_row", "_loaded_at"] + [
        f.name for f in ds.fields
    ]
    for f in ds.fields:
        assert result.staged.schema[f.name] == DTYPES[f.type], f.name
    # the pandera engine and the plain-mask engine agree exactly
    pandera = gate(raw, ds, engine="pandera")
    order = ["_delivery_id", "_source_row", "check_name", "field"]
    assert pandera.quarantine.sort(order).equals(result.quarantine.sort(order))
    assert pandera.skipped.equals(result.skipped)


def _raw(rows: list[dict], ds) -> pl.DataFrame:
    cols = {f.name: [r.get(f.name) for r in rows] for f in ds.fields}
    return pl.DataFrame(
        {
            "_delivery_id": ["d1"] * len(rows),
            "_source_row": list(range(2, len(rows) + 2)),
            "_loaded_at": [LOADED_AT] * len(rows),
            **cols,
        },
        schema_overrides={f.name: pl.String for f in ds.fields},
    )


RESIDENT = {
    "citizen_id": "11010519491231002X",
    "name": "张秀英",
    "gender": "女",
    "birth_date": "1949-12-31",
    "address": "北京市朝阳区建外街道1号",
    "community_code": "110105001001",
    "mobile": "13812345678",
    "household_id": "H001",
    "updated_at": "2026-11-20 08:00:00",
}


def residents():
    return dataset("gaj.registered_residents")


def test_clean_row_is_staged_typed():
    r = gate(_raw([RESIDENT], residents()), residents())
    assert r.quarantine.height == 0
    row = r.staged.row(0, named=True)
    assert row["birth_date"] == dt.date(1949, 12, 31)
    assert row["updated_at"] == dt.datetime(2026, 11, 20, 8, 0)


def test_conflicting_key_quarantines_every_holder():
    other = {**RESIDENT, "name": "李娜"}
    r = gate(
        _raw([RESIDENT, other, {**RESIDENT, "citizen_id": "110105194912310021"}], residents()),
        residents(),
    )
    q = r.quarantine.filter(pl.col("check_name") == "conflicting_key")
    assert sorted(q["_source_row"]) == [2, 3]
    assert q["reason"][0] == "公民身份号码 is shared with 1 other row(s) (source rows 3)"
    assert q["field"][0] == "citizen_id"


def test_duplicates_keep_the_first_copy_even_after_standardisation():
    copy = {**RESIDENT, "birth_date": "1949年12月31日", "mobile": "+86 138 1234 5678"}
    r = gate(_raw([RESIDENT, copy], residents()), residents())
    assert r.staged["_source_row"].to_list() == [2]
    assert r.quarantine.height == 0  # skipped and counted: nothing for anyone to fix
    assert r.skipped.select("_source_row", "check_name", "reason").rows() == [
        (3, "duplicate", "exact copy of source row 2")
    ]


def test_unreadable_date_is_reported_once_as_unreadable():
    r = gate(_raw([{**RESIDENT, "birth_date": "1949-02-30"}], residents()), residents())
    assert r.quarantine.select("field", "check_name", "reason", "value").rows() == [
        ("birth_date", "unparseable", "出生日期 cannot be read as a date", "1949-02-30")
    ]


def test_birth_date_disagreeing_with_the_id():
    r = gate(_raw([{**RESIDENT, "birth_date": "1949-12-30"}], residents()), residents())
    assert r.quarantine["reason"].to_list() == [
        "出生日期 disagrees with the birth date in the 公民身份号码"
    ]


def test_reason_never_carries_the_id():
    bad = "110105194912310023"
    r = gate(_raw([{**RESIDENT, "citizen_id": bad}], residents()), residents())
    row = r.quarantine.row(0, named=True)
    assert row["reason"] == "公民身份号码 check digit is 3 but should be X"
    assert bad not in row["reason"] and row["value"] == bad


def test_identity_document_carries_the_rows_own_citizen_id():
    ds = dataset("mzj.disability_allowance")
    me, other = "11010519491231002X", "110105194912310021"
    row = {f.name: None for f in ds.fields} | {
        "name": "张秀英",
        "citizen_id": me,
        "disability_cert_no": me + "42",
        "disability_category": "肢体",
    }
    assert "embeds_citizen_id" in ds.field("disability_cert_no").checks
    rows = [row, {**row, "disability_cert_no": other + "42"}]
    q = gate(_raw(rows, ds), ds).quarantine.filter(pl.col("check_name") == "embeds_citizen_id")
    assert q.select("_source_row", "field", "reason").rows() == [
        (3, "disability_cert_no", "残疾人证号 does not carry the row's own 身份证号码")
    ]
    # a row whose own ID is not valid is quarantined for the ID, not for its document
    bad = {**row, "citizen_id": me[:-1] + "3", "disability_cert_no": me[:-1] + "342"}
    checks = gate(_raw([bad], ds), ds).quarantine["check_name"].to_list()
    assert "embeds_citizen_id" not in checks and "citizen_id_checksum" in checks


def test_credit_code_coordinates_and_pattern():
    ds = dataset("scjg.merchants")
    good = {
        "credit_code": "91110105MA01ABCD3X",
        "name": "建外便利店",
        "legal_rep": "王芳",
        "category": "便利店",
        "address": "建外街道2号",
        "community_code": "110105001002",
        "lon": "116.45",
        "lat": "39.91",
        "registered_on": "2020-01-02",
        "status": "存续",
    }
    from stdnum.cn import uscc

    good["credit_code"] = good["credit_code"][:17] + uscc.calc_check_digit(good["credit_code"][:17])
    wrong = good["credit_code"][:17] + ("0" if good["credit_code"][17] != "0" else "1")
    rows = [
        good,
        {**good, "credit_code": wrong},
        {**good, "credit_code": "91110105MA01ABCD30", "lon": "116.60"},
    ]
    rows[2]["credit_code"] = (
        good["credit_code"][:16] + "Q" + uscc.calc_check_digit(good["credit_code"][:16] + "Q")
    )
    r = gate(_raw(rows, ds), ds)
    got = {(x["_source_row"], x["check_name"]) for x in r.quarantine.iter_rows(named=True)}
    assert got == {(3, "credit_code_checksum"), (4, "coordinates_in_street")}
    reason = r.quarantine.filter(pl.col("_source_row") == 4)["reason"][0]
    assert reason == "经度 116.6 lies outside 建外街道 (116.428–116.472)"


def test_community_code_and_name_must_be_the_streets(gate_street: Street):
    """Codes and names are checked against catalog/street.yaml, not only by pattern."""
    ds = dataset("wg.grid_cells")
    rows = gate_street.raw["wg.grid_cells"].head(4).to_dicts()
    rows[1]["community_code"] = "110105001099"  # right form, no such community
    rows[2]["community_name"] = "朝外社区"  # a community of the neighbouring street
    rows[3]["community_name"] = rows[3]["community_name"].removesuffix("社区")  # bare name: fine
    frame = pl.DataFrame(rows, schema=gate_street.raw["wg.grid_cells"].schema)
    r = gate(frame, ds)
    got = {(x["_source_row"], x["check_name"]) for x in r.quarantine.iter_rows(named=True)}
    assert got == {
        (rows[1]["_source_row"], "community_code"),
        (rows[2]["_source_row"], "community_name"),
    }
    reasons = set(r.quarantine["reason"])
    assert reasons == {
        "社区代码 110105001099 is not a community of 建外街道",
        "社区名称 朝外社区 is not a community of 建外街道",
    }
    assert r.staged.height == 2


def test_bank_card_luhn():
    from stdnum import luhn

    ds = dataset("mzj.old_age_allowance")
    card = "622202020011223344" + luhn.calc_check_digit("622202020011223344")
    wrong = card[:-1] + str((int(card[-1]) + 1) % 10)
    row = {
        "name": "赵敏",
        "citizen_id": "11010519491231002X",
        "gender": "女",
        "age": "80",
        "allowance_cny": "500",
        "pay_month": "2026-11",
        "bank_card": card,
        "community_name": "建外社区",
    }
    r = gate(_raw([row, {**row, "pay_month": "2026-10", "bank_card": wrong}], ds), ds)
    label = ds.field("bank_card").label_zh
    assert r.quarantine.select("_source_row", "check_name", "reason").rows() == [
        (3, "luhn", f"{label} fails the Luhn check digit")
    ]


def _marker(f, i: int):
    """A value of the field's type that cannot appear in a reason by chance."""
    from catalog.model import FieldType

    return {
        FieldType.integer: 9876500 + i,
        FieldType.decimal: 9876500.25 + i,
        FieldType.date: dt.date(1901, 2, 3),
        FieldType.datetime: dt.datetime(1901, 2, 3, 4, 5, 6),
        FieldType.boolean: None,
    }.get(f.type, f"秘{i:03d}密X")


def _reasons(ds, frame: pl.DataFrame) -> list[str]:
    from quality.gate_checks import row_checks

    return [frame.select(rc.reason.cast(pl.String)).item() or "" for rc in row_checks(ds)]


@pytest.mark.parametrize("ref", REFS)
def test_reasons_never_carry_l3_l4_values(ref):
    """Reasons are stored in the clear: every check's reason, on a row where every
    field holds a marker, shows no L3/L4 marker (L1/L2 values may be shown)."""
    from catalog.model import Level
    from quality.gate_checks import RAW_PREFIX

    ds = dataset(ref)
    columns = {}
    for i, f in enumerate(ds.fields):
        value = _marker(f, i)
        columns[f.name] = pl.Series([value], dtype=DTYPES[f.type])
        columns[RAW_PREFIX + f.name] = pl.Series([str(value)], dtype=pl.String)
    frame = pl.DataFrame(columns)
    sensitive = {
        str(columns[RAW_PREFIX + f.name][0])[:10].replace("1901-02-03", "1901")
        for f in ds.fields
        if f.level.rank >= 3 and _marker(f, 0) is not None
    }
    shown = [(r, s) for r in _reasons(ds, frame) for s in sensitive if s in r]
    assert shown == []
    # lowered to L2, the same fields' values do show where a check quotes them
    if any(f.allowed_values or f.range for f in ds.fields if f.level.rank >= 3):
        low = ds.model_copy(
            update={"fields": [f.model_copy(update={"level": Level.L2}) for f in ds.fields]}
        )
        assert any(s in r for r in _reasons(low, frame) for s in sensitive)


@pytest.mark.parametrize(
    ("delivered", "says"),
    [
        ("1.10105E+17", "written in scientific notation"),
        ("1.10105194912310E+17", "written in scientific notation"),
        ("110105194912310000", "check digit is 0 but should be 3; its last three digits are 000"),
    ],
)
def test_an_id_a_spreadsheet_stored_as_a_number_says_how_to_get_it_back(
    delivered: str, says: str
) -> None:
    # the digits are lost: the row is quarantined, and the reason says what the officer can
    # do (before: "not an 18-character ID number (11 characters)", "check digit is 0 …")
    r = gate(_raw([{**RESIDENT, "citizen_id": delivered}], residents()), residents())
    checked = r.quarantine.filter(pl.col("check_name") == "citizen_id_checksum")
    (reason,) = checked["reason"].to_list()
    assert says in reason and "for the column as text" in reason
    assert delivered not in reason
