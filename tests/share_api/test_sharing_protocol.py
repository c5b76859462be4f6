"""The Delta Sharing REST surface at /delta-sharing, in process: profiles, listings (paged,
live grants only), version, metadata, query (time travel, errors), the signed file route
(HEAD, Range, 403s), the error shape and the audit records."""

from __future__ import annotations

import datetime as dt
import io
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import pyarrow.parquet as pq
import pytest

from share_api import grants
from share_api.sharing import tokens
from tests.share_api.test_data_read import make

COLUMNS = ["citizen_id", "gender", "birth_date", "community_code"]
P = "/delta-sharing"


def make_grant(service, org: str, **terms) -> str:
    return make(service, org, columns=COLUMNS, **terms)


def audit_since(service, mark: int, action: str) -> list[dict]:
    service.audit.flush()  # HEADs and further byte ranges are queued, not awaited
    return [r for r in service.audit.log.records()[mark:] if r["action"] == action]


def profile_of(api, person) -> dict:
    made = api.post(f"{P}/profile", headers=person.headers)
    assert made.status_code == 200, made.text
    return made.json()


def auth(profile: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {profile['bearerToken']}"}


def lines_of(response) -> list[dict]:
    return [orjson.loads(line) for line in response.content.splitlines()]


@pytest.fixture
def reader(people):
    return people.make("mzj", "requester")


@pytest.fixture
def profile(api, reader) -> dict:
    return profile_of(api, reader)


def table_path(grant_id: str, org: str = "mzj", schema: str = "gaj") -> str:
    return f"{P}/shares/{org}/schemas/{schema}/tables/{grant_id}"


# -- profiles and sign-in -----------------------------------------------------------------


def test_a_profile_is_downloaded_with_an_api_token_and_signs_in_to_the_protocol_only(
    service, api, reader
):
    mark = len(service.audit.log.records())
    made = api.post(f"{P}/profile", headers=reader.headers, params={"ttl_days": 2})
    assert made.status_code == 200, made.text
    assert made.headers["content-disposition"] == 'attachment; filename="mzj.share"'
    profile = made.json()
    assert profile["shareCredentialsVersion"] == 1
    assert profile["endpoint"] == "http://testserver/delta-sharing"
    expires = dt.datetime.fromisoformat(profile["expirationTime"])
    assert dt.timedelta(days=1.9) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=2)
    assert len(audit_since(service, mark, "sharing.profile_issue")) == 1

    assert api.get(f"{P}/shares", headers=auth(profile)).status_code == 200
    assert api.get("/grants", headers=auth(profile)).status_code == 401  # not an API token
    refused = api.get(f"{P}/shares", headers=reader.headers)  # an API token is no profile
    assert refused.status_code == 401
    assert refused.json()["errorCode"] == "UNAUTHENTICATED"
    assert set(refused.json()) == {"errorCode", "message"}
    none = api.get(f"{P}/shares")
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
    failed = audit_since(service, mark, "auth.failed")
    assert [r["reason"] for r in failed] == ["malformed", "malformed", "missing"]
    assert not audit_since(service, mark, "http.refused")  # one record a refusal

    listed = api.get(f"{P}/profiles", headers=reader.headers).json()
    (mine,) = [t for t in listed if t["id"] == profile["bearerToken"].split(".")[0]]
    revoked = api.post(f"{P}/profiles/{mine['id']}/revoke", headers=reader.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    again = api.get(f"{P}/shares", headers=auth(profile))
    assert again.status_code == 401 and "revoked" in again.json()["message"]


def test_someone_elses_profile_cannot_be_revoked_by_a_stranger(service, api, people, reader):
    profile = profile_of(api, reader)
    stranger = people.make("wjw", "requester")
    token_id = profile["bearerToken"].split(".")[0]
    refused = api.post(f"{P}/profiles/{token_id}/revoke", headers=stranger.headers)
    assert refused.status_code == 404
    assert tokens.get_profile_token(service, token_id)["revoked_at"] is None


# -- listings -------------------------------------------------------------------------------


def test_listings_show_the_recipients_live_grants_paged(service, api, reader, profile):
    live = sorted(make_grant(service, "mzj") for _ in range(3))
    gone = make_grant(service, "mzj")
    grants.revoke_grant(service, gone, actor="system", reason="test")
    make_grant(service, "wjw")  # another recipient's
    h = auth(profile)

    assert api.get(f"{P}/shares", headers=h).json() == {"items": [{"name": "mzj", "id": "mzj"}]}
    assert api.get(f"{P}/shares/MZJ", headers=h).json() == {"share": {"name": "mzj", "id": "mzj"}}
    assert api.get(f"{P}/shares/wjw", headers=h).json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
    assert api.get(f"{P}/shares/mzj/schemas", headers=h).json() == {
        "items": [{"name": "gaj", "share": "mzj"}]
    }
    every = api.get(f"{P}/shares/mzj/all-tables", headers=h).json()
    assert [t["name"] for t in every["items"]] == live
    assert "nextPageToken" not in every
    assert every["items"][0]["schema"] == "gaj" and every["items"][0]["share"] == "mzj"

    seen, token = [], None
    for _ in range(5):
        params = {"maxResults": 2} | ({"pageToken": token} if token else {})
        got = api.get(f"{P}/shares/mzj/schemas/gaj/tables", headers=h, params=params).json()
        seen += [t["name"] for t in got["items"]]
        token = got.get("nextPageToken")
        if not token:
            break
    assert seen == live
    assert api.get(f"{P}/shares/mzj/schemas/mca/tables", headers=h).status_code == 404
    bad = api.get(f"{P}/shares/mzj/all-tables", headers=h, params={"pageToken": "xyz"})
    assert bad.status_code == 400 and bad.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    wrong = api.get(f"{P}/shares/mzj/all-tables", headers=h, params={"maxResults": -1})
    assert wrong.status_code == 400


# -- a table --------------------------------------------------------------------------------


def test_version_metadata_and_query_serve_the_grants_masked_rows(service, api, reader, profile):
    gid = make_grant(service, "mzj")
    h = auth(profile)
    version = api.get(table_path(gid) + "/version", headers=h)
    assert version.status_code == 200, version.text
    assert version.content == b""
    current = int(version.headers["delta-table-version"])

    meta = api.get(table_path(gid) + "/metadata", headers=h)
    assert meta.status_code == 200, meta.text
    assert meta.headers["delta-sharing-capabilities"] == "responseformat=parquet"
    assert meta.headers["content-type"].startswith("application/x-ndjson")
    protocol, metadata = lines_of(meta)
    assert protocol == {"protocol": {"minReaderVersion": 1}}
    schema = orjson.loads(metadata["metaData"]["schemaString"])
    assert [f["name"] for f in schema["fields"]] == COLUMNS
    assert "timestamp_ntz" not in metadata["metaData"]["schemaString"]
    assert metadata["metaData"]["partitionColumns"] == []

    mark = len(service.audit.log.records())
    query = api.post(table_path(gid) + "/query", headers=h, json={})
    assert query.status_code == 200, query.text
    assert int(query.headers["delta-table-version"]) == current
    lines = lines_of(query)
    assert set(lines[0]) == {"protocol"} and set(lines[1]) == {"metaData"}
    files = [line["file"] for line in lines[2:]]
    assert files and all({"url", "id", "partitionValues", "size"} <= set(f) for f in files)

    rows = []
    for f in files:
        split = urlsplit(f["url"])
        got = api.get(split.path + "?" + split.query)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "application/octet-stream"
        assert int(got.headers["content-length"]) == f["size"] == len(got.content)
        rows.append(pq.read_table(io.BytesIO(got.content)))
    served = sum(t.num_rows for t in rows)
    page = api.get(
        f"/grants/{gid}/data", headers=reader.headers, params={"limit": 10_000, "format": "json"}
    ).json()
    assert served == page["total"]
    json_rows = {tuple(r[c] for c in COLUMNS) for r in page["rows"]}
    file_rows = {tuple(r.values()) for t in rows for r in t.to_pylist()}
    assert {tuple(str(v) if v is not None else None for v in r) for r in file_rows} >= {
        tuple(str(v) if v is not None else None for v in r) for r in json_rows
    }

    (queried,) = audit_since(service, mark, "sharing.query")
    assert queried["grant"] == gid and queried["files"] == len(files)
    assert queried["bytes"] == sum(f["size"] for f in files)
    (read,) = [r for r in audit_since(service, mark, "data.read") if r["format"] != "json"]
    assert read["format"] == "delta_sharing" and read["grant"] == gid
    downloads = audit_since(service, mark, "sharing.file")
    assert {d["file"] for d in downloads} == {f["id"] for f in files}
    for record in audit_since(service, mark, ""):
        assert "citizen_id" not in str(record)


def test_time_travel_and_bad_input_are_4xx(service, api, reader, profile):
    gid = make_grant(service, "mzj")
    h = auth(profile)
    path = table_path(gid) + "/query"
    first = api.post(path, headers=h, json={"version": 0})
    assert first.status_code == 200, first.text
    assert first.headers["delta-table-version"] == "0"
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    at = api.post(path, headers=h, json={"timestamp": future})
    assert at.status_code == 200, at.text
    for body, status in [
        ({"version": 0, "timestamp": future}, 400),
        ({"version": 99}, 400),
        ({"version": "x"}, 400),
        ({"timestamp": "2000-01-01T00:00:00Z"}, 400),
        ({"timestamp": 1700000000.5}, 400),
        ({"startingVersion": 0}, 400),
        ({"limitHint": "many", "jsonPredicateHints": 7}, 200),  # hints never fail
    ]:
        got = api.post(path, headers=h, json=body)
        assert got.status_code == status, (body, got.text)
        if status == 400:
            assert got.json()["errorCode"] in {
                "INVALID_PARAMETER_VALUE",
                "MALFORMED_REQUEST",
                "UNSUPPORTED_OPERATION",
            }
    raw = api.post(path, headers=h | {"content-type": "application/json"}, content=b"[")
    assert raw.status_code == 400 and raw.json()["errorCode"] == "MALFORMED_REQUEST"
    stamp = api.get(
        table_path(gid) + "/version", headers=h, params={"startingTimestamp": "1700000000"}
    )
    assert stamp.status_code == 400 and "ISO-8601" in stamp.json()["message"]
    changes = api.get(table_path(gid) + "/changes", headers=h)
    assert changes.status_code == 400  # a start is required
    unknown = api.get(table_path("grant-0000000000000000") + "/version", headers=h)
    assert unknown.status_code == 404
    assert unknown.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
    wrong_schema = api.get(table_path(gid, schema="mca") + "/version", headers=h)
    assert wrong_schema.status_code == 404


# -- the file route -------------------------------------------------------------------------


def _file_url(api, gid: str, profile: dict, org: str = "mzj") -> tuple[str, dict[str, str], int]:
    query = api.post(table_path(gid, org) + "/query", headers=auth(profile), json={})
    assert query.status_code == 200, query.text
    lines = lines_of(query)
    f = lines[2]["file"]
    split = urlsplit(f["url"])
    return split.path, dict(parse_qsl(split.query)), f["size"]


def test_the_file_route_serves_head_and_ranges_exactly(api, service, reader, profile):
    gid = make_grant(service, "mzj")
    path, params, size = _file_url(api, gid, profile)
    url = path + "?" + urlencode(params)
    mark = len(service.audit.log.records())
    head = api.head(url)
    assert head.status_code == 200 and head.content == b""
    (probe,) = audit_since(service, mark, "sharing.file_head")
    assert probe["bytes"] == 0 and probe["grant"] == gid
    assert int(head.headers["content-length"]) == size
    assert head.headers["accept-ranges"] == "bytes"
    whole = api.get(url).content
    assert len(whole) == size and whole[:4] == b"PAR1" and whole[-4:] == b"PAR1"
    # the file's first range on this token was on record before a byte left (no flush)
    firsts = [r for r in service.audit.log.records()[mark:] if r["action"] == "sharing.file"]
    assert [(r["first"], r["bytes"]) for r in firsts] == [(0, size)]
    for header, first, last in [
        ("bytes=0-3", 0, 3),
        (f"bytes={size - 8}-", size - 8, size - 1),
        ("bytes=-8", size - 8, size - 1),
        (f"bytes=10-{size + 100}", 10, size - 1),
    ]:
        part = api.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert int(part.headers["content-length"]) == last - first + 1
        assert part.content == whole[first : last + 1]
    past = api.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    sent = audit_since(service, mark, "sharing.file")
    assert [r["bytes"] for r in sent] == [size, 4, 8, 8, size - 10]
    assert [r["first"] for r in sent] == [0, 0, size - 8, size - 8, 10]


def test_file_urls_refused_with_403(api, service, people, reader, profile):
    gid = make_grant(service, "mzj")
    path, params, _size = _file_url(api, gid, profile)
    mark = len(service.audit.log.records())

    def status(path=path, **change) -> int:
        return api.get(path + "?" + urlencode(params | change)).status_code

    assert status() == 200
    assert status(r="wjw") == 403  # another recipient named
    assert status(e=str(int(params["e"]) + 60)) == 403  # a longer life
    assert status(path=path[:-1] + ("0" if path[-1] != "0" else "1")) == 403  # another file

    # another recipient's file under its own valid URL's signature and grant
    other = people.make("wjw", "requester")
    other_gid = make_grant(service, "wjw")
    other_path, other_params, _ = _file_url(api, other_gid, profile_of(api, other), "wjw")
    assert api.get(path + "?" + urlencode(other_params)).status_code == 403
    assert api.get(other_path + "?" + urlencode(other_params)).status_code == 200

    denied = audit_since(service, mark, "sharing.denied")
    assert len(denied) == 4 and all(d["status"] == 403 for d in denied)
    assert not audit_since(service, mark, "http.refused")

    grants.revoke_grant(service, gid, actor="system", reason="test")
    assert status() == 403
    listed = api.get(f"{P}/shares/mzj/all-tables", headers=auth(profile)).json()
    assert gid not in [t["name"] for t in listed["items"]]
    revoked_query = api.post(table_path(gid) + "/query", headers=auth(profile), json={})
    assert revoked_query.status_code == 403

    tokens.revoke_profile(service, other_params["t"])
    assert api.get(other_path + "?" + urlencode(other_params)).status_code == 403


def test_an_expired_file_url_is_403(api, service, reader, profile, monkeypatch):
    gid = make_grant(service, "mzj")
    path, params, _size = _file_url(api, gid, profile)
    from share_api.sharing import urls

    later = dt.datetime.fromtimestamp(int(params["e"]), dt.UTC) + dt.timedelta(seconds=1)
    monkeypatch.setattr(urls, "utc_now", lambda: later)
    got = api.get(path + "?" + urlencode(params))
    assert got.status_code == 403 and "expired" in got.json()["message"]


# -- the spec -------------------------------------------------------------------------------


def test_the_sub_app_serves_its_own_spec_and_the_apis_stays_its_own(api):
    spec = api.get(f"{P}/openapi.json").json()
    paths = set(spec["paths"])
    assert "/shares/{share}/schemas/{schema}/tables/{table}/query" in paths
    assert "/files/{file_id}" in paths and "/profile" in paths
    schemes = spec["components"]["securitySchemes"]
    assert {"profile", "token"} <= set(schemes)
    main = api.get("/openapi.json").json()
    assert not [p for p in main["paths"] if p.startswith(P)]


def test_no_5xx_from_schemathesis_on_the_protocols_spec(server, service, people, api):
    """Every operation of the sub-app's spec, in cases that fit it and cases that do not,
    against a real uvicorn: 4xx for whatever is wrong, never a 5xx (the client would retry
    one for ~100 s)."""
    import requests
    import schemathesis
    from schemathesis import GenerationMode

    from tests.share_api.test_schemathesis import EXAMPLES, fuzz

    person = people.make("mzj", "requester")
    profile = profile_of(api, person)
    gid = make_grant(service, "mzj")
    path, _params, _size = _file_url(api, gid, profile)
    schema = schemathesis.openapi.from_dict(api.get(f"{P}/openapi.json").json())
    real = {
        "share": "mzj",
        "schema": "gaj",
        "table": gid,
        "file_id": path.rsplit("/", 1)[1],
        "token_id": profile["bearerToken"].split(".")[0],
    }
    headers = auth(profile) | {"X-Unused": "1"}
    session = requests.Session()
    failures: list[str] = []
    total = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    mark = len(service.audit.log.records())
    for operation in operations:
        # the profile routes sign in with the API token, the protocol's with the profile's
        who = person.headers if operation.path.startswith("/profile") else headers
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            made, bad = fuzz(operation, mode, who, server.url + P, session, real)
            total += made
            failures += bad
    assert total >= len(operations) * EXAMPLES / 2
    assert failures == [], "\n".join(failures[:20])
    answered = {r["action"] for r in service.audit.log.records()[mark:]}
    assert {"sharing.shares", "sharing.tables", "sharing.version", "sharing.query"} <= answered


def test_changes_between_versions_carry_versions_timestamps_and_change_types(
    service, api, reader, profile
):
    from tests.share_api.test_sharing_versions import commit

    gid = make_grant(service, "mzj")
    h = auth(profile)
    path = table_path(gid) + "/changes"
    v0 = int(api.get(table_path(gid) + "/version", headers=h).headers["delta-table-version"])
    whole = api.post(table_path(gid) + "/query", headers=h, json={})
    before = sum(line["file"]["size"] > 0 for line in lines_of(whole)[2:])
    commit(service, 'DELETE FROM staged."gaj__registered_residents" WHERE rowid % 40 = 0')
    v1 = int(api.get(table_path(gid) + "/version", headers=h).headers["delta-table-version"])
    assert v1 == v0 + 1 and before

    got = api.get(path, headers=h, params={"startingVersion": v0, "endingVersion": v1})
    assert got.status_code == 200, got.text
    assert int(got.headers["delta-table-version"]) == v0
    lines = lines_of(got)
    assert set(lines[0]) == {"protocol"} and set(lines[1]) == {"metaData"}
    kinds = [next(iter(line)) for line in lines[2:]]
    assert set(kinds) <= {"add", "cdf", "remove"} and "add" in kinds and "cdf" in kinds
    deleted = 0
    for line in lines[2:]:
        ((kind, body),) = line.items()
        assert body["version"] == (v0 if kind == "add" else v1)
        assert isinstance(body["timestamp"], int) and body["timestamp"] > 0
        if kind == "cdf":
            split = urlsplit(body["url"])
            data = api.get(split.path + "?" + split.query)
            assert data.status_code == 200
            table = pq.read_table(io.BytesIO(data.content))
            assert set(table.column("_change_type").to_pylist()) <= {"insert", "delete"}
            deleted += table.column("_change_type").to_pylist().count("delete")
    assert deleted > 0
    # from v1 to the current version (the default end): the changes v1 made, each line v1's
    latest = api.get(path, headers=h, params={"startingVersion": v1})
    assert latest.status_code == 200 and latest.headers["delta-table-version"] == str(v1)
    got = lines_of(latest)[2:]
    made_by_v1 = [line["cdf"]["id"] for line in lines[2:] if "cdf" in line]
    assert [line["cdf"]["id"] for line in got if "cdf" in line] == made_by_v1
    assert all(body["version"] == v1 for line in got for body in line.values())
    assert got and all(set(line) == {"cdf"} for line in got)  # not v1's whole rows again

    for params in [
        {"endingVersion": v1},  # no start
        {"startingVersion": v1, "endingVersion": v0},  # reversed
        {"startingVersion": v0, "endingVersion": v1 + 5},  # never recorded
        {"startingVersion": v0, "startingTimestamp": "2026-01-01T00:00:00Z"},
        {"startingTimestamp": "1700000000.0"},  # epoch seconds, not ISO-8601
        {"startingVersion": "zero"},
        {"startingVersion": v0, "includeHistoricalMetadata": "maybe"},
    ]:
        refused = api.get(path, headers=h, params=params)
        assert refused.status_code == 400, (params, refused.text)
        assert set(refused.json()) == {"errorCode", "message"}
