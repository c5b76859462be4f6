"""Dataset-level expectations with Great Expectations, generated from the catalogue."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from test_scores_street import LOADED_AT, staged_frames, street

from catalog.authority import person_registers
from catalog.loader import get_catalogue
from quality.expectations import EXPECTATION_SCHEMA, run_expectations

NOW = LOADED_AT + dt.timedelta(minutes=30)


@pytest.fixture(scope="module")
def frames():
    return staged_frames(street(), get_catalogue())


@pytest.fixture(scope="module")
def registry(frames) -> set[str]:
    """The person keys of the registers the catalogue declares."""
    regs = person_registers(get_catalogue())
    assert regs
    return {v for r in regs for v in frames[(r.dept, r.dataset.code)][r.field].to_list()}


def _run(ref: str, frame: pl.DataFrame, **kw) -> pl.DataFrame:
    _, ds = get_catalogue().dataset(ref)
    args = {
        "previous_rows": frame.height,
        "registry_ids": None,
        "newest_delivery_at": LOADED_AT,
        "now": NOW,
    } | kw
    return run_expectations(ds, frame, **args)


def _one(out: pl.DataFrame, expectation: str, column: str | None = None) -> dict:
    f = out.filter(pl.col("expectation") == expectation)
    if column is not None:
        f = f.filter(pl.col("column") == column)
    assert f.height == 1, f
    return f.row(0, named=True)


def test_suite_from_the_catalogue(frames) -> None:
    out = _run("mzj.elderly_alone", frames[("mzj", "elderly_alone")])
    assert out.schema == pl.Schema(EXPECTATION_SCHEMA)
    _, ds = get_catalogue().dataset("mzj.elderly_alone")
    nulls = out.filter(pl.col("expectation") == "expect_column_values_to_not_be_null")
    assert set(nulls["column"]) == {f.name for f in ds.fields}
    assert (
        _one(out, "expect_column_values_to_not_be_null", "name")["detail"] == "required: no nulls"
    )
    assert "optional" in _one(out, "expect_column_values_to_not_be_null", "mobile")["detail"]
    assert _one(out, "expect_table_row_count_to_be_between")["success"]
    assert _one(out, "freshness")["success"]
    assert set(out["dept"]) == {"mzj"}


def test_failures_are_found_and_values_never_shown(frames) -> None:
    frame = frames[("wjw", "family_doctor_contracts")]
    broken = pl.concat([frame, frame.head(5)]).with_columns(
        pl.when(pl.int_range(pl.len()) < 7).then(None).otherwise(pl.col("name")).alias("name")
    )
    out = _run(
        "wjw.family_doctor_contracts",
        broken,
        previous_rows=broken.height * 3,  # a third of last time
        registry_ids=set(),  # nobody known
        newest_delivery_at=LOADED_AT - dt.timedelta(days=40),  # monthly allows 35 days
    )
    assert not _one(out, "expect_table_row_count_to_be_between")["success"]
    nn = _one(out, "expect_column_values_to_not_be_null", "name")
    assert not nn["success"] and nn["observed"].startswith("7 of")
    uq = _one(out, "expect_column_values_to_be_unique", "contract_id")
    assert not uq["success"]
    ref = _one(out, "expect_column_values_to_be_in_set", "citizen_id")
    assert not ref["success"] and "computed directly" in ref["detail"]
    assert not _one(out, "freshness")["success"]
    text = " ".join(out["observed"].to_list() + out["detail"].to_list())
    for cid in frame["citizen_id"].head(50):
        assert cid not in text


def test_compound_key_and_registry(frames, registry) -> None:
    out = _run("mzj.old_age_allowance", frames[("mzj", "old_age_allowance")], registry_ids=registry)
    uq = _one(out, "expect_compound_columns_to_be_unique")
    assert uq["column"] == "citizen_id,pay_month"
    ref = _one(out, "expect_column_values_to_be_in_set", "citizen_id")
    assert ref["success"] and ref["observed"].startswith("0 of ")
    assert "gaj.registered_residents, gaj.residence_permits" in ref["detail"]
    # the registers themselves get no referential check
    for r in person_registers(get_catalogue()):
        own = _run(r.ref, frames[(r.dept, r.dataset.code)], registry_ids=registry)
        assert own.filter(pl.col("expectation") == "expect_column_values_to_be_in_set").is_empty()


def test_first_delivery_and_missing_column(frames) -> None:
    frame = frames[("zjj", "buildings")].drop("floors")
    out = _run("zjj.buildings", frame, previous_rows=None, newest_delivery_at=None)
    rc = _one(out, "expect_table_row_count_to_be_between")
    assert rc["success"] and rc["detail"] == "rows between 1 and ∞"
    assert not _one(out, "expect_column_values_to_not_be_null", "floors")["success"]
    assert _one(out, "freshness")["observed"] == "no delivery"


def test_every_dataset_of_a_clean_street(frames, registry) -> None:
    """Every dataset of the catalogue gets its suite run; on a clean street only the
    simulator's duplicates fail. (How long the suites take is a benchmark's figure —
    the scorecard in ``python -m bench ingest`` — not a timed test's.)"""
    cat = get_catalogue()
    outs = [
        _run(f"{d}.{c}", f, registry_ids=registry, dept=d)
        for (d, c), f in frames.items()
        if cat.dataset(f"{d}.{c}")
    ]
    assert len(outs) == len(cat.datasets())
    every = pl.concat(outs)
    # a clean street: only duplicates of the simulator (duplicate_row) and nothing else fail
    failed = every.filter(~pl.col("success"))
    assert set(failed["expectation"]) <= {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_in_set",
    }


