"""Consent categories: one closed list (catalog/consent.py), a code on every dataset and mart,
anything else refused with the file, dataset and field named; the 不予共享 dataset."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from catalog.consent import LABELS_ZH, PERSONAL_CATEGORIES, ConsentCategory
from catalog.errors import CatalogError
from catalog.loader import load_catalogue
from catalog.marts import MARTS_DIR, Mart, load_mart, load_marts
from catalog.model import ShareType
from catalog.settings import CATALOG_DIR

MZJ = yaml.safe_load((CATALOG_DIR / "mzj.yaml").read_text(encoding="utf-8"))
ELDERLY_CARE = yaml.safe_load((MARTS_DIR / "elderly_care.yaml").read_text(encoding="utf-8"))


def test_the_closed_list_has_a_chinese_label_for_every_code() -> None:
    assert set(LABELS_ZH) == set(ConsentCategory)
    assert all(label and not label.isascii() for label in LABELS_ZH.values())
    assert len(set(LABELS_ZH.values())) == len(LABELS_ZH)
    assert ConsentCategory.none not in PERSONAL_CATEGORIES
    assert set(PERSONAL_CATEGORIES) == set(ConsentCategory) - {ConsentCategory.none}


def test_every_dataset_and_mart_carries_a_code_of_the_list() -> None:
    datasets = load_catalogue().datasets()
    assert all(isinstance(ds.consent_category, ConsentCategory) for _, ds in datasets)
    marts = load_marts()
    assert all(isinstance(m.consent_category, ConsentCategory) for m in marts.values())
    # a mart's former free-text category is its lawful basis, in words
    assert all(m.lawful_basis and not m.lawful_basis.isascii() for m in marts.values())


def test_the_health_datasets_are_health_and_a_person_mart_names_its_subject() -> None:
    cat = load_catalogue()
    health = {f"{d.code}.{ds.code}" for d, ds in cat.datasets() if ds.consent_category == "health"}
    assert health == {
        "wjw.elderly_health_checks", "wjw.chronic_followups", "wjw.family_doctor_contracts",
        "wjw.health_events",
    }  # fmt: skip
    for mart in load_marts().values():
        if mart.subject_column is not None:
            assert mart.consent_category.personal, mart.name
            assert mart.column(mart.subject_column).masking.value == "pseudonymise"


def _write(directory: Path, doc: dict) -> None:
    (directory / f"{doc['code']}.yaml").write_text(
        yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8"
    )


@pytest.mark.parametrize("value", ["wellbeing", "健康", "", None])
def test_a_dataset_outside_the_list_is_refused_naming_it(tmp_path: Path, value) -> None:
    doc = copy.deepcopy(MZJ)
    doc["datasets"][1]["consent_category"] = value
    _write(tmp_path, doc)
    with pytest.raises(CatalogError) as err:
        load_catalogue(tmp_path)
    text = str(err.value)
    assert "mzj.yaml" in text and doc["datasets"][1]["code"] in text
    assert "consent_category" in text


def test_a_dataset_without_a_code_is_refused(tmp_path: Path) -> None:
    doc = copy.deepcopy(MZJ)
    del doc["datasets"][0]["consent_category"]
    _write(tmp_path, doc)
    with pytest.raises(CatalogError, match="consent_category"):
        load_catalogue(tmp_path)


def _mart(tmp_path: Path, change) -> tuple[Mart | None, str]:
    doc = copy.deepcopy(ELDERLY_CARE)
    change(doc)
    path = tmp_path / "elderly_care.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    mart, problems = load_mart(path)
    return mart, "; ".join(str(p) for p in problems)


def test_a_mart_with_free_text_for_a_code_is_refused(tmp_path: Path) -> None:
    _, problems = _mart(tmp_path, lambda d: d.update(consent_category=d["lawful_basis"]))
    assert "consent_category" in problems


def test_a_mart_with_a_resident_a_row_cannot_be_none(tmp_path: Path) -> None:
    mart, problems = _mart(tmp_path, lambda d: d.update(consent_category="none"))
    assert mart is None and "person_id" in problems and "consent_category" in problems


def test_a_subject_column_is_a_pseudonym_and_one_at_most(tmp_path: Path) -> None:
    def clear(d):
        d["columns"][0]["masking"] = "mask_name"

    assert "pseudonymise" in _mart(tmp_path, clear)[1]

    def two(d):
        d["columns"][4]["subject"] = True  # house_id, also a pseudonym

    assert "one subject column at most" in _mart(tmp_path, two)[1]
    mart, problems = _mart(tmp_path, lambda d: None)
    assert problems == "" and mart is not None and mart.subject_column == "person_id"


def test_a_not_shareable_dataset_is_catalogued_with_its_legal_basis() -> None:
    refused = [
        (d.code, ds)
        for d, ds in load_catalogue().datasets()
        if ds.share_type is ShareType.not_shareable
    ]
    assert [(dept, ds.code) for dept, ds in refused] == [("mzj", "adoption_registrations")]
    ds = refused[0][1]
    assert "民法典" in ds.legal_basis and "第一千一百一十条" in ds.legal_basis
    assert ds.consent_category is ConsentCategory.family


def test_a_mart_named_otherwise_than_its_file_is_refused(tmp_path: Path) -> None:
    # the same rule as a department's code (catalog.yamlfile.load_entry): the name is the file's
    mart, problems = _mart(tmp_path, lambda d: d.update(name="elderly_care_copy"))
    assert mart is not None and mart.name == "elderly_care_copy"
    assert "mart name 'elderly_care_copy' does not match the file name 'elderly_care.yaml'" in (
        problems
    )
    assert "elderly_care.yaml" in problems  # the problem names the file
    with pytest.raises(CatalogError, match="does not match the file name"):
        load_marts(tmp_path)
