"""Feedback over HTTP: a grantee rates its grant and files a correction; the owner department
sees it in its attention list and answers; the grantee sees the answer; strangers get 404,
the requester cannot answer (403), bad bodies 422 — each call signed in, nothing of the
data's values in a response's error or in the audit log."""

from __future__ import annotations

import datetime as dt

from share_api import grants

RESOURCE = "gaj.registered_residents"


def test_rate_correct_answer_over_http(service, people, api) -> None:
    reader = people.make("mzj", "requester")
    owner = people.make("gaj", "reviewer")
    stranger = people.make("wjw", "requester", "reviewer")
    gid = grants.create_grant(
        service, grantee_org="mzj", resource=RESOURCE, columns=["citizen_id", "mobile"],
        row_filter=None, masking={}, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        request_id=None,
    )  # fmt: skip
    (row,) = api.get(f"/grants/{gid}/data", params={"limit": 1}, headers=reader.headers).json()[
        "rows"
    ]

    rated = api.post("/feedback/ratings", json={"grant_id": gid, "score": 4},
                     headers=reader.headers)  # fmt: skip
    assert rated.status_code == 201 and rated.json()["score"] == 4
    listed = api.get("/feedback/ratings", params={"grant_id": gid}, headers=reader.headers)
    assert [r["score"] for r in listed.json()] == [4]
    assert api.get("/feedback/ratings", params={"grant_id": gid},
                   headers=stranger.headers).status_code == 404  # fmt: skip

    body = {"grant_id": gid, "record_column": "citizen_id", "record": row["citizen_id"],
            "field": "mobile", "problem": "wrong", "note": "号码13812345678已停用"}  # fmt: skip
    filed = api.post("/corrections", json=body, headers=reader.headers)
    assert filed.status_code == 201, filed.text
    cid = filed.json()["id"]
    assert "13812345678" not in filed.text

    clear = api.post("/corrections", json=body | {"record": "110105194912310021"},
                     headers=reader.headers)  # fmt: skip
    assert clear.status_code == 422 and "110105194912310021" not in clear.text
    assert api.post("/corrections", json=body | {"problem": "nope"},
                    headers=reader.headers).status_code == 422  # fmt: skip
    assert api.post("/corrections", json=body, headers=stranger.headers).status_code == 404
    assert api.post("/corrections", json=body).status_code == 401

    waiting = api.get("/attention", headers=owner.headers).json()["sections"]["corrections"]
    assert [c["id"] for c in waiting] == [cid]
    assert api.get(f"/corrections/{cid}", headers=stranger.headers).status_code == 404
    assert api.post(f"/corrections/{cid}/answer", json={"decision": "accepted"},
                    headers=reader.headers).status_code == 403  # fmt: skip
    answered = api.post(f"/corrections/{cid}/answer",
                        json={"decision": "accepted", "answer": "下次交付更正"},
                        headers=owner.headers)  # fmt: skip
    assert answered.status_code == 200 and answered.json()["status"] == "answered"
    mine = api.get("/corrections", params={"status": "answered"}, headers=reader.headers).json()
    assert [(c["id"], c["decision"]) for c in mine] == [(cid, "accepted")]
    assert api.get("/attention", headers=owner.headers).json()["counts"]["corrections"] == 0

    service.close()  # the audit log durable: nothing of the values in it
    log = (service.settings.home_abs / "audit").rglob("*")
    text = "".join(p.read_text(errors="ignore") for p in log if p.is_file())
    assert "feedback.create" in text and "feedback.answer" in text
    assert row["citizen_id"] not in text and "13812345678" not in text
