"""The catalogue loader accepts the shipped catalogue and names every problem in a bad one."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from stdnum.cn import uscc

from catalog.errors import CatalogError
from catalog.loader import load_catalogue
from catalog.model import Level, MaskingRule, PiiKind, ShareType
from catalog.settings import CATALOG_DIR

GAJ = yaml.safe_load((CATALOG_DIR / "gaj.yaml").read_text(encoding="utf-8"))


def test_shipped_catalogue_is_valid_and_complete() -> None:
    cat = load_catalogue()
    assert set(cat.departments) == {p.stem for p in CATALOG_DIR.glob("*.yaml")}
    datasets = cat.datasets()
    shipped = [yaml.safe_load(p.read_text("utf-8")) for p in CATALOG_DIR.glob("*.yaml")]
    assert len(datasets) == sum(len(doc["datasets"]) for doc in shipped)
    assert {ds.entity.value for _, ds in datasets} == {"person", "house", "event", "thing"}
    codes = [ds.resource_code for _, ds in datasets]
    assert len(codes) == len(set(codes))


def test_shipped_catalogue_protects_sensitive_fields() -> None:
    for _, ds in load_catalogue().datasets():
        for f in ds.fields:
            if f.level.rank >= 3:
                assert f.masking is not MaskingRule.none, (ds.code, f.name)
        if ds.share_type is ShareType.unconditional:
            assert all(f.level is not Level.L4 for f in ds.fields), ds.code


def test_identity_document_numbers_are_sensitive() -> None:
    cat = load_catalogue()
    documents = {
        f"{d.code}.{ds.code}.{f.name}": (f.level.value, f.masking.value)
        for d, ds in cat.datasets()
        for f in ds.fields
        if f.pii is PiiKind.id_document
    }
    assert documents == {
        "gaj.residence_permits.permit_no": ("L3", "mask_document"),  # 居住证编号
        "mzj.minimum_living.certificate_no": ("L3", "mask_document"),  # 低保证号
        "mzj.disability_allowance.disability_cert_no": ("L4", "pseudonymise"),  # 残疾人证号
    }


def test_lookup_by_code_and_resource_code() -> None:
    cat = load_catalogue()
    d, ds = cat.dataset("gaj.registered_residents")
    assert (d.code, ds.resource_code) == ("gaj", "JD-GAJ-001")
    assert cat.dataset("JD-GAJ-001")[1] is ds
    assert cat.dataset("raw/gaj/registered_residents".removeprefix("raw/"))[1] is ds
    with pytest.raises(KeyError):
        cat.dataset("gaj.nothing")


Mutation = Callable[[dict[str, Any]], None]


def _field(doc: dict[str, Any], name: str, ds: int = 0) -> dict[str, Any]:
    return next(f for f in doc["datasets"][ds]["fields"] if f["name"] == name)


BROKEN: dict[str, tuple[Mutation, str, str | None, str]] = {
    # case: (mutation, dataset named in the error, field named, text in the message)
    "unknown pii kind": (
        lambda d: _field(d, "mobile").update(pii="phone_number"),
        "registered_residents",
        "mobile",
        "pii",
    ),
    "missing level": (
        lambda d: _field(d, "name").pop("level"),
        "registered_residents",
        "name",
        "level",
    ),
    "L4 field in an unconditional dataset": (
        lambda d: d["datasets"][0].update(share_type="unconditional"),
        "registered_residents",
        None,
        "L4 field(s) citizen_id",
    ),
    "pattern that does not compile": (
        lambda d: _field(d, "community_code").update(pattern="^\\d{12$("),
        "registered_residents",
        "community_code",
        "does not compile",
    ),
    "sensitive PII below L3": (
        lambda d: _field(d, "citizen_id").update(level="L2"),
        "registered_residents",
        "citizen_id",
        "PIPL",
    ),
    "identity document below L3": (
        lambda d: _field(d, "permit_no", ds=1).update(level="L2"),
        "residence_permits",
        "permit_no",
        "PII kind id_document is an identity-document number, sensitive personal information "
        "(GB/T 35273-2020 Annex B): level must be L3 or L4, not L2",
    ),
    "L3 field without masking": (
        lambda d: _field(d, "address").update(masking="none"),
        "registered_residents",
        "address",
        "masking rule",
    ),
    "unknown masking rule": (
        lambda d: _field(d, "address").update(masking="blur"),
        "registered_residents",
        "address",
        "masking",
    ),
    "key names an unknown field": (
        lambda d: d["datasets"][1].update(key=["permit_number"]),
        "residence_permits",
        None,
        "permit_number",
    ),
    "duplicate field": (
        lambda d: d["datasets"][0]["fields"].append(copy.deepcopy(_field(d, "gender"))),
        "registered_residents",
        None,
        "duplicate field name",
    ),
    "csv delivery without encoding": (
        lambda d: d["datasets"][0].update(delivery={"kind": "csv", "pattern": "*.csv"}),
        "registered_residents",
        None,
        "encoding",
    ),
    "unknown connector kind": (
        lambda d: d["datasets"][0]["delivery"].update(kind="ftp"),
        "registered_residents",
        None,
        "delivery.kind",
    ),
    "conditional without conditions": (
        lambda d: d["datasets"][1].pop("share_conditions"),
        "residence_permits",
        None,
        "share_conditions",
    ),
    "unknown key in a field": (
        lambda d: _field(d, "gender").update(colour="blue"),
        "registered_residents",
        "gender",
        "colour",
    ),
    "range on a string field": (
        lambda d: _field(d, "household_id").update(range={"min": 1, "max": 9}),
        "registered_residents",
        "household_id",
        "range",
    ),
    "code table that does not exist": (
        lambda d: _field(d, "gender").update(codes="GB/T 2261.9"),
        "registered_residents",
        "gender",
        "no code table 'GB/T 2261.9' (there are: GB/T 2261.1)",
    ),
    "code for a value not allowed": (
        lambda d: _field(d, "gender").update(codes={"1": "男", "3": "其他"}),
        "registered_residents",
        "gender",
        "code '3' stands for '其他', not an allowed value",
    ),
    "an allowed value coded as another": (
        lambda d: _field(d, "gender").update(codes={"男": "女"}),
        "registered_residents",
        "gender",
        "code '男' is itself an allowed value",
    ),
    "codes without allowed values": (
        lambda d: _field(d, "household_id").update(codes={"1": "户"}),
        "registered_residents",
        "household_id",
        "codes stand for allowed values",
    ),
    "missing update mode": (
        lambda d: d["datasets"][1].pop("update_mode"),
        "residence_permits",
        None,
        "update_mode: Field required",
    ),
    "unknown update mode": (
        lambda d: d["datasets"][0].update(update_mode="merge"),
        "registered_residents",
        None,
        "update_mode: Input should be 'snapshot', 'upsert' or 'append'",
    ),
    "cursor naming an unknown field": (
        lambda d: d["datasets"][0].update(update_cursor="gxsj"),
        "registered_residents",
        None,
        "update_cursor: 'gxsj' is not a field of the dataset",
    ),
    "cursor on a string field": (
        lambda d: d["datasets"][0].update(update_cursor="household_id"),
        "registered_residents",
        None,
        "update_cursor: 'household_id' is a string field; a cursor must be a datetime, date",
    ),
    "cursor on a sensitive field": (
        lambda d: d["datasets"][0].update(update_cursor="birth_date"),
        "registered_residents",
        None,
        "update_cursor: 'birth_date' is L3: versions are compared in staged without decrypting",
    ),
    "cursor in the key": (
        lambda d: d["datasets"][1].update(key=["permit_no", "updated_at"]),
        "residence_permits",
        None,
        "update_cursor: 'updated_at' is part of the key",
    ),
    "cursor outside upsert": (
        lambda d: d["datasets"][0].update(update_mode="snapshot"),
        "registered_residents",
        None,
        "update_cursor: 'updated_at': a cursor orders versions of a record, so it applies to "
        "update_mode upsert, not snapshot",
    ),
}


def test_every_dataset_says_how_deliveries_meet_staged() -> None:
    datasets = load_catalogue().datasets()
    modes = {f"{d.code}.{ds.code}": ds.update_mode.value for d, ds in datasets}
    assert len(modes) == len(datasets)  # dept.dataset names each dataset once
    assert modes["cgj.violation_cases"] == "upsert"  # the re-delivered case ids
    assert {m for k, m in modes.items() if k.startswith("iot.") and k != "iot.devices"} == {
        "append"
    }
    for _, ds in datasets:  # a cursor exactly where a department sends an update time
        if ds.delivery.cursor_field or ds.delivery.cursor_column:
            assert ds.update_cursor == "updated_at", ds.code


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_catalogue_names_file_dataset_and_field(case: str, tmp_path: Path) -> None:
    mutate, dataset, field, text = BROKEN[case]
    doc = copy.deepcopy(GAJ)
    mutate(doc)
    path = tmp_path / "gaj.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalogue(tmp_path)
    problems = info.value.problems
    assert problems, case
    p = problems[0]
    assert p.file == str(path)
    assert p.dataset == dataset
    assert p.field == field
    assert text in str(p), str(p)
    assert str(path) in str(info.value)


def test_duplicate_resource_code_across_files(tmp_path: Path) -> None:
    other = copy.deepcopy(GAJ)
    other["code"] = "mzj"
    other["datasets"] = [other["datasets"][1]]
    other["datasets"][0]["code"] = "permits_copy"
    other["datasets"][0]["related_resources"] = []
    for f in other["datasets"][0]["fields"]:
        f.pop("authoritative", None)
    (tmp_path / "gaj.yaml").write_text(yaml.safe_dump(GAJ, allow_unicode=True), encoding="utf-8")
    (tmp_path / "mzj.yaml").write_text(yaml.safe_dump(other, allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalogue(tmp_path)
    msgs = [str(p) for p in info.value.problems]
    assert any("duplicate resource code 'JD-GAJ-002'" in m and "mzj.yaml" in m for m in msgs)


def test_two_authoritative_departments_for_one_concept(tmp_path: Path) -> None:
    other = copy.deepcopy(GAJ)
    other["code"] = "wjw"
    other["datasets"] = [other["datasets"][0]]
    other["datasets"][0].update(code="copy", resource_code="JD-WJW-999", related_resources=[])
    (tmp_path / "gaj.yaml").write_text(yaml.safe_dump(GAJ, allow_unicode=True), encoding="utf-8")
    (tmp_path / "wjw.yaml").write_text(yaml.safe_dump(other, allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalogue(tmp_path)
    hits = [p for p in info.value.problems if "person.birth_date" in str(p)]
    assert {p.field for p in hits} == {"birth_date"}
    assert {Path(p.file).name for p in hits} == {"gaj.yaml", "wjw.yaml"}


def test_file_name_must_match_department_code(tmp_path: Path) -> None:
    (tmp_path / "police.yaml").write_text(yaml.safe_dump(GAJ, allow_unicode=True), "utf-8")
    with pytest.raises(CatalogError, match="does not match the file name"):
        load_catalogue(tmp_path)


def test_unreadable_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "gaj.yaml").write_text("code: gaj\ndatasets: [\n", encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalogue(tmp_path)
    assert info.value.problems[0].file.endswith("gaj.yaml")
    assert "cannot read YAML" in str(info.value)


def _minimal_department(code: str) -> dict[str, Any]:
    """A department the shipped catalogue does not have: one CSV dataset of one field."""
    return {
        "code": code,
        "name_zh": "区残疾人联合会",
        "name_en": "District Disabled Persons' Federation",
        "provider_code": "51110105500012345" + uscc.calc_check_digit("51110105500012345"),
        "owner": f"team:{code}",
        "datasets": [
            {
                "code": "certificates",
                "resource_code": f"JD-{code.upper()}-001",
                "name_zh": "残疾人证",
                "name_en": "Disability certificates",
                "entity": "person",
                "summary": "残疾人证持证人员。",
                "format": "csv",
                "update_cycle": "monthly",
                "share_type": "not_shareable",
                "consent_category": "social_assistance",
                "legal_basis": "《残疾人保障法》",
                "release_date": "2026-01-01",
                "key": ["certificate_no"],
                "update_mode": "snapshot",
                "delivery": {"kind": "csv", "pattern": "certificates_*.csv", "encoding": "utf-8"},
                "fields": [
                    {
                        "name": "certificate_no",
                        "label_zh": "残疾人证号",
                        "type": "string",
                        "required": True,
                        "pii": "id_document",
                        "level": "L4",
                        "masking": "mask_id",
                    }
                ],
            }
        ],
    }


def _copy_shipped(tmp_path: Path) -> Path:
    directory = tmp_path / "departments"
    shutil.copytree(CATALOG_DIR, directory)
    return directory


def _write(directory: Path, doc: dict[str, Any]) -> Path:
    path = directory / f"{doc['code']}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def test_a_department_beyond_the_shipped_ones_loads(tmp_path: Path) -> None:
    directory = _copy_shipped(tmp_path)
    _write(directory, _minimal_department("cl"))
    cat = load_catalogue(directory)
    assert set(cat.departments) == set(load_catalogue().departments) | {"cl"}
    dept, ds = cat.dataset("cl.certificates")
    assert (dept.code, ds.resource_code) == ("cl", "JD-CL-001")
    assert cat.sources["cl"] == str(directory / "cl.yaml")


def test_one_department_alone_is_a_catalogue(tmp_path: Path) -> None:
    _write(tmp_path, _minimal_department("cl"))
    assert list(load_catalogue(tmp_path).departments) == ["cl"]


@pytest.mark.parametrize(
    "code", ["c", "CL", "cl_fed", "2cl", "残联", "cl-fed", "abcdefghijklmnopq", "cl\n"]
)
def test_bad_department_code_names_file_and_field(code: str, tmp_path: Path) -> None:
    directory = _copy_shipped(tmp_path)
    path = directory / "cl.yaml"
    path.write_text(yaml.safe_dump(_minimal_department(code), allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalogue(directory)
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert "code: department code" in str(problem)
    assert "2–16 lower-case ASCII letters or digits" in str(problem)


@pytest.mark.parametrize("code", ["abcdefghijklmnop", "cl2", "a1"])
def test_department_code_pattern_accepts(code: str, tmp_path: Path) -> None:
    _write(tmp_path, _minimal_department(code))
    assert code in load_catalogue(tmp_path).departments


def test_bad_provider_code_names_file_and_field(tmp_path: Path) -> None:
    doc = _minimal_department("cl")
    good = doc["provider_code"]
    bad_check = "0" if good[-1] != "0" else "1"
    doc["provider_code"] = good[:17] + bad_check
    path = _write(tmp_path, doc)
    with pytest.raises(CatalogError) as info:
        load_catalogue(tmp_path)
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert str(problem).count("provider_code: not a valid unified social credit code") == 1


def test_shipped_provider_codes_are_valid_uscc() -> None:
    for dept in load_catalogue().departments.values():
        assert uscc.is_valid(dept.provider_code), dept.code


def test_two_files_cannot_define_one_department(tmp_path: Path) -> None:
    _write(tmp_path, _minimal_department("cl"))
    (tmp_path / "cl2.yaml").write_text(
        yaml.safe_dump(_minimal_department("cl"), allow_unicode=True), encoding="utf-8"
    )
    with pytest.raises(CatalogError, match="does not match the file name"):
        load_catalogue(tmp_path)


def test_a_dataset_table_is_named_by_one_rule_in_every_zone() -> None:
    """Raw and staged (and what curated, the need model and the share service read) name a
    dataset's table by :func:`catalog.model.dataset_table`, split back one way only."""
    from catalog.model import dataset_table
    from curated.houses import staged_name
    from pipelines.ingest.raw import raw_table

    cat = load_catalogue()
    names = {dataset_table(d.code, ds.code) for d, ds in cat.datasets()}
    assert len(names) == len(cat.datasets())
    for dept, ds in cat.datasets():
        name = dataset_table(dept.code, ds.code)
        assert raw_table(dept.code, ds) == staged_name(dept.code, ds) == name
        assert name.split("__") == [dept.code, ds.code]
