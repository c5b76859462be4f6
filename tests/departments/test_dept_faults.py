"""Broken deliveries made on demand break the way real ones do."""

from __future__ import annotations

import codecs
import csv
import io
import json

import pytest
from openpyxl import load_workbook

from departments import faults
from tests.departments.street import spec_of


def first_file(home, manifest, dept: str, code: str):
    return home / "inbox" / dept / manifest["departments"][dept][code]["files"][0]


def test_truncated_csv_ends_mid_row(home, manifest, tmp_path):
    src = first_file(home, manifest, "wjw", "family_doctor_contracts")
    broken = faults.truncate_csv(src, tmp_path / src.name)
    data = broken.read_bytes()
    assert not data.endswith(b"\n") and len(data) < src.stat().st_size
    rows = list(csv.reader(io.StringIO(data.decode("gbk"), newline="")))
    assert len(rows[-1]) < len(rows[0])
    assert src.read_bytes().endswith(b"\r\n")  # the original is untouched


def test_wrong_encoding_fails_to_decode_as_declared(home, manifest, tmp_path):
    src = first_file(home, manifest, "wjw", "elderly_health_checks")
    broken = faults.wrong_encoding(src, tmp_path / src.name, declared="gbk")
    assert broken.read_bytes().decode("utf-16-le") == src.read_bytes().decode("gbk")
    assert not broken.read_bytes().startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    for other in ("gbk", "gb18030", "utf-8"):
        with pytest.raises(UnicodeDecodeError):
            broken.read_bytes().decode(other)


def test_excel_missing_its_sheet(home, manifest, tmp_path):
    src = first_file(home, manifest, "mzj", "elderly_alone")
    broken = faults.drop_sheet(src, spec_of("mzj", "elderly_alone").sheet, tmp_path / src.name)
    assert "独居老人" not in load_workbook(broken, read_only=True).sheetnames


def test_jsonl_with_a_broken_line(home, manifest, tmp_path):
    src = first_file(home, manifest, "yjj", "hazard_points")
    broken = faults.break_jsonl_line(src, 3, tmp_path / src.name)
    lines = broken.read_text(encoding="utf-8").splitlines()
    json.loads(lines[1])
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[2])


def test_truncated_file(home, manifest, tmp_path):
    src = first_file(home, manifest, "scjg", "merchants")
    broken = faults.truncate_file(src, tmp_path / src.name)
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.read_text(encoding="utf-8"))


def test_default_deliveries_are_whole(home, manifest, delivered):
    for dept, code in (("scjg", "merchants"), ("scjg", "service_points")):
        json.loads(first_file(home, manifest, dept, code).read_text(encoding="utf-8"))
    for dept, code in (("wjw", "chronic_followups"), ("cgj", "violation_cases")):
        assert first_file(home, manifest, dept, code).read_bytes().endswith(b"\r\n")
