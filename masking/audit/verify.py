"""Verifying an audit log: the chain, the MACs, the head, the checkpoints, the witness.

Every problem names the first bad record where it can be known: a record whose seq,
link, hash or MAC is wrong is named exactly; records cut off the end are named from
the signed head, a checkpoint or the witness; a change made by someone holding the MAC
key (or seen with public keys only) is located between two checkpoints. Texts name
records, lines, files and key versions, never a record's content.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from masking.audit.format import (
    GENESIS,
    HEAD_TAG,
    LEGACY_SUITE,
    RECORD_TAG,
    Checkpoint,
    PublicKeys,
    Verification,
    canonical,
    read_lines,
    record_hash,
)
from masking.errors import AuditError, KeyRingError
from masking.suite import get_suite

if TYPE_CHECKING:
    from masking.audit.log import AuditLog

_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, KeyRingError)


MAX_LISTED = 100


class _Problems:
    """Every problem counted, the first ``MAX_LISTED`` listed (a rewritten log of a million
    records must not print a million lines)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.count = 0
        self.first_bad: int | None = None

    def bad(self, text: str, first_bad: int | None = None) -> None:
        self.count += 1
        if self.count <= MAX_LISTED:
            self.texts.append(text)
        if first_bad is not None and (self.first_bad is None or first_bad < self.first_bad):
            self.first_bad = first_bad

    def listed(self) -> list[str]:
        more = self.count - len(self.texts)
        return self.texts + ([f"… and {more:,} more problem(s) not listed"] if more else [])


