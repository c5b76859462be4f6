"""Anomaly alerts (issue 14 item 7): a read-rate jump, repeated failed sign-ins and a
revoked token used each give a log line, an ``alert.open`` audit record and an open
alert; a repeat while open adds to its count, not a new record."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from catalog.settings import Settings
from share_api.alerts import Thresholds, Watch, close_alert, open_alerts, raise_alert
from share_api.service import Service


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    svc = Service.open(Settings(home=home))
    yield svc
    svc.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def watch(service: Service, clock: Clock) -> Watch:
    """The service's auditor watched by a Watch with small thresholds and our clock."""
    w = Watch(service, Thresholds(read_floor=20, read_factor=5, failed_signins=3), clock)
    service.audit.watchers[:] = [w.observe]
    return w


def records(service: Service, action: str) -> list[dict]:
    return [r for r in service.audit.log.records() if r["action"] == action]


def read(service: Service, actor: str, n: int) -> None:
    for _ in range(n):
        service.audit.record("data.read", actor, grant="grant-x", rows=100, digest="d")


def test_a_read_rate_jump_opens_one_alert(
    service: Service, watch: Watch, clock: Clock, caplog: pytest.LogCaptureFixture
):
    for _minute in range(10):  # the normal rate: 4 reads a minute
        read(service, "wjw/u1", 4)
        clock.now += 60
    read(service, "wjw/u1", 19)  # below the floor: nothing yet
    assert open_alerts(service) == []
    with caplog.at_level(logging.WARNING, logger="streethub.share.alerts"):
        read(service, "wjw/u1", 30)  # 20 and more, ≥ 5 × 4 a minute
    [alert] = open_alerts(service)
    assert (alert["kind"], alert["subject"], alert["org"]) == ("read_rate", "wjw/u1", "wjw")
    [opened] = records(service, "alert.open")
    assert opened["seq"] == alert["audit_seq"] and opened["reads_this_minute"] == 20
    assert opened["normal_per_minute"] == 4.0
    assert f"alert {alert['id']}: read_rate on wjw/u1" in caplog.text
    assert open_alerts(service, "mzj") == [] and open_alerts(service, "wjw") == [alert]


def test_a_rise_within_the_factor_is_normal(service: Service, watch: Watch, clock: Clock):
    for _minute in range(5):
        read(service, "mzj/u2", 15)
        clock.now += 60
    read(service, "mzj/u2", 70)  # above the floor, but under 5 × 15 a minute
    assert open_alerts(service) == []


def test_a_first_burst_above_the_floor_alerts(service: Service, watch: Watch):
    read(service, "zjj/u3", 25)
    [alert] = open_alerts(service)
    assert alert["kind"] == "read_rate" and alert["count"] == 1


def test_repeated_failed_sign_ins_from_one_source(service: Service, watch: Watch, clock: Clock):
    for _ in range(2):
        service.audit.record("auth.failed", "anonymous", reason="unknown", client="10.0.0.9")
        clock.now += 100
    service.audit.record("auth.failed", "anonymous", reason="unknown", client="10.0.0.8")
    assert open_alerts(service) == []
    clock.now += 150  # t = 350 s: the first failure (t = 0) has left the 300 s window
    service.audit.record("auth.failed", "anonymous", reason="expired", client="10.0.0.9")
    assert open_alerts(service) == []
    service.audit.record("auth.failed", "anonymous", reason="unknown", client="10.0.0.9")
    [alert] = open_alerts(service)
    assert (alert["kind"], alert["subject"]) == ("failed_signins", "10.0.0.9")
    service.audit.record("auth.failed", "anonymous", reason="unknown", client="10.0.0.9")
    [again] = open_alerts(service)
    assert again["count"] == 2 and len(records(service, "alert.open")) == 1


def test_a_revoked_token_used_alerts_at_once(service: Service, watch: Watch):
    service.audit.record(
        "auth.failed", "wjw/u1", reason="revoked", token="tok-1", client="1.2.3.4", path="/me"
    )
    [alert] = open_alerts(service)
    assert (alert["kind"], alert["subject"], alert["org"]) == ("revoked_token", "tok-1", "wjw")
    [opened] = records(service, "alert.open")
    assert opened["path"] == "/me" and opened["kind"] == "revoked_token"


def test_closing_an_alert_is_audited(service: Service, watch: Watch):
    alert_id = raise_alert(service, "revoked_token", "tok-9", org=None, summary="test")
    assert close_alert(service, alert_id, "sjj/auditor")["closed_by"] == "sjj/auditor"
    assert open_alerts(service) == []
    assert close_alert(service, alert_id, "sjj/auditor") is None
    [closed] = records(service, "alert.close")
    assert closed["alert"] == alert_id and closed["actor"] == "sjj/auditor"
    # closed: the next one of the same kind and subject opens a new alert
    assert raise_alert(service, "revoked_token", "tok-9", org=None, summary="t") != alert_id


def test_unknown_kinds_are_refused(service: Service):
    with pytest.raises(ValueError, match="unknown alert kind"):
        raise_alert(service, "weather", "x", org=None, summary="")


def test_quiet_sources_are_forgotten(
    service: Service, watch: Watch, clock: Clock, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("share_api.alerts.MAX_SOURCES", 3)
    for n in range(4):
        service.audit.record("auth.failed", "anonymous", reason="invalid", client=f"10.9.0.{n}")
    clock.now += 400  # all four have left the window
    service.audit.record("auth.failed", "anonymous", reason="invalid", client="10.9.0.9")
    service.audit.record("auth.failed", "anonymous", reason="invalid", client="10.9.0.8")
    assert watch.sources == 2  # the two new ones; the quiet four forgotten


def test_concurrent_repeats_add_to_one_alert(service: Service):
    import threading

    start = threading.Barrier(16)

    def repeat() -> None:
        start.wait()
        raise_alert(service, "revoked_token", "tok-7", org="wjw", summary="used")

    workers = [threading.Thread(target=repeat) for _ in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    [alert] = open_alerts(service)
    assert alert["count"] == 16
    assert len(records(service, "alert.open")) == 1
