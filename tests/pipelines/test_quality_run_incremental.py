"""The incremental scorecard equals a full recompute, and reads only what changed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import Settings
from lakehouse.lake import open_lake
from pipelines.ingest import ingest_dataset
from pipelines.ingest.staged import stage_dataset
from pipelines.protection import Protection
from pipelines.quality_run import (
    QualityOutputs,
    compute_quality,
    load_inputs,
    write_quality,
)
from tests.pipelines.test_staged import _copy  # the home and its audit witness
from tests.streets import copy_home

NOW = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def scored_street(
    staged_street: Settings, tmp_path_factory: pytest.TempPathFactory, cat: Catalogue
) -> Settings:
    """The session's staged street with its first scorecard written (every dataset scored),
    on a copy."""
    settings = copy_home(staged_street.home, tmp_path_factory.mktemp("incr"))
    _score(settings, cat, incremental=True, now=NOW - dt.timedelta(hours=1), write=True)
    return settings


def _score(
    settings: Settings, cat: Catalogue, *, incremental: bool, now: dt.datetime, write=False
) -> tuple[QualityOutputs, set | None, int]:
    """(outputs, datasets scored again (None: all), staged tables read)."""
    protection = Protection.from_settings(settings)
    with open_lake(settings, read_only=True) as con:
        inputs = load_inputs(con, cat, protection, incremental=incremental)
        reads = []
        original = type(inputs.staged).__getitem__

        def counting(self, key):
            if key not in self._kept:
                reads.append(key)
            return original(self, key)

        type(inputs.staged).__getitem__ = counting
        try:
            out = compute_quality(settings, cat, inputs, now)
        finally:
            type(inputs.staged).__getitem__ = original
    if write:
        with open_lake(settings) as con:
            write_quality(con, out)
    return out, inputs.rescore, len(reads)


@pytest.fixture(scope="module")
def full_now(scored_street: Settings, cat: Catalogue) -> tuple[QualityOutputs, set | None, int]:
    """A full recompute of the unchanged street at ``NOW`` (shared: GE costs)."""
    return _score(scored_street, cat, incremental=False, now=NOW)


def _same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns
    if not a.height and not b.height:
        return
    assert_frame_equal(a.sort(a.columns, nulls_last=True), b.sort(b.columns, nulls_last=True))


def _assert_equal(incremental: QualityOutputs, full: QualityOutputs) -> None:
    _same(incremental.scorecard, full.scorecard)
    _same(incremental.expectations, full.expectations)
    _same(incremental.disagreements, full.disagreements)
    _same(incremental.issues, full.issues)
    _same(incremental.state, full.state)


def test_nothing_changed_reads_no_staged_table_and_equals_a_full_recompute(
    scored_street: Settings, cat: Catalogue, full_now
) -> None:
    incremental, rescore, reads = _score(scored_street, cat, incremental=True, now=NOW)
    assert rescore == set() and reads == 0
    full, everything, full_reads = full_now
    assert everything is None and full_reads > 10
    _assert_equal(incremental, full)
    # timeliness and freshness are judged at the new time, not kept
    assert (incremental.scorecard["computed_at"] == NOW).all()
    assert (incremental.expectations["run_at"] == NOW).all()


def test_a_new_delivery_scores_its_dataset_again_and_equals_a_full_recompute(
    scored_street: Settings, cat: Catalogue, tmp_path: Path
) -> None:
    from bench.incremental import next_day_delivery

    settings = _copy(scored_street, tmp_path)
    dept, code, _ = next_day_delivery(settings)
    _, ds = cat.dataset(f"{dept}.{code}")
    with open_lake(settings) as con:
        landed, _ = ingest_dataset(con, settings, dept, ds)
        stage_dataset(con, dept, ds, Protection.from_settings(settings))
    assert len(landed.landed) == 1
    incremental, rescore, _ = _score(settings, cat, incremental=True, now=NOW)
    assert (dept, code) in rescore
    assert len(rescore) < len(cat.datasets()) // 2, "only that dataset and what depends on it"
    full, _, _ = _score(settings, cat, incremental=False, now=NOW)
    _assert_equal(incremental, full)


def test_a_changed_authority_scores_its_dependents_again(
    scored_street: Settings, cat: Catalogue, tmp_path: Path
) -> None:
    from quality.scores_authority import comparisons

    settings = _copy(scored_street, tmp_path)
    cmp = comparisons(cat)[0]
    authority = cat.dataset(f"{cmp.auth_dept}.{cmp.auth_dataset}")[1]
    table = f"{cmp.auth_dept}__{authority.code}"
    with open_lake(settings) as con:  # the authority's register loses a tenth of its rows
        con.execute(f'DELETE FROM staged."{table}" WHERE _source_row % 10 = 0')
    incremental, rescore, _ = _score(settings, cat, incremental=True, now=NOW)
    dependents = {(c.dept, c.dataset) for c in comparisons(cat) if c.auth_ref == cmp.auth_ref}
    assert {(cmp.auth_dept, cmp.auth_dataset), *dependents} <= rescore
    full, _, _ = _score(settings, cat, incremental=False, now=NOW)
    _assert_equal(incremental, full)


def test_another_scoring_version_scores_everything(
    scored_street: Settings, cat: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.quality_state as quality_state

    monkeypatch.setattr(quality_state, "SCORING_VERSION", "another")
    protection = Protection.from_settings(scored_street)
    with open_lake(scored_street, read_only=True) as con:
        assert load_inputs(con, cat, protection).rescore is None


def test_events_scored_where_they_lie_equal_the_frame_scores(
    scored_street: Settings, cat: Catalogue, full_now, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The large append tables (IoT readings) are counted in SQL and their newest delivery
    read alone: the same scorecard, expectations and issues as from whole frames."""
    import pipelines.staged_frames as staged_frames

    lean, _, lean_reads = full_now
    monkeypatch.setattr(staged_frames, "LEAN_MIN_ROWS", 10**12)
    framed, _, framed_reads = _score(scored_street, cat, incremental=False, now=NOW)
    assert lean_reads < framed_reads
    _assert_equal(lean, framed)
