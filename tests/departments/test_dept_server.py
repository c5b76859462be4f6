"""The departments' HTTP APIs: auth, stable and complete paging, the cursor, seeded faults."""

from __future__ import annotations

import os

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient

from departments.server import api_token, create_app, running_server


@pytest.fixture(scope="module")
def token(sim) -> str:
    return api_token(sim)


@pytest.fixture(scope="module")
def client(sim, token) -> TestClient:
    return TestClient(create_app(sim, token, fault_rate=0, slow_rate=0))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fetch_all(client, token, path: str, page_size: int, **params) -> list[dict]:
    items, page = [], 1
    while True:
        r = client.get(path, params={"page": page, "page_size": page_size, **params},
                       headers=auth(token))  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["page"] == page and body["page_size"] == page_size
        items += body["items"]
        if not body["has_more"]:
            assert len(items) == body["total"]
            return items
        page += 1


def test_token_file_and_env(sim, monkeypatch):
    assert api_token(sim) == (sim / "api_token").read_text().strip()
    monkeypatch.setenv("STREETHUB_DEPT_API_TOKEN", "from-env")
    assert api_token(sim) == "from-env"


def test_auth_is_required(client, token):
    r = client.get("/api/rx/appeals")
    assert r.status_code == 401 and "error" in r.json()
    assert r.headers["www-authenticate"] == "Bearer"  # the scheme this dialect asks for
    r = client.get("/api/rx/appeals", headers=auth(token + "x"))
    assert r.status_code == 401
    assert client.get("/api/rx/appeals", headers=auth(token)).status_code == 200
    assert client.get("/health").json() == {"status": "ok", "pid": os.getpid()}


def test_unknown_dataset_and_bad_input(client, token):
    assert client.get("/api/rx/nothing", headers=auth(token)).status_code == 404
    assert client.get("/api/gaj/registered_residents", headers=auth(token)).status_code == 404
    r = client.get("/api/rx/appeals", params={"updated_since": "yesterday"}, headers=auth(token))
    assert r.status_code == 400
    r = client.get("/api/rx/appeals", params={"page": 0}, headers=auth(token))
    assert r.status_code == 400


@pytest.mark.parametrize("dept,code", [("rx", "appeals"), ("rx", "service_records"),
                                       ("rsj", "social_insurance"),
                                       ("rsj", "employment_registration")])  # fmt: skip
def test_paging_is_complete_stable_and_matches_truth(sim, client, token, dept, code):
    items = fetch_all(client, token, f"/api/{dept}/{code}", page_size=37)
    again = fetch_all(client, token, f"/api/{dept}/{code}", page_size=37)
    assert items == again
    stored = pl.read_parquet(sim / "systems" / dept / f"{code}.parquet").to_dicts()
    assert items == stored
    cursor = [i["update_time"] for i in items]
    assert cursor == sorted(cursor)
    clean = pl.read_parquet(sim / "truth" / dept / code / "clean.parquet")
    assert clean["_source_row"].to_list() == list(range(1, len(items) + 1))


def test_updated_since_filters(client, token):
    everything = fetch_all(client, token, "/api/rx/appeals", page_size=500)
    since = everything[len(everything) // 2]["update_time"]
    newer = fetch_all(client, token, "/api/rx/appeals", page_size=50,
                      updated_since=since.replace(" ", "T"))  # fmt: skip
    assert newer and all(i["update_time"] > since for i in newer)
    assert newer == [i for i in everything if i["update_time"] > since]
    tz = fetch_all(client, token, "/api/rx/appeals", page_size=50,
                   updated_since=since.replace(" ", "T") + "+08:00")  # fmt: skip
    assert tz == newer


def test_faults_occur_at_the_configured_rate(sim, token):
    client = TestClient(create_app(sim, token, fault_rate=0.3, slow_rate=0, seed=5))
    codes = [client.get("/api/rx/appeals", params={"page_size": 5}, headers=auth(token)).status_code
             for _ in range(400)]  # fmt: skip
    faults = sum(c != 200 for c in codes)
    assert set(codes) == {200, 429, 503}
    assert 0.22 < faults / 400 < 0.38
    r = next(r for r in (client.get("/api/rx/appeals", headers=auth(token)) for _ in range(50))
             if r.status_code == 429)  # fmt: skip
    assert r.headers["Retry-After"] == "0"


def test_slow_answers(sim, token):
    client = TestClient(create_app(sim, token, fault_rate=0, slow_rate=1.0, slow_seconds=0.05))
    app_stats = client.app.state.stats
    client.get("/api/rx/appeals", headers=auth(token))
    assert app_stats["slow"] == 1


def test_down_always_503(sim, token):
    client = TestClient(create_app(sim, token, down=True))
    assert all(client.get("/api/rx/appeals", headers=auth(token)).status_code == 503
               for _ in range(20))  # fmt: skip
    assert client.get("/health").status_code == 503


def test_retried_requests_succeed_over_real_http(sim, token):
    with (
        running_server(sim, fault_rate=0.5, slow_rate=0, seed=3) as url,
        httpx.Client(base_url=url, headers=auth(token), timeout=5) as http,
    ):
        for page in (1, 2, 3):
            for _attempt in range(60):
                r = http.get("/api/rsj/social_insurance", params={"page": page, "page_size": 10})
                if r.status_code == 200:
                    break
                assert r.status_code in (429, 503)
            assert r.status_code == 200 and len(r.json()["items"]) == 10
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=1)


