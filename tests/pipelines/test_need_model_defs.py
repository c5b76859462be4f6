"""The need model in Dagster: the definitions hold the features, model and scores assets
and the drift check; materialised on small synthetic frames (the lake's feature and label
reads stood in for), the model asset trains, registers and — no administrators yet —
promotes one version with its fairness table as metadata, trains nothing while a version is
promoted, the drift check warns (severity WARN), and the scores leave out a resident who
refused automated assessment."""

from __future__ import annotations

import datetime as dt
from functools import partial
from types import SimpleNamespace

import dagster as dg
import polars as pl
import pytest

from catalog.marts import load_marts
from catalog.settings import Settings
from marts.need_model import step
from marts.need_model.registry import CARD, Registry
from marts.need_model.spec import GRID_COUNT, GRID_KEYS, KEYS, NEEDS
from pipelines.defs.need_model import assets as need_assets
from pipelines.defs.need_model import checks as need_checks
from pipelines.resources import LakeResource
from tests.marts.need_model.registry_standin import fresh_registry
from tests.marts.need_model.synthetic import INPUTS, grid_counts, need_frames

TEMPLATES = {"living_alone": "独居", "access_drop": "近30天门禁出入次数下降{pct}%"}


def test_definitions_hold_the_need_model_assets_and_the_drift_check():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert {need_assets.FEATURES_KEY, need_assets.MODEL_KEY, need_assets.SCORES_KEY,
            need_assets.FORECASTER_KEY, need_assets.FORECAST_KEY} <= keys  # fmt: skip
    check = dg.AssetCheckKey(need_assets.FEATURES_KEY, need_checks.DRIFT_CHECK)
    assert check in graph.asset_check_keys
    assert graph.get(need_assets.SCORES_KEY).parent_keys >= {need_assets.MODEL_KEY}


