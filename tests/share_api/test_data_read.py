"""Reading a grant over HTTP: JSON pages, Arrow IPC and Parquet through the grant's view
(masked, filtered, as of a lake snapshot), each read audited and recorded; revocation at
once; another organisation's grant, an unknown one, the rate limit."""

from __future__ import annotations

import datetime as dt
import io
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.days import beijing_day
from lakehouse.lake import open_lake
from masking.crypto import CIPHERTEXT
from masking.pseudonym import PSEUDONYM_PATTERN
from share_api import grants

RESOURCE = "gaj.registered_residents"
COLUMNS = ["citizen_id", "name", "gender", "birth_date", "community_code", "mobile"]


@pytest.fixture
def community(service) -> str:
    with open_lake(service.settings, read_only=True) as con:
        (code,) = con.execute(
            'SELECT community_code FROM staged."gaj__registered_residents" '
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    return code


def staged(service, sql: str, params: list) -> list[tuple]:
    with open_lake(service.settings, read_only=True) as con:
        return con.execute(sql, params).fetchall()


def make(service, org: str, **terms) -> str:
    args = {
        "grantee_org": org,
        "resource": RESOURCE,
        "columns": COLUMNS,
        "row_filter": None,
        "masking": {},
        "expires_at": dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        "request_id": None,
    } | terms
    return grants.create_grant(service, **args)


def test_json_arrow_parquet_masked_filtered_audited(service, people, api, community) -> None:
    reader = people.make("mzj", "requester")
    where = {"field": "community_code", "op": "eq", "value": community}
    gid = make(service, "mzj", row_filter=where)
    (expected,) = staged(
        service,
        'SELECT count(*) FROM staged."gaj__registered_residents" WHERE community_code = ?',
        [community],
    )[0:1]
    page = api.get(f"/grants/{gid}/data", params={"limit": 10}, headers=reader.headers)
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == expected[0] == int(page.headers["X-Total-Rows"])
    assert len(body["rows"]) == min(10, expected[0])
    assert body["next_offset"] == (10 if expected[0] > 10 else None)
    snapshot = body["snapshot"]
    hub = {
        r[0]
        for r in staged(
            service, 'SELECT "_pid_citizen_id" FROM staged."gaj__registered_residents"', []
        )
    }
    for row in body["rows"]:
        assert row["community_code"] == community
        assert re.fullmatch(PSEUDONYM_PATTERN, row["citizen_id"])
        assert row["citizen_id"] not in hub  # the recipient's own key, not the hub's
        assert row["name"].endswith("*") and "****" in (row["mobile"] or "****")
        assert re.fullmatch(r"\d{4}", row["birth_date"] or "1900")
        for value in row.values():
            assert not re.match(CIPHERTEXT, str(value))
            # a citizen ID as a token of its own: a hex pseudonym may begin with 18 digits
            # by chance ('317798175534391138c9' failed a CI run), a letter after them
            assert not re.search(r"(?<![0-9A-Za-z])\d{17}[\dX](?![0-9A-Za-z])", str(value))
    arrow = api.get(f"/grants/{gid}/data", params={"format": "arrow", "snapshot": snapshot},
                    headers=reader.headers)  # fmt: skip
    table = pa.ipc.open_stream(arrow.content).read_all()
    parquet = api.get(f"/grants/{gid}/data", params={"format": "parquet", "snapshot": snapshot},
                      headers=reader.headers)  # fmt: skip
    assert pq.read_table(io.BytesIO(parquet.content)).equals(table)
    assert table.num_rows == expected[0] and table.column_names == COLUMNS
    assert table.slice(0, 10).to_pylist() == body["rows"]
    reads = grants.reads_of(service, gid)
    assert [r["format"] for r in reads] == ["json", "arrow", "parquet"]
    assert [r["rows"] for r in reads] == [len(body["rows"]), expected[0], expected[0]]
    assert all(r["snapshot"] == snapshot for r in reads)
    import hashlib

    assert reads[1]["digest"] == hashlib.sha256(arrow.content).hexdigest()
    record = service.audit.find(int(arrow.headers["X-Audit-Seq"]))
    assert record["action"] == "data.read" and record["grant"] == gid
    assert record["rows"] == expected[0] and record["snapshot"] == snapshot


def test_two_recipients_get_unlinkable_pseudonyms(service, people, api) -> None:
    a, b = people.make("mzj", "requester"), people.make("wjw", "requester")
    ga, gb = (
        make(service, "mzj", columns=["citizen_id"]),
        make(service, "wjw", columns=["citizen_id"]),
    )
    ids_a = [
        r["citizen_id"] for r in api.get(f"/grants/{ga}/data", headers=a.headers).json()["rows"]
    ]
    ids_b = [
        r["citizen_id"] for r in api.get(f"/grants/{gb}/data", headers=b.headers).json()["rows"]
    ]
    assert len(ids_a) == len(ids_b) > 0 and not set(ids_a) & set(ids_b)


def test_filter_on_a_sensitive_field_decrypts_under_the_grant(service, people, api) -> None:
    reader = people.make("mzj", "requester")
    gid = make(service, "mzj", row_filter={"field": "birth_date", "op": "age_ge", "value": 60})
    rows = api.get(f"/grants/{gid}/data", params={"limit": 10000},
                   headers=reader.headers).json()["rows"]  # fmt: skip
    assert rows and all(
        int(r["birth_date"]) <= beijing_day().year - 60 for r in rows
    )  # the filter's day
    decrypts = [r for r in service.audit.log.records() if r["action"] == "decrypt"]
    mine = [r for r in decrypts if r["actor"] == "share_api/mzj"]
    assert mine and {r["purpose"] for r in mine} == {f"share_grant:{gid}"}


def test_injection_in_a_row_filter_is_a_value(service, people, api) -> None:
    reader = people.make("mzj", "requester")
    evil = {"field": "community_code", "op": "eq", "value": "x' OR '1'='1"}
    gid = make(service, "mzj", row_filter=evil)
    body = api.get(f"/grants/{gid}/data", headers=reader.headers).json()
    assert body["total"] == 0
    with pytest.raises(grants.GrantError) as caught:
        make(service, "mzj", row_filter={"field": "1=1; DROP TABLE x", "op": "eq", "value": 1})
    assert caught.value.status_code == 400 and "DROP" not in caught.value.detail


def test_revoked_other_org_unknown_expired(service, people, api) -> None:
    reader, other = people.make("mzj", "requester"), people.make("wjw", "requester")
    gid = make(service, "mzj")
    assert api.get(f"/grants/{gid}/data", headers=reader.headers).status_code == 200
    assert api.get(f"/grants/{gid}/data", headers=other.headers).status_code == 403
    assert api.get("/grants/grant-0000000000000000/data", headers=reader.headers).status_code == 404
    grants.revoke_grant(service, gid, "admin/x", "ended")
    assert api.get(f"/grants/{gid}/data", headers=reader.headers).status_code == 403
    old = make(service, "mzj", expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    assert api.get(f"/grants/{old}/data", headers=reader.headers).status_code == 403
    denied = [r.get("reason") for r in service.audit.log.records() if r["action"] == "data.denied"]
    assert denied == ["not_grantee", "unknown", "revoked", "expired"]


def test_rate_limit_and_snapshots(service, people, api) -> None:
    reader = people.make("mzj", "requester")
    gid = make(service, "mzj", rate_per_minute=3)
    codes = [api.get(f"/grants/{gid}/data", headers=reader.headers).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    gid = make(service, "mzj")
    assert api.get(f"/grants/{gid}/data", params={"snapshot": 10**9},
                   headers=reader.headers).status_code == 404  # fmt: skip


def test_decrypt_check_covers_only_live_granted_columns(service) -> None:
    from share_api.views import resolve

    res = resolve(service.catalogue, RESOURCE)
    gid = make(service, "mzj", columns=["name", "gender"])
    check = grants.decrypt_check(service)
    assert check(gid, res.column_id("name"))
    assert not check(gid, res.column_id("citizen_id"))
    assert not check("grant-0000000000000000", res.column_id("name"))
    grants.revoke_grant(service, gid, "admin/x")
    assert not check(gid, res.column_id("name"))


def test_as_of_a_snapshot_and_the_retention_window(service, people, api) -> None:
    reader = people.make("mzj", "requester")
    gid = make(service, "mzj", columns=["gender", "community_code"])
    first = api.get(f"/grants/{gid}/data", params={"format": "arrow"}, headers=reader.headers)
    then = int(first.headers["X-Lake-Snapshot"])
    with open_lake(service.settings) as con:  # the copy's lake moves on: 5 more rows
        con.execute(
            'INSERT INTO staged."gaj__registered_residents" '
            'SELECT * FROM staged."gaj__registered_residents" LIMIT 5'
        )
    import time

    time.sleep(1.1)  # a process takes the current snapshot as current for a second
    now = api.get(f"/grants/{gid}/data", params={"format": "arrow"}, headers=reader.headers)
    assert int(now.headers["X-Lake-Snapshot"]) > then
    assert int(now.headers["X-Total-Rows"]) == int(first.headers["X-Total-Rows"]) + 5
    again = api.get(f"/grants/{gid}/data", params={"format": "arrow", "snapshot": then},
                    headers=reader.headers)  # fmt: skip
    assert again.content == first.content
    service.settings = service.settings.model_copy(update={"snapshot_retention_days": 0})
    gone = api.get(f"/grants/{gid}/data", params={"snapshot": then}, headers=reader.headers)
    assert gone.status_code == 410


def test_masking_profile_per_column(service, people, api) -> None:
    reader = people.make("mzj", "requester")
    profile = {"name": "suppress", "gender": "pseudonymise", "mobile": "generalise_flag",
               "citizen_id": "suppress"}  # fmt: skip
    gid = make(service, "mzj", masking=profile)
    rows = api.get(f"/grants/{gid}/data", params={"limit": 50}, headers=reader.headers).json()
    for row in rows["rows"]:
        assert row["name"] is None and row["citizen_id"] is None
        assert re.fullmatch(PSEUDONYM_PATTERN, row["gender"])
        assert isinstance(row["mobile"], bool)
    assert len({r["gender"] for r in rows["rows"]}) <= 2  # one pseudonym a value
    suppressed = [r for r in service.audit.log.records()
                  if r["action"] == "decrypt" and r["purpose"] == f"share_grant:{gid}"]  # fmt: skip
    assert {r["column"].rsplit(".", 1)[1] for r in suppressed} == {"mobile", "birth_date"}
    for weaker in ({"citizen_id": "mask_name"}, {"citizen_id": "encrypt"}, {"name": "bogus"}):
        with pytest.raises(grants.GrantError) as caught:
            make(service, "mzj", masking=weaker)
        assert caught.value.status_code == 400
