"""The audit tampering table (issue 11 item 4): each way of quietly rewriting the log is
detected by ``AuditLog.verify()`` and names the first bad record, under both suites.

The log every test starts from: 12 records, checkpoints every 4 records (#1 at record 4,
#2 at 8) and one at the end of a run (#3 at 10); records 11 and 12 came after the newest
checkpoint. The witness holds #1-#3 outside the home. Forgeries are built here from the
documented format with the suites' public API (an independent reading of the format),
with the attacker's own keys unless a row says otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from catalog.settings import Settings
from masking.audit import GENESIS, AuditLog, Checkpoint, Verification, load_public_keys
from masking.keys import KeyRing
from masking.suite import CipherSuite

RECORD, HEAD = b"streethub-audit-record|", b"streethub-audit-head|"


def canonical(d: dict) -> bytes:
    return json.dumps(d, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.fixture(params=["intl", "gm"])
def log(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    settings = Settings(home=home, cipher_suite=request.param, audit_checkpoint_every=4)
    settings.ensure_dirs()
    audit = AuditLog.from_settings(settings, KeyRing.from_settings(settings))
    for i in range(10):
        audit.append("decrypt", "pipelines", purpose="quality_gate", column="d.f", values=i)
    audit.checkpoint()  # the end of a run
    for i in range(2):
        audit.append("deliveries.ack", "cli:officer", delivery_id=f"d{i}")
    assert audit.verify().ok
    return audit


def lines(log: AuditLog) -> list[dict]:
    return [json.loads(x) for x in log.path.read_text().splitlines()]


def write(log: AuditLog, records: list[dict]) -> None:
    log.path.write_text("".join(canonical(r).decode() + "\n" for r in records))


def suite_of(log: AuditLog) -> CipherSuite:
    return log.keyring.suite


def rechain(records: list[dict], start: int, mac_key: bytes, suite: CipherSuite) -> None:
    """Recompute prev, hash and MAC from ``records[start]`` on, as a forger would."""
    for i in range(start, len(records)):
        r = records[i]
        r["prev"] = records[i - 1]["hash"] if i else GENESIS
        body = {k: v for k, v in r.items() if k not in ("hash", "mac")}
        r["hash"] = suite.hash(RECORD + canonical(body)).hex()
        r["mac"] = suite.mac(mac_key, RECORD + bytes.fromhex(r["hash"])).hex()


def forge_head(log: AuditLog, last: dict, mac_key: bytes) -> None:
    suite = suite_of(log)
    head = {"v": 2, "seq": last["seq"], "hash": last["hash"], "suite": last["suite"]}
    head["kv"] = last["kv"]
    head["mac"] = suite.mac(mac_key, HEAD + canonical(head)).hex()
    log.head_path.write_text(canonical(head).decode())


def forge_checkpoints(log: AuditLog, records: list[dict]) -> None:
    """Re-sign the log's checkpoints over the forged chain with the forger's own key."""
    suite = suite_of(log)
    signer = suite.signer(os.urandom(32))
    out = []
    for line in log.checkpoints_path.read_text().splitlines():
        old = Checkpoint.parse(line)
        cp = Checkpoint(
            old.n, old.seq, records[old.seq - 1]["hash"], old.ts, records[0]["hash"],
            old.suite, old.kv, old.key_id,
        )  # fmt: skip
        cp = Checkpoint(**{**cp.__dict__, "sig": signer.sign(cp.signed_bytes()).hex()})
        out.append(cp.line().decode())
    log.checkpoints_path.write_text("".join(out))


def detected(result: Verification, first_bad: int, *texts: str) -> None:
    assert not result.ok
    assert result.first_bad == first_bad, result.problems
    for text in texts:
        assert any(text in p for p in result.problems), (text, result.problems)


def test_change(log: AuditLog) -> None:
    records = lines(log)
    records[4]["values"] = 999
    write(log, records)
    detected(log.verify(), 5, "record 5: changed")


def test_delete_a_record(log: AuditLog) -> None:
    records = lines(log)
    del records[5]
    write(log, records)
    detected(log.verify(), 6, "record 6 is missing: line 6 holds record 7")


def test_truncate_after_the_newest_checkpoint_and_rewrite_the_head(log: AuditLog) -> None:
    records = lines(log)[:10]
    write(log, records)
    forge_head(log, records[-1], os.urandom(32))
    detected(log.verify(), 11, "the head's MAC does not verify")


def test_truncate_checkpointed_records_and_rewrite_the_head(log: AuditLog) -> None:
    records = lines(log)[:6]
    write(log, records)
    cps = log.checkpoints_path.read_text().splitlines()
    log.checkpoints_path.write_text(cps[0] + "\n")  # only #1 (record 4) still holds
    forge_head(log, records[-1], os.urandom(32))
    detected(
        log.verify(),
        7,
        "witness checkpoint #2 signed 8 records, the log ends at record 6: records 7–8 are missing",
        "the head's MAC does not verify",
    )


def test_delete_everything(log: AuditLog) -> None:
    for path in (log.path, log.head_path, log.checkpoints_path):
        path.unlink()
    detected(log.verify(), 1, "every record is missing", "the log was deleted")


def test_delete_everything_and_the_witness(log: AuditLog) -> None:
    for path in (log.path, log.head_path, log.checkpoints_path, log.witness_path):
        path.unlink()
    detected(log.verify(), 1, "the key ring holds the audit key")


def test_reorder(log: AuditLog) -> None:
    records = lines(log)
    records[2], records[3] = records[3], records[2]
    write(log, records)
    detected(log.verify(), 3, "record 3 is missing: line 3 holds record 4")


def test_insert(log: AuditLog) -> None:
    records = lines(log)
    forged = {**records[1], "actor": "cli:someone"}
    records.insert(2, forged)
    write(log, records)
    detected(log.verify(), 3, "line 3 holds a second record 2: a record was inserted")


def test_rechain_and_resign_without_the_private_key(log: AuditLog) -> None:
    """The forger has the home (no key provider): own MAC key, own signing key."""
    records = lines(log)
    records[4]["actor"] = "cli:someone-else"
    rechain(records, 4, os.urandom(32), suite_of(log))
    write(log, records)
    forge_head(log, records[-1], os.urandom(32))
    forge_checkpoints(log, records)
    detected(
        log.verify(),
        5,
        "record 5: its MAC does not verify",
        "the log's checkpoint #2: its signature does not verify",
        "witness checkpoint #3: records up to 10 are not what it signed",
    )


def test_rechain_with_the_mac_key_but_without_the_private_key(log: AuditLog) -> None:
    """An insider who took the MAC key (as the old layout allowed) but not the signing key:
    every record's MAC holds, the signed checkpoints do not; the change is placed between
    the last checkpoint that still holds (record 4) and the next."""
    records = lines(log)
    records[4]["actor"] = "cli:someone-else"
    mac_key = log.keyring.current("audit_signing").material
    rechain(records, 4, mac_key, suite_of(log))
    write(log, records)
    forge_head(log, records[-1], mac_key)
    forge_checkpoints(log, records)
    detected(
        log.verify(),
        5,
        "between records 5 and 8",
        "the log's checkpoint #1: its signature does not verify",
    )
    assert not any("MAC does not verify" in p for p in log.verify().problems)


# -- the same table with the public key only (an inspector: no MAC key) ------------------


@pytest.fixture
def inspector(log: AuditLog, tmp_path: Path) -> tuple[AuditLog, dict]:
    log.export_public_keys(tmp_path / "pub.json")
    copy = AuditLog(log.dir, None, witness_dir=log.witness_path.parent)
    return copy, load_public_keys(tmp_path / "pub.json")


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [("change", 5), ("delete", 6), ("reorder", 3), ("insert", 3), ("rechain", 5),
     ("truncate_checkpointed", 7), ("delete_everything", 1)],
)  # fmt: skip
def test_the_public_key_alone_detects(
    log: AuditLog, inspector: tuple[AuditLog, dict], tamper: str, first_bad: int
) -> None:
    records = lines(log)
    if tamper == "change":
        records[4]["values"] = 999
    elif tamper == "delete":
        del records[5]
    elif tamper == "reorder":
        records[2], records[3] = records[3], records[2]
    elif tamper == "insert":
        records.insert(2, {**records[1], "actor": "cli:someone"})
    elif tamper == "rechain":
        records[4]["actor"] = "cli:someone-else"
        rechain(records, 4, log.keyring.current("audit_signing").material, suite_of(log))
        forge_checkpoints(log, records)
    elif tamper == "truncate_checkpointed":
        records = records[:6]
        log.checkpoints_path.write_text(log.checkpoints_path.read_text().splitlines()[0] + "\n")
    elif tamper == "delete_everything":
        records = []
        log.checkpoints_path.unlink()
        log.head_path.unlink()
    write(log, records)
    copy, keys = inspector
    result = copy.verify(public_keys=keys)
    assert not result.with_secret
    detected(result, first_bad)


def test_what_the_public_key_alone_cannot_see(
    log: AuditLog, inspector: tuple[AuditLog, dict]
) -> None:
    """Records after the newest checkpoint (11, 12) rewritten and re-chained without any
    key: only the MAC shows it, so the inspector's verification passes and the key ring's
    does not. Checkpoint at the end of every run keeps this tail short."""
    records = lines(log)
    records[11]["delivery_id"] = "forged"
    rechain(records, 11, os.urandom(32), suite_of(log))
    write(log, records)
    forge_head(log, records[-1], os.urandom(32))
    copy, keys = inspector
    assert copy.verify(public_keys=keys).ok
    detected(log.verify(), 12, "record 12: its MAC does not verify")


# -- the per-run check: from the newest witnessed checkpoint (#3, record 10) on ----------


def test_the_per_run_check_starts_at_the_newest_witnessed_checkpoint(log: AuditLog) -> None:
    result = log.verify(since_witnessed=True)
    assert result.ok and result.from_record == 10 and result.records == 12
    assert log.verify().from_record == 1


@pytest.mark.parametrize(
    ("tamper", "first_bad", "text"),
    [
        ("change_after", 11, "record 11: changed"),
        ("change_anchor", 10, "record 10: not the record witnessed checkpoint #3 signed"),
        ("truncate", 7, "witness checkpoint #3 signed 10 records, the log ends at record 6"),
        ("delete_everything", 1, "every record is missing"),
    ],
)
def test_the_per_run_check_detects(log: AuditLog, tamper: str, first_bad: int, text: str) -> None:
    records = lines(log)
    if tamper == "change_after":
        records[10]["delivery_id"] = "forged"
    elif tamper == "change_anchor":
        records[9]["values"] = 999
    elif tamper == "truncate":
        records = records[:6]
    elif tamper == "delete_everything":
        records = []
        log.checkpoints_path.unlink()
    write(log, records)
    result = log.verify(since_witnessed=True)
    detected(result, first_bad, text)
    assert not any("old format" in p for p in result.problems)


def test_the_per_run_check_leaves_older_records_to_the_whole_verification(
    log: AuditLog,
) -> None:
    records = lines(log)
    records[4]["values"] = 999
    write(log, records)
    assert log.verify(since_witnessed=True).ok  # record 5 is before checkpoint #3
    detected(log.verify(), 5, "record 5: changed")
