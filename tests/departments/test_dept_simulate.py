"""The simulated deliveries: counts, defects and truth agree with the files; data is consistent."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from openpyxl import load_workbook
from stdnum.cn import ric, uscc

from departments import ids
from departments.simulate import sim_dir_for, simulate
from tests.departments.street import RESIDENTS, SEED, START, as_text, spec_of


def datasets(manifest: dict) -> list[tuple[str, str]]:
    return [(d, c) for d, ds in manifest["departments"].items() for c in ds]


def truth(home: Path, dept: str, code: str, what: str = "clean") -> pl.DataFrame:
    return pl.read_parquet(sim_dir_for(home) / "truth" / dept / code / f"{what}.parquet")


def test_manifest_lists_every_dataset(manifest):
    assert manifest["seed"] == SEED and manifest["residents"] == RESIDENTS
    assert len(datasets(manifest)) == 31  # 27 + the four need outcomes (issue 16)
    assert len(manifest["departments"]["iot"]["sensor_readings"]["files"]) == 2


def test_manifest_counts_equal_rows_in_files(home, manifest, delivered):
    for dept, code in datasets(manifest):
        entry = manifest["departments"][dept][code]
        rows = delivered.rows(dept, code)
        for file in entry["files"]:
            in_file = sum(1 for f, _ in rows if f == file)
            assert entry["rows"][file] == in_file, f"{dept}.{code} {file}"
        clean = truth(home, dept, code)
        assert clean.height == sum(entry["records"].values()), f"{dept}.{code}"
        defects = truth(home, dept, code, "defects")
        no_record = defects.filter(pl.col("kind").is_in(["stray_header", "ledger_row"])).height
        assert sum(entry["rows"].values()) == clean.height + no_record


def test_every_delivered_cell_is_its_truth_or_a_recorded_defect(home, manifest, delivered):
    for dept, code in datasets(manifest):
        rows = delivered.rows(dept, code)
        defects = truth(home, dept, code, "defects")
        by_cell = {(d["_file"], d["_source_row"], d["field"]): d for d in defects.to_dicts()}
        row_kinds = {(d["_file"], d["_source_row"]): d["kind"] for d in defects.to_dicts()
                     if d["field"] == "*" and d["kind"] != "duplicate_row"}  # fmt: skip
        for rec in truth(home, dept, code).to_dicts():
            at = (rec["_file"], rec["_source_row"])
            got = rows[at]
            if row_kinds.get(at) == "broken_line":
                assert isinstance(got, str)
                with pytest.raises(json.JSONDecodeError):
                    json.loads(got)
                continue
            assert isinstance(got, dict), f"{dept}.{code} {at}"
            for col, value in got.items():
                d = by_cell.get((*at, col))
                want = d["delivered"] if d else as_text(rec[col])
                assert value == want, f"{dept}.{code} {at} {col}: {value!r} != {want!r}"
        for (file, row), kind in row_kinds.items():
            if kind == "stray_header":
                assert list(rows[(file, row)].values()) == list(rows[(file, row)].keys())


def test_defects_are_classified(home, manifest):
    seen = set()
    for dept, code in datasets(manifest):
        defects = truth(home, dept, code, "defects")
        seen |= set(defects["kind"].unique())
        for d in defects.filter(pl.col("kind") == "id_15_digit").to_dicts():
            assert ids.upgrade_15(d["delivered"]) == d["truth"] and d["recoverable"]
        for d in defects.filter(pl.col("kind") == "bad_check_digit").to_dicts():
            assert not ric.is_valid(d["delivered"]) and not d["recoverable"]
        for d in defects.filter(pl.col("kind") == "fullwidth_digits").to_dicts():
            assert d["delivered"] != d["truth"] and ric.is_valid(
                d["delivered"].translate(str.maketrans("０１２３４５６７８９Ｘ", "0123456789X"))
            )
    for kind in ("id_15_digit", "bad_check_digit", "date_spelling", "phone_format",
                 "duplicate_row", "stray_header", "excel_serial", "blank_required",
                 "wrong_value", "gender_mismatch", "whitespace", "lowercase_x"):  # fmt: skip
        assert kind in seen, kind


def test_person_datasets_are_at_least_five_percent_dirty(home, manifest):
    for dept, code in datasets(manifest):
        clean = truth(home, dept, code)
        if not any(c in clean.columns for c in ("gmsfhm", "身份证号码", "身份证号", "citizen_id")):
            continue
        if clean.height < 200:
            continue
        dirty = truth(home, dept, code, "defects").select("_file", "_source_row").unique().height
        assert dirty / clean.height >= 0.05, f"{dept}.{code}: {dirty}/{clean.height}"


def test_clean_ids_and_credit_codes_are_valid(home):
    registry = pl.concat([truth(home, "gaj", "registered_residents")["gmsfhm"],
                          truth(home, "gaj", "residence_permits")["gmsfhm"]])  # fmt: skip
    assert registry.n_unique() == RESIDENTS
    assert all(ric.is_valid(c) for c in registry)
    hukou = truth(home, "gaj", "registered_residents")
    for rec in hukou.head(300).to_dicts():
        assert ids.id_gender(rec["gmsfhm"]) == rec["xb"]
        assert ids.id_birth(rec["gmsfhm"]).isoformat() == rec["csrq"]
        assert ric.get_birth_date(rec["gmsfhm"]) == dt.date.fromisoformat(rec["csrq"])
    regions = {c[:6] for c in registry}
    assert "110103" in regions  # a retired region code still on old IDs
    merchants = truth(home, "scjg", "merchants")["credit_code"]
    assert all(uscc.is_valid(c) for c in merchants)


def test_people_are_the_same_across_departments(home):
    registry = set(truth(home, "gaj", "registered_residents")["gmsfhm"]) | set(
        truth(home, "gaj", "residence_permits")["gmsfhm"]
    )
    hukou = set(truth(home, "gaj", "registered_residents")["gmsfhm"])
    uses = {
        ("wjw", "elderly_health_checks"): "身份证号", ("wjw", "chronic_followups"): "身份证号",
        ("wjw", "family_doctor_contracts"): "身份证号", ("mzj", "elderly_alone"): "身份证号码",
        ("mzj", "old_age_allowance"): "身份证号码", ("mzj", "minimum_living"): "户主身份证号码",
        ("mzj", "disability_allowance"): "身份证号码", ("rsj", "social_insurance"): "citizen_id",
        ("rsj", "employment_registration"): "citizen_id", ("jyj", "school_enrolment"): "身份证号",
        ("cgj", "violation_cases"): "当事人身份证号", ("zjj", "housing_units"): "owner_citizen_id",
        ("iot", "door_access_events"): "citizen_id",
    }  # fmt: skip
    for (dept, code), col in uses.items():
        used = set(truth(home, dept, code)[col].drop_nulls())
        assert used and used <= registry, f"{dept}.{code}"
    assert set(truth(home, "mzj", "old_age_allowance")["身份证号码"]) <= hukou
    merchants = set(truth(home, "scjg", "merchants")["credit_code"])
    assert set(truth(home, "rsj", "social_insurance")["employer_credit_code"]) <= merchants
    units = set(truth(home, "zjj", "housing_units")["unit_id"])
    assert set(truth(home, "zjj", "housing_units")["building_id"]) <= set(
        truth(home, "zjj", "buildings")["building_id"]
    )
    assert units
    people = truth(home, "gaj", "registered_residents").select("gmsfhm", "xm", "lxdh")
    checks = truth(home, "wjw", "family_doctor_contracts").join(
        people, left_on="身份证号", right_on="gmsfhm"
    )
    assert (checks["姓名"] == checks["xm"]).all()


def test_free_text_pii_is_recorded(home):
    pii = truth(home, "rx", "appeals", "text_pii")
    appeals = truth(home, "rx", "appeals")
    assert set(pii["kind"]) >= {"person_name", "mobile", "address"}
    content = dict(zip(appeals["_source_row"], appeals["content"], strict=True))
    for rec in pii.to_dicts():
        assert rec["value"] in content[rec["_source_row"]]


def test_encodings_and_layouts(home, manifest):
    for code in ("elderly_health_checks", "chronic_followups", "family_doctor_contracts"):
        data = (
            home / "inbox" / "wjw" / manifest["departments"]["wjw"][code]["files"][0]
        ).read_bytes()
        data.decode("gbk")
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
    cgj = home / "inbox" / "cgj" / manifest["departments"]["cgj"]["violation_cases"]["files"][0]
    assert cgj.read_bytes().startswith(b"\xef\xbb\xbf")
    wg = home / "inbox" / "wg" / manifest["departments"]["wg"]["grid_cells"]["files"][0]
    assert not wg.read_bytes().startswith(b"\xef\xbb\xbf")
    for dept, code in (("mzj", "elderly_alone"), ("jyj", "school_enrolment")):
        spec = spec_of(dept, code)
        path = home / "inbox" / dept / manifest["departments"][dept][code]["files"][0]
        assert path.match(f"{code}_*.xlsx")
        rows = list(load_workbook(path, read_only=True)[spec.sheet].iter_rows(values_only=True))
        assert rows[0][0].startswith("建外街道") and "2026年11月" in rows[0][0]
        assert list(rows[1]) == spec.sources
    db = sqlite3.connect(sim_dir_for(home) / "systems" / "gaj" / "registry.sqlite")
    types = {r[2] for t in ("hukou", "juzhuzheng") for r in db.execute(f"PRAGMA table_info({t})")}
    assert types == {"TEXT"}
    cols = [r[1] for r in db.execute("PRAGMA table_info(hukou)")]
    assert cols == spec_of("gaj", "registered_residents").sources
    db.close()


def _digest(home: Path) -> dict[str, str]:
    """Every file the simulator wrote (the inbox, its own folder) by its SHA-256, the
    manifest's whole text included: it names no path of where the street was simulated."""
    out = {}
    for root in (home, sim_dir_for(home)):
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != "api_token":
                out[f"{root.name[len(home.name) :]}/{p.relative_to(root)}"] = hashlib.sha256(
                    p.read_bytes()
                ).hexdigest()
    return out


def test_same_seed_gives_same_bytes(home, tmp_path):
    again = tmp_path / "again"
    simulate(again, residents=RESIDENTS, seed=SEED, days=2, start=START)
    assert _digest(again) == _digest(home)
    other = tmp_path / "other"
    simulate(other, residents=RESIDENTS, seed=SEED + 1, days=2, start=START)
    assert _digest(other) != _digest(home)


def test_api_token_is_private(home):
    token = sim_dir_for(home) / "api_token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert len(token.read_text()) >= 40
