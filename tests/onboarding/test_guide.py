"""The onboarding guide (catalog/README.md) stays true to the catalogue and to the test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from catalog.model import (
    ConnectorKind,
    FieldType,
    MaskingRule,
    PiiKind,
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
    ],
    ids=["pii", "masking", "delivery", "types", "cycles", "update_modes", "checks"],
)
def test_guide_names_every_choice_a_data_officer_has(names: list[str]) -> None:
    guide = _guide()
    missing = [n for n in names if f"`{n}`" not in guide]
    assert missing == []