def test_pages_equal_the_rows_sorted_and_filtered_in_python(tmp_path) -> None:
    """Served from an Arrow table, the pages hold exactly what sorting every row by
    (cursor, record id) and keeping those after ``updated_since`` gives: nulls first as
    "", ties in the file's order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from departments.server import API_DATASETS
    from departments.simulate import SYSTEMS_DIR

    (dept, code), (cursor, rid) = next(iter(API_DATASETS.items()))
    stamps = ["2026-11-30 09:00:00", "2026-11-29 18:30:00", None, "2026-11-30 09:00:00"]
    rows = [
        {cursor: stamps[i % 4], rid: None if i == 5 else f"R{(i * 7) % 5}", "n": i}
        for i in range(23)
    ]
    folder = tmp_path / SYSTEMS_DIR / dept
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / f"{code}.parquet")
    tok = "t"
    client = TestClient(create_app(tmp_path, tok, fault_rate=0, slow_rate=0))
    ordered = sorted(rows, key=lambda r: (r[cursor] or "", r[rid] or ""))
    path = f"/api/{dept}/{code}"
    assert fetch_all(client, tok, path, 4) == ordered
    for since in ("2026-11-29", "2026-11-30T09:00:00+08:00", "2026-11-30 08:59:59", "2027-01-01"):
        norm = {"2026-11-29": "2026-11-29 00:00:00", "2027-01-01": "2027-01-01 00:00:00"}
        bound = norm.get(since, "2026-11-30 09:00:00" if "+08" in since else since)
        want = [r for r in ordered if (r[cursor] or "") > bound]
        assert fetch_all(client, tok, path, 3, updated_since=since) == want


def fetch_platform(client, token, path: str, page_size: int, since: str | None = None):
    """Every record of the platform dialect's query interface, page by page, as a client
    of it reads them (until the total is received); the answers' envelopes checked."""
    items, page = [], 1
    while True:
        r = client.post(path, json={"pageNum": page, "pageSize": page_size, "updatedSince": since},
                        headers={"X-Access-Token": token})  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["code"], body["msg"]) == (200, "success")
        data = body["data"]
        assert (data["pageNum"], data["pageSize"]) == (page, page_size)
        items += data["list"]
        if len(items) >= data["total"] or not data["list"]:
            assert len(items) == data["total"]
            return items
        page += 1


@pytest.mark.parametrize("dept,code", [("rx", "appeals"), ("rsj", "social_insurance")])
def test_the_platform_dialect_serves_the_same_records(client, token, dept, code):
    """The query interface of a data-sharing platform (a POST with a JSON body, PageHelper
    paging, the token in X-Access-Token, an envelope) pages through exactly the records the
    reference protocol does, its since parameter alike."""
    path, reference = f"/open/{dept}/{code}/query", f"/api/{dept}/{code}"
    everything = fetch_all(client, token, reference, page_size=500)
    assert fetch_platform(client, token, path, 37) == everything
    since = everything[len(everything) // 2]["update_time"].replace(" ", "T")
    newer = fetch_all(client, token, reference, page_size=50, updated_since=since)
    assert 0 < len(newer) < len(everything)
    assert fetch_platform(client, token, path, 41, since=since) == newer


def test_the_platform_dialect_refuses_in_its_envelope(client, token):
    path = "/open/rx/appeals/query"
    for headers in ({}, {"X-Access-Token": token + "x"}, {"Authorization": f"Bearer {token}"}):
        r = client.post(path, json={}, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == 401
        assert "www-authenticate" not in r.headers  # its token is no bearer token
    ok = {"X-Access-Token": token}
    r = client.post(path, headers=ok)  # no body: the first page of the default size
    assert r.status_code == 200 and len(r.json()["data"]["list"]) == 100
    r = client.post("/open/rx/nothing/query", json={}, headers=ok)
    assert r.status_code == 404 and r.json()["code"] == 404
    r = client.post(path, json={"pageNum": 0}, headers=ok)
    assert r.status_code == 400 and "page" in r.json()["msg"]
    r = client.post(path, json={"updatedSince": "yesterday"}, headers=ok)
    assert r.status_code == 400 and r.json()["code"] == 400
