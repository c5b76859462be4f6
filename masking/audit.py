"""The audit log: append-only JSONL, hash-chained and HMAC-signed (tamper-evident).

Each record holds ``seq``, ``ts``, ``action``, ``actor`` and small scalar details
(purpose, column, counts; never a value), plus ``prev`` (the previous record's hash),
``hash`` = sha256(prev ‖ canonical JSON of the record without hash/sig) and ``sig`` =
HMAC-SHA256 of the hash with the ``audit_signing`` key (version in ``kv``). A head
file keeps the last ``seq`` and hash, so removing records at the end is detected too.
``verify()`` finds changed, removed, inserted and reordered records.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalog.settings import Settings
from masking.errors import AuditError, KeyRingError
from masking.keys import KeyRing, exclusive_lock

GENESIS = "0" * 64
_SCALARS = (str, int, float, bool, type(None))


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Verification:
    ok: bool
    records: int
    problems: list[str] = field(default_factory=list)


class AuditLog:
    """An append-only, hash-chained, signed JSONL file under ``settings.audit_dir``."""

    def __init__(self, audit_dir: Path, keyring: KeyRing, *, name: str = "audit") -> None:
        self.dir = Path(audit_dir)
        self.keyring = keyring
        self.path = self.dir / f"{name}.jsonl"
        self.head_path = self.dir / f"{name}.head.json"

    @classmethod
    def from_settings(cls, settings: Settings, keyring: KeyRing | None = None) -> AuditLog:
        return cls(settings.audit_dir, keyring or KeyRing(settings.keys_dir))

    def __repr__(self) -> str:
        return f"AuditLog(path={str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with exclusive_lock(self.dir / f".{self.path.stem}.lock"):
            yield

    def _sign(self, digest: str, version: int) -> str:
        key = self.keyring.get("audit_signing", version).material
        return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()

    def _head(self) -> tuple[int, str]:
        try:
            head = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(head["seq"]), str(head["hash"])
        except FileNotFoundError:
            return 0, GENESIS

    def append(self, action: str, actor: str, **details: Any) -> dict[str, Any]:
        """Append one record and return it. Details must be scalars (no frames, no lists)."""
        bad = [k for k, v in details.items() if not isinstance(v, _SCALARS)]
        if bad:
            raise AuditError(f"audit details must be scalars: {', '.join(sorted(bad))}")
        with self._locked():
            seq, prev = self._head()
            version = self.keyring.current("audit_signing").version
            record = {
                "seq": seq + 1,
                "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                "action": action,
                "actor": actor,
                **details,
                "prev": prev,
                "kv": version,
            }
            digest = hashlib.sha256(prev.encode() + _canonical(record)).hexdigest()
            record["hash"] = digest
            record["sig"] = self._sign(digest, version)
            line = _canonical(record) + b"\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp = self.head_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"seq": seq + 1, "hash": digest}), encoding="utf-8")
            os.replace(tmp, self.head_path)
            return record

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def verify(self) -> Verification:
        """Check the chain, each signature and the head; list every problem found."""
        problems: list[str] = []
        prev, n = GENESIS, 0
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        for lineno, line in enumerate(lines, start=1):
            n += 1
            try:
                record = json.loads(line)
                body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
                digest = hashlib.sha256(str(body["prev"]).encode() + _canonical(body)).hexdigest()
            except (ValueError, KeyError, TypeError):
                problems.append(f"line {lineno}: not a readable audit record")
                prev = GENESIS
                continue
            if record.get("seq") != lineno:
                problems.append(f"line {lineno}: sequence {record.get('seq')} out of place")
            if body["prev"] != prev:
                problems.append(f"line {lineno}: does not chain to the record before it")
            if digest != record.get("hash"):
                problems.append(f"line {lineno}: content changed (hash mismatch)")
            try:
                sig_ok = hmac.compare_digest(
                    self._sign(str(record.get("hash")), int(record["kv"])), str(record.get("sig"))
                )
            except (KeyRingError, KeyError, ValueError, TypeError):
                sig_ok = False
            if not sig_ok:
                problems.append(f"line {lineno}: signature does not verify")
            prev = str(record.get("hash"))
        head_seq, head_hash = self._head()
        if (head_seq, head_hash) != (n, prev if n else GENESIS):
            problems.append(
                f"head says {head_seq} record(s) ending in {head_hash[:12]}, file has {n}: "
                "records removed or appended outside the log"
            )
        return Verification(ok=not problems, records=n, problems=problems)
