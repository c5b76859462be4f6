"""Each kind of defect the departments deliver, and what the row gate makes of it.

For every kind the simulator injects, one real instance from the simulated
street: the repair (staged value equals the truth) or the quarantine reason a
data officer reads.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache

import polars as pl
import pytest
from test_gate_street import street

from quality.gate import GateResult, gate

KIND_DATASET = {
    "id_15_digit": "gaj.registered_residents",
    "bad_check_digit": None,
    "fullwidth_digits": "gaj.registered_residents",
    "lowercase_x": "gaj.registered_residents",
    "date_spelling": "wjw.family_doctor_contracts",
    "excel_serial": None,
    "datetime_spelling": "rx.appeals",
    "phone_format": "gaj.registered_residents",
    "gender_mismatch": None,
    "blank_required": "gaj.registered_residents",
    "whitespace": "gaj.registered_residents",
    "mojibake": None,
    "duplicate_row": None,
    "null_value": "iot.sensor_readings",
    "sentinel_value": "iot.sensor_readings",
    "epoch_millis": "iot.sensor_readings",
}


@cache
def _gated(ref: str) -> GateResult:
    s = street()
    return gate(s.raw[ref], s.dataset(ref))


def instance(kind: str, refs: list[str] | None = None) -> tuple[str, dict, GateResult]:
    """(dataset ref, defect row, gate result) of the first instance of ``kind``."""
    s = street()
    refs = refs or ([KIND_DATASET[kind]] if KIND_DATASET.get(kind) else sorted(s.raw))
    for ref in refs:
        dept, code = ref.split(".")
        defects = pl.read_parquet(s.truth / dept / code / "defects.parquet")
        alone = pl.len().over("_file", "_source_row") == 1  # the row's only defect
        hits = defects.filter((pl.col("kind") == kind) & alone)
        if hits.height:
            return ref, hits.row(0, named=True), _gated(ref)
    raise AssertionError(f"the simulated street has no {kind} defect alone on a row")


def _outcome(ref: str, defect: dict, result: GateResult) -> tuple[dict | None, pl.DataFrame]:
    rows = pl.col("_source_row") == defect["_source_row"]
    staged = result.staged.filter(rows)
    return (staged.row(0, named=True) if staged.height else None), result.quarantine.filter(rows)


def _field(ref: str, source: str) -> str:
    ds = street().dataset(ref)
    return next(f.name for f in ds.fields if f.source_name == source)


def _text(value) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return value.isoformat() if isinstance(value, dt.date) else str(value)


@pytest.mark.parametrize(
    "kind",
    ["id_15_digit", "fullwidth_digits", "lowercase_x", "date_spelling", "excel_serial",
     "datetime_spelling", "phone_format", "whitespace", "epoch_millis"],
)  # fmt: skip
def test_recoverable_kinds_are_repaired_to_the_truth(kind):
    ref, defect, result = instance(kind)
    staged, quarantined = _outcome(ref, defect, result)
    assert quarantined.height == 0, quarantined["reason"].to_list()
    value = staged[_field(ref, defect["field"])]
    truth = defect["truth"]
    if kind == "epoch_millis":  # IoT truth is ISO with +08:00; staged is naive Beijing time
        truth = truth.replace("T", " ").removesuffix("+08:00")
    assert _text(value) == truth


def test_repairs_are_counted_per_field_and_kind():
    repairs = _gated("gaj.registered_residents").repairs
    kinds = {(r["field"], r["kind"]) for r in repairs.iter_rows(named=True)}
    assert ("citizen_id", "id_15_to_18") in kinds
    assert ("mobile", "phone_format") in kinds
    assert repairs["count"].min() > 0


def _reason(kind: str, refs: list[str] | None = None) -> tuple[str, dict, pl.DataFrame]:
    ref, defect, result = instance(kind, refs)
    staged, quarantined = _outcome(ref, defect, result)
    assert staged is None, f"{kind} row was staged"
    return ref, defect, quarantined


def test_bad_check_digit_names_the_right_digit_not_the_id():
    _, defect, q = _reason("bad_check_digit")
    row = q.filter(pl.col("check_name") == "citizen_id_checksum").row(0, named=True)
    assert re.search(r"check digit is [\dX] but should be [\dX]$", row["reason"])
    assert defect["delivered"] not in row["reason"]
    assert row["value"] == defect["delivered"]  # plaintext: the caller masks it


def test_gender_mismatch_says_what_the_id_says():
    adults = ["mzj.elderly_alone", "mzj.old_age_allowance", "wjw.elderly_health_checks",
              "wjw.family_doctor_contracts", "rsj.employment_registration"]  # fmt: skip
    _, _, q = _reason("gender_mismatch", adults)  # gender is L2 there
    reason = q.filter(pl.col("check_name") == "gender_matches_citizen_id")["reason"][0]
    assert re.search(r"is [男女] but the .+ is a (man|woman)'s", reason)


def test_gender_mismatch_of_a_minor_shows_no_value():
    _, _, q = _reason("gender_mismatch", ["jyj.school_enrolment"])  # a minor's: L4
    reason = q.filter(pl.col("check_name") == "gender_matches_citizen_id")["reason"][0]
    assert reason == "性别 disagrees with the sequence digit of the 身份证号"


def test_blank_required_cell():
    ref, defect, q = _reason("blank_required")
    row = q.filter(pl.col("check_name") == "required").row(0, named=True)
    assert row["field"] == _field(ref, defect["field"])
    assert row["reason"].endswith("is required but blank")


def test_mojibake_is_quarantined_for_redelivery():
    _, defect, q = _reason("mojibake")
    row = q.filter(pl.col("check_name") == "mojibake").row(0, named=True)
    assert "garbled" in row["reason"] and row["value"] == defect["delivered"]


def test_duplicate_row_names_the_first_copy():
    _, defect, result = instance("duplicate_row")
    rows = result.skipped.filter(pl.col("_source_row") == defect["_source_row"])
    assert rows["check_name"].to_list() == ["duplicate"]  # skipped, not quarantined
    reason = rows["reason"][0]
    assert reason == f"exact copy of source row {defect['_source_row'] - 1}"


def test_null_reading_is_required():
    _, _, q = _reason("null_value")
    assert q["check_name"].to_list() == ["required"]
    assert q["reason"][0].endswith("is required but blank")


def test_sentinel_reading_is_out_of_range():
    _, _, q = _reason("sentinel_value")
    assert q.filter(pl.col("check_name") == "range")["reason"][0].endswith("is outside -60–1000")


def _wrong_value(checked_against_id: bool) -> tuple[str, dict, GateResult]:
    """The first wrong_value alone on its row in a field the gate checks against the
    citizen ID (a birth date), or in one it cannot check (a mobile)."""
    s = street()
    for ref in sorted(s.raw):
        dept, code = ref.split(".")
        checked = {
            f.source_name
            for f in s.dataset(ref).fields
            if "birth_date_matches_citizen_id" in f.checks
        }
        defects = pl.read_parquet(s.truth / dept / code / "defects.parquet")
        alone = pl.len().over("_file", "_source_row") == 1
        hits = defects.filter(
            (pl.col("kind") == "wrong_value")
            & alone
            & (pl.col("field").is_in(checked) == checked_against_id)
        )
        if hits.height:
            return ref, hits.row(0, named=True), _gated(ref)
    raise AssertionError(f"the simulated street has no such wrong_value ({checked_against_id})")


def test_wrong_value_is_left_for_the_scores():
    ref, defect, result = _wrong_value(checked_against_id=False)
    staged, q = _outcome(ref, defect, result)
    assert q.height == 0, q["reason"].to_list()
    assert staged is not None, "the row was neither staged nor quarantined"
    assert _text(staged[_field(ref, defect["field"])]) == defect["delivered"]


def test_wrong_birth_date_is_quarantined_as_contradicting_the_id():
    ref, defect, result = _wrong_value(checked_against_id=True)
    staged, q = _outcome(ref, defect, result)
    assert staged is None, "a birth date the citizen ID contradicts was staged"
    assert q["check_name"].to_list() == ["birth_date_matches_citizen_id"]
    assert q["field"].to_list() == [_field(ref, defect["field"])]
