"""The audit routes over HTTP: a grantee fetches the signed receipt of each of its reads
and checks it with ``GET /audit/public-key`` alone; nobody gets another department's
receipt; ``GET /alerts`` lists all alerts to overseers and its own to anyone else."""

from __future__ import annotations

import pytest

from masking.audit import public_keys_from, verify_receipt
from share_api.alerts import Thresholds, Watch, raise_alert
from share_api.service import Service
from tests.share_api.audit_support import built_mart, standing_grant


@pytest.fixture
def mart(mart_street) -> str:
    return built_mart(mart_street)


def test_a_read_receipt_verifies_with_the_published_key_alone(
    api, service: Service, people, mart: str
):
    reader = people.make("wjw", "requester")
    grant_id = standing_grant(service, "wjw", mart, 2)
    read = api.get(f"/grants/{grant_id}/data", params={"limit": 5}, headers=reader.headers)
    assert read.status_code == 200
    seq = int(read.headers["X-Audit-Seq"])

    receipt = api.get(f"/audit/receipts/{seq}", headers=reader.headers)
    assert receipt.status_code == 200
    body = receipt.json()
    record = body["record"]
    assert (record["action"], record["actor"], record["grant"]) == (
        "data.read",
        reader.actor,
        grant_id,
    )
    assert record["digest"] == read.headers["X-Content-SHA256"]
    assert "mac" not in record

    published = api.get("/audit/public-key")  # no token needed: the key is public
    assert published.status_code == 200
    keys = public_keys_from(published.json())
    assert verify_receipt(body, keys) == []
    body["record"]["rows"] += 1
    assert verify_receipt(body, keys) != []

    other = people.make("mzj", "requester")
    assert api.get(f"/audit/receipts/{seq}", headers=other.headers).status_code == 404
    not_a_read = service.audit.record("auth.ok", reader.actor)["seq"]
    assert api.get(f"/audit/receipts/{not_a_read}", headers=reader.headers).status_code == 404
    assert api.get("/audit/receipts/999999999", headers=reader.headers).status_code == 404
    auditor = people.make("sjj", "auditor")
    assert api.get(f"/audit/receipts/{seq}", headers=auditor.headers).status_code == 200
    asked = [r for r in service.audit.log.records() if r["action"] == "audit.receipt"]
    assert [(r["record"], r["found"]) for r in asked] == [
        (seq, True),
        (seq, False),
        (not_a_read, False),
        (999999999, False),
        (seq, True),
    ]


def test_alerts_are_listed_by_who_may_see_them(api, service: Service, people):
    own = raise_alert(service, "read_rate", "wjw/x", org="wjw", summary="test")
    raise_alert(service, "failed_signins", "10.1.1.1", org=None, summary="test")
    requester = people.make("wjw", "requester")
    stranger = people.make("mzj", "requester")
    officer = people.make("sjj", "data_officer")

    mine = api.get("/alerts", headers=requester.headers)
    assert mine.status_code == 200 and [a["id"] for a in mine.json()] == [own]
    assert api.get("/alerts", headers=stranger.headers).json() == []
    assert len(api.get("/alerts", headers=officer.headers).json()) == 2
    assert api.get("/alerts").status_code == 401

    assert api.post(f"/alerts/{own}/close", headers=requester.headers).status_code == 403
    closed = api.post(f"/alerts/{own}/close", headers=officer.headers)
    assert closed.status_code == 200 and closed.json()["closed_by"] == officer.actor
    assert api.post(f"/alerts/{own}/close", headers=officer.headers).status_code == 404
    assert api.get("/alerts", headers=requester.headers).json() == []


def test_real_traffic_raises_alerts(api, service: Service, people, mart: str):
    """The service's own watch sees its records: a burst of reads and a run of failed
    sign-ins over HTTP open alerts that GET /alerts lists (thresholds lowered)."""
    [watch] = [w.__self__ for w in service.audit.watchers if isinstance(w.__self__, Watch)]
    watch.thresholds = Thresholds(read_floor=8, failed_signins=4)
    reader = people.make("wjw", "requester")
    grant_id = standing_grant(service, "wjw", mart, 1)
    for _ in range(8):
        assert api.get(f"/grants/{grant_id}/data", headers=reader.headers).status_code == 200
    for _ in range(4):
        assert api.get("/grants", headers={"Authorization": "Bearer nope"}).status_code == 401
    officer = people.make("sjj", "data_officer")
    listed = {(a["kind"], a["subject"]) for a in api.get("/alerts", headers=officer.headers).json()}
    assert listed == {("read_rate", reader.actor), ("failed_signins", "127.0.0.1")}
    own = api.get("/alerts", headers=reader.headers).json()
    assert [(a["kind"], a["org"]) for a in own] == [("read_rate", "wjw")]
