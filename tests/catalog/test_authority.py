"""The authority for a concept, the person key and the registers come from the catalogue alone.

The shipped catalogue gives the expected answers; copies of it where public security is
renamed, or declares no authority, show that nothing is tied to a department code.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from catalog.authority import (
    authoritative_datasets,
    authorities,
    authority,
    fields_of_concept,
    key_authorities,
    person_key,
    person_registers,
)
from catalog.loader import load_catalogue
from catalog.model import Catalogue, Entity
from catalog.settings import CATALOG_DIR


def _copy(tmp: Path) -> Path:
    out = tmp / "catalogue"
    shutil.copytree(CATALOG_DIR, out)
    return out


def _renamed(tmp: Path, old: str, new: str) -> Catalogue:
    """The shipped catalogue with department ``old`` renamed ``new`` (file and code)."""
    d = _copy(tmp)
    text = (d / f"{old}.yaml").read_text(encoding="utf-8")
    (d / f"{old}.yaml").unlink()
    text = re.sub(rf"(?m)^code: {old}$", f"code: {new}", text)
    (d / f"{new}.yaml").write_text(text, encoding="utf-8")
    return load_catalogue(d)


def _without_authority(tmp: Path, dept: str) -> Catalogue:
    """The shipped catalogue where ``dept`` marks no field authoritative."""
    d = _copy(tmp)
    path = d / f"{dept}.yaml"
    text, n = re.subn(r"authoritative: true,\s*", "", path.read_text(encoding="utf-8"))
    assert n > 0
    path.write_text(text, encoding="utf-8")
    return load_catalogue(d)


@pytest.fixture(scope="module")
def shipped() -> Catalogue:
    return load_catalogue(CATALOG_DIR)


def test_every_authoritative_field_is_an_authority(shipped: Catalogue) -> None:
    marked = {
        f.concept: (d.code, ds.code, f.name)
        for d, ds in shipped.datasets()
        for f in ds.fields
        if f.authoritative
    }
    found = authorities(shipped)
    assert set(found) == set(marked) and found
    for concept, a in found.items():
        assert (a.dept, a.dataset.code, a.field) == marked[concept]
        assert a.dataset.field(a.field).authoritative and a.concept == concept
    assert authority(shipped, "person.no_such_thing") is None


def test_shipped_answers(shipped: Catalogue) -> None:
    assert person_key(shipped) == "person.citizen_id"
    a = authority(shipped, "person.birth_date")
    assert a is not None and a.ref == "gaj.registered_residents" and a.field == "birth_date"
    keys = key_authorities(shipped)
    assert keys["person.citizen_id"].ref == "gaj.registered_residents"
    assert keys["merchant.credit_code"].ref == "scjg.merchants"
    assert all(a.keyed for a in keys.values())
    assert "person.name" not in keys  # authoritative, but no dataset is keyed by it
    regs = person_registers(shipped)
    assert [(r.ref, r.field) for r in regs] == [
        ("gaj.registered_residents", "citizen_id"),
        ("gaj.residence_permits", "citizen_id"),
    ]
    assert ("gaj", "registered_residents") in authoritative_datasets(shipped)
    assert ("cgj", "violation_cases") not in authoritative_datasets(shipped)


def test_registers_are_the_person_key_authority_datasets(shipped: Catalogue) -> None:
    """Derived, not listed: every dataset of the authority's department carrying the key."""
    key = person_key(shipped)
    owner = authorities(shipped)[key].dept
    expected = [
        f"{d.code}.{ds.code}"
        for d, ds in shipped.datasets()
        if d.code == owner and len(fields_of_concept(ds, key)) == 1
    ]
    assert [r.ref for r in person_registers(shipped)] == expected
    auth = key_authorities(shipped)[key]
    assert auth.dataset.entity is Entity.person and auth.entity == "person"


def test_a_renamed_department_keeps_its_authority(tmp_path: Path) -> None:
    cat = _renamed(tmp_path, "gaj", "gongan")
    assert "gaj" not in cat.departments
    assert person_key(cat) == "person.citizen_id"
    assert authority(cat, "person.name").ref == "gongan.registered_residents"
    assert [r.ref for r in person_registers(cat)] == [
        "gongan.registered_residents",
        "gongan.residence_permits",
    ]
    assert ("gongan", "registered_residents") in authoritative_datasets(cat)


def test_no_authority_declared(tmp_path: Path) -> None:
    cat = _without_authority(tmp_path, "gaj")
    assert person_key(cat) is None
    assert person_registers(cat) == []
    assert authority(cat, "person.citizen_id") is None
    assert not any(a.dept == "gaj" for a in authorities(cat).values())  # others keep theirs
    # the other entities keep theirs
    assert key_authorities(cat)["merchant.credit_code"].ref == "scjg.merchants"
