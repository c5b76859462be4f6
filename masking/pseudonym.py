"""Pseudonyms: keyed HMAC-SHA256 of the normalised identifier (joinable, not reversible).

A pseudonym is the first :data:`PSEUDONYM_HEX` hex characters (80 bits) of
HMAC-SHA256(key, normalised value). Deterministic per key, so tables pseudonymised with
the same key join; a different key (``recipient="wjw"`` → key purpose
``recipient:wjw``) gives unrelated pseudonyms, so two departments' extracts cannot be
joined without the hub.

Why 80 bits is safe: a collision among n identifiers has probability ≈ n²/2⁸¹. For the
whole population of China (1.4·10⁹ — far beyond a street's 10⁵) that is ≈ 8·10⁻⁷;
for a street it is ≈ 4·10⁻¹⁵. Guessing is prevented by the secret key, not the length
(an attacker without the key cannot test candidate IDs at all).

Speed: the inner and outer SHA-256 states of HMAC are keyed once and ``.copy()``-ed
per value (≈ 2× ``hmac.digest`` per value). Output is identical to ``hmac``.
"""

from __future__ import annotations

import hashlib
import re

import polars as pl

from catalog.model import PiiKind
from masking.ids import is_citizen_id15, upgrade_id15
from masking.keys import KeyRing

PSEUDONYM_HEX = 20
PSEUDONYM_PATTERN = rf"^[0-9a-f]{{{PSEUDONYM_HEX}}}$"
_FULLWIDTH = {chr(0xFF10 + i): str(i) for i in range(10)} | {"Ｘ": "X", "ｘ": "X"}


class KeyedHasher:
    """HMAC-SHA256 with precomputed inner/outer states. ``repr`` hides the key."""

    __slots__ = ("_inner", "_outer", "version")

    def __init__(self, key: bytes, version: int = 0) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self.version = version

    def __repr__(self) -> str:
        return f"KeyedHasher(version={self.version}, key=<hidden>)"

    def hexdigests(self, values: list[bytes | None], length: int = PSEUDONYM_HEX) -> list:
        """HMAC hex digests of UTF-8 ``values`` truncated to ``length``; None stays None."""
        inner_copy = self._inner.copy
        outer_copy = self._outer.copy
        out: list[str | None] = []
        append = out.append
        for v in values:
            if v is None:
                append(None)
                continue
            h = inner_copy()
            h.update(v)
            o = outer_copy()
            o.update(h.digest())
            append(o.hexdigest()[:length])
        return out


def key_purpose(recipient: str | None) -> str:
    return "pseudonym" if recipient is None else f"recipient:{recipient}"


def hasher(keyring: KeyRing, recipient: str | None = None, version: int | None = None):
    """A KeyedHasher for the pseudonym key (or a recipient's key), current or given version."""
    purpose = key_purpose(recipient)
    key = keyring.current(purpose) if version is None else keyring.get(purpose, version)
    return KeyedHasher(key.material, key.version)


def normalise_expr(expr: pl.Expr, kind: PiiKind | str | None = None) -> pl.Expr:
    """Normalisation before hashing: half-width, trimmed; IDs upper-case X; phones digits only."""
    e = expr.cast(pl.String).str.replace_many(_FULLWIDTH).str.strip_chars(" \t\u3000")
    kind = PiiKind(kind) if kind is not None else None
    if kind is PiiKind.citizen_id:
        return e.str.to_uppercase()
    if kind in (PiiKind.mobile, PiiKind.landline):
        digits = e.str.replace_all(r"[\s\-()（）]", "")
        return digits.str.replace(r"^(?:\+86|0086)", "")
    if kind in (PiiKind.email, PiiKind.plate):
        return e.str.to_uppercase() if kind is PiiKind.plate else e.str.to_lowercase()
    return e


def _upgrade_ids(values: list[str | None]) -> list[str | None]:
    return [upgrade_id15(v) if v is not None and is_citizen_id15(v) else v for v in values]


def pseudonymise_series(
    series: pl.Series,
    keyring: KeyRing,
    *,
    kind: PiiKind | str | None = None,
    recipient: str | None = None,
    version: int | None = None,
) -> pl.Series:
    """Pseudonyms of a column (normalised by ``kind``); 15-digit IDs upgraded to 18 first."""
    norm = series.to_frame("v").select(normalise_expr(pl.col("v"), kind)).to_series()
    if (
        kind is not None
        and PiiKind(kind) is PiiKind.citizen_id
        and (norm.str.len_chars() == 15).any()
    ):
        norm = pl.Series(norm.name, _upgrade_ids(norm.to_list()), dtype=pl.String)
    digests = hasher(keyring, recipient, version).hexdigests(norm.cast(pl.Binary).to_list())
    return pl.Series(series.name, digests, dtype=pl.String)


def pseudonym(
    value: str, keyring: KeyRing, *, kind: PiiKind | str | None = None, recipient: str | None = None
) -> str:
    """The pseudonym of one value (same result as :func:`pseudonymise_series`)."""
    out = pseudonymise_series(pl.Series([value]), keyring, kind=kind, recipient=recipient)[0]
    return str(out)


def looks_like_pseudonym(value: str) -> bool:
    return re.fullmatch(PSEUDONYM_PATTERN, value) is not None
