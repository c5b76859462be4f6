"""Must-show (issue 14): ``streethub audit verify`` passes over the share service's records,
then fails naming the record after one byte of a share record is edited — with the MAC
key, and for an inspector holding only the exported public key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.settings import Settings
from pipelines.cli import app
from share_api.service import Service

runner = CliRunner()


def said(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def service(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    svc = Service.open(Settings(home=home))
    yield svc
    svc.close()


def share_day(service: Service) -> dict:
    """What a morning of the share service writes; the read record."""
    audit = service.audit
    audit.record("auth.ok", "wjw/alice", token="tok-1")
    audit.record("catalogue.read", "wjw/alice", query="养老")
    audit.record("request.create", "wjw/alice", request="req-1", resource="mzj.subsidies")
    audit.record("request.decide", "mzj/bob", request="req-1", decision="approve")
    audit.record("grant.create", "mzj/bob", grant="grant-1", request="req-1")
    read = audit.record(
        "data.read", "wjw/alice", grant="grant-1", snapshot=3, rows=100, digest="ab" * 16
    )
    audit.record("auth.failed", "anonymous", reason="unknown", client="127.0.0.1")
    return read


def edit_one_byte(path: Path, seq: int, old: bytes, new: bytes) -> None:
    """Change one byte inside record ``seq``'s line (located by its own text)."""
    assert len(old) == len(new) == 1
    data = bytearray(path.read_bytes())
    start = data.index(b'"seq":%d,' % seq)
    line_start = data.rindex(b"\n", 0, start) + 1 if b"\n" in data[:start] else 0
    line_end = data.index(b"\n", start)
    at = data.index(b'"rows":1', line_start, line_end) + len(b'"rows":')
    assert data[at : at + 1] == old
    data[at : at + 1] = new
    path.write_bytes(bytes(data))


def test_verify_passes_then_names_the_edited_share_record(service: Service, tmp_path: Path):
    read = share_day(service)
    service.audit.close()  # the end of the run: a checkpoint, witnessed
    code, out = said(["audit", "verify"])
    assert code == 0, out
    assert f"audit log: {read['seq'] + 1} records; hash chain, every MAC" in out
    key = tmp_path / "inspector" / "key.json"
    key.parent.mkdir()
    assert said(["audit", "export-key", str(key)])[0] == 0
    assert said(["audit", "verify", "--public-key", str(key)])[0] == 0

    edit_one_byte(service.audit.log.path, read["seq"], b"1", b"9")  # rows 100 -> 900

    code, out = said(["audit", "verify"])
    assert code == 1
    assert f"record {read['seq']}: changed: its content no longer matches its hash" in out
    assert f"audit log does NOT verify (first bad record: {read['seq']})" in out
    code, out = said(["audit", "verify", "--public-key", str(key)])
    assert code == 1
    assert f"audit log does NOT verify (first bad record: {read['seq']})" in out
