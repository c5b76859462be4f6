"""The onboarding guide (catalog/README.md) stays true to the catalogue and to the test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from catalog.model import (
    ConnectorKind,
    FieldSpec,
    FieldType,
    MaskingRule,
    MonthDates,
    PiiKind,
    SlashDates,
    Standardising,
    UpdateCycle,
    UpdateMode,
)
from quality.gate_checks import NAMED_CHECKS

HERE = Path(__file__).resolve().parent
GUIDE = HERE.parents[1] / "catalog" / "README.md"


def _guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def test_worked_example_is_the_file_the_test_onboards() -> None:
    section = _guide().split("## The worked example", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    assert block.group(1) == (HERE / "cl.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "names",
    [
        [k.value for k in PiiKind],
        [r.value for r in MaskingRule],
        [k.value for k in ConnectorKind],
        [t.value for t in FieldType],
        [c.value for c in UpdateCycle],
        [m.value for m in UpdateMode],
        sorted(NAMED_CHECKS),
        [*Standardising.model_fields, "unit"],
        [v.value for v in (*SlashDates, *MonthDates)],
    ],
    ids=[
        "pii",
        "masking",
        "delivery",
        "types",
        "cycles",
        "update_modes",
        "checks",
        "habits",
        "date_habits",
    ],
)
def test_guide_names_every_choice_a_data_officer_has(names: list[str]) -> None:
    guide = _guide()
    missing = [n for n in names if f"`{n}`" not in guide]
    assert missing == []


def test_the_guides_standardising_block_is_valid() -> None:
    section = _guide().split("**Export habits**", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    rules = Standardising.model_validate(yaml.safe_load(block.group(1))["standardising"])
    assert rules.slash_dates is SlashDates.month_first
    assert rules.month_dates is MonthDates.quarantine
    assert "待核实" in rules.extra_placeholders and len(rules.unknown_dates) == 2
    assert "unit" in FieldSpec.model_fields


def test_the_guides_paging_example_is_a_valid_delivery() -> None:
    from catalog.model import Delivery

    section = _guide().split("An `http_api` delivery is pulled page by page", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    d = Delivery.model_validate(yaml.safe_load(block.group(1))["delivery"])
    assert d.kind is ConnectorKind.http_api and d.first_page == 0
    assert (d.records_path, d.total_path, d.status_ok) == ("data.list", "data.total", [200])
