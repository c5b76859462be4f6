"""Must-show (issue 16): a front end's standing grant on marts.need_scores reads the scores
through the share API (JSON, each row with its model version, cut-off and explanation); a
resident who refused automated assessment is absent from the next read, another present —
and the scoring step's list of residents not to score names the one who refused."""

from __future__ import annotations

import datetime as dt

import polars as pl

from catalog.marts import load_marts
from lakehouse.lake import open_lake
from marts.need_model.spec import NEEDS
from marts.publish import publish_frame
from masking.pseudonym import pseudonym_key
from share_api import grants
from share_api.consent import not_to_score, record_choice

CUTOFF = dt.date(2026, 11, 30)


def test_a_front_end_reads_need_scores_without_the_resident_who_refused(
    service, people, api, mart_street
) -> None:
    with open_lake(service.settings) as con:
        scored = [r[0] for r in con.execute(
            "SELECT person_id FROM marts.resident_profile ORDER BY person_id LIMIT 6"
        ).fetchall()]  # fmt: skip
        frame = pl.DataFrame(
            [
                {
                    "person_id": p,
                    "need": n,
                    "need_zh": z,
                    "probability": 0.1 * (i + 1),
                    "model_version": "need-v3",
                    "cutoff": CUTOFF,
                    "explanation": "独居",
                }
                for i, p in enumerate(scored)
                for n, z in NEEDS.items()
            ]
        )
        publish_frame(con, mart_street.catalogue, "need_scores", frame)
    app = people.make("app", "requester", kind="frontend")
    grant = grants.create_grant(
        service, grantee_org="app", resource="marts.need_scores",
        columns=load_marts()["need_scores"].column_names, row_filter=None, masking={},
        expires_at=None, request_id=None, standing=True,
    )  # fmt: skip
    theirs = dict(
        zip(scored, pseudonym_key(service.keyring, recipient="app").hexdigests(pl.Series(scored)),
            strict=True)
    )  # fmt: skip
    refuses, stays = scored[0], scored[1]

    def read() -> list[dict]:
        answer = api.get(f"/grants/{grant}/data", params={"limit": 1000}, headers=app.headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        return answer.json()["rows"]

    before = read()
    assert len(before) == len(scored) * len(NEEDS)
    assert {r["person_id"] for r in before} == set(theirs.values())  # the front end's own keys
    assert {(r["model_version"], r["cutoff"]) for r in before} == {("need-v3", str(CUTOFF))}
    assert not_to_score(service) == frozenset()

    record_choice(service, pseudonym=refuses, category="automated_assessment",
                  recipient_kind="department", choice="declined", channel="counter",
                  actor="sq/clerk")  # fmt: skip
    after = read()
    ids = {r["person_id"] for r in after}
    assert theirs[refuses] not in ids  # refused for one kind: out for every reader
    assert theirs[stays] in ids
    assert len(after) == len(before) - len(NEEDS)
    assert not_to_score(service) == {refuses}
