"""``streethub audit receipt FILE --public-key KEY``: a grantee's read receipt checked with
the exported public key alone — it verifies, and an edited one fails naming its record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog.settings import Settings
from share_api.service import Service
from tests.cli_text import said


@pytest.fixture
def service(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    svc = Service.open(Settings(home=home))
    yield svc
    svc.close()


def test_a_receipt_checked_from_the_command_line(service: Service, tmp_path: Path):
    read = service.audit.record("data.read", "wjw/u1", grant="grant-1", rows=100, digest="ab")
    inspector = tmp_path / "inspector"
    inspector.mkdir()
    receipt, key = inspector / "receipt.json", inspector / "key.json"
    receipt.write_text(json.dumps(service.audit.receipt(read)), encoding="utf-8")
    key.write_text(json.dumps(service.audit.public_keys()), encoding="utf-8")

    code, out = said(["audit", "receipt", str(receipt), "--public-key", str(key)])
    assert code == 0, out
    assert f"receipt of audit record {read['seq']} (data.read by wjw/u1 at " in out
    assert "verifies: signed by ed25519 key" in out

    doc = json.loads(receipt.read_text())
    doc["record"]["rows"] = 10
    receipt.write_text(json.dumps(doc), encoding="utf-8")
    code, out = said(["audit", "receipt", str(receipt), "--public-key", str(key)])
    assert code == 1
    assert "the record does not match its hash: changed" in out
    assert f"receipt of audit record {read['seq']} does NOT verify" in out

    code, out = said(["audit", "receipt", str(key), "--public-key", str(key)])
    assert code == 1 and "not a streethub audit receipt" in out
    code, out = said(["audit", "receipt", str(receipt), "--public-key", str(receipt)])
    assert code == 1 and "is not a streethub audit public-key file" in out