def _seq_text(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "no seq"


def _out_of_place(lineno: int, n: int, own: Any) -> str:
    if not isinstance(own, int) or isinstance(own, bool):
        return f"line {lineno:,} has no record number where record {n:,} belongs"
    if own > n:
        gone = f"record {n:,} is" if own == n + 1 else f"records {n:,}–{own - 1:,} are"
        return f"{gone} missing: line {lineno:,} holds record {own:,} (removed or reordered)"
    if own == n - 1:
        return f"line {lineno:,} holds a second record {own:,}: a record was inserted"
    return f"line {lineno:,} holds record {own:,} after record {n - 1:,}: inserted or reordered"


def _missing(first: int, last: int) -> str:
    if first == 1:
        return "every record is missing"
    return (
        f"record {first:,} is missing"
        if first == last
        else f"records {first:,}–{last:,} are missing"
    )


def _ends(top: int) -> str:
    return "the log is empty" if top == 0 else f"the log ends at record {top:,}"


class _Walk:
    """One pass over the records: the exact problems, and the hash of every record that
    ends an intact chain from the first (what a checkpoint or the head can be held to)."""

    def __init__(
        self, log: AuditLog, with_secret: bool, problems: _Problems, anchor: Checkpoint | None
    ) -> None:
        self.log, self.with_secret, self.p = log, with_secret, problems
        self.anchor = anchor  # checks begin at the record it signed (None: at the first)
        self.hashes: dict[int, str] = {}
        self.first_hash: str | None = None
        self.count = 0  # lines
        self.top = 0  # the highest record number found
        self.new_format = False
        self.read = 0  # records read and checked

    def run(self) -> None:
        prev: str | None = GENESIS
        intact, expected = True, 1
        start = self.anchor.seq if self.anchor else 1
        for lineno, line in enumerate(read_lines(self.log.path), start=1):
            self.count = lineno
            if lineno < start:  # vouched for by the anchor
                self.top = lineno
                continue
            if lineno == start:
                prev, expected = (None, start) if self.anchor else (prev, expected)
            try:
                record = json.loads(line)
                digest = record_hash(record)
            except _UNREADABLE:
                self.p.bad(f"record {expected:,}: line {lineno} is not a readable record", expected)
                intact, prev, expected = False, None, expected + 1
                continue
            self.read += 1
            ok = self._check(lineno, expected, record, digest, prev)
            if self.anchor and lineno == start and digest != self.anchor.hash:
                self.p.bad(
                    f"record {start:,}: not the record witnessed checkpoint #{self.anchor.n} "
                    "signed (records up to it were changed): verify the whole log",
                    start,
                )
                ok = False
            intact = intact and ok
            if intact:
                self.hashes[lineno] = digest
            if lineno == 1:
                self.first_hash = digest
            prev = str(record.get("hash"))
            seq = record.get("seq")
            if isinstance(seq, int):
                self.top = max(self.top, seq)
            if not isinstance(seq, int):
                expected += 1
            elif seq >= expected:  # records removed: the next follows this one
                expected = seq + 1

    def _check(self, lineno: int, n: int, record: dict, digest: str, prev: str | None) -> bool:
        """``n``: the seq this line should hold (the one after the line before's)."""
        own = record.get("seq")
        found: list[str] = []
        if own != n:
            self.p.bad(_out_of_place(lineno, n, own), n)
        if prev is not None and record.get("prev") != prev:
            found.append("does not chain to the record before it")
        if digest != record.get("hash"):
            found.append("changed: its content no longer matches its hash")
        if "v" in record:
            self.new_format = True
        elif self.new_format:
            found.append("an old-format record after new-format ones")
        if self.with_secret:
            found.extend(self._mac(record))
        label = f"record {n:,}" if own == n else f"line {lineno:,} (record {_seq_text(own)})"
        for text in found:
            self.p.bad(f"{label}: {text}", n)
        return own == n and not found

    def _mac(self, record: dict) -> list[str]:
        try:
            key = self.log._mac_key(int(record["kv"]))
        except _UNREADABLE:
            return ["its audit key version is not in this deployment's key ring"]
        try:
            if "v" not in record:
                ok = LEGACY_SUITE.mac(key, str(record["hash"]).encode()).hex() == record["sig"]
            else:
                tag = bytes.fromhex(record["mac"])
                ok = get_suite(record["suite"]).mac_ok(
                    key, RECORD_TAG + bytes.fromhex(record["hash"]), tag
                )
        except _UNREADABLE:
            ok = False
        return [] if ok else ["its MAC does not verify: not written with this deployment's key"]


def _public_key(log: AuditLog, public_keys: PublicKeys | None, cp: Checkpoint) -> bytes | None:
    if public_keys is not None:
        return public_keys.get((cp.suite, cp.kv))
    try:
        return log._signer(get_suite(cp.suite), cp.kv).public_key()
    except _UNREADABLE:
        return None


class _Checkpoints:
    """Checkpoints held to their signatures and to the chain the walk found."""

    def __init__(self, log: AuditLog, keys: PublicKeys | None, walk: _Walk, p: _Problems) -> None:
        self.log, self.keys, self.walk, self.p = log, keys, walk, p
        self.chain_first_bad = p.first_bad
        self.start = walk.anchor.seq if walk.anchor else 0
        self.good_seqs: list[int] = []  # checkpoints that verify and match the chain
        self._verified: dict[bytes, bool] = {}  # the witness repeats the log's checkpoints

    def signed(self, cp: Checkpoint, where: str) -> bool:
        pub = _public_key(self.log, self.keys, cp)
        if pub is None:
            self.p.bad(f"{where} checkpoint #{cp.n}: no verification key for {cp.suite} v{cp.kv}")
            return False
        memo = pub + cp.line()
        ok = self._verified.get(memo)
        if ok is None:
            try:
                ok = get_suite(cp.suite).verify(pub, cp.signed_bytes(), bytes.fromhex(cp.sig))
            except _UNREADABLE:
                ok = False
            self._verified[memo] = ok
        if not ok:
            self.p.bad(
                f"{where} checkpoint #{cp.n}: its signature does not verify (not signed with "
                "this deployment's checkpoint key)"
            )
        return ok

    def matches(self, cp: Checkpoint, where: str) -> bool:
        """Does the log still hold what ``cp`` signed? Reports the first bad record if not."""
        top = self.walk.top
        if cp.seq > top:
            self.p.bad(
                f"{where} checkpoint #{cp.n} signed {cp.seq:,} records, {_ends(top)}: "
                f"{_missing(top + 1, cp.seq)}",
                top + 1,
            )
            return False
        if cp.log != self.walk.first_hash and self.walk.hashes.get(1) is not None:
            self.p.bad(
                f"{where} checkpoint #{cp.n} was signed for another log: the log was replaced", 1
            )
            return False
        if self.walk.hashes.get(cp.seq) == cp.hash:
            self.good_seqs.append(cp.seq)
            return True
        if self.chain_first_bad is not None and self.chain_first_bad <= cp.seq:
            self.p.bad(
                f"{where} checkpoint #{cp.n}: records up to {cp.seq:,} are not what it signed"
            )
            return False
        lo = max((s for s in self.good_seqs if s < cp.seq), default=0) + 1
        self.p.bad(
            f"{where} checkpoint #{cp.n}: records up to {cp.seq:,} are not what it signed; the "
            f"chain was rebuilt after a change between records {lo:,} and {cp.seq:,}",
            lo,
        )
        return False

    def local(self) -> tuple[int, list[Checkpoint]]:
        cps, unreadable = self.log._checkpoints()
        for i in unreadable:
            self.p.bad(f"checkpoint line {i} is not a readable checkpoint")
        verified, expected = 0, 1
        for cp in cps:
            if cp.seq < self.start:  # vouched for by the anchor
                expected = cp.n + 1
                continue
            if cp.n != expected and not unreadable:
                self.p.bad(
                    f"the log's checkpoint #{cp.n} follows #{expected - 1}: checkpoints were removed or reordered"
                )
            expected = cp.n + 1
            if self.signed(cp, "the log's") and self.matches(cp, "the log's"):
                verified += 1
        return verified, cps

    def witness(self, local: list[Checkpoint]) -> Checkpoint | None:
        path = self.log.witness_path
        if path is None:
            return None
        try:
            cps, unreadable = self.log._checkpoints(path)
        except OSError as exc:
            self.p.bad(f"the witness ({path}) cannot be read: {type(exc).__name__}")
            return None
        for i in unreadable:
            self.p.bad(f"witness line {i} is not a readable checkpoint")
        if not cps:
            if local:
                self.p.bad(
                    f"the witness ({path}) holds no checkpoint, the log has {len(local)}: the "
                    "witness was lost, or this home was copied or moved (STREETHUB_WITNESS_DIR "
                    "names the witness folder to compare with)"
                )
            return None
        by_n = {cp.n: cp for cp in local}
        failed = [
            cp
            for cp in cps
            if cp.seq >= self.start
            and not (self.signed(cp, "witness") and self.matches(cp, "witness"))
        ]
        kept = [cp for cp in cps if cp not in failed]
        missing = [cp.n for cp in kept if cp.n not in by_n or not by_n[cp.n].same(cp)]
        if missing:
            which = f"#{missing[0]}" if len(missing) == 1 else f"#{missing[0]}…#{missing[-1]}"
            self.p.bad(
                f"witness checkpoint(s) {which} not in the log's checkpoint file as witnessed: "
                "it was rewritten or cut"
            )
        newest = cps[-1]
        if local and local[-1].n > newest.n:
            self.p.bad(
                f"the log's checkpoint #{local[-1].n} was never witnessed (the witness ends at "
                f"#{newest.n}): the witness could not be written, or the checkpoint was forged"
            )
        return None if newest in failed else newest


def _head(log: AuditLog, with_secret: bool, walk: _Walk, p: _Problems) -> None:
    n = walk.top
    try:
        head = json.loads(log.head_path.read_text(encoding="utf-8"))
        seq, digest = int(head["seq"]), str(head["hash"])
    except FileNotFoundError:
        if n:
            p.bad(
                f"the head ({log.head_path.name}) is missing: records after the newest checkpoint may have been cut off"
            )
        return
    except _UNREADABLE:
        p.bad(f"the head ({log.head_path.name}) is unreadable", n + 1)
        return
    if "v" not in head:
        if walk.new_format:
            p.bad(
                "the head is in the old, unsigned format although the log is not: it was rewritten",
                n + 1,
            )
        return
    if with_secret:
        body = {k: v for k, v in head.items() if k != "mac"}
        try:
            ok = get_suite(head["suite"]).mac_ok(
                log._mac_key(int(head["kv"])),
                HEAD_TAG + canonical(body),
                bytes.fromhex(head["mac"]),
            )
        except _UNREADABLE:
            ok = False
        if not ok:
            p.bad(
                f"the head's MAC does not verify: it was rewritten, and records after record "
                f"{n:,} may have been cut off",
                n + 1,
            )
            return
    if seq > n:
        p.bad(
            f"the signed head says {seq:,} records, {_ends(n)}: {_missing(n + 1, seq)}",
            n + 1,
        )
    elif seq and walk.hashes.get(seq, digest) != digest:
        p.bad(f"record {seq}: not the record the signed head names (the end was rewritten)", seq)


def _anchor(log: AuditLog, public_keys: PublicKeys | None) -> Checkpoint | None:
    """The newest checkpoint the witness holds exactly as the log does, signature good."""
    if log.witness_path is None:
        return None
    try:
        witnessed = log._checkpoints(log.witness_path)[0]
    except OSError:
        return None
    local = {cp.n: cp for cp in log._checkpoints()[0]}
    for cp in reversed(witnessed):
        if cp.n in local and local[cp.n].same(cp):
            pub = _public_key(log, public_keys, cp)
            with contextlib.suppress(*_UNREADABLE):
                if pub and get_suite(cp.suite).verify(
                    pub, cp.signed_bytes(), bytes.fromhex(cp.sig)
                ):
                    return cp
            return None
    return None


def verify_log(
    log: AuditLog,
    public_keys: PublicKeys | None,
    *,
    upgrading: bool = False,
    since_witnessed: bool = False,
) -> Verification:
    """Verify ``log`` (see :meth:`AuditLog.verify`)."""
    with_secret = public_keys is None
    if with_secret and log.keyring is None:
        raise AuditError("verifying without the key ring needs the exported public keys")
    p = _Problems()
    anchor = _anchor(log, public_keys) if since_witnessed else None
    walk = _Walk(log, with_secret, p, anchor)
    walk.run()
    if walk.read and not walk.new_format and not upgrading:
        p.bad(
            "the log is in the old format (unsigned head, no checkpoints): `streethub audit "
            "checkpoint` upgrades it"
        )
    _head(log, with_secret, walk, p)
    cps = _Checkpoints(log, public_keys, walk, p)
    verified, local = cps.local()
    witnessed = cps.witness(local)
    if with_secret and walk.count == 0 and log.keyring.versions("audit_signing"):
        p.bad(
            "the log is empty, but the key ring holds the audit key its records were written "
            "with: the log was deleted",
            1,
        )
    return Verification(
        ok=p.count == 0,
        records=walk.count,
        problems=p.listed(),
        first_bad=p.first_bad,
        checkpoints=verified,
        witnessed=witnessed,
        with_secret=with_secret,
        from_record=anchor.seq if anchor else 1,
    )
