"""What needs attention, per person and role: reviews waiting (only for whoever can answer
now), overdue requests, failed deliveries, correction requests, alerts — each list only
what this person may see."""

from __future__ import annotations

import datetime as dt

import pytest
from test_requests_rules import Recorder, ask, person, pick, rec, requester_of, service

from catalog.model import ShareType
from share_api import attention
from share_api import requests as rq
from share_api.alerts import raise_alert

__all__ = ["Recorder", "rec", "service"]  # fixtures shared with the rules' tests


@pytest.fixture
def corrections(monkeypatch: pytest.MonkeyPatch) -> dict:
    """FEEDBACK's open correction requests, by the org asked for (None: all)."""
    from share_api import feedback

    filed: dict = {}

    def open_corrections(service, org):
        return [c for o, cs in filed.items() if org in (None, o) for c in cs]

    monkeypatch.setattr(feedback, "open_corrections", open_corrections, raising=False)
    return filed


def ids(found: dict, section: str) -> list[str]:
    return [item["id"] for item in found["sections"][section]]


def test_reviews_wait_for_whoever_can_answer_now(service, corrections):
    dept, ds, _ = pick(service, ShareType.conditional, sensitive=True)
    alice = requester_of(service, dept)
    req = ask(service, alice, dept, ds)
    owner, officer = person(dept, "bob", "reviewer"), person("hub", "dora", "data_officer")
    stranger = person(alice.org, "carl", "reviewer")  # a reviewer, of another department

    assert ids(attention.attention_for(service, owner), "reviews_waiting") == [req["id"]]
    assert ids(attention.attention_for(service, officer), "reviews_waiting") == [req["id"]]
    assert ids(attention.attention_for(service, alice), "reviews_waiting") == []
    assert ids(attention.attention_for(service, stranger), "reviews_waiting") == []

    rq.review(service, owner, req["id"], "approve")
    assert ids(attention.attention_for(service, owner), "reviews_waiting") == []
    (item,) = attention.attention_for(service, officer)["sections"]["reviews_waiting"]
    assert item["awaiting"] == ["data_officer"] and item["link"] == f"/requests/{req['id']}"
    rq.review(service, officer, req["id"], "approve")
    assert attention.attention_for(service, officer)["counts"]["reviews_waiting"] == 0


def test_overdue_requests_reach_requester_owner_and_officers(service, corrections, monkeypatch):
    dept, ds, _ = pick(service, ShareType.conditional, sensitive=True)
    alice = requester_of(service, dept)
    req = ask(service, alice, dept, ds)
    owner, officer = person(dept, "bob", "reviewer"), person("hub", "dora", "data_officer")
    assert ids(attention.attention_for(service, owner), "overdue") == []
    late = dt.datetime.fromisoformat(req["due_at"]) + dt.timedelta(days=3)
    monkeypatch.setattr(rq, "utc_now", lambda: late)
    for who in (alice, owner, officer):
        assert ids(attention.attention_for(service, who), "overdue") == [req["id"]]
    other = person(alice.org, "carl", "requester")  # the same department sees its requests
    assert ids(attention.attention_for(service, other), "overdue") == [req["id"]]
    outsider = next(c for c in service.catalogue.departments if c not in (dept, alice.org))
    assert ids(attention.attention_for(service, person(outsider, "x", "reviewer")), "overdue") == []


def test_failed_deliveries_are_listed_until_retried(service, rec, corrections):
    dept, ds, _ = pick(service, ShareType.unconditional, sensitive=True)
    alice = requester_of(service, dept)
    rec.fail = True
    req = ask(service, alice, dept, ds)
    officer = person("hub", "dora", "data_officer")
    (item,) = attention.attention_for(service, officer)["sections"]["failed_deliveries"]
    assert (item["id"], item["error"]) == (req["id"], "grant not made: RuntimeError")
    assert ids(attention.attention_for(service, alice), "failed_deliveries") == [req["id"]]
    rec.fail = False
    rq.retry_delivery(service, officer, req["id"])
    assert attention.attention_for(service, officer)["counts"]["failed_deliveries"] == 0


def test_corrections_reach_the_owner_department_and_officers(service, corrections):
    corrections["wjw"] = [{"kind": "correction", "id": "corr-1"}]
    corrections["gaj"] = [{"kind": "correction", "id": "corr-2"}]
    found = attention.attention_for(service, person("wjw", "bob", "reviewer"))
    assert ids(found, "corrections") == ["corr-1"]
    officer = attention.attention_for(service, person("hub", "dora", "data_officer"))
    assert sorted(ids(officer, "corrections")) == ["corr-1", "corr-2"]
    assert (
        ids(attention.attention_for(service, person("wjw", "r", "requester")), "corrections") == []
    )


def test_alerts_by_organisation_and_for_overseers(service, corrections):
    mine = raise_alert(service, "failed_signins", "src-1", org="wjw", summary="6 failures in 300 s")
    theirs = raise_alert(service, "read_rate", "gaj/u1", org="gaj", summary="40× normal rate")
    assert ids(attention.attention_for(service, person("wjw", "r", "requester")), "alerts") == [
        mine
    ]
    for role in ("auditor", "data_officer", "admin"):
        found = attention.attention_for(service, person("hub", "o", role))
        assert sorted(ids(found, "alerts")) == sorted([mine, theirs])
        assert {i["what"] for i in found["sections"]["alerts"]} == {"failed_signins", "read_rate"}


def test_an_added_source_lists_in_its_section(service, corrections):
    def landing(service, principal):
        return [{"kind": "delivery", "id": "dlv-1"}] if principal.has("data_officer") else []

    attention.add_source(service, "failed_deliveries", landing)
    attention.add_source(service, "failed_deliveries", landing)  # once
    officer = attention.attention_for(service, person("hub", "dora", "data_officer"))
    assert ids(officer, "failed_deliveries") == ["dlv-1"]
    assert attention.attention_for(service, person("wjw", "r", "requester"))["counts"] == {
        s: 0 for s in attention.SECTIONS
    }
    with pytest.raises(ValueError):
        attention.add_source(service, "gossip", landing)
