"""Audit log: the chain, the caller's limits, checkpoints (cadence, receipt, witness),
suites, old logs. The tampering table is in tests/custody/test_audit_tampering.py."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from catalog.settings import Settings
from masking.audit import AuditLog, load_public_keys
from masking.errors import AuditError
from masking.keys import KeyRing
from masking.suite import get_suite


def _fill(audit: AuditLog, n: int = 4) -> list[str]:
    for i in range(n):
        audit.append("decrypt", f"user{i}", purpose="quality_gate", column="a.b", values=i)
    return audit.path.read_text().splitlines()


@pytest.fixture
def witnessed(settings: Settings, keyring: KeyRing) -> AuditLog:
    return AuditLog(settings.audit_dir, keyring, witness_dir=settings.witness_dir_abs)


def test_valid_chain(audit: AuditLog) -> None:
    _fill(audit)
    result = audit.verify()
    assert result.ok and result.records == 4 and result.first_bad is None, result.problems
    records = audit.records()
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert records[1]["prev"] == records[0]["hash"]
    assert {r["suite"] for r in records} == {"intl"}
    assert all(len(r["mac"]) == 64 and len(r["hash"]) == 64 for r in records)


def test_empty_log_verifies(audit: AuditLog) -> None:
    result = audit.verify()
    assert result.ok and result.records == 0


@pytest.mark.parametrize("name", ["seq", "ts", "prev", "hash", "mac", "sig", "kv", "v", "suite"])
def test_a_caller_cannot_set_a_chain_field(audit: AuditLog, name: str) -> None:
    _fill(audit, 1)
    with pytest.raises(AuditError, match=name):
        audit.append("decrypt", "x", **{name: 99})
    assert len(audit.records()) == 1 and audit.verify().ok


def test_action_and_actor_are_positional_only_once(audit: AuditLog) -> None:
    with pytest.raises(TypeError):
        audit.append("decrypt", "x", **{"actor": "someone"})  # type: ignore[misc]


def test_details_must_be_scalars(audit: AuditLog) -> None:
    with pytest.raises(AuditError):
        audit.append("decrypt", "x", values=["13812345678"])
    assert audit.records() == []


def test_survives_key_rotation(witnessed: AuditLog) -> None:
    _fill(witnessed, 2)
    witnessed.checkpoint()
    witnessed.keyring.rotate()
    _fill(witnessed, 2)
    cp = witnessed.checkpoint()
    assert witnessed.verify().ok
    assert {r["kv"] for r in witnessed.records()} == {1, 2}
    assert cp is not None and cp.kv == 2 and cp.n == 2


def test_a_checkpoint_every_n_records_also_in_the_witness(
    settings: Settings, keyring: KeyRing
) -> None:
    log = AuditLog(
        settings.audit_dir, keyring, witness_dir=settings.witness_dir_abs, checkpoint_every=3
    )
    _fill(log, 7)
    cps = [json.loads(line) for line in log.checkpoints_path.read_text().splitlines()]
    assert [(c["n"], c["seq"]) for c in cps] == [(1, 3), (2, 6)]
    assert log.witness_path is not None
    assert log.witness_path.read_text() == log.checkpoints_path.read_text()
    assert not log.witness_path.is_relative_to(settings.home_abs)
    result = log.verify()
    assert result.ok and result.checkpoints == 2 and result.witnessed.seq == 6


def test_a_checkpoint_at_least_once_a_minute_while_writing(
    settings: Settings, keyring: KeyRing
) -> None:
    log = AuditLog(
        settings.audit_dir,
        keyring,
        witness_dir=settings.witness_dir_abs,
        checkpoint_max_age=dt.timedelta(seconds=1),
    )
    _fill(log, 2)
    assert not log.checkpoints_path.exists()
    time.sleep(1.1)
    _fill(log, 1)
    cps = log.checkpoints_path.read_text().splitlines()
    assert [json.loads(c)["seq"] for c in cps] == [3]


def test_checkpoint_returns_a_receipt_and_signs_only_new_records(witnessed: AuditLog) -> None:
    assert witnessed.checkpoint() is None  # an empty log: nothing to sign
    _fill(witnessed, 3)
    cp = witnessed.checkpoint()
    assert cp is not None and (cp.n, cp.seq) == (1, 3)
    assert witnessed.checkpoint() == cp  # nothing new since: the same checkpoint
    receipt = cp.receipt
    assert receipt.startswith("audit checkpoint #1: 3 records, sha256 ")
    assert cp.hash[:16] in receipt and "ed25519" in receipt and len(receipt) < 160
    seed = witnessed.keyring.get("audit_checkpoint", 1).material
    assert seed.hex()[:16] not in receipt and seed.hex() not in repr(witnessed)
    _fill(witnessed, 1)
    assert witnessed.checkpoint().n == 2


def test_gm_suite_chains_with_sm3_and_signs_with_sm2(settings: Settings, tmp_path: Path) -> None:
    ring = KeyRing(settings.keys_dir, suite="gm")
    log = AuditLog(settings.audit_dir, ring, witness_dir=settings.witness_dir_abs)
    _fill(log, 3)
    cp = log.checkpoint()
    assert {r["suite"] for r in log.records()} == {"gm"}
    assert cp.suite == "gm" and "sm2-sm3" in cp.receipt and "sm3" in cp.receipt
    assert len(bytes.fromhex(cp.sig)) == 64
    assert log.verify().ok
    out = tmp_path / "pub.json"
    log.export_public_keys(out)
    keys = load_public_keys(out)
    assert list(keys) == [("gm", 1)] and len(keys[("gm", 1)]) == 64
    inspector = AuditLog(settings.audit_dir, None, witness_dir=settings.witness_dir_abs)
    result = inspector.verify(public_keys=keys)
    assert result.ok and not result.with_secret and result.checkpoints == 1


def test_public_key_file_holds_no_secret(witnessed: AuditLog, tmp_path: Path) -> None:
    _fill(witnessed, 1)
    witnessed.checkpoint()
    out = tmp_path / "pub.json"
    witnessed.export_public_keys(out)
    text = out.read_text()
    for purpose in ("audit_checkpoint", "audit_signing"):
        assert witnessed.keyring.current(purpose).material.hex() not in text
    signer = get_suite("intl").signer(witnessed.keyring.current("audit_checkpoint").material)
    assert load_public_keys(out) == {("intl", 1): signer.public_key()}


def test_a_public_key_file_of_another_deployment_does_not_verify(
    witnessed: AuditLog, settings: Settings, tmp_path: Path
) -> None:
    _fill(witnessed, 2)
    witnessed.checkpoint()
    other = AuditLog(tmp_path / "other", KeyRing(tmp_path / "other-keys"))
    _fill(other, 1)
    other.export_public_keys(tmp_path / "other.json")
    inspector = AuditLog(settings.audit_dir, None, witness_dir=settings.witness_dir_abs)
    result = inspector.verify(public_keys=load_public_keys(tmp_path / "other.json"))
    assert not result.ok
    assert any("signature does not verify" in p for p in result.problems)


def _legacy_log(audit: AuditLog, n: int) -> None:
    """Records in the format before checkpoints (SHA-256 chain, HMAC-SHA256 'sig', a plain
    head), written by that format's rule as the previous code did."""
    intl = get_suite("intl")
    key = audit.keyring.current("audit_signing")
    prev, lines = "0" * 64, []
    for i in range(1, n + 1):
        body = {"seq": i, "ts": f"2026-11-0{i}T00:00:00+00:00", "action": "decrypt",
                "actor": "pipelines", "values": i, "prev": prev, "kv": key.version}  # fmt: skip
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        digest = intl.hash(prev.encode() + canonical.encode()).hex()
        record = {**body, "hash": digest, "sig": intl.mac(key.material, digest.encode()).hex()}
        lines.append(json.dumps(record, sort_keys=True, separators=(",", ":")))
        prev = digest
    audit.dir.mkdir(parents=True, exist_ok=True)
    audit.path.write_text("\n".join(lines) + "\n")
    audit.head_path.write_text(json.dumps({"seq": n, "hash": prev}))


