"""Issue 15's must-shows with the official ``delta-sharing`` 1.4.2 Python client against the
share service served by a real uvicorn (the ``server`` fixture), on a copy of the street.

A person of a recipient organisation downloads a profile from the service
(``POST /delta-sharing/profile``); the client, pointed at it, lists the grants' tables
(a dataset's and a mart's) and loads each; loads plain, with ``limit``, ``version``,
``timestamp`` and ``jsonPredicateHints``; reads the table version and the change feed (from
version 0, and from a later version: what that version made); the rows equal the JSON
endpoint's for the same lake snapshot, and an opt-out reaches time travel too. A table of
more than 16 MB loads (a grant on a table padded in the copy with distinct rows: Parquet
squeezes repeated rows far below that). A revoked grant leaves the listing and its old
signed URLs answer 403; an expired URL, a URL for another recipient's file and a tampered
one answer 403; a revoked profile is a 401 at once. Every protocol call and file download
is audited, naming grant, version and file, never data.

The client retries a 5xx for ~100 s; here a 5xx fails at once (``_should_retry`` is off but
where a test restores it).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import delta_sharing
import httpx
import pandas as pd
import pytest
import requests
from delta_sharing.rest_client import DataSharingRestClient

from lakehouse.lake import open_lake
from share_api import consent, grants
from share_api.sharing import files, tokens, urls, versions
from tests.share_api.audit_support import built_mart, standing_grant
from tests.share_api.conftest import LiveServer, People, Person
from tests.share_api.test_sharing_versions import (
    COLUMNS,
    HEALTH,
    KIND,
    a_resident,
    commit,
    make_grant,
)

RECIPIENT, OTHER = "mzj", "rsj"  # two recipient departments, neither owns HEALTH
OWNER = HEALTH.split(".")[0]
PREFIX = "/delta-sharing"
PROFILE_ROUTE = f"{PREFIX}/profile"  # POST, signed in with the API token
BIG_BYTES = 16 * 1024 * 1024
CLIENT_RETRIES = DataSharingRestClient._should_retry  # the client's own rule
BIG_ROWS = 240_000  # distinct rows of about 75 Parquet bytes each: a file of ~18 MB


@pytest.fixture(autouse=True)
def client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 5xx fails the test at once instead of ~100 s of the client's retries; no proxy of
    the environment stands between the client and 127.0.0.1 (requests and fsspec's aiohttp
    both read them)."""
    monkeypatch.setattr(DataSharingRestClient, "_should_retry", lambda self, error: False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# -------------------------------------------------------------------------------- helpers


@dataclass
class Recipient:
    """A person of a recipient organisation, their downloaded profile and its token."""

    person: Person
    profile: Path
    endpoint: str
    token: str

    def url(self, table) -> str:
        return f"{self.profile}#{table.share}.{table.schema}.{table.name}"

    def protocol(self) -> httpx.Client:
        """Raw protocol calls with the profile's token (to see the file lines)."""
        return httpx.Client(
            base_url=self.endpoint, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )


def download_profile(server: LiveServer, person: Person, folder: Path) -> Recipient:
    """The profile the service hands a signed-in person, saved as a ``.share`` file."""
    with server.client(person) as http:
        answer = http.post(PROFILE_ROUTE)
    assert answer.status_code == 200, answer.text
    profile = answer.json()
    assert profile["shareCredentialsVersion"] == 1
    assert profile["endpoint"].startswith(server.url) and profile["endpoint"].endswith(PREFIX)
    path = folder / f"{person.org}-{person.user_id}.share"
    path.write_text(json.dumps(profile), encoding="utf-8")
    return Recipient(person, path, profile["endpoint"], profile["bearerToken"])


def recipient_of(server, people: People, tmp_path: Path, org: str = RECIPIENT) -> Recipient:
    return download_profile(server, people.make(org, "requester"), tmp_path)


def table_of(who: Recipient, grant: grants.Grant):
    """The grant's table in the recipient's listing (None when it is not listed)."""
    listed = delta_sharing.SharingClient(str(who.profile)).list_all_tables()
    assert all(t.share == who.person.org for t in listed)
    found = [t for t in listed if t.name == grant.id]
    return found[0] if found else None


def json_rows(server: LiveServer, person: Person, grant_id: str, snapshot: int) -> list[tuple]:
    """Every row of the grant's JSON endpoint as of ``snapshot``, as sorted tuples."""
    rows: list[dict] = []
    offset = 0
    with server.client(person) as http:
        while True:
            page = http.get(
                f"/grants/{grant_id}/data",
                params={"format": "json", "limit": 10_000, "offset": offset, "snapshot": snapshot},
            )
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["snapshot"] == snapshot
            rows += body["rows"]
            if body["next_offset"] is None:
                break
            offset = body["next_offset"]
    return sorted(tuple(r[c] for c in COLUMNS) for r in rows)


def frame_rows(frame: pd.DataFrame) -> list[tuple]:
    assert list(frame.columns)[: len(COLUMNS)] == COLUMNS
    return sorted(frame[COLUMNS].itertuples(index=False, name=None))


def file_lines(who: Recipient, table, body: dict | None = None) -> list[dict]:
    """The ``file`` lines of a raw ``/query`` (what the client reads its URLs from)."""
    path = f"/shares/{table.share}/schemas/{table.schema}/tables/{table.name}/query"
    with who.protocol() as http:
        answer = http.post(path, json=body or {})
    assert answer.status_code == 200, answer.text
    assert "delta-table-version" in answer.headers
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert "protocol" in lines[0] and "metaData" in lines[1]
    return [line["file"] for line in lines[2:]]


def equal_hint(value: str, column: str = "followup_id") -> str:
    """A ``jsonPredicateHints`` tree: ``column = value``."""
    return json.dumps(
        {
            "op": "equal",
            "children": [
                {"op": "column", "name": column, "valueType": "string"},
                {"op": "literal", "value": value, "valueType": "string"},
            ],
        }
    )


def iso_z(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_second(when: dt.datetime) -> dt.datetime:
    """The first whole second after ``when`` (the client's timestamps have seconds)."""
    return when.replace(microsecond=0) + dt.timedelta(seconds=1)


def wait_past(when: dt.datetime) -> None:
    while dt.datetime.now(dt.UTC) <= when:
        time.sleep(0.05)


def records(service, prefix: str = "sharing.") -> list[dict]:
    return [r for r in service.audit.log.records() if r["action"].startswith(prefix)]


def names(record: dict) -> str:
    return json.dumps(record, default=str)


# ---------------------------------------------------------------------------------- tests


def test_the_client_lists_loads_and_time_travels(service, people, server, tmp_path) -> None:
    grant = make_grant(service)
    who = recipient_of(server, people, tmp_path)
    table = table_of(who, grant)
    assert table is not None and (table.share, table.schema) == (RECIPIENT, OWNER)
    url = who.url(table)

    # plain: the rows of the JSON endpoint at the same snapshot
    v0 = versions.current_version(service, grant, KIND)
    assert delta_sharing.get_table_version(url) == 0
    first = delta_sharing.load_as_pandas(url)
    before = json_rows(server, who.person, grant.id, v0.snapshot)
    assert frame_rows(first) == before and len(before) > 100
    assert first["citizen_id"].notna().all()  # pseudonyms, never the stored ciphertext
    assert not first["citizen_id"].str.startswith("a1:").any()
    limited = delta_sharing.load_as_pandas(url, limit=7)
    assert len(limited) == 7 and set(frame_rows(limited)) <= set(before)
    # predicate hints prune whole files by their statistics (the client filters nothing)
    held, above = before[0][0], "\uffff"  # an id the table holds; one above every id
    assert len(delta_sharing.load_as_pandas(url, jsonPredicateHints=equal_hint(above))) == 0
    assert len(delta_sharing.load_as_pandas(url, jsonPredicateHints=equal_hint(held))) == len(
        before
    )

    # a lake commit to the granted table: version 1 (rows deleted, one inserted)
    stamp = next_second(v0.recorded_at)
    wait_past(stamp)
    table_sql = 'staged."wjw__chronic_followups"'
    commit(service, f"DELETE FROM {table_sql} WHERE rowid % 25 = 0")
    commit(
        service,
        f"INSERT INTO {table_sql} SELECT * REPLACE (followup_id || '-new' AS followup_id) "
        f"FROM {table_sql} ORDER BY followup_id LIMIT 1",
    )
    assert delta_sharing.get_table_version(url) == 1
    v1 = versions.get_version(service, grant, 1)
    assert v1.snapshot > v0.snapshot
    after = json_rows(server, who.person, grant.id, v1.snapshot)
    assert frame_rows(delta_sharing.load_as_pandas(url)) == after != before
    assert frame_rows(delta_sharing.load_as_pandas(url, version=1)) == after
    assert frame_rows(delta_sharing.load_as_pandas(url, version=0)) == before
    assert frame_rows(delta_sharing.load_as_pandas(url, timestamp=iso_z(stamp))) == before
    assert delta_sharing.get_table_version(url, starting_timestamp=iso_z(stamp)) == 1
    assert len(delta_sharing.load_as_pandas(url, version=0, limit=3)) == 3

    # the change feed: version 0's rows inserted, then version 1's deletes and insert
    changes = delta_sharing.load_table_changes_as_pandas(url, starting_version=0, ending_version=1)
    for column in ("_change_type", "_commit_version", "_commit_timestamp"):
        assert column in changes.columns
    at0 = changes[changes["_commit_version"] == 0]
    at1 = changes[changes["_commit_version"] == 1]
    assert set(at0["_change_type"]) == {"insert"} and frame_rows(at0) == before
    deleted = frame_rows(at1[at1["_change_type"] == "delete"])
    inserted = frame_rows(at1[at1["_change_type"] == "insert"])
    assert deleted == sorted(set(before) - set(after)) and deleted
    assert inserted == sorted(set(after) - set(before)) and len(inserted) == 1
    assert set(changes["_change_type"]) <= {"insert", "delete"}
    # from version 1 (by number or by time): what version 1 made, not its whole rows again
    for since in (
        {"starting_version": 1, "ending_version": 1},
        {"starting_timestamp": iso_z(stamp)},
    ):
        made = delta_sharing.load_table_changes_as_pandas(url, **since)
        assert set(made["_commit_version"]) == {1}, since
        assert frame_rows(made[made["_change_type"] == "delete"]) == deleted, since
        assert frame_rows(made[made["_change_type"] == "insert"]) == inserted, since

    # an opt-out: version 2, and time travel shows no one who opted out (privacy first)
    who_declined = a_resident(service)
    consent.record_choice(service, pseudonym=who_declined, category="health",
                          recipient_kind=KIND, choice="declined", channel="app", actor="test")  # fmt: skip
    assert delta_sharing.get_table_version(url) == 2
    old = frame_rows(delta_sharing.load_as_pandas(url, version=0))
    assert set(old) < set(before)
    again = json_rows(server, who.person, grant.id, v0.snapshot)
    assert old == again  # the JSON endpoint applies the same opt-out

    # audited: every call and download names the grant (and a download its file, version
    # and bytes), nothing of the data
    audited = records(service)
    actions = {r["action"] for r in audited}
    per_table = {"sharing.version", "sharing.metadata", "sharing.query", "sharing.changes"}
    assert per_table | {"sharing.shares", "sharing.tables", "sharing.file"} <= actions, actions
    assert all(r["grant"] == grant.id for r in audited if r["action"] in per_table)
    downloads = [r for r in audited if r["action"] == "sharing.file"]
    assert all(r["grant"] == grant.id and r["file"] and r["bytes"] >= 0 for r in downloads)
    assert any(r["bytes"] > 0 and r.get("method") == "GET" for r in downloads), [
        {k: v for k, v in r.items() if k not in ("hash", "mac", "prev")} for r in downloads
    ]
    (travelled,) = file_lines(who, table, {"version": 0})  # the last load's file
    assert travelled["id"] in {r["file"] for r in downloads}
    some_value = before[0][1]  # a served pseudonym never lands in the log
    assert not any(some_value in names(r) for r in records(service, ""))


def test_every_listed_table_loads(service, people, server, tmp_path, mart_street) -> None:
    """A dataset grant and a standing mart grant: both listed (schema = the owner), each
    loads whole with the JSON endpoint's row count and the grant's columns in order."""
    dataset = make_grant(service)
    mart = grants.get_grant(service, standing_grant(service, RECIPIENT, built_mart(mart_street)))
    who = recipient_of(server, people, tmp_path)
    listed = delta_sharing.SharingClient(str(who.profile)).list_all_tables()
    assert {t.name for t in listed} == {dataset.id, mart.id}
    assert {t.share for t in listed} == {RECIPIENT}
    for grant in (dataset, mart):
        table = table_of(who, grant)
        frame = delta_sharing.load_as_pandas(who.url(table))
        assert list(frame.columns) == list(grant.columns)
        with server.client(who.person) as http:
            page = http.get(f"/grants/{grant.id}/data", params={"format": "json", "limit": 1})
        assert page.status_code == 200, page.text
        assert len(frame) == int(page.headers["X-Total-Rows"]) > 0
    assert table_of(who, mart).schema != table_of(who, dataset).schema


def test_a_table_over_16_mb_loads(service, people, server, tmp_path) -> None:
    table_sql = 'staged."wjw__chronic_followups"'
    with open_lake(service.settings) as con:
        (have,) = con.execute(f"SELECT count(*) FROM {table_sql}").fetchone()
        reps = -(-BIG_ROWS // have)
        # distinct ids and pseudonyms: 64 + ~40 characters a row that do not compress
        con.execute(
            f"INSERT INTO {table_sql} SELECT t.* REPLACE ("
            "md5(followup_id || '/' || r) || md5(r || '/' || followup_id) AS followup_id, "
            "md5('pid/' || r || '/' || _pid_citizen_id) AS _pid_citizen_id) "
            f"FROM {table_sql} t, range({reps}) AS s(r) LIMIT {BIG_ROWS - have}"
        )
    time.sleep(1.1)
    grant = make_grant(service)
    who = recipient_of(server, people, tmp_path)
    table = table_of(who, grant)
    assert table is not None
    served = file_lines(who, table)
    assert sum(f["size"] for f in served) > BIG_BYTES, [f["size"] for f in served]
    started = time.perf_counter()
    frame = delta_sharing.load_as_pandas(who.url(table))
    took = time.perf_counter() - started
    assert len(frame) == BIG_ROWS and frame["followup_id"].is_unique
    assert took < 60, took


def test_revoked_grant_unlisted_and_its_urls_forbidden(service, people, server, tmp_path) -> None:
    kept, revoked = make_grant(service), make_grant(service)
    who = recipient_of(server, people, tmp_path)
    gone = table_of(who, revoked)
    assert gone is not None and table_of(who, kept) is not None
    (line,) = file_lines(who, gone)
    with httpx.Client(timeout=60) as http:
        head = http.head(line["url"])
        assert head.status_code == 200 and int(head.headers["content-length"]) == line["size"]
        assert head.headers["content-type"] == "application/octet-stream"
        ranged = http.get(line["url"], headers={"Range": "bytes=0-3"})
        assert ranged.status_code == 206 and ranged.content == b"PAR1"
        grants.revoke_grant(service, revoked.id, actor="test")
        assert table_of(who, revoked) is None and table_of(who, kept) is not None
        assert http.get(line["url"]).status_code == 403
        assert http.head(line["url"]).status_code == 403
    with pytest.raises(Exception) as raised:
        delta_sharing.load_as_pandas(who.url(gone))
    assert any(code in str(raised.value) for code in ("403", "404"))


def test_a_revoked_profile_is_refused_at_once(
    service, people, server, tmp_path, monkeypatch
) -> None:
    """Its holder revokes the profile: the client's next call is a 401, which the client
    (its own retry rule back) does not retry; the file URLs it was handed answer 403."""
    monkeypatch.setattr(DataSharingRestClient, "_should_retry", CLIENT_RETRIES)
    grant = make_grant(service)
    who = recipient_of(server, people, tmp_path)
    table = table_of(who, grant)
    (line,) = file_lines(who, table)
    token_id = who.token.split(".")[0]
    with server.client(who.person) as http:
        answer = http.post(f"{PREFIX}/profiles/{token_id}/revoke")
    assert answer.status_code == 200, answer.text
    started = time.perf_counter()
    with pytest.raises(requests.HTTPError) as raised:
        delta_sharing.SharingClient(str(who.profile)).list_all_tables()
    assert raised.value.response.status_code == 401
    assert time.perf_counter() - started < 10
    with httpx.Client(timeout=60) as http:
        assert http.get(line["url"], headers={"Range": "bytes=0-3"}).status_code == 403
    assert any(r["action"] == "sharing.profile_revoke" for r in records(service))


def test_expired_and_other_recipients_urls_forbidden(
    service, people, server, tmp_path, monkeypatch
) -> None:
    mine, theirs = make_grant(service), make_grant(service, grantee_org=OTHER)
    who = recipient_of(server, people, tmp_path)
    other = recipient_of(server, people, tmp_path, org=OTHER)
    assert table_of(who, theirs) is None and table_of(other, mine) is None
    (line,) = file_lines(who, table_of(who, mine))
    (their_line,) = file_lines(other, table_of(other, theirs))
    me = tokens.authenticate(service, who.token)
    their_file = their_line["id"]
    assert files.lookup(service, their_file) is not None
    with httpx.Client(timeout=60) as http:
        assert http.get(line["url"], headers={"Range": "bytes=0-3"}).status_code == 206
        # expired: a URL signed two hours ago for an hour
        old = urls.sign(service, who.endpoint, line["id"], mine.id, me,
                        now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
                        ttl=dt.timedelta(hours=1))  # fmt: skip
        assert http.get(old.url).status_code == 403
        assert http.head(old.url).status_code == 403
        # expired as handed out: the query's URLs live one second
        monkeypatch.setattr(service.settings, "share_url_ttl_seconds", 1)
        (short,) = file_lines(who, table_of(who, mine))
        assert short["expirationTimestamp"] <= time.time() * 1000 + 1_000
        time.sleep(max(0.0, short["expirationTimestamp"] / 1000 - time.time()) + 0.2)
        assert http.get(short["url"], headers={"Range": "bytes=0-3"}).status_code == 403
        # another recipient's file: under my URL's signature, and signed as if for me
        parts = urlsplit(line["url"])
        swapped = parts._replace(path=parts.path.replace(line["id"], their_file))
        assert http.get(urlunsplit(swapped)).status_code == 403
        for grant_id in (mine.id, theirs.id):
            forged = urls.sign(service, who.endpoint, their_file, grant_id, me)
            assert http.get(forged.url).status_code == 403
        # a tampered recipient
        query = dict(parse_qsl(parts.query))
        query["r"] = OTHER
        tampered = parts._replace(query="&".join(f"{k}={v}" for k, v in query.items()))
        assert http.get(urlunsplit(tampered)).status_code == 403
    assert versions.current_version(service, mine, KIND).version == 0
