"""Errors raised by masking: subclasses of the one streethub family.

Messages name the dataset, column or purpose; never a value or a key.
"""

from __future__ import annotations

from catalog.errors import StreethubError


class MaskingError(StreethubError):
    """Protection of sensitive data failed (keys, encryption, masking)."""


class KeyRingError(MaskingError):
    """The key ring cannot be read, unwrapped or written."""


class DecryptionError(MaskingError):
    """A ciphertext does not decrypt (wrong column, changed bytes, unknown key version)."""


class PurposeError(MaskingError):
    """Decryption was asked for a purpose that is not authorised."""


class AuditError(MaskingError):
    """The audit log cannot be written or does not verify."""


class KAnonymityError(MaskingError):
    """k-anonymity would need more suppression than allowed."""