def test_an_old_format_log_is_verified_then_upgraded(witnessed: AuditLog) -> None:
    _legacy_log(witnessed, 3)
    before = witnessed.verify()
    assert not before.ok and any("old format" in p for p in before.problems)
    assert before.first_bad is None  # nothing is wrong with its records
    witnessed.append("decrypt", "pipelines", values=9)
    records = witnessed.records()
    assert [r["action"] for r in records] == ["decrypt"] * 3 + ["audit.upgrade", "decrypt"]
    assert records[3]["old_records"] == 3 and records[3]["prev"] == records[2]["hash"]
    result = witnessed.verify()
    assert result.ok and result.checkpoints == 1, result.problems
    assert result.witnessed.seq == 4  # the upgrade's checkpoint signs the old records


def test_an_old_format_log_that_does_not_verify_is_refused(witnessed: AuditLog) -> None:
    _legacy_log(witnessed, 3)
    lines = witnessed.path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["values"] = 999
    lines[1] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    witnessed.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError, match="first bad record 2"):
        witnessed.append("decrypt", "pipelines", values=1)
    with pytest.raises(AuditError, match="old format"):
        witnessed.checkpoint()
    assert len(witnessed.records()) == 3 and not witnessed.checkpoints_path.exists()


def test_the_witness_must_be_outside_the_home(home: Path) -> None:
    settings = Settings(home=home, witness_dir=home / "witness").ensure_dirs()
    with pytest.raises(AuditError, match="outside the home"):
        AuditLog.from_settings(settings)