def test_one_batch_definition_and_basic_results_equal_summary(frames, monkeypatch) -> None:
    """Every suite validates through the process's one data source (none added per suite),
    and the ``BASIC`` results give the rows ``SUMMARY`` gave, failures included."""
    import quality.expectations as expectations

    frame = frames[("wjw", "family_doctor_contracts")]
    broken = pl.concat([frame, frame.head(5)]).with_columns(
        pl.when(pl.int_range(pl.len()) < 7).then(None).otherwise(pl.col("name")).alias("name")
    )
    basic = [_run("wjw.family_doctor_contracts", broken, previous_rows=broken.height * 3)]
    basic.append(_run("mzj.old_age_allowance", frames[("mzj", "old_age_allowance")]))
    _, context = expectations._gx()
    assert [s.name for s in context.data_sources.all().values()] == [expectations.BATCH_SOURCE]
    monkeypatch.setattr(expectations, "RESULT_FORMAT", {"result_format": "SUMMARY"})
    summary = [_run("wjw.family_doctor_contracts", broken, previous_rows=broken.height * 3)]
    summary.append(_run("mzj.old_age_allowance", frames[("mzj", "old_age_allowance")]))
    for b, s in zip(basic, summary, strict=True):
        assert b.height > 3 and b.equals(s)
    failed = basic[0].filter(~pl.col("success"))
    assert {"expect_table_row_count_to_be_between", "expect_column_values_to_be_unique"} <= set(
        failed["expectation"]
    )
    assert _one(basic[0], "expect_column_values_to_not_be_null", "name")["observed"].startswith(
        "7 of "
    )


def test_one_batch_per_suite_gives_what_batch_validate_gave(frames, monkeypatch) -> None:
    """Validating the frame as one whole-frame batch (``_validate``: the batch built once)
    gives the rows ``get_batch(...).validate(suite)`` gave, failures included."""
    import quality.expectations as expectations

    frame = frames[("wjw", "family_doctor_contracts")]
    broken = pl.concat([frame, frame.head(5)]).with_columns(
        pl.when(pl.int_range(pl.len()) < 7).then(None).otherwise(pl.col("name")).alias("name")
    )
    cases = [
        ("wjw.family_doctor_contracts", broken, {"previous_rows": broken.height * 3}),
        ("mzj.old_age_allowance", frames[("mzj", "old_age_allowance")], {}),
        ("zjj.buildings", frames[("zjj", "buildings")].drop("floors"), {"previous_rows": None}),
    ]
    once = [_run(ref, f, **kw) for ref, f, kw in cases]
    built: list[int] = []

    def batch_validate(suite, pdf):  # the path before: a batch, then Batch.validate
        built.append(len(pdf))
        batch = expectations._whole_frame().get_batch(batch_parameters={"dataframe": pdf})
        return batch.validate(suite, result_format=expectations.RESULT_FORMAT)

    monkeypatch.setattr(expectations, "_validate", batch_validate)
    twice = [_run(ref, f, **kw) for ref, f, kw in cases]
    assert built == [f.height for _, f, _ in cases]  # the slow path did run
    for a, b in zip(once, twice, strict=True):
        assert a.height > 3 and a.equals(b)
    assert set(once[0].filter(~pl.col("success"))["expectation"]) >= {
        "expect_table_row_count_to_be_between",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
    }


