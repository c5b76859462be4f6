"""A file URL's GET and HEAD answered before routing (``share_api.sharing.urls.fast_file``)
once the token's row, the file's row and its bytes are kept: the same answers and records
as the route's, and a revoked profile or grant refused at the very next request.

The server runs the app in a thread of this process, so counting the calls of the route's
``urls.serve`` shows which requests the fast path answered.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest

from share_api import grants
from share_api.sharing import files, tokens, urls
from tests.share_api.test_delta_sharing_client import (
    file_lines,
    recipient_of,
    records,
    table_of,
)
from tests.share_api.test_sharing_versions import make_grant

FILE_ACTIONS = ("sharing.file", "sharing.file_head")


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods of the requests the file route (not the fast path) answered."""
    calls: list[str] = []
    route = urls.serve

    def counted(service, request, file_id):
        calls.append(request.method)
        return route(service, request, file_id)

    monkeypatch.setattr(urls, "serve", counted)
    return calls


def file_records(service, file_id: str) -> list[tuple]:
    return [
        (r["action"], r["method"], r["first"], r["bytes"], r["token"])
        for r in records(service)
        if r["action"] in FILE_ACTIONS and r["file"] == file_id
    ]


def test_kept_file_requests_skip_the_route_with_the_same_answers_and_records(
    service, people, server, tmp_path, route_calls
) -> None:
    grant = make_grant(service)
    who = recipient_of(server, people, tmp_path)
    (line,) = file_lines(who, table_of(who, grant))
    size, token_id = line["size"], who.token.split(".")[0]
    with httpx.Client(timeout=60) as http:
        first = http.get(line["url"], headers={"Range": "bytes=0-3"})  # keeps row and bytes
        assert first.status_code == 206 and first.content == b"PAR1"
        assert route_calls == ["GET"]
        head = http.head(line["url"])
        tail = http.get(line["url"], headers={"Range": f"bytes={size - 8}-"})
        whole = http.get(line["url"])
        assert route_calls == ["GET"]  # the three answered before routing
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size)
    assert head.headers["content-type"] == "application/octet-stream"
    assert tail.status_code == 206 and tail.content[-4:] == b"PAR1"
    assert tail.headers["content-range"] == f"bytes {size - 8}-{size - 1}/{size}"
    assert whole.status_code == 200 and len(whole.content) == size
    assert whole.headers["etag"] == f'"{hashlib.sha256(whole.content).hexdigest()}"'
    service.audit.flush()
    assert file_records(service, line["id"]) == [
        ("sharing.file", "GET", 0, 4, token_id),
        ("sharing.file_head", "HEAD", 0, 0, token_id),
        ("sharing.file", "GET", size - 8, 8, token_id),
        ("sharing.file", "GET", 0, size, token_id),
    ]
    # another person's profile: its first range of the kept file, on the fast path too,
    # is on record when the answer arrives (durable before a byte left)
    other = recipient_of(server, people, tmp_path)
    (again,) = file_lines(other, table_of(other, grant))
    with httpx.Client(timeout=60) as http:
        ranged = http.get(again["url"], headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"PAR1"
    assert route_calls == ["GET"]
    other_token = other.token.split(".")[0]
    assert ("sharing.file", "GET", 0, 4, other_token) in file_records(service, line["id"])


def test_a_revoked_profile_or_grant_is_refused_at_once_though_all_is_kept(
    service, people, server, tmp_path, route_calls
) -> None:
    grant = make_grant(service)
    who, other = (recipient_of(server, people, tmp_path) for _ in range(2))
    (line,) = file_lines(who, table_of(who, grant))
    (their,) = file_lines(other, table_of(other, grant))
    with httpx.Client(timeout=60) as http:
        for url in (line["url"], their["url"], line["url"]):
            assert http.get(url, headers={"Range": "bytes=0-3"}).status_code == 206
        assert route_calls == ["GET"]  # kept after the first
        tokens.revoke_profile(service, who.token.split(".")[0], actor="test")
        assert http.get(line["url"], headers={"Range": "bytes=0-3"}).status_code == 403
        assert http.head(line["url"]).status_code == 403
        assert http.get(their["url"], headers={"Range": "bytes=0-3"}).status_code == 206
        grants.revoke_grant(service, grant.id, actor="test")
        assert http.get(their["url"], headers={"Range": "bytes=0-3"}).status_code == 403
        assert http.head(their["url"]).status_code == 403
    denied = [r for r in records(service) if r["action"] == "sharing.denied"]
    assert [r["status"] for r in denied] == [403] * 4
    assert "revoked" in denied[0]["reason"] and "revoked" in denied[-1]["reason"]


def test_a_file_too_large_to_keep_streams_from_the_route(
    service, people, server, tmp_path, route_calls, monkeypatch
) -> None:
    monkeypatch.setattr(files, "PLAIN_KEPT_FILE_BYTES", 0)
    grant = make_grant(service)
    who = recipient_of(server, people, tmp_path)
    (line,) = file_lines(who, table_of(who, grant))
    size = line["size"]
    with httpx.Client(timeout=60) as http:
        parts = [
            http.get(line["url"], headers={"Range": f"bytes={first}-{first + 999}"}).content
            for first in range(0, size, 1000)
        ]
        whole = http.get(line["url"])
        head = http.head(line["url"])
    assert whole.status_code == 200 and b"".join(parts) == whole.content
    assert len(whole.content) == size and head.headers["content-length"] == str(size)
    # every GET streamed by the route (no bytes kept); the HEAD needs none: answered before
    assert route_calls.count("GET") == len(parts) + 1 and "HEAD" not in route_calls
