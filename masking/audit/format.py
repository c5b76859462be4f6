"""The audit log's format: its records, head and checkpoints as bytes, the public-key
file, and the small file operations the log and its verification share."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masking.errors import AuditError, KeyRingError
from masking.suite import CipherSuite, Suite, get_suite

FORMAT = 2
GENESIS = "0" * 64
CHECKPOINT_MAX_AGE = dt.timedelta(minutes=1)
PUBLIC_KEY_FORMAT = "streethub-audit-public-keys/1"
CHAIN_FIELDS = frozenset({"v", "suite", "prev", "kv", "hash", "mac", "sig"})
RESERVED = frozenset({"seq", "ts", "action", "actor"}) | CHAIN_FIELDS
SCALARS = (str, int, float, bool, type(None))
RECORD_TAG = b"streethub-audit-record|"
HEAD_TAG = b"streethub-audit-head|"
CHECKPOINT_TAG = b"streethub-audit-checkpoint|"
RECEIPT_TAG = b"streethub-audit-receipt|"
RECEIPT_FORMAT = "streethub-audit-receipt/1"
LEGACY_SUITE = get_suite(Suite.INTL)  # format 1: SHA-256 chain, HMAC-SHA256 under audit_signing

PublicKeys = dict[tuple[str, int], bytes]  # (suite, checkpoint key version) -> public key


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record_hash(record: dict[str, Any]) -> str:
    """The hash a record should carry, by its own format's rule."""
    body = {k: v for k, v in record.items() if k not in ("hash", "mac", "sig")}
    if "v" not in record:  # format 1
        return LEGACY_SUITE.hash(str(body["prev"]).encode() + canonical(body)).hex()
    return get_suite(body["suite"]).hash(RECORD_TAG + canonical(body)).hex()


def public_entry(suite: str, version: int, public_key: bytes) -> dict[str, Any]:
    cs = get_suite(suite)
    return {
        "suite": suite,
        "algorithm": cs.signature_name,
        "version": version,
        "public_key": public_key.hex(),
        "key_id": key_id(cs, public_key),
    }


