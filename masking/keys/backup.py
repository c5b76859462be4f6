"""Backup shares of the master key: any 2 of 3 restore it (Shamir secret sharing).

``split_master(kid, key)`` cuts a 32-byte master key into 3 shares with pycryptodome's
``Cryptodome.Protocol.SecretSharing.Shamir`` (GF(2^128), so the key is two 16-byte
secrets shared with the same indices). A share is one printable line::

    streethub-share-v1:<kid>:<index>/3:<64 hex digits>:<8 hex digits of check>

The check catches a mistyped share before it is combined; the kid (a one-way fingerprint
of the master key) tells which master a share belongs to and proves the combination: two
shares that do not rebuild the key named by their kid are refused. One share alone says
nothing about the key. Shares are for offline custody (paper, separate safes, separate
people); make new ones after every rotation — older shares rebuild a retired master.
"""

from __future__ import annotations

import hashlib
import re

from masking.errors import KeyRingError
from masking.keys.store import KEY_BYTES, fingerprint

THRESHOLD = 2
SHARES = 3
PREFIX = "streethub-share-v1"
_SHARE = re.compile(
    rf"^{PREFIX}:(?P<kid>[0-9a-f]{{16}}):(?P<index>[1-9])/(?P<n>[1-9]):"
    r"(?P<body>[0-9a-f]{64}):(?P<check>[0-9a-f]{8})$"
)


def _check(kid: str, index: int, body: str) -> str:
    return hashlib.sha256(f"{PREFIX}|{kid}|{index}|{body}".encode()).hexdigest()[:8]


def split_master(kid: str, key: bytes) -> list[str]:
    """Three share lines for ``key``; any two rebuild it."""
    from Cryptodome.Protocol.SecretSharing import Shamir

    if len(key) != KEY_BYTES or fingerprint(key) != kid:
        raise KeyRingError("the master key to share does not match its kid")
    halves = [Shamir.split(THRESHOLD, SHARES, key[i : i + 16]) for i in range(0, KEY_BYTES, 16)]
    lines = []
    for number in range(SHARES):
        index = halves[0][number][0]
        body = b"".join(half[number][1] for half in halves).hex()
        lines.append(f"{PREFIX}:{kid}:{index}/{SHARES}:{body}:{_check(kid, index, body)}")
    return lines


def parse_share(text: str) -> tuple[str, int, bytes]:
    """``(kid, index, body)`` of one share line; KeyRingError naming what is wrong."""
    match = _SHARE.match(text.strip())
    if match is None:
        raise KeyRingError(f"not a share line (expected {PREFIX}:<kid>:<i>/3:<hex>:<check>)")
    kid, index, body = match["kid"], int(match["index"]), match["body"]
    if _check(kid, index, body) != match["check"]:
        raise KeyRingError(f"share {index} is damaged (its check does not match): retype it")
    return kid, index, bytes.fromhex(body)


def combine_shares(lines: list[str]) -> tuple[str, bytes]:
    """``(kid, key)`` rebuilt from at least two share lines of one master key."""
    from Cryptodome.Protocol.SecretSharing import Shamir

    shares = [parse_share(line) for line in lines]
    kids = {kid for kid, _, _ in shares}
    if len(kids) != 1:
        raise KeyRingError("the shares belong to different master keys")
    by_index = {index: body for _, index, body in shares}
    if len(by_index) < THRESHOLD:
        raise KeyRingError(f"{THRESHOLD} different shares are needed, got {len(by_index)}")
    picked = sorted(by_index.items())[:THRESHOLD]
    key = b"".join(
        Shamir.combine([(index, body[i : i + 16]) for index, body in picked])
        for i in range(0, KEY_BYTES, 16)
    )
    kid = kids.pop()
    if fingerprint(key) != kid:
        raise KeyRingError("the shares do not rebuild their master key (mixed or altered shares)")
    return kid, key
