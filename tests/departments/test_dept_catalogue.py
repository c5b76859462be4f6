"""The department catalogue files load, and match what the simulators deliver, field for field."""

from __future__ import annotations

import pytest

from catalog.loader import load_catalogue
from departments.dialects import PLATFORM, REFERENCE, endpoints
from departments.iot import IOT_COLS
from departments.simulate import SPECS


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def delivered_columns() -> dict[tuple[str, str], list[str]]:
    out = {(s.dept, s.code): s.sources for s in SPECS}
    out.update({("iot", code): [c.source for c in cs] for code, cs in IOT_COLS.items()})
    return out


def test_whole_catalogue_loads(catalogue):
    assert set(catalogue.departments) == {
        "gaj", "mzj", "wjw", "rsj", "cgj", "zjj", "jyj", "scjg", "yjj", "rx", "wg", "iot",
    }  # fmt: skip
    assert 25 <= len(catalogue.datasets()) <= 35


def test_every_delivered_column_is_catalogued_and_vice_versa(catalogue):
    delivered = delivered_columns()
    catalogued = {(d.code, ds.code) for d, ds in catalogue.datasets()}
    assert catalogued == set(delivered)
    for (dept, code), columns in delivered.items():
        _, ds = catalogue.dataset(f"{dept}.{code}")
        assert [f.source_name for f in ds.fields] == columns, f"{dept}.{code}"


def test_delivery_options_match_the_simulator(catalogue):
    for spec in SPECS:
        _, ds = catalogue.dataset(f"{spec.dept}.{spec.code}")
        d = ds.delivery
        assert d.kind.value == spec.form
        if spec.form == "csv":
            assert d.encoding == spec.encoding
        if spec.form == "excel":
            assert (d.sheet, d.header_row) == (spec.sheet, 1)
        if spec.form == "json":
            assert d.records_path == spec.records_path
        if spec.form == "sql_db":
            assert (d.table, d.cursor_column) == (spec.table, spec.cursor)
        if spec.form == "http_api":  # either dialect the simulated systems speak
            options = {"platform": PLATFORM, "reference": REFERENCE}
            (dialect,) = [k for k, v in endpoints(spec.dept, spec.code).items() if v == d.endpoint]
            for option, value in options[dialect].items():
                assert getattr(d, option) == value, (spec.dept, spec.code, option)
            assert d.cursor_field == spec.cursor
        key_sources = [ds.field(k).source_name for k in ds.key]
        assert key_sources == list(spec.key), f"{spec.dept}.{spec.code}"


def test_only_gaj_is_authoritative_for_the_person_concepts_it_holds(catalogue):
    """The registry's values are the truth others disagree with (the simulator dirties
    only the others' copies): every person concept public security holds is its own;
    attributes only their department collects (a school, a care level) are theirs."""
    held = {f.concept for d, ds in catalogue.datasets() if d.code == "gaj" for f in ds.fields}
    for dept, ds in catalogue.datasets():
        for f in ds.fields:
            if f.authoritative and f.concept and f.concept.startswith("person."):
                assert (dept.code == "gaj") == (f.concept in held), f"{dept.code}.{ds.code}"


def test_sensitive_fields_are_protected(catalogue):
    for dept, ds in catalogue.datasets():
        for f in ds.fields:
            if f.pii.value in ("health", "minor"):
                assert f.level.value == "L4", f"{dept.code}.{ds.code}.{f.name}"
            if f.type.value == "text":
                assert f.pii.value == "free_text" and f.masking.value == "scrub_text"
                assert f.level.rank >= 3