def key_id(suite: CipherSuite, public_key: bytes) -> str:
    """A short public name for a verification key."""
    return suite.hash(public_key).hex()[:16]


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the log ``log`` had ``seq`` records ending in ``hash`` at ``ts``."""

    n: int
    seq: int
    hash: str
    ts: str
    log: str
    suite: str
    kv: int
    key_id: str
    sig: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "v": FORMAT, "n": self.n, "seq": self.seq, "hash": self.hash, "ts": self.ts,
            "log": self.log, "suite": self.suite, "alg": get_suite(self.suite).signature_name,
            "kv": self.kv, "key_id": self.key_id,
        }  # fmt: skip

    def signed_bytes(self) -> bytes:
        return CHECKPOINT_TAG + canonical(self.body())

    def line(self) -> bytes:
        return canonical({**self.body(), "sig": self.sig}) + b"\n"

    @classmethod
    def parse(cls, line: str) -> Checkpoint:
        d = json.loads(line)
        return cls(
            int(d["n"]), int(d["seq"]), str(d["hash"]), str(d["ts"]), str(d["log"]),
            str(d["suite"]), int(d["kv"]), str(d["key_id"]), str(d["sig"]),
        )  # fmt: skip

    @property
    def receipt(self) -> str:
        """One line to print, paste into a ticket or read out: the head it vouches for, by
        record count and hash prefix, and the key and signature prefix that signed it (the
        log's checkpoint #n must still say the same)."""
        suite = get_suite(self.suite)
        return (
            f"audit checkpoint #{self.n}: {self.seq:,} records, {suite.hash_name} "
            f"{self.hash[:16]}, {self.ts[:19]}Z, {suite.signature_name} {self.key_id} "
            f"v{self.kv}, sig {self.sig[:16]}"
        )

    def same(self, other: Checkpoint) -> bool:
        return self.line() == other.line()


@dataclass
class Verification:
    """What :meth:`AuditLog.verify` found; ``first_bad`` is the first bad record's seq."""

    ok: bool
    records: int
    problems: list[str] = field(default_factory=list)
    first_bad: int | None = None
    checkpoints: int = 0
    witnessed: Checkpoint | None = None
    with_secret: bool = True
    from_record: int = 1  # > 1: checked from the newest witnessed checkpoint on


def read_lines(path: Path) -> Iterator[str]:
    """The non-blank lines of ``path``, streamed (nothing when it does not exist)."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return
    with fh:
        for raw in fh:
            if raw.strip():
                yield raw.rstrip(b"\n").decode("utf-8", errors="replace")


def last_line(path: Path) -> str | None:
    """The last line of ``path`` read from its end; None when empty or absent."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None
    with fh:
        pos = end = fh.seek(0, os.SEEK_END)
        block = b""
        while pos > 0 and b"\n" not in block.rstrip(b"\n"):
            step = min(8192, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step) + block
    if end == 0:
        return None
    if not block.endswith(b"\n"):
        raise AuditError(
            f"{path.name} ends in a partial line (a crash while writing?): run "
            "`streethub audit verify`"
        )
    return block.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("utf-8")


def append_line(path: Path, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_public_keys(path: Path) -> PublicKeys:
    """The verification keys written by :meth:`AuditLog.export_public_keys`."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise AuditError(f"{Path(path).name} is not a streethub audit public-key file") from None
    return public_keys_from(doc, Path(path).name)


def public_keys_from(doc: Any, name: str = "the key document") -> PublicKeys:
    """The verification keys of a public-key document (the file's parsed JSON, or what the
    share service's ``GET /audit/public-key`` returns)."""
    try:
        if doc.get("format") != PUBLIC_KEY_FORMAT:
            raise ValueError
        keys = {
            (str(k["suite"]), int(k["version"])): bytes.fromhex(k["public_key"])
            for k in doc["keys"]
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        raise AuditError(f"{name} is not a streethub audit public-key file") from None
    for (suite, _), _pub in keys.items():
        try:
            get_suite(suite)
        except KeyRingError:
            raise AuditError(f"{name} names an unknown suite") from None
    return keys


def receipt_body(record: dict[str, Any], suite: str, version: int, public_key: bytes) -> dict:
    """What a receipt signs: the record without its MAC, and which key signs it."""
    cs = get_suite(suite)
    return {
        "format": RECEIPT_FORMAT,
        "record": {k: v for k, v in record.items() if k != "mac"},
        "suite": suite,
        "alg": cs.signature_name,
        "kv": version,
        "key_id": key_id(cs, public_key),
    }


def verify_receipt(receipt: dict[str, Any], public_keys: PublicKeys) -> list[str]:
    """The problems with a receipt (empty: it verifies) checked with the exported public
    keys alone: the record's content matches its hash, and the signature over both is the
    audit log's key's."""
    try:
        if receipt.get("format") != RECEIPT_FORMAT:
            return ["not a streethub audit receipt"]
        record = receipt["record"]
        suite, version = str(receipt["suite"]), int(receipt["kv"])
        body = {k: v for k, v in receipt.items() if k != "sig"}
        sig = bytes.fromhex(str(receipt["sig"]))
        cs = get_suite(suite)
    except (KeyError, TypeError, ValueError, AttributeError, KeyRingError):
        return ["the receipt is not readable"]
    problems = []
    if not isinstance(record, dict) or record_hash(record) != record.get("hash"):
        problems.append("the record does not match its hash: changed")
    public = public_keys.get((suite, version))
    if public is None:
        problems.append(f"no public key for {suite} version {version} in the key file")
    elif not cs.verify(public, RECEIPT_TAG + canonical(body), sig):
        problems.append("the signature does not verify under the exported public key")
    return problems
