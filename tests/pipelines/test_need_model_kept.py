"""The need-model step keeps a published mart that still holds (pipelines/need_model_run.py):
on the session's need street (a year of history: both models promoted; the mart street
has none under the suite's STREETHUB_SIM_HISTORY_DAYS=0, and no model trains there), a second run with
nothing new publishes neither mart and its kept scores equal those made again; a resident's
refusal of automated assessment makes the scores again (without them), the forecast kept."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import polars as pl
import pytest

import pipelines.need_model_run as need_model_run_module
from catalog.settings import Settings
from marts.need_model.step import FORECAST_MART, SCORES_MART
from pipelines.defs.need_model import assets as need_assets
from pipelines.defs.need_model import checks as need_checks
from pipelines.defs.need_model.assets import need_scores
from pipelines.instance import prepare_dagster_home
from pipelines.need_model_run import run_need_model
from pipelines.resources import LakeResource
from share_api.consent import not_to_score, record_choice
from share_api.service import Service
from tests.need_street import NeedStreet
from tests.streets import copy_home


def _mart(settings: Settings, name: str) -> pl.DataFrame:
    from lakehouse.lake import open_lake

    with open_lake(settings, read_only=True) as con:
        frame = con.execute(f"SELECT * FROM marts.{name}").pl()
    return frame.sort(frame.columns)


@pytest.fixture
def settings(need_street: NeedStreet, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A copy of the need street's home, its Dagster instance this process's."""
    copied = copy_home(need_street.home, tmp_path)
    for name, value in (("STREETHUB_HOME", copied.home), ("DAGSTER_HOME", copied.dagster_home)):
        monkeypatch.setenv(name, str(value))  # restored after the test
    prepare_dagster_home(copied)
    # one scoring cut-off for the whole test: the step reads the clock, and a midnight in
    # Beijing between two of its runs would change the cut-off, the digests, what is kept
    fixed = need_assets.scoring_cutoff()
    for module in (need_assets, need_checks, need_model_run_module):
        monkeypatch.setattr(module, "scoring_cutoff", lambda now=None: fixed)
    return copied


def test_a_mart_that_still_holds_is_kept_and_equals_one_made_again(settings: Settings):
    # made or kept (a street built by an older step has no digest on record: made then)
    first = run_need_model(settings, dt.datetime.now(dt.UTC))
    assert first.ran and first.scored_by is not None, first.why_not
    assert set(first.published) | set(first.kept) == {SCORES_MART, FORECAST_MART}

    again = run_need_model(settings, dt.datetime.now(dt.UTC))
    assert again.kept == sorted([SCORES_MART, FORECAST_MART]) and not again.published
    assert not again.steps and again.scored_by == first.scored_by
    assert again.drift_warned == first.drift_warned  # the drift check's last evaluation told
    kept = _mart(settings, SCORES_MART)
    # the slow path: the scores made again from the same inputs are the kept ones
    made = dg.materialize(
        [need_scores], instance=dg.DagsterInstance.get(), resources={"lake": LakeResource()}
    )
    assert made.success
    assert _mart(settings, SCORES_MART).equals(kept)

    service = Service.open(settings)
    try:
        refuses = kept["person_id"][0]
        record_choice(service, pseudonym=refuses, category="automated_assessment",
                      recipient_kind="frontend", choice="declined", channel="grid_worker",
                      actor="sq/clerk")  # fmt: skip
        assert refuses in not_to_score(service)
    finally:
        service.close()
    third = run_need_model(settings, dt.datetime.now(dt.UTC))
    assert third.kept == [FORECAST_MART] and set(third.published) == {SCORES_MART}
    scores = _mart(settings, SCORES_MART)
    assert refuses not in set(scores["person_id"])
    assert scores.height == kept.filter(pl.col("person_id") != refuses).height

    # a registry that changed (a version registered, promoted …): both made again
    registry = settings.models_dir / "mlflow.db"
    changed = registry.stat().st_mtime_ns + 1_000_000_000
    os.utime(registry, ns=(changed, changed))
    fourth = run_need_model(settings, dt.datetime.now(dt.UTC))
    assert not fourth.kept and set(fourth.published) == {SCORES_MART, FORECAST_MART}
    assert _mart(settings, SCORES_MART).equals(scores)
