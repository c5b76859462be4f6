"""Feedback as functions: a grantee rates a grant's data and files correction requests
(校核纠错) on a record's field; they reach the owner department (its attention list), which
answers them; nothing of the data's values is stored in the clear or audited.

WORKFLOW's fixtures give the service (a fresh home, the audit log recorded); GRANTS' grants are stood in for by ``Grant`` rows handed out by a patched ``get_grant``;
the HTTP round trip is test_feedback_routes.py."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi import HTTPException
from test_requests_rules import person, rec, service

from catalog.model import MaskingRule
from masking.pseudonym import PSEUDONYM_HEX
from share_api import feedback as fb
from share_api.grants import Grant
from share_api.service import Service

__all__ = ["rec", "service"]  # WORKFLOW's fixtures: a service on a fresh home, audit recorded


@pytest.fixture
def grants(monkeypatch: pytest.MonkeyPatch) -> dict[str, Grant]:
    from share_api import grants as g

    held: dict[str, Grant] = {}
    monkeypatch.setattr(g, "get_grant", lambda service, grant_id: held.get(grant_id))
    return held


def a_dataset(service: Service):
    """A catalogue dataset with a pseudonymised sensitive field and an L1/L2 field."""
    for dept, ds in service.catalogue.datasets():
        pseudo = [f for f in ds.fields if f.masking is MaskingRule.pseudonymise]
        plain = [f for f in ds.fields if not f.level.sensitive]
        other = [f for f in ds.fields if f.level.sensitive and f not in pseudo]
        if pseudo and plain and other:
            return dept.code, ds, pseudo[0].name, plain[0].name, other[0].name
    raise LookupError("no dataset with a pseudonymised, a plain and another sensitive field")


def grant_of(grants, service, org: str, *, revoked: bool = False) -> tuple[Grant, tuple]:
    dept, ds, pseudo, plain, other = a_dataset(service)
    now = dt.datetime.now(dt.UTC)
    grant = Grant(
        id=f"gr-{len(grants) + 1}", grantee_org=org, resource=f"{dept}.{ds.code}",
        columns=(pseudo, plain, other), row_filter=None,
        masking={pseudo: "pseudonymise", plain: "none", other: "mask_mobile"},
        expires_at=None, request_id=None, standing=False, rate_per_minute=60, created_at=now,
        created_by="test", revoked_at=now if revoked else None, revoked_by=None,
        revoke_reason=None,
    )  # fmt: skip
    grants[grant.id] = grant
    return grant, (dept, pseudo, plain, other)


PSEUDONYM = ("a3f1" * 16)[:PSEUDONYM_HEX]


def test_a_correction_reaches_the_owner_and_is_answered(service, grants, rec):
    alice = person("mzj", "alice", "requester")
    grant, (dept, pseudo, _, other) = grant_of(grants, service, alice.org)
    filed = fb.file_correction(
        service, alice, grant.id, record_column=pseudo, record=PSEUDONYM, field=other,
        problem="outdated", note="住址已变更，请核实",
    )  # fmt: skip
    assert filed["status"] == "open" and filed["owner_org"] == dept
    assert filed["record"] == PSEUDONYM and filed["field"] == other
    due = dt.datetime.fromisoformat(filed["due_at"])
    assert dt.timedelta(days=10) < due - dt.datetime.now(dt.UTC) < dt.timedelta(days=30)

    owner = person(dept, "bob", "reviewer")
    officer = person("hub", "dora", "data_officer")
    assert [c["id"] for c in fb.open_corrections(service, dept)] == [filed["id"]]
    assert fb.open_corrections(service, "gaj" if dept != "gaj" else "wjw") == []
    (item,) = fb.open_corrections(service, None)
    assert item["kind"] == "correction" and item["link"] == f"/corrections/{filed['id']}"
    assert item["what"] == f"{grant.resource}.{other}" and not item["overdue"]

    # only the owner's reviewers (or a data officer) answer; the requester cannot
    with pytest.raises(HTTPException) as no:
        fb.answer_correction(service, alice, filed["id"], "accepted")
    assert no.value.status_code == 403
    with pytest.raises(HTTPException) as reason:
        fb.answer_correction(service, owner, filed["id"], "rejected")
    assert reason.value.status_code == 422  # a rejection gives its reason
    done = fb.answer_correction(service, owner, filed["id"], "accepted", "下次交付更正")
    assert (done["status"], done["decision"], done["answered_by"]) == (
        "answered", "accepted", owner.actor,
    )  # fmt: skip
    with pytest.raises(HTTPException) as twice:
        fb.answer_correction(service, officer, filed["id"], "rejected", "重复")
    assert twice.value.status_code == 409
    assert fb.open_corrections(service, None) == []
    assert fb.get_correction(service, filed["id"], alice)["answer"] == "下次交付更正"

    actions = [(a, d.get("kind"), d.get("decision")) for a, _, d in rec.records]
    assert actions == [
        ("feedback.create", "correction", None),
        ("feedback.answer", None, "accepted"),
    ]
    for _, _, details in rec.records:
        assert PSEUDONYM not in details.values() and "note" not in details


def test_a_record_is_named_only_by_a_pseudonym_or_a_plain_l1_l2_value(service, grants):
    alice = person("mzj", "alice", "requester")
    grant, (_, pseudo, plain, other) = grant_of(grants, service, alice.org)

    def file(column, record):
        return fb.file_correction(
            service, alice, grant.id, record_column=column, record=record, field=other,
            problem="wrong",
        )  # fmt: skip

    assert file(plain, "CASE-0001")["record_column"] == plain
    for column, record in [
        (pseudo, "110105194912310021"),  # an ID where the data shows a pseudonym
        (other, "138****5678"),  # a display mask names no one record
        ("not_granted", PSEUDONYM),
    ]:
        with pytest.raises(HTTPException) as refused:
            file(column, record)
        assert refused.value.status_code == 422
        assert record not in refused.value.detail


def test_notes_are_scrubbed_and_only_the_grantee_files_feedback(service, grants, rec):
    alice = person("mzj", "alice", "requester")
    grant, (_, pseudo, _, other) = grant_of(grants, service, alice.org, revoked=True)
    note = "该居民手机号13812345678有误"
    rating = fb.rate(service, alice, grant.id, 2, note)  # a revoked grant's data is rated too
    assert "13812345678" not in rating["note"] and rating["score"] == 2
    filed = fb.file_correction(
        service, alice, grant.id, record_column=pseudo, record=PSEUDONYM, field=other,
        problem="wrong", note=note,
    )  # fmt: skip
    assert "13812345678" not in filed["note"]
    with service.engine.connect() as con:
        stored = [r.note for r in con.execute(fb.corrections_table.select())]
        stored += [r.note for r in con.execute(fb.ratings_table.select())]
    assert stored and all("13812345678" not in s for s in stored)

    mallory = person("gaj", "mallory", "requester", "reviewer")
    for call in (
        lambda: fb.rate(service, mallory, grant.id, 5),
        lambda: fb.list_ratings(service, mallory, grant.id),
        lambda: fb.get_correction(service, filed["id"], mallory),
    ):
        with pytest.raises(HTTPException) as hidden:
            call()
        assert hidden.value.status_code == 404
    with pytest.raises(HTTPException) as score:
        fb.rate(service, alice, grant.id, 6)
    assert score.value.status_code == 422
    assert [r["score"] for r in fb.list_ratings(service, alice, grant.id)] == [2]
    assert fb.list_corrections(service, mallory) == []
    assert [c["id"] for c in fb.list_corrections(service, alice)] == [filed["id"]]


def test_overdue_corrections_are_flagged(service, grants):
    alice = person("mzj", "alice", "requester")
    grant, (dept, pseudo, _, other) = grant_of(grants, service, alice.org)
    filed = fb.file_correction(
        service, alice, grant.id, record_column=pseudo, record=PSEUDONYM, field=other,
        problem="missing",
    )  # fmt: skip
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with service.engine.begin() as con:
        con.execute(fb.corrections_table.update().values(due_at=past))
    (item,) = fb.open_corrections(service, dept)
    assert item["overdue"] and item["id"] == filed["id"]
