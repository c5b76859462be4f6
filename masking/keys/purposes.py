"""The purposes of data keys and one version of a data key (never shown)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from masking.errors import KeyRingError

BASE_PURPOSES = ("at_rest", "pseudonym", "audit_signing", "audit_checkpoint", "landing")
PSEUDONYM_SCHEME = 2
_RECIPIENT = re.compile(r"^recipient:[a-z0-9][a-z0-9_.-]{0,63}$")


def is_pseudonym_purpose(purpose: str) -> bool:
    return purpose == "pseudonym" or purpose.startswith("recipient:")


def check_purpose(purpose: str) -> str:
    """Return ``purpose`` if it names a data key, else raise KeyRingError."""
    if purpose in BASE_PURPOSES or _RECIPIENT.match(purpose):
        return purpose
    raise KeyRingError(
        f"unknown key purpose {purpose!r}: one of {', '.join(BASE_PURPOSES)} or recipient:<id>"
    )


class DataKey:
    """One version of a data key. Unpacks as ``version, key = ring.current(purpose)``."""

    __slots__ = ("_material", "purpose", "version")

    def __init__(self, purpose: str, version: int, material: bytes) -> None:
        self.purpose = purpose
        self.version = version
        self._material = material

    @property
    def material(self) -> bytes:
        return self._material

    def __iter__(self) -> Iterator[int | bytes]:
        yield self.version
        yield self._material

    def __repr__(self) -> str:
        return f"DataKey(purpose={self.purpose!r}, version={self.version}, material=<hidden>)"

    __str__ = __repr__
