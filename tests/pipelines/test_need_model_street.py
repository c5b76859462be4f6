"""The need model on the session's need street (a year of history, the main job run once):
the main job's step trained, registered and — no administrators yet — promoted one version
of each model and published both marts; a second run scores with the promoted versions and
trains nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from marts.need_model.registry import FORECAST_MODEL, NO_ADMINS, Registry
from marts.need_model.spec import NEEDS
from pipelines.instance import prepare_dagster_home
from pipelines.need_model_run import run_need_model
from tests.need_street import NeedStreet
from tests.streets import copy_home


def test_the_main_job_trained_promoted_and_published(need_street: NeedStreet):
    registry = Registry(need_street.settings)
    need = registry.promoted()
    assert need is not None and need.approval == NO_ADMINS and need.promoted_by == "main job"
    assert len(need.training_cutoffs) >= 4 and need.features > 0
    assert registry.verify(need.version) == need.sha256
    scores = need_street.query("SELECT * FROM marts.need_scores")
    assert set(scores["model_version"]) == {f"need_model/{need.version}"}
    assert scores.height == scores["person_id"].n_unique() * len(NEEDS)
    assert scores["probability"].is_between(0, 1).all()
    assert scores["explanation"].str.len_chars().gt(0).mean() > 0.5
    forecast = registry.promoted(FORECAST_MODEL)
    assert forecast is not None
    cells = need_street.query("SELECT * FROM marts.grid_demand_forecast")
    assert cells.height > 0 and set(cells["model_version"]) == {f"grid_forecast/{forecast.version}"}


def test_a_second_run_trains_nothing_and_scores_with_the_promoted_versions(
    need_street: NeedStreet, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    settings = copy_home(need_street.home, tmp_path)
    monkeypatch.setenv("STREETHUB_HOME", str(settings.home))
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))  # restored after the test
    prepare_dagster_home(settings)
    before = Registry(settings).promoted()
    outcome = run_need_model(settings, dt.datetime.now(dt.UTC))
    assert outcome.ran and not outcome.trained and not outcome.steps
    assert outcome.scored_by == (before.version, before.sha256)
    # each mart made again, or kept when it still holds (tests/pipelines/test_need_model_kept.py)
    assert set(outcome.published) | set(outcome.kept) == {"need_scores", "grid_demand_forecast"}
    assert all(rows > 0 for rows in outcome.published.values())
    assert [v.version for v in Registry(settings).versions()] == [before.version]
