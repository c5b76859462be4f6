"""The audit log: append-only JSONL that no one can quietly rewrite.

Files under ``settings.audit_dir`` (folder 0700, files 0600):

``audit.jsonl``
    one record a line: ``seq``, ``ts``, ``action``, ``actor`` and the caller's scalar
    details (purpose, column, counts; never a value), then the chain fields, set here
    and nowhere else: ``v`` (format), ``suite``, ``prev`` (the record before's hash),
    ``hash`` = H(canonical JSON of the record without ``hash``/``mac``) with the suite's
    hash (SHA-256, SM3 under 国密), ``kv`` and ``mac`` = MAC of the hash under version
    ``kv`` of the ``audit_signing`` data key (HMAC-SHA256 / HMAC-SM3). Data keys are
    wrapped under the master key the key provider holds: a copy of the home cannot
    make a record that verifies.
``audit.head.json``
    the newest record's seq and hash, MACed: cutting records off the end (and rewriting
    the head) is detected.
``audit.checkpoints.jsonl``
    signed checkpoints: their number ``n``, the head they vouch for (``seq``, ``hash``),
    the time, the log's first hash, signed with the suite's signature (Ed25519; SM2 under
    国密) derived from version ``kv`` of the ``audit_checkpoint`` seed. One every
    ``audit_checkpoint_every`` records, at least once a minute while records are written
    (checked on append), and on :meth:`AuditLog.checkpoint` (the end of every run). Each
    is also appended to the witness file (``settings.witness_dir_abs``, outside the
    home) and comes back as a short printable receipt.

:meth:`AuditLog.verify` checks the chain, every record's MAC, the head's MAC, every
checkpoint's signature and that the chain still leads to what each signed, and every
checkpoint in the witness against the log (a deleted, truncated, reordered, inserted,
changed or re-chained log is named by its first bad record). With only the exported
public key (:func:`load_public_keys`) it checks the chain's structure, the checkpoint
signatures and the witness, but no MAC: records after the newest checkpoint could then
be rewritten or cut off unnoticed, and a record changed before it is located only
between two checkpoints.

:meth:`AuditLog.append_many` writes a batch of records under one lock with one write and
one fsync (the share service group-commits its concurrent requests' records through it);
:meth:`AuditLog.find` bisects the file to the record of a seq; :meth:`AuditLog.sign_receipt`
signs one record with the checkpoint key, so a reader holding only the exported public keys
checks it (:func:`masking.audit.format.verify_receipt`).

Logs written before this format (``sig`` = HMAC-SHA256, an unsigned head) are checked
by their own rule; the first append or checkpoint under this format verifies them,
records ``audit.upgrade`` and signs a checkpoint over them (a log that does not verify
is refused, not upgraded).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from catalog.settings import Settings
from masking.audit.format import (
    CHECKPOINT_MAX_AGE,
    FORMAT,
    GENESIS,
    HEAD_TAG,
    PUBLIC_KEY_FORMAT,
    RECEIPT_TAG,
    RECORD_TAG,
    RESERVED,
    SCALARS,
    Checkpoint,
    PublicKeys,
    Verification,
    append_line,
    canonical,
    key_id,
    last_line,
    public_entry,
    read_lines,
    receipt_body,
    record_hash,
    utc_now,
)
from masking.errors import AuditError
from masking.keys import KeyRing, exclusive_lock
from masking.suite import CipherSuite, Signer, get_suite


class AuditLog:
    """The hash-chained, MACed, checkpointed audit log under ``audit_dir``.

    ``keyring`` may be None only to verify with public keys (an inspector's copy)."""

    def __init__(
        self,
        audit_dir: Path,
        keyring: KeyRing | None,
        *,
        name: str = "audit",
        witness_dir: Path | None = None,
        checkpoint_every: int = 1_000,
        checkpoint_max_age: dt.timedelta = CHECKPOINT_MAX_AGE,
    ) -> None:
        self.dir = Path(audit_dir)
        self.keyring = keyring
        self.name = name
        self.path = self.dir / f"{name}.jsonl"
        self.head_path = self.dir / f"{name}.head.json"
        self.checkpoints_path = self.dir / f"{name}.checkpoints.jsonl"
        self.witness_path = Path(witness_dir) / f"{name}.checkpoints.jsonl" if witness_dir else None
        self.checkpoint_every = checkpoint_every
        self.checkpoint_max_age = checkpoint_max_age
        self._signers: dict[tuple[str, int], Signer] = {}

    @classmethod
    def from_settings(cls, settings: Settings, keyring: KeyRing | None = None) -> AuditLog:
        witness = settings.witness_dir_abs
        if witness.is_relative_to(settings.home_abs):
            raise AuditError(
                "the audit witness must be outside the home (STREETHUB_WITNESS_DIR): a copy "
                "of the home must not carry its own witness"
            )
        return cls(
            settings.audit_dir,
            keyring or KeyRing.from_settings(settings),
            witness_dir=witness,
            checkpoint_every=settings.audit_checkpoint_every,
        )

    def __repr__(self) -> str:
        return f"AuditLog(path={str(self.path)!r}, witness={str(self.witness_path)!r})"

    # -- keys ------------------------------------------------------------------------------
    def _ring(self) -> KeyRing:
        if self.keyring is None:
            raise AuditError("this audit log was opened with public keys only: it cannot write")
        return self.keyring

    def _mac_key(self, version: int) -> bytes:
        return self._ring().get("audit_signing", version).material

    def _signer(self, suite: CipherSuite, version: int) -> Signer:
        found = self._signers.get((suite.name.value, version))
        if found is None:
            seed = self._ring().get("audit_checkpoint", version).material
            found = self._signers[(suite.name.value, version)] = suite.signer(seed)
        return found

    def public_keys(self, suites: set[str] | None = None) -> PublicKeys:
        """Every checkpoint key version's public key for ``suites`` (default: the ring's
        suite and every suite a checkpoint of this log was signed under)."""
        ring = self._ring()
        if suites is None:
            suites = {ring.suite.name.value} | {cp.suite for cp in self._checkpoints()[0]}
        if not ring.versions("audit_checkpoint"):
            ring.current("audit_checkpoint")
        return {
            (s, v): self._signer(get_suite(s), v).public_key()
            for s in sorted(suites)
            for v in ring.versions("audit_checkpoint")
        }

    def public_key_document(self) -> dict[str, Any]:
        """The public verification keys (no secret) as the key file holds them."""
        keys = self.public_keys()
        return {
            "format": PUBLIC_KEY_FORMAT,
            "keys": [public_entry(s, v, pub) for (s, v), pub in sorted(keys.items())],
        }

    def export_public_keys(self, path: Path) -> int:
        """Write the public verification keys (no secret) to ``path``; how many."""
        doc = self.public_key_document()
        path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        return len(doc["keys"])

    # -- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with exclusive_lock(self.dir / f".{self.name}.lock"):
            yield

    def _last_record(self) -> dict[str, Any] | None:
        line = last_line(self.path)
        if line is None:
            return None
        try:
            record = json.loads(line)
            int(record["seq"]), str(record["hash"])
        except (ValueError, KeyError, TypeError):
            raise AuditError(
                f"the last line of {self.path.name} is not an audit record: run "
                "`streethub audit verify`"
            ) from None
        return record

    def _write(self, last: dict[str, Any] | None, action: str, actor: str, details: dict):
        return self._write_many(last, [(action, actor, details)])[-1]

    def _write_many(
        self, last: dict[str, Any] | None, entries: list[tuple[str, str, dict]]
    ) -> list[dict[str, Any]]:
        """Chain ``entries`` after ``last``, write them with one write and one fsync, then the
        head once (under the caller's lock)."""
        ring = self._ring()
        suite = ring.suite
        key = ring.current("audit_signing")
        records: list[dict[str, Any]] = []
        for action, actor, details in entries:
            record = {
                "seq": int(last["seq"]) + 1 if last else 1,
                "ts": utc_now().isoformat(timespec="microseconds"),
                "action": action,
                "actor": actor,
                **details,
                "v": FORMAT,
                "suite": suite.name.value,
                "prev": str(last["hash"]) if last else GENESIS,
                "kv": key.version,
            }
            record["hash"] = record_hash(record)
            record["mac"] = suite.mac(
                key.material, RECORD_TAG + bytes.fromhex(record["hash"])
            ).hex()
            records.append(record)
            last = record
        append_line(self.path, b"".join(canonical(r) + b"\n" for r in records))
        record = records[-1]
        head = {"v": FORMAT, "seq": record["seq"], "hash": record["hash"]}
        head |= {"suite": suite.name.value, "kv": key.version}
        head["mac"] = suite.mac(key.material, HEAD_TAG + canonical(head)).hex()
        tmp = self.head_path.with_name(f".{self.head_path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:  # no fsync: the records are durable, a stale head
            fh.write(canonical(head))  # is caught up by the next append
        os.replace(tmp, self.head_path)
        return records

    def _upgrade_if_old(self, last: dict[str, Any] | None) -> dict[str, Any] | None:
        """Sign an old-format log's records into this format, or refuse it."""
        if last is None or "v" in last:
            return last
        from masking.audit.verify import verify_log

        result = verify_log(self, None, upgrading=True)
        if not result.ok:
            raise AuditError(
                f"the audit log (old format) does not verify, first bad record "
                f"{result.first_bad}: not upgrading it; `streethub audit verify` lists why"
            )
        record = self._write(last, "audit.upgrade", "streethub", {"old_records": last["seq"]})
        self._sign_checkpoint(record)
        return record

    @staticmethod
    def check_details(details: dict[str, Any]) -> None:
        """Refuse details a record cannot carry: a chain field, or anything but a scalar."""
        clash = sorted(RESERVED & details.keys())
        if clash:
            raise AuditError(f"audit details cannot set {', '.join(clash)}: the log sets them")
        bad = [k for k, v in details.items() if not isinstance(v, SCALARS)]
        if bad:
            raise AuditError(f"audit details must be scalars: {', '.join(sorted(bad))}")

    def append(self, action: str, actor: str, **details: Any) -> dict[str, Any]:
        """Append one record and return it. Details are scalars (no frames, no lists) and
        never a chain field: ``seq``, ``ts`` and the hashes are this module's."""
        return self.append_many([(action, actor, details)])[0]

    def append_many(self, entries: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Append a batch of ``(action, actor, details)`` in order under ONE lock with ONE
        write and ONE fsync (a group commit: the share service batches the records of its
        concurrent requests); the records, in order, durable when this returns. A
        checkpoint is signed at the batch's last record when one falls due within it."""
        if not entries:
            return []
        for _action, _actor, details in entries:
            self.check_details(details)
        with self._locked():
            last = self._upgrade_if_old(self._last_record())
            records = self._write_many(last, list(entries))
            if self._checkpoint_due(records[-1]):
                self._sign_checkpoint(records[-1])
            return records

    def _checkpoint_due(self, record: dict[str, Any]) -> bool:
        newest = self._newest_checkpoint()
        done = newest.seq if newest else 0
        if record["seq"] - done >= self.checkpoint_every:
            return True
        if newest is not None:
            since = newest.ts
        else:
            with self.path.open(encoding="utf-8") as fh:
                since = str(json.loads(fh.readline())["ts"])
        return utc_now() - dt.datetime.fromisoformat(since) >= self.checkpoint_max_age

    def _newest_checkpoint(self) -> Checkpoint | None:
        line = last_line(self.checkpoints_path)
        try:
            return Checkpoint.parse(line) if line else None
        except (ValueError, KeyError, TypeError):
            raise AuditError(
                f"the last line of {self.checkpoints_path.name} is unreadable"
            ) from None

    def _sign_checkpoint(self, record: dict[str, Any]) -> Checkpoint:
        ring = self._ring()
        newest = self._newest_checkpoint()
        if newest is not None and newest.seq == record["seq"] and newest.hash == record["hash"]:
            return newest
        suite = ring.suite
        seed = ring.current("audit_checkpoint")
        signer = self._signer(suite, seed.version)
        with self.path.open(encoding="utf-8") as fh:
            first = json.loads(fh.readline())
        cp = Checkpoint(
            n=newest.n + 1 if newest else 1,
            seq=int(record["seq"]),
            hash=str(record["hash"]),
            ts=utc_now().isoformat(timespec="seconds"),
            log=str(first["hash"]),
            suite=suite.name.value,
            kv=seed.version,
            key_id=key_id(suite, signer.public_key()),
        )
        cp = Checkpoint(**{**cp.__dict__, "sig": signer.sign(cp.signed_bytes()).hex()})
        append_line(self.checkpoints_path, cp.line())
        if self.witness_path is not None:
            try:
                self.witness_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                append_line(self.witness_path, cp.line())
            except OSError as exc:
                raise AuditError(
                    f"checkpoint #{cp.n} signed but not witnessed: cannot write "
                    f"{self.witness_path} ({type(exc).__name__})"
                ) from None
        return cp

    def checkpoint(self) -> Checkpoint | None:
        """Sign the head now (unless the newest checkpoint already covers it), write it to
        the witness and return it (``.receipt`` prints it); None for an empty log."""
        with self._locked():
            last = self._upgrade_if_old(self._last_record())
            return self._sign_checkpoint(last) if last else None

    # -- reading ---------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in read_lines(self.path)]

    def find(self, seq: int) -> dict[str, Any] | None:
        """The record numbered ``seq``, or None: found by bisecting the file on byte offsets
        (records are written in seq order), a few reads however long the log is."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return None
        with fh:
            size = fh.seek(0, os.SEEK_END)

            def line_at(pos: int) -> bytes:  # the first whole line starting at or after pos
                if pos == 0:
                    fh.seek(0)
                else:
                    fh.seek(pos - 1)
                    fh.readline()
                return fh.readline()

            def seq_of(line: bytes) -> int:
                try:
                    return int(json.loads(line)["seq"])
                except (ValueError, KeyError, TypeError):
                    raise AuditError(
                        f"{self.path.name} holds a line that is not an audit record: run "
                        "`streethub audit verify`"
                    ) from None

            lo, hi = 0, size
            while lo < hi:
                mid = (lo + hi) // 2
                line = line_at(mid)
                if not line.strip() or seq_of(line) >= seq:
                    hi = mid
                else:
                    lo = mid + 1
            line = line_at(lo)
        if not line.strip() or seq_of(line) != seq:
            return None
        return json.loads(line)

    def sign_receipt(self, record: dict[str, Any]) -> dict[str, Any]:
        """A receipt for ``record``: the record (without its MAC) signed with the current
        checkpoint key, so anyone holding the exported public keys alone can check it
        (:func:`masking.audit.format.verify_receipt`)."""
        ring = self._ring()
        suite = ring.suite
        seed = ring.current("audit_checkpoint")
        signer = self._signer(suite, seed.version)
        receipt = receipt_body(record, suite.name.value, seed.version, signer.public_key())
        receipt["sig"] = signer.sign(RECEIPT_TAG + canonical(receipt)).hex()
        return receipt

    def _checkpoints(self, path: Path | None = None) -> tuple[list[Checkpoint], list[int]]:
        """The checkpoints of ``path`` (default: the log's own) and unreadable line numbers."""
        found, unreadable = [], []
        for i, line in enumerate(read_lines(path or self.checkpoints_path), start=1):
            try:
                found.append(Checkpoint.parse(line))
            except (ValueError, KeyError, TypeError):
                unreadable.append(i)
        return found, unreadable

    # -- verification ----------------------------------------------------------------------
    def verify(
        self, *, public_keys: PublicKeys | None = None, since_witnessed: bool = False
    ) -> Verification:
        """Check everything that can be checked; ``public_keys`` (an inspector's, from
        :func:`load_public_keys`) verifies without any secret and skips the MACs.

        ``since_witnessed``: begin at the newest checkpoint the witness holds as the log
        does (its signature checked, the record it signed held to it) — the per-run check,
        whose time does not grow with the log; changes before that checkpoint are found
        only by the whole verification (``streethub audit verify``)."""
        from masking.audit.verify import verify_log

        return verify_log(self, public_keys, since_witnessed=since_witnessed)
