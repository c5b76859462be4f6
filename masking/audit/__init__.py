"""The audit log that no one can quietly rewrite: see :mod:`masking.audit.log`."""

from masking.audit.format import (
    GENESIS,
    Checkpoint,
    PublicKeys,
    Verification,
    load_public_keys,
    public_keys_from,
    verify_receipt,
)
from masking.audit.log import AuditLog

__all__ = [
    "GENESIS",
    "AuditLog",
    "Checkpoint",
    "PublicKeys",
    "Verification",
    "load_public_keys",
    "public_keys_from",
    "verify_receipt",
]
