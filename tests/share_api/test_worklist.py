"""Community workers' worklist (share_api/worklist.py, /worklist routes): a worker assigned one
community reads its elderly alert without the residents who refused automated assessment,
reveals name, phone and address of its residents only (audited), reads the explanation of a
resident's scores (audited) and records visit outcomes."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from catalog.marts import load_marts
from lakehouse.lake import open_lake
from marts.alert_quality import against_visits
from marts.need_model.spec import NEEDS
from marts.publish import publish_frame
from share_api.consent import record_choice
from share_api.worklist import visit_frame

CUTOFF = dt.date(2026, 11, 30)
PHRASES = "独居；近30天门禁出入次数下降62%"


def _alert_rows(con, people: list[str]) -> None:
    """marts.elderly_alert holding ``people`` (taken from elderly_care) as alerted."""
    columns = load_marts()["elderly_alert"].column_names
    computed = {
        "recent_passes": "CAST(10 AS BIGINT)",
        "expected_passes": "CAST(26.3 AS DOUBLE)",
        "drop_pct": "62",
        "explanation": "'近30天门禁出入次数下降62%；独居'",
    }
    select = ", ".join(f"{computed[c]} AS {c}" if c in computed else f"c.{c}" for c in columns)
    con.execute(
        f"CREATE OR REPLACE TABLE marts.elderly_alert AS SELECT {select} "
        "FROM marts.elderly_care AS c WHERE list_contains(?, c.person_id)",
        [people],
    )


@pytest.fixture
def street(service, mart_street):
    """Two communities' elderly on the alert and scored; (community, ours, other's). Only
    elderly whose golden record holds a name: a few elderly of every street have no name,
    phone or address in curated.person (their reveal shows nothing), and which ones come
    first by pseudonym changes with the session's keys — the reveal tests failed on them."""
    with open_lake(service.settings) as con:
        care = con.execute(
            "SELECT community_code, list(person_id ORDER BY person_id) AS people "
            "FROM marts.elderly_care c WHERE person_id IN (SELECT person_id FROM "
            "marts.resident_profile) AND person_id IN (SELECT person_id FROM curated.person "
            "WHERE name IS NOT NULL) GROUP BY ALL HAVING count(*) >= 3 ORDER BY community_code"
        ).fetchall()
        (ours_code, ours), (_, theirs) = care[0], care[1]
        ours, theirs = ours[:3], theirs[:1]
        _alert_rows(con, ours + theirs)
        scores = pl.DataFrame(
            [
                {
                    "person_id": p,
                    "need": n,
                    "need_zh": z,
                    "probability": 0.3,
                    "cutoff": CUTOFF,
                    "model_version": "need-v3",
                    "explanation": PHRASES,
                }
                for p in ours + theirs
                for n, z in NEEDS.items()
            ]
        )
        publish_frame(con, mart_street.catalogue, "need_scores", scores)
    return ours_code, ours, theirs


@pytest.fixture
def worker(people, street):
    admin = people.make("sq", "admin", kind="department")
    person = people.make("sq", "community_worker", kind="department")
    return person, admin


