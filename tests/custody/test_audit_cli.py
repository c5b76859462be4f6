"""`streethub audit verify / checkpoint / export-key / tail`: what an officer and an
inspector type, and what they see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog.settings import Settings
from masking.audit import AuditLog
from tests.cli_text import said


@pytest.fixture
def log(home: Path, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    audit = AuditLog.from_settings(Settings(home=home).ensure_dirs())
    for i in range(5):
        audit.append("decrypt", "pipelines", purpose="quality_gate", column="d.f", values=i)
    return audit


def test_checkpoint_prints_a_receipt_and_verify_passes(log: AuditLog) -> None:
    code, out = said(["audit", "checkpoint"])
    assert code == 0, out
    assert out.startswith("audit checkpoint #1: 5 records, sha256 ")
    code, out = said(["audit", "verify"])
    assert code == 0, out
    assert "5 records; hash chain, every MAC, the signed head, 1 checkpoint" in out
    assert "witness at checkpoint #1 (record 5)" in out


def test_verify_names_the_first_bad_record_and_exits_1(log: AuditLog) -> None:
    said(["audit", "checkpoint"])
    lines = log.path.read_text().splitlines()
    del lines[2]
    log.path.write_text("\n".join(lines) + "\n")
    code, out = said(["audit", "verify"])
    assert code == 1
    assert "record 3 is missing: line 3 holds record 4" in out
    assert "audit log does NOT verify (first bad record: 3)" in out


def test_an_inspector_verifies_with_the_exported_public_key(log: AuditLog, tmp_path: Path) -> None:
    said(["audit", "checkpoint"])
    key = tmp_path / "inspector" / "audit-public-key.json"
    key.parent.mkdir()
    code, out = said(["audit", "export-key", str(key)])
    assert code == 0 and "1 public verification key(s) written" in out
    doc = json.loads(key.read_text())
    assert [k["algorithm"] for k in doc["keys"]] == ["ed25519"]
    code, out = said(["audit", "verify", "--public-key", str(key)])
    assert code == 0, out
    assert "verified with the public key" in out
    assert "Not checked without the MAC key: record MACs and the head" in out
    records = log.path.read_text().splitlines()
    log.path.write_text("\n".join([records[1], records[0], *records[2:]]) + "\n")
    code, out = said(["audit", "verify", "--public-key", str(key)])
    assert code == 1 and "first bad record: 1" in out


def test_a_file_that_is_not_a_public_key_is_refused(log: AuditLog, tmp_path: Path) -> None:
    bogus = tmp_path / "key.json"
    bogus.write_text("{}")
    code, out = said(["audit", "verify", "--public-key", str(bogus)])
    assert code == 1 and "not a streethub audit public-key file" in out


def test_tail_shows_details_not_chain_fields(log: AuditLog) -> None:
    code, out = said(["audit", "tail", "-n", "2"])
    assert code == 0, out
    assert "purpose=quality_gate" in out and "values=4" in out
    assert "mac=" not in out and "prev=" not in out
