"""Column encryption at rest: AES-GCM per value, bound to its column.

Each non-null value becomes ``"e<version>:" + base64url(nonce ‖ ciphertext ‖ tag)``
(no padding) with a fresh 12-byte nonce and AAD = the column id (``<resource_code>.
<field>``, see :func:`column_id`), so a ciphertext copied into another column does not
decrypt. Nulls stay null. One ``AESGCM`` object per key version and batch, nonces
drawn in one ``os.urandom`` call per batch.

Decryption happens only through :func:`decrypt_series` / :func:`reveal_frame`, which
take an authorised purpose (:data:`DECRYPT_PURPOSES` or ``share_grant:<id>``) and
write an audit record (actor, purpose, column, how many values; never a value).
"""

from __future__ import annotations

import base64
import os
import re

import polars as pl
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from catalog.model import Dataset, FieldType
from masking.audit import AuditLog
from masking.errors import DecryptionError, PurposeError
from masking.keys import KeyRing

KEY_PURPOSE = "at_rest"
DECRYPT_PURPOSES = frozenset(
    {
        "quality_gate",
        "quality_scores",
        "standardise",
        "golden_record",
        "master_index",
        "leak_scan",
        "k_anonymity",
    }
)
_GRANT = re.compile(r"^share_grant:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CIPHERTEXT = r"^e\d+:[A-Za-z0-9_-]{38,}$"  # 12-byte nonce + 16-byte tag at least
_PREFIX = re.compile(r"^e(\d+):")


def check_decrypt_purpose(purpose: str) -> str:
    """Return ``purpose`` if decryption is authorised for it, else raise PurposeError."""
    if purpose in DECRYPT_PURPOSES or _GRANT.match(purpose):
        return purpose
    raise PurposeError(
        f"decryption for purpose {purpose!r} is not authorised: one of "
        f"{', '.join(sorted(DECRYPT_PURPOSES))} or share_grant:<id>"
    )


def column_id(dataset: Dataset, field_name: str) -> str:
    """The AAD a column's ciphertexts are bound to: ``<resource_code>.<field>``."""
    return f"{dataset.resource_code}.{field_name}"


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encrypt_series(
    series: pl.Series, keyring: KeyRing, *, column: str, purpose: str = KEY_PURPOSE
) -> pl.Series:
    """Encrypt every non-null value (cast to text) under the current key version."""
    version, key = keyring.current(purpose)
    values = series.cast(pl.String).to_list()
    n = sum(v is not None for v in values)
    nonces = os.urandom(12 * n)
    encrypt = AESGCM(key).encrypt
    aad = column.encode()
    prefix = f"e{version}:"
    out: list[str | None] = []
    append = out.append
    i = 0
    for v in values:
        if v is None:
            append(None)
            continue
        nonce = nonces[i : i + 12]
        i += 12
        append(prefix + _b64e(nonce + encrypt(nonce, v.encode(), aad)))
    return pl.Series(series.name, out, dtype=pl.String)


def is_encrypted(series: pl.Series) -> bool:
    """True when the series is text and every non-null value (at least one) is a ciphertext."""
    if series.dtype != pl.String:
        return False
    non_null = series.drop_nulls()
    return len(non_null) > 0 and bool(non_null.str.contains(CIPHERTEXT).all())


def _decrypt_values(series: pl.Series, keyring: KeyRing, column: str, purpose: str) -> list:
    aad = column.encode()
    ciphers: dict[int, AESGCM] = {}
    out: list[str | None] = []
    for row, v in enumerate(series.to_list()):
        if v is None:
            out.append(None)
            continue
        m = _PREFIX.match(v)
        if m is None:
            raise DecryptionError("value is not a ciphertext", field=column, row=row)
        version = int(m.group(1))
        cipher = ciphers.get(version)
        if cipher is None:
            cipher = ciphers[version] = AESGCM(keyring.get(purpose, version).material)
        try:
            blob = _b64d(v[m.end() :])
            out.append(cipher.decrypt(blob[:12], blob[12:], aad).decode())
        except (InvalidTag, ValueError):
            raise DecryptionError(
                "ciphertext does not decrypt (changed, or from another column)",
                field=column,
                row=row,
            ) from None
    return out


def decrypt_series(
    series: pl.Series,
    keyring: KeyRing,
    *,
    column: str,
    purpose: str,
    actor: str,
    audit: AuditLog,
    key_purpose: str = KEY_PURPOSE,
) -> pl.Series:
    """Decrypt a column for an authorised ``purpose``; the access is audited first."""
    check_decrypt_purpose(purpose)
    count = series.len() - series.null_count()
    audit.append("decrypt", actor, purpose=purpose, column=column, values=count)
    return pl.Series(
        series.name, _decrypt_values(series, keyring, column, key_purpose), dtype=pl.String
    )


def _protected_fields(frame: pl.DataFrame, dataset: Dataset) -> list[str]:
    return [f.name for f in dataset.fields if f.level.sensitive and f.name in frame.columns]


def protect_frame(frame: pl.DataFrame, dataset: Dataset, keyring: KeyRing) -> pl.DataFrame:
    """Encrypt every L3/L4 column of ``dataset`` found in ``frame`` (idempotent)."""
    replaced = []
    for name in _protected_fields(frame, dataset):
        if is_encrypted(frame[name]):
            continue
        replaced.append(encrypt_series(frame[name], keyring, column=column_id(dataset, name)))
    return frame.with_columns(replaced) if replaced else frame


def _restore(series: pl.Series, ftype: FieldType) -> pl.Series:
    if ftype is FieldType.integer:
        return series.cast(pl.Int64, strict=False)
    if ftype is FieldType.decimal:
        return series.cast(pl.Float64, strict=False)
    if ftype is FieldType.boolean:
        return series.str.to_lowercase().replace_strict(
            {"true": True, "false": False}, default=None, return_dtype=pl.Boolean
        )
    if ftype is FieldType.date:
        return series.str.to_date("%Y-%m-%d", strict=False)
    if ftype is FieldType.datetime:
        return series.str.to_datetime(strict=False, time_unit="us")
    return series


def reveal_frame(
    frame: pl.DataFrame,
    dataset: Dataset,
    keyring: KeyRing,
    purpose: str,
    actor: str,
    audit: AuditLog,
    *,
    restore_types: bool = True,
) -> pl.DataFrame:
    """Decrypt the encrypted L3/L4 columns of ``frame`` (one audit record per column)."""
    check_decrypt_purpose(purpose)
    out = []
    for name in _protected_fields(frame, dataset):
        if not is_encrypted(frame[name]):
            continue
        plain = decrypt_series(
            frame[name],
            keyring,
            column=column_id(dataset, name),
            purpose=purpose,
            actor=actor,
            audit=audit,
        )
        out.append(_restore(plain, dataset.field(name).type) if restore_types else plain)
    return frame.with_columns(out) if out else frame


__all__ = [
    "DECRYPT_PURPOSES",
    "column_id",
    "decrypt_series",
    "encrypt_series",
    "is_encrypted",
    "protect_frame",
    "reveal_frame",
]