def _assign(api, worker, admin, community: str) -> None:
    answer = api.put(
        f"/worklist/workers/{worker.user_id}",
        json={"community_code": community},
        headers=admin.headers,
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture
def assigned(api, street, worker):
    """The worker assigned the first community: (worker, its alerted, another's alerted)."""
    community, ours, theirs = street
    person, admin = worker
    _assign(api, person, admin, community)
    return person, ours, theirs


def _audited(service, action: str) -> list[dict]:
    return [r for r in service.audit.log.records() if r["action"] == action]


def test_a_worker_reads_their_communitys_alert_without_those_who_refused(
    service, api, street, worker, people
) -> None:
    community, ours, _theirs = street
    person, admin = worker
    assert api.get("/worklist", headers=person.headers).status_code == 403  # not assigned
    outsider = people.make("sq", "requester")
    assert api.put(f"/worklist/workers/{person.user_id}", json={"community_code": community},
                   headers=outsider.headers).status_code == 403  # fmt: skip
    _assign(api, person, admin, community)
    before = api.get("/worklist", headers=person.headers).json()
    assert before["community_code"] == community
    assert {r["person_id"] for r in before["rows"]} == set(ours)  # not the other community's
    assert all(r["explanation"].startswith("近30天") for r in before["rows"])
    record_choice(service, pseudonym=ours[0], category="automated_assessment",
                  recipient_kind="frontend", choice="declined", channel="grid_worker",
                  actor="sq/clerk")  # fmt: skip
    after = api.get("/worklist", headers=person.headers).json()
    assert {r["person_id"] for r in after["rows"]} == set(ours[1:])
    assert [r["rows"] for r in _audited(service, "worklist.read")] == [3, 2]
    assert api.get("/worklist", headers=outsider.headers).status_code == 403


def test_reveal_only_for_residents_of_ones_community_each_audited(service, api, assigned) -> None:
    person, ours, theirs = assigned
    answer = api.post(f"/worklist/residents/{ours[0]}/reveal", headers=person.headers)
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["name"] and "*" not in shown["name"]  # in clear, for the visit
    assert set(shown) == {"person_id", "name", "phone", "address"}
    decrypts = [r for r in _audited(service, "decrypt") if r["purpose"] == "community_visit"]
    assert decrypts and all(r["actor"] == person.actor for r in decrypts)
    assert len(decrypts) == sum(bool(shown[k]) for k in ("name", "phone", "address"))
    assert [r["person"] for r in _audited(service, "worklist.reveal")] == [ours[0]]
    refused = api.post(f"/worklist/residents/{theirs[0]}/reveal", headers=person.headers)
    assert refused.status_code == 403
    assert [r["person"] for r in _audited(service, "worklist.refused")] == [theirs[0]]
    assert len(_audited(service, "worklist.reveal")) == 1


def test_the_explanation_of_a_score_is_retrievable_and_audited(service, api, assigned) -> None:
    person, ours, _ = assigned
    answer = api.get(f"/worklist/residents/{ours[1]}/explanation", headers=person.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {s["need"] for s in body["scores"]} == set(NEEDS)
    assert {(s["model_version"], s["explanation"]) for s in body["scores"]} == {
        ("need-v3", PHRASES)
    }
    assert body["alert"]["drop_pct"] == 62
    assert [(r["person"], r["scores"]) for r in _audited(service, "worklist.explain")] == [
        (ours[1], len(NEEDS))
    ]


def test_visit_outcomes_are_recorded_and_shown_on_the_worklist(service, api, assigned) -> None:
    person, ours, theirs = assigned
    url = f"/worklist/residents/{ours[2]}/visits"
    found = api.post(url, json={"outcome": "need_found", "needs_found": ["home_care"]},
                     headers=person.headers)  # fmt: skip
    assert found.status_code == 201, found.text
    assert found.json()["on_alert"] is True and found.json()["outcome_zh"] == "发现需求"
    bad = api.post(url, json={"outcome": "no_need", "needs_found": ["home_care"]},
                   headers=person.headers)  # fmt: skip
    assert bad.status_code == 422
    other = api.post(f"/worklist/residents/{theirs[0]}/visits", json={"outcome": "not_home"},
                     headers=person.headers)  # fmt: skip
    assert other.status_code == 403
    rows = api.get("/worklist", headers=person.headers).json()["rows"]
    assert {r["person_id"]: r["last_outcome"] for r in rows}[ours[2]] == "need_found"
    listed = api.get("/worklist/visits", headers=person.headers).json()
    assert [(v["person_id"], v["needs_found"]) for v in listed] == [(ours[2], ["home_care"])]
    assert [r["outcome"] for r in _audited(service, "worklist.visit")] == ["need_found"]
    api.post(f"/worklist/residents/{ours[1]}/visits", json={"outcome": "no_need"},
             headers=person.headers)  # fmt: skip
    api.post(f"/worklist/residents/{ours[0]}/visits", json={"outcome": "not_home"},
             headers=person.headers)  # fmt: skip
    quality = against_visits(visit_frame(service))  # two alerted residents seen, one in need
    assert (quality.alerted, quality.hits, quality.precision) == (2, 1, 0.5)
