"""Promoting a need-model version from the command line: under the share service's
two-person rule (a ``model.promote`` operation one administrator opens and a second
approves, used once, for that version only), after its file checks; list, show, backtest."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from catalog.settings import Settings
from marts.need_model.registry import MODEL_FILE, MODEL_NAME, Registry
from masking.audit.log import AuditLog
from masking.keys import KeyRing
from pipelines.cli import app
from share_api import requests as rq
from share_api.principals import principal_for_user
from share_api.service import Service
from tests.cli_text import one_line
from tests.marts.need_model.registry_standin import (
    FEATURES,
    StandInModel,
    backtest_table,
    fairness_table,
    fresh_registry,
    synthetic_features,
)

runner = CliRunner()


@pytest.fixture
def registered(settings: Settings) -> Registry:
    registry = fresh_registry(settings)
    model = StandInModel.fit(*synthetic_features(n=80))
    for snapshot in (7, 8):
        registry.register(model, metrics={"pr_auc_home_care": 0.41}, features=FEATURES,
                          lake_snapshot=snapshot, fairness=fairness_table(),
                          backtest=backtest_table())  # fmt: skip
    return registry


def promote(version: int, request: str | None = None):
    args = ["models", "promote", str(version)] + (["--request", request] if request else [])
    return runner.invoke(app, args)


def open_operation(settings: Settings, payload: dict, approver: str | None) -> str:
    service = Service.open(settings)
    try:
        op = rq.open_admin_operation(
            service, principal_for_user(service, "ann"), "model.promote", payload
        )
        if approver:
            rq.review(service, principal_for_user(service, approver), op, "approve")
        return op
    finally:
        service.close()


def test_promotion_needs_a_second_administrator_once_there_are_administrators(
    settings: Settings, registered: Registry
):
    made = runner.invoke(app, ["admin", "init", "--admin", "ann", "--admin", "ben"])
    assert made.exit_code == 0, made.output
    asked = promote(2)
    assert asked.exit_code == 1 and "second administrator" in asked.output
    pending = open_operation(settings, {"model": MODEL_NAME, "version": 2}, approver=None)
    assert promote(2, pending).exit_code == 1  # ann's own approval is the first of two
    other = open_operation(settings, {"model": MODEL_NAME, "version": 1}, approver="ben")
    wrong = promote(2, other)
    assert wrong.exit_code == 1 and "differs in: version" in wrong.output
    assert registered.promoted() is None
    op = open_operation(settings, {"model": MODEL_NAME, "version": 2}, approver="ben")
    done = promote(2, op)
    assert done.exit_code == 0, done.output
    v = registered.promoted()
    assert (v.version, v.approval) == (2, op) and v.promoted_by.startswith("cli:")
    assert v.sha256 in one_line(done)
    assert promote(2, op).exit_code == 1  # an approval is used once
    log = AuditLog.from_settings(settings, KeyRing.from_settings(settings))
    promotions = [r for r in log.records() if r["action"] == "model.promote"]
    assert [(r["version"], r["approval"], r["sha256"]) for r in promotions] == [(2, op, v.sha256)]
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "yes," in listed.output and v.sha256[:12] in listed.output
    shown = runner.invoke(app, ["models", "show"])
    assert "version 2" in shown.output and "PIPL art. 24" in shown.output
    backtest = runner.invoke(app, ["models", "backtest", "1"])
    assert backtest.exit_code == 0 and "emergency_help" in backtest.output


def test_a_changed_file_is_refused_before_an_approval_is_spent(
    settings: Settings, registered: Registry
):
    mv = registered.version(1)
    [path] = settings.models_dir.rglob(f"{mv.run_id}/**/{MODEL_FILE}")
    path.write_bytes(b"not the model")
    refused = promote(1)  # no administrators yet: no approval needed, the file still checks
    assert refused.exit_code == 1 and "version 1" in refused.output
    assert "refused to load" in refused.output and registered.promoted() is None
    assert promote(2).exit_code == 0 and registered.promoted().version == 2