@pytest.fixture
def synthetic(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The step's lake reads stood in for by MODEL's synthetic frames (six cut-offs); the
    last cut-off is 'today', its door activity shifted so the features drift."""
    features, labels, _ = need_frames(people=150, cutoffs=6)
    cutoffs = sorted(features["cutoff"].unique().to_list())
    today = cutoffs[-1]
    latest = features.filter(pl.col("cutoff") == today).with_columns(pl.col("access_drop") + 0.5)
    features = pl.concat([features.filter(pl.col("cutoff") != today), latest])
    chosen = lambda cs: features.filter(pl.col("cutoff").is_in(list(cs)))  # noqa: E731
    # the scoring day is no training cut-off (its labels are 90 days away)
    monkeypatch.setattr(step, "training_cutoffs", lambda con, months=0: cutoffs[:-1])
    monkeypatch.setattr(step, "ensure_features", lambda con, protection, cs: chosen(cs))
    monkeypatch.setattr(
        step,
        "feature_rows",
        lambda con, protection, cs, between=None: {c: chosen([c]).height for c in cs},
    )
    monkeypatch.setattr(  # the columns asked for alone, as the feature table reads them
        step,
        "read_features",
        lambda con, protection, cs, columns=None, *, in_key_order=True: chosen(cs).select(
            pl.all() if columns is None else [*KEYS, *columns]
        ),
    )

    def slices(con, protection, cutoff, columns=None, stored=None):  # the training's read
        # in two slices; the step hands on the rows feature_rows counted
        assert stored == chosen([cutoff]).height
        whole = (
            chosen([cutoff]).sort(KEYS).select(pl.all() if columns is None else [*KEYS, *columns])
        )
        return iter([whole.head(whole.height // 2), whole.slice(whole.height // 2)])

    monkeypatch.setattr(step, "read_slices", slices)
    monkeypatch.setattr(step.need_labels, "labeller", lambda con: lambda keys: labels)
    monkeypatch.setattr(step, "current_snapshot", lambda con: 5)
    for trainer in ("backtest_rows", "train_rows"):  # fewer rounds: the wiring is tested
        monkeypatch.setattr(step, trainer, partial(getattr(step, trainer), num_rounds=30))
    groups = [c for c in features.columns if c not in (*KEYS, *INPUTS)]  # gender, age band …
    monkeypatch.setattr(
        step, "load_feature_set", lambda: SimpleNamespace(inputs=INPUTS, groups=groups)
    )
    monkeypatch.setattr(step, "load_templates", lambda path: TEMPLATES)
    monkeypatch.setattr(need_assets, "scoring_cutoff", lambda: today)
    monkeypatch.setattr(need_checks, "scoring_cutoff", lambda: today)
    monkeypatch.setattr(need_checks, "load_feature_set", lambda: SimpleNamespace(inputs=INPUTS))
    refused = latest["person_id"][0]
    monkeypatch.setattr("share_api.consent.not_to_score", lambda service: frozenset({refused}))
    published: list[pl.DataFrame] = []

    def publish(con, catalogue, name, frame, *, leave_out=()):
        assert set(frame.columns) == set(load_marts()[name].column_names)
        published.append(
            frame.filter(~pl.col("person_id").is_in(sorted(leave_out))) if leave_out else frame
        )
        return SimpleNamespace(build=SimpleNamespace(rows=published[-1].height))

    def publish_parts(con, catalogue, name, parts, *, leave_out=()):  # the scores, in parts
        return publish(con, catalogue, name, pl.concat(list(parts)), leave_out=leave_out)

    monkeypatch.setattr(need_assets, "publish_frame", publish)
    monkeypatch.setattr(need_assets, "publish_parts", publish_parts)
    fresh_registry(settings)
    return {"today": today, "refused": refused, "published": published, "people": 150}


def materialise(*defs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(defs), resources={"lake": LakeResource()}, instance=dg.DagsterInstance.ephemeral()
    )


def model_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key == need_assets.MODEL_KEY
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_model_trains_once_with_fairness_metadata_and_the_drift_check_warns(
    settings: Settings, synthetic: dict
):
    first = materialise(
        need_assets.need_features, need_assets.need_model, need_checks.feature_drift_check
    )
    assert first.success
    meta = model_metadata(first)
    assert (meta["trained"], meta["model_version"], meta["promoted"]) == (True, 1, True)
    assert meta["fairness"].startswith("| need | group_kind | group |")
    assert "| gender |" in meta["fairness"] and "| overall |" in meta["fairness"]
    assert meta["training_cutoffs"].count(",") == 4
    [check] = first.get_asset_check_evaluations()
    assert check.severity == dg.AssetCheckSeverity.WARN and not check.passed
    assert check.metadata["features_shifted"].value >= 1
    assert "access_drop" in check.metadata["psi_by_feature"].value
    again = materialise(need_assets.need_model)
    assert model_metadata(again)["trained"] is False
    assert [v.version for v in Registry(settings).versions()] == [1]

    scored = materialise(need_assets.need_scores)
    assert scored.success
    [frame] = synthetic["published"]
    assert synthetic["refused"] not in frame["person_id"].to_list()
    assert frame.height == (synthetic["people"] - 1) * len(NEEDS)
    assert set(frame["model_version"]) == {"need_model/1"}
    assert set(frame["cutoff"]) == {synthetic["today"]}
    assert frame["probability"].is_between(0, 1).all()
    assert frame["explanation"].str.contains("门禁|独居").any()


def test_grid_forecast_is_trained_promoted_and_published(
    settings: Settings, synthetic: dict, monkeypatch: pytest.MonkeyPatch
):
    counts = grid_counts(cells=3, categories=2, weeks=40)
    counts = counts.rename({c: GRID_COUNT for c in counts.columns if c not in GRID_KEYS})
    monkeypatch.setattr(step, "grid_counts", lambda con, until=None: counts)
    trained = materialise(need_assets.grid_forecaster)
    assert trained.success
    [event] = trained.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert (meta["trained"], meta["model_version"], meta["promoted"]) == (True, 1, True)
    assert {"model.poisson_deviance", "naive.poisson_deviance", "seasonal_naive.mae"} <= set(meta)
    assert "fairness" not in meta  # no person is scored
    registry = Registry(settings)
    assert "Not applicable" in registry.text(1, CARD, step.FORECAST_MODEL)
    assert registry.promoted() is None  # the need model is another registered model
    assert materialise(need_assets.grid_demand_forecast).success
    [frame] = synthetic["published"]
    assert frame.height == 3 * 2 and set(frame["model_version"]) == {"grid_forecast/1"}
    assert set(frame["week_start"]) == {counts["week_start"].max() + dt.timedelta(weeks=1)}
    assert (frame["expected_appeals"] > 0).all()
