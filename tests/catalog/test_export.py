"""Catalogue export: plain JSON and DCAT JSON-LD, with the street as dct:spatial."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from catalog.loader import get_catalogue
from pipelines.cli import app


def test_dcat_export_has_every_dataset_and_the_street(tmp_path: Path) -> None:
    out = tmp_path / "catalogue.jsonld"
    result = CliRunner().invoke(app, ["catalog", "export", "--format", "dcat", "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    cat = get_catalogue()
    assert doc["@type"] == "dcat:Catalog"
    assert {d["dct:identifier"] for d in doc["dcat:dataset"]} == {
        ds.resource_code for _, ds in cat.datasets()
    }
    place = doc["dct:spatial"]
    assert place["dct:identifier"] == "110105001"
    assert place["skos:prefLabel"]["@value"] == "北京市朝阳区建外街道"
    assert place["dcat:bbox"]["@value"].startswith("POLYGON((116.43 39.9, 116.47 39.9,")
    assert [c["dct:identifier"] for c in place["dct:hasPart"]][:2] == [
        "110105001001",
        "110105001002",
    ]
    assert all(d["dct:spatial"] == {"@id": place["@id"]} for d in doc["dcat:dataset"])
    # sensitive detail stays in the catalogue's own terms: levels, not values
    fields = [f for d in doc["dcat:dataset"] for f in d["sh:dataItems"]]
    assert len(fields) == sum(len(ds.fields) for _, ds in cat.datasets())


def test_json_export_reloads_as_the_same_catalogue(tmp_path: Path) -> None:
    from catalog.model import Department

    out = tmp_path / "catalogue.json"
    result = CliRunner().invoke(app, ["catalog", "export", "--format", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text(encoding="utf-8"))["departments"]
    cat = get_catalogue()
    assert set(doc) == set(cat.departments)
    for code, dept in cat.departments.items():
        assert Department.model_validate(doc[code]) == dept
