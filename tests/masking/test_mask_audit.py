"""Audit log: hash chain and signatures detect changed, removed and reordered records."""

from __future__ import annotations

import json

import pytest

from masking.audit import AuditLog
from masking.errors import AuditError


def _fill(audit: AuditLog, n: int = 4) -> list[str]:
    for i in range(n):
        audit.append("decrypt", f"user{i}", purpose="quality_gate", column="a.b", values=i)
    return audit.path.read_text().splitlines()


def test_valid_chain(audit: AuditLog) -> None:
    _fill(audit)
    result = audit.verify()
    assert result.ok and result.records == 4
    records = audit.records()
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert records[1]["prev"] == records[0]["hash"]


def test_empty_log_verifies(audit: AuditLog) -> None:
    assert audit.verify().ok


def test_changed_record_detected(audit: AuditLog) -> None:
    lines = _fill(audit)
    rec = json.loads(lines[1])
    rec["values"] = 999
    lines[1] = json.dumps(rec, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    audit.path.write_text("\n".join(lines) + "\n")
    result = audit.verify()
    assert not result.ok and any("line 2" in p for p in result.problems)


def test_recomputed_hash_without_key_detected(audit: AuditLog) -> None:
    """An attacker can recompute sha256 but not the HMAC signature."""
    import hashlib

    from masking.audit import _canonical

    lines = _fill(audit, 2)
    rec = json.loads(lines[1])
    rec["actor"] = "someone-else"
    body = {k: v for k, v in rec.items() if k not in ("hash", "sig")}
    rec["hash"] = hashlib.sha256(body["prev"].encode() + _canonical(body)).hexdigest()
    lines[1] = _canonical(rec).decode()
    audit.path.write_text("\n".join(lines) + "\n")
    assert any("signature" in p for p in audit.verify().problems)


@pytest.mark.parametrize("which", [0, 2, 3])
def test_removed_record_detected(audit: AuditLog, which: int) -> None:
    lines = _fill(audit)
    del lines[which]
    audit.path.write_text("\n".join(lines) + "\n")
    assert not audit.verify().ok


def test_reordered_records_detected(audit: AuditLog) -> None:
    lines = _fill(audit)
    lines[1], lines[2] = lines[2], lines[1]
    audit.path.write_text("\n".join(lines) + "\n")
    assert not audit.verify().ok


def test_details_must_be_scalars(audit: AuditLog) -> None:
    with pytest.raises(AuditError):
        audit.append("decrypt", "x", values=["13812345678"])


def test_survives_signing_key_rotation(audit: AuditLog) -> None:
    _fill(audit, 2)
    audit.keyring.rotate()
    _fill(audit, 2)
    assert audit.verify().ok
    assert {r["kv"] for r in audit.records()} == {1, 2}