def test_configurations_memoised_give_what_the_plain_property_gave(frames, monkeypatch) -> None:
    """A suite validated with each expectation's configuration built once
    (``_configurations_memoised``) gives the rows GE's own property gave — passes, failures
    (row count, nulls, a duplicate key, a compound key) and a missing column — and GE's
    class has its own property back afterwards."""
    import contextlib

    from great_expectations.expectations.expectation import Expectation

    import quality.expectations as expectations

    plain = Expectation.__dict__["configuration"]
    frame = frames[("wjw", "family_doctor_contracts")]
    broken = pl.concat([frame, frame.head(5)]).with_columns(
        pl.when(pl.int_range(pl.len()) < 7).then(None).otherwise(pl.col("name")).alias("name")
    )
    cat = get_catalogue()
    compound = next(f"{d.code}.{ds.code}" for d, ds in cat.datasets() if len(ds.key) > 1)
    d, c = compound.split(".")
    cases = [
        ("wjw.family_doctor_contracts", broken, {"previous_rows": broken.height * 3}),
        (compound, pl.concat([frames[(d, c)], frames[(d, c)].head(3)]), {}),
        ("zjj.buildings", frames[("zjj", "buildings")].drop("floors"), {"previous_rows": None}),
    ]
    seen: list[object] = []

    def spy(self):  # the memo's builder is GE's own property, seen being used
        seen.append(self)
        return plain.fget(self)

    monkeypatch.setattr(Expectation, "configuration", property(spy))
    memoised = [_run(ref, f, **kw) for ref, f, kw in cases]
    assert Expectation.__dict__["configuration"].fget is spy  # given back after each suite
    built = len(seen)
    assert built == len({id(x) for x in seen})  # each object's configuration built once
    monkeypatch.setattr(expectations, "_configurations_memoised", contextlib.nullcontext)
    again = [_run(ref, f, **kw) for ref, f, kw in cases]
    assert len(seen) - built > 5 * built  # the plain property: built again and again
    for a, b in zip(memoised, again, strict=True):
        assert a.height > 3 and a.equals(b)
    failed = pl.concat(memoised).filter(~pl.col("success"))
    assert {
        "expect_table_row_count_to_be_between",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
    } <= set(failed["expectation"])


def test_plain_json_is_what_ge_converts_plain_data_to() -> None:
    """``plain_json`` answers as GE's ``convert_to_json_serializable`` for plain data (the
    metric ids of a validation: column names, batch ids, Nones, a compound key's list) and
    leaves anything else to GE."""
    import datetime as dt_

    import numpy as np
    from great_expectations.util import convert_to_json_serializable

    from quality.expectations import _NOT_PLAIN, _gx, plain_json

    _gx()
    plain = [
        {"batch_id": "b-1", "column": "name", "row_condition": None, "condition_parser": None},
        {"column_list": ["dept", "code"], "ignore_row_if": "all_values_are_missing"},
        {
            "mostly": 0.05,
            "n": 3,
            "flag": True,
            "nan": float("nan"),
            "nested": {"a": [1, (2, None)]},
        },
        ["x", None, 1.5],
        None,
    ]
    for data in plain:
        assert plain_json(data) == convert_to_json_serializable(data)
    assert plain_json({"nan": float("nan")}) == {"nan": None}
    for other in ({"at": dt_.date(2026, 1, 1)}, {"n": np.int64(3)}, {1: "key"}, {"s": {"a"}}):
        assert plain_json(other) is _NOT_PLAIN


def test_plain_ids_give_what_ge_own_conversion_gave(frames, monkeypatch) -> None:
    """Suites validated with plain ids (``_plain_ids``) give GE's own rows — passes and
    failures — and GE's module has its function back afterwards."""
    import contextlib

    from great_expectations.core import id_dict

    import quality.expectations as expectations

    own = id_dict.convert_to_json_serializable
    frame = frames[("wjw", "family_doctor_contracts")]
    broken = pl.concat([frame, frame.head(5)]).with_columns(
        pl.when(pl.int_range(pl.len()) < 7).then(None).otherwise(pl.col("name")).alias("name")
    )
    cases = [
        ("wjw.family_doctor_contracts", broken),
        ("zjj.buildings", frames[("zjj", "buildings")]),
    ]
    fast = [_run(ref, f) for ref, f in cases]
    assert id_dict.convert_to_json_serializable is own
    monkeypatch.setattr(expectations, "_plain_ids", contextlib.nullcontext)
    slow = [_run(ref, f) for ref, f in cases]
    for a, b in zip(fast, slow, strict=True):
        assert a.height > 3 and a.drop("run_at").equals(b.drop("run_at"))
    assert not fast[0]["success"].all()


def test_release_context_lets_go_of_the_context_and_the_last_frame(frames) -> None:
    """``release_context`` drops the process's context, GE's own reference to it and with
    them the last suite's pandas frame (held by the execution engine's batch manager); the
    next suite makes a new context and gives the same rows."""
    import gc
    import weakref

    from great_expectations.data_context.data_context.context_factory import project_manager
    from great_expectations.exceptions import DataContextRequiredError

    import quality.expectations as expectations

    seen: list[weakref.ref] = []
    validate = expectations._validate

    def spy(suite, pdf):
        seen.append(weakref.ref(pdf))
        return validate(suite, pdf)

    frame = frames[("mzj", "old_age_allowance")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(expectations, "_validate", spy)
        first = _run("mzj.old_age_allowance", frame)
    _, context = expectations._gx()
    gc.collect()
    assert seen[0]() is not None  # kept by the context while it lives
    assert expectations.release_context() is True
    del context
    gc.collect()
    assert seen[0]() is None
    with pytest.raises(DataContextRequiredError):
        project_manager.get_current_project()
    assert expectations.release_context() is False  # nothing held
    assert _run("mzj.old_age_allowance", frame).equals(first)
