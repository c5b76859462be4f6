""" "Sensitive" is decided in one place: ``Level.sensitive`` (L3 and L4)."""

from __future__ import annotations

import pytest

from catalog.loader import get_catalogue
from catalog.model import SENSITIVE_PII, FieldSpec, Level, PiiKind


def test_sensitive_is_l3_and_l4_only():
    assert [lv.value for lv in Level if lv.sensitive] == ["L3", "L4"]


def test_the_shipped_catalogue_keeps_every_sensitive_kind_sensitive():
    fields = [f for _, ds in get_catalogue().datasets() for f in ds.fields]
    assert any(f.level.sensitive for f in fields) and any(not f.level.sensitive for f in fields)
    assert all(f.level.sensitive for f in fields if f.pii in SENSITIVE_PII)


@pytest.mark.parametrize("kind", sorted(SENSITIVE_PII))
def test_a_sensitive_kind_below_l3_is_refused(kind: PiiKind):
    spec = {"name": "x", "label_zh": "某号", "type": "string", "pii": kind.value}
    with pytest.raises(ValueError, match=r"sensitive personal information .*not L2"):
        FieldSpec(**spec, level="L2", masking="encrypt")
    assert FieldSpec(**spec, level="L3", masking="encrypt").level.sensitive
