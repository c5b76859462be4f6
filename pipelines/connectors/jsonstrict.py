"""Strict JSON for deliveries: nesting depth checked before parsing, duplicate keys refused.

Python's ``json`` and polars' reader recurse per nesting level: a record nested
100,000 deep raises ``RecursionError`` (or overflows a native stack). So depth is
bounded before any parser sees the bytes: :func:`too_deep` first counts opening
brackets (an upper bound, two C calls), and only when that bound exceeds the limit
scans exactly, with strings taken out first.

``json`` keeps the last of two equal keys and polars the first: a record with a
duplicate key is ambiguous, so it is refused (:class:`DuplicateKey`).
"""

from __future__ import annotations

import json
import re

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_PAIR = re.compile(rb"\{\}|\[\]")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class Flagged(dict):
    """A parsed JSON object that repeated a key (kept, so its record can be quarantined)."""

    duplicate_keys: list[str]


def depth_bound(data: bytes) -> int:
    """An upper bound of the nesting depth: the number of opening brackets."""
    return data.count(b"{") + data.count(b"[")


def nesting_depth(data: bytes, limit: int) -> int:
    """Nesting depth of a JSON text, exact when its brackets balance, capped at ``limit + 1``.

    Brackets inside strings do not count. Each pass removes the innermost pairs,
    so there are at most ``limit + 1`` passes of C-speed work. Where brackets stop
    pairing (a cut or broken text) the rest counts as if every opening bracket
    nested: an upper bound, so a broken bomb is still refused before any parser.
    """
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    for depth in range(limit + 1):
        if not brackets:
            return depth
        stripped = _PAIR.sub(b"", brackets)
        if stripped == brackets:
            return min(limit + 1, depth + depth_bound(brackets))
        brackets = stripped
    return limit + 1 if brackets else limit


def too_deep(data: bytes, limit: int) -> bool:
    """True when the JSON text nests deeper than ``limit`` (cheap unless suspicious)."""
    if depth_bound(data) <= limit:
        return False
    return nesting_depth(data, limit) > limit


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    flagged = Flagged(obj)
    seen: set[str] = set()
    flagged.duplicate_keys = [k for k, _ in pairs if k in seen or seen.add(k)]
    return flagged


def _constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def loads(text: str | bytes) -> object:
    """``json.loads`` refusing NaN/Infinity and flagging objects with a repeated key
    (:func:`duplicate_keys`). Depth must be checked first (:func:`too_deep`)."""
    return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)


def duplicate_keys(value: object) -> list[str] | None:
    """Keys repeated in some object inside a parsed value, or None."""
    if isinstance(value, Flagged):
        return value.duplicate_keys
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for v in value:
            if isinstance(v, dict | list):
                found = duplicate_keys(v)
                if found is not None:
                    return found
    return None


def duplicate_reason(keys: list[str], known: set[str]) -> str:
    """'duplicate key' naming only keys that are catalogue field names (never a value)."""
    named = [k for k in keys if k in known]
    if named:
        return f"duplicate key {', '.join(repr(k) for k in named)} in one record"
    return "duplicate key in one record (a key not in the catalogue)"
