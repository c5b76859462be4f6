"""Must-show (issue 14): ``streethub audit verify`` passes over what the share service
wrote (sign-ins, a catalogue read, a data read over HTTP, a failed sign-in), then fails
naming the record after one byte of the data read's record is edited — with the MAC key,
and for an inspector holding only the exported public key."""

from __future__ import annotations

from pathlib import Path

import pytest

from share_api.service import Service
from tests.cli_text import said
from tests.share_api.audit_support import built_mart, standing_grant


@pytest.fixture
def mart(mart_street) -> str:
    return built_mart(mart_street)


def share_day(api, service: Service, people, mart: str) -> int:
    """What the share service writes when a department signs in, browses and reads its
    grant over HTTP; the seq of the read's record."""
    reader = people.make("wjw", "requester")
    grant_id = standing_grant(service, "wjw", mart, 2)
    assert api.get("/catalogue", headers=reader.headers).status_code == 200
    read = api.get(f"/grants/{grant_id}/data", params={"limit": 3}, headers=reader.headers)
    assert read.status_code == 200
    assert api.get("/grants").status_code == 401  # a failed sign-in after it
    return int(read.headers["X-Audit-Seq"])


def edit_one_byte(path: Path, seq: int) -> None:
    """Change one byte of record ``seq``: a hex digit of its digest."""
    data = bytearray(path.read_bytes())
    start = data.index(b'{"action":"data.read"')
    while b'"seq":%d,' % seq not in data[start : data.index(b"\n", start)]:
        start = data.index(b'{"action":"data.read"', start + 1)
    at = data.index(b'"digest":"', start) + len(b'"digest":"')
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    path.write_bytes(bytes(data))


def test_verify_passes_then_names_the_edited_share_record(
    api, service: Service, people, mart: str, tmp_path: Path
):
    seq = share_day(api, service, people, mart)
    service.audit.log.checkpoint()  # what the server does when it stops
    total = len(service.audit.log.records())
    code, out = said(["audit", "verify"])
    assert code == 0, out
    assert f"audit log: {total:,} records; hash chain, every MAC" in out
    key = tmp_path / "inspector" / "key.json"
    key.parent.mkdir()
    assert said(["audit", "export-key", str(key)])[0] == 0
    assert said(["audit", "verify", "--public-key", str(key)])[0] == 0

    edit_one_byte(service.audit.log.path, seq)

    code, out = said(["audit", "verify"])
    assert code == 1
    assert f"record {seq:,}: changed: its content no longer matches its hash" in out
    assert f"audit log does NOT verify (first bad record: {seq:,})" in out
    code, out = said(["audit", "verify", "--public-key", str(key)])
    assert code == 1
    assert f"audit log does NOT verify (first bad record: {seq:,})" in out
