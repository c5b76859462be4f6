"""The scorecard reads a field it only asks "null or not" of as that alone (never decrypted):
the same scorecard, expectations, disagreements and issues as with every field revealed, and
fewer columns decrypted."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import pipelines.staged_frames as staged_frames
from catalog.loader import load_catalogue
from catalog.settings import Settings
from lakehouse.lake import open_lake
from pipelines.protection import Protection
from pipelines.quality_run import compute_quality, load_inputs
from quality.expectations import build_suite

NOW = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
# what the suites ask of a field besides its business key: null or not (see scored_values)
NULLNESS_ONLY = {
    "expect_table_row_count_to_be_between",
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
}


def _every_field(cat, key, ds) -> set[str]:
    """The slow path: every field's value read (and decrypted)."""
    return {f.name for f in ds.fields}


def _score(settings: Settings, cat) -> tuple[object, list[tuple[str, pl.DataFrame]]]:
    protection = Protection.from_settings(settings)
    with open_lake(settings, read_only=True) as con:
        inputs = load_inputs(con, cat, protection, incremental=False)
        out = compute_quality(settings, cat, inputs, NOW)
        return out, [(str(k), inputs.staged[k]) for k in sorted(inputs.staged)]


def test_suites_ask_only_null_or_not_of_other_fields() -> None:
    cat = load_catalogue()
    for dept, ds in cat.datasets():
        suite, _ = build_suite(ds, dept.code, previous_rows=None)
        assert {e.expectation_type for e in suite} <= NULLNESS_ONLY, ds.code
        for e in suite:
            column = getattr(e, "column", None)
            if e.expectation_type == "expect_column_values_to_be_unique":
                assert column in ds.key


def test_nullness_only_fields_give_the_same_scorecard(
    staged_street: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = load_catalogue()
    fast, lean_frames = _score(staged_street, cat)
    monkeypatch.setattr(staged_frames, "scored_values", _every_field)
    slow, whole_frames = _score(staged_street, cat)
    for part in ("scorecard", "expectations", "disagreements", "issues"):
        a, b = getattr(fast, part), getattr(slow, part)
        assert a.columns == b.columns, part
        assert_frame_equal(a.sort(a.columns, nulls_last=True), b.sort(b.columns, nulls_last=True))
    # the lean frames hold fewer values, and the same nulls
    placeholders = 0
    for (ref, lean), (_, whole) in zip(lean_frames, whole_frames, strict=True):
        assert lean.columns == whole.columns, ref
        assert_frame_equal(lean.select(pl.all().is_null()), whole.select(pl.all().is_null()))
        placeholders += sum(not lean[c].equals(whole[c]) for c in lean.columns)
    assert placeholders > 0


def test_the_scorecard_lets_great_expectations_go(staged_street: Settings) -> None:
    """When the scorecard is done, no GE context is left (GE's project manager held the last
    one with its last suite's frame): the next suite makes a new one."""
    from great_expectations.data_context.data_context.context_factory import project_manager
    from great_expectations.exceptions import DataContextRequiredError

    out, _ = _score(staged_street, load_catalogue())
    assert out.expectations.height > 0  # suites ran
    with pytest.raises(DataContextRequiredError):
        project_manager.get_current_project()