def test_a_witness_that_cannot_be_written_fails_loudly(
    settings: Settings, keyring: KeyRing
) -> None:
    blocker = settings.home_abs.parent / "not-a-folder"
    blocker.write_text("")
    log = AuditLog(settings.audit_dir, keyring, witness_dir=blocker)
    _fill(log, 1)
    with pytest.raises(AuditError, match="not witnessed") as info:
        log.checkpoint()
    assert "not-a-folder" in str(info.value)
    result = log.verify()
    assert not result.ok and any("never witnessed" in p or "witness" in p for p in result.problems)


def test_problems_never_carry_a_record_value(witnessed: AuditLog) -> None:
    lines = _fill(witnessed, 3)
    rec = json.loads(lines[1])
    rec["actor"], rec["seq"] = "11010519491231002X", "13812345678"
    lines[1] = json.dumps(rec)
    witnessed.path.write_text("\n".join(lines) + "\n")
    result = witnessed.verify()
    assert not result.ok and result.first_bad == 2
    text = " ".join(result.problems)
    assert "11010519491231002X" not in text and "13812345678" not in text


def test_concurrent_writers_keep_one_chain(settings: Settings, keyring: KeyRing) -> None:
    logs = [
        AuditLog(settings.audit_dir, KeyRing(settings.keys_dir), checkpoint_every=25)
        for _ in range(2)
    ]
    keyring.current("audit_signing")  # created once, before the race
    threads = [threading.Thread(target=_fill, args=(log, 40)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = logs[0].verify()
    assert result.ok and result.records == 80 and result.checkpoints == 3, result.problems


def test_a_copied_home_is_compared_with_the_witness_it_names(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    settings = Settings(home=home).ensure_dirs()
    log = AuditLog.from_settings(settings)
    _fill(log, 3)
    log.checkpoint()
    copy = tmp_path / "moved" / "home"
    shutil.copytree(home, copy)
    moved = Settings(home=copy)
    result = AuditLog.from_settings(moved).verify()
    assert not result.ok and any("copied or moved" in p for p in result.problems)
    named = Settings(home=copy, witness_dir=settings.witness_dir_abs)
    assert AuditLog.from_settings(named).verify().ok


def test_any_change_to_any_field_of_any_record_is_named(witnessed: AuditLog) -> None:
    """Property: whichever record and whichever field (details or chain) is changed, the
    log does not verify and that record is the first bad one."""
    original = _fill(witnessed, 6)
    witnessed.checkpoint()

    @hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(index=st.integers(0, 5), data=st.data())
    def change(index: int, data: st.DataObject) -> None:
        record = json.loads(original[index])
        name = data.draw(st.sampled_from(sorted(record)))
        value = record[name]
        record[name] = value + 1 if isinstance(value, int) else f"{value}x"
        lines = [*original[:index], json.dumps(record), *original[index + 1 :]]
        witnessed.path.write_text("\n".join(lines) + "\n")
        result = witnessed.verify()
        assert not result.ok and result.first_bad == index + 1, (name, result.problems)

    change()
    witnessed.path.write_text("\n".join(original) + "\n")
    assert witnessed.verify().ok  # the positive control
