"""Export the catalogue as plain JSON or as DCAT (JSON-LD) for other catalogue tools."""

from __future__ import annotations

from typing import Any

from catalog.model import Catalogue, Dataset, Department, ShareType, UpdateCycle
from catalog.street import Street

FREQUENCY = "http://publications.europa.eu/resource/authority/frequency/"
_FREQ = {
    UpdateCycle.realtime: "CONT",
    UpdateCycle.hourly: "HOURLY",
    UpdateCycle.daily: "DAILY",
    UpdateCycle.weekly: "WEEKLY",
    UpdateCycle.monthly: "MONTHLY",
    UpdateCycle.quarterly: "QUARTERLY",
    UpdateCycle.yearly: "ANNUAL",
}
_ACCESS = {
    ShareType.unconditional: "PUBLIC",
    ShareType.conditional: "RESTRICTED",
    ShareType.not_shareable: "NON_PUBLIC",
}
ACCESS_RIGHT = "http://publications.europa.eu/resource/authority/access-right/"
BASE = "urn:streethub:"

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "geosparql": "http://www.opengis.net/ont/geosparql#",
    "sh": "urn:streethub:vocab#",
}


def to_json(catalogue: Catalogue) -> dict[str, Any]:
    """The catalogue as the YAML files say it, one key per department."""
    return {"departments": catalogue.as_dict()}


def _dataset_ld(dept: Department, ds: Dataset) -> dict[str, Any]:
    return {
        "@id": f"{BASE}dataset:{ds.resource_code}",
        "@type": "dcat:Dataset",
        "dct:identifier": ds.resource_code,
        "dct:title": [
            {"@value": ds.name_zh, "@language": "zh"},
            {"@value": ds.name_en, "@language": "en"},
        ],
        "dct:description": {"@value": ds.summary, "@language": "zh"},
        "dct:publisher": {
            "@id": f"{BASE}org:{dept.provider_code}",
            "@type": "foaf:Organization",
            "foaf:name": [
                {"@value": dept.name_zh, "@language": "zh"},
                {"@value": dept.name_en, "@language": "en"},
            ],
            "dct:identifier": dept.provider_code,
        },
        "dct:issued": {"@value": ds.release_date.isoformat(), "@type": "xsd:date"},
        "dct:accrualPeriodicity": {"@id": FREQUENCY + _FREQ[ds.update_cycle]},
        "dct:accessRights": {"@id": ACCESS_RIGHT + _ACCESS[ds.share_type]},
        "dct:relation": [{"@id": f"{BASE}dataset:{r}"} for r in ds.related_resources],
        "dcat:theme": f"sh:{ds.entity.value}",
        "dcat:keyword": [dept.code, ds.code, ds.entity.value],
        "sh:shareType": ds.share_type.value,
        "sh:shareConditions": ds.share_conditions,
        "sh:legalBasis": ds.legal_basis,
        "sh:openAttribute": ds.open_attribute.value,
        "sh:grade": ds.grade.value,
        "sh:maxLevel": ds.max_level.value,
        "dcat:distribution": [
            {
                "@type": "dcat:Distribution",
                "dct:format": ds.format,
                "sh:deliveryKind": ds.delivery.kind.value,
            }
        ],
        "sh:dataItems": [
            {
                "sh:name": f.name,
                "dct:title": {"@value": f.label_zh, "@language": "zh"},
                "sh:type": f.type.value,
                "sh:level": f.level.value,
                "sh:pii": f.pii.value,
                "sh:masking": f.masking.value,
                "sh:required": f.required,
            }
            for f in ds.fields
        ],
    }


def _location(street: Street) -> dict[str, Any]:
    x0, y0, x1, y1 = street.bbox
    ring = f"{x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}"
    return {
        "@id": f"{BASE}street:{street.code}",
        "@type": "dct:Location",
        "dct:identifier": street.code,
        "skos:prefLabel": {"@value": f"{street.district}{street.name}", "@language": "zh"},
        "dcat:bbox": {"@value": f"POLYGON(({ring}))", "@type": "geosparql:wktLiteral"},
        "dct:hasPart": [
            {"@id": f"{BASE}community:{c.code}", "@type": "dct:Location",
             "dct:identifier": c.code, "skos:prefLabel": {"@value": f"{c.name}社区", "@language": "zh"}}
            for c in street.communities
        ],
    }  # fmt: skip


def to_dcat(
    catalogue: Catalogue, street: Street | None = None, title: str = "街道数据资源目录"
) -> dict[str, Any]:
    """A DCAT-style JSON-LD document: one dcat:Catalog holding every dcat:Dataset.

    With the street, the catalogue and every dataset carry ``dct:spatial``: its code,
    name, extent (a WKT polygon) and communities.
    """
    datasets = [_dataset_ld(d, ds) for d, ds in catalogue.datasets()]
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@id": f"{BASE}catalog",
        "@type": "dcat:Catalog",
        "dct:title": {"@value": title, "@language": "zh"},
    }
    if street is not None:
        doc["dct:spatial"] = _location(street)
        for d in datasets:
            d["dct:spatial"] = {"@id": doc["dct:spatial"]["@id"]}
    doc["dcat:dataset"] = datasets
    return doc
