"""Column encryption at rest: one AEAD per value, bound to its dataset, column and row.

Each non-null value becomes ``<prefix><version>:`` + base64url(nonce ‖ ciphertext ‖ tag)
(no padding), a fresh 12-byte nonce per value. The prefix records the cipher suite, the
number the key version of the ``at_rest`` data key:

========  ======  =============  ==================================================
prefix    suite   cipher         associated data (AAD)
========  ======  =============  ==================================================
``a<v>:`` intl    AES-256-GCM    ``streethub/at-rest/2`` RS column RS row identity
``s<v>:`` gm      SM4-GCM        the same
``e<v>:`` intl    AES-256-GCM    the column alone (before rows were bound: read,
                                 never written; ``streethub keys rekey`` rewrites them)
========  ======  =============  ==================================================

The column is ``<resource_code>.<field>`` (:func:`column_id`); the row identity is a
text the caller derives from the row's lineage (``pipelines.protection``: delivery id
and source row in raw, the key pseudonym in staged). A ciphertext copied into another
column, another dataset or another row does not decrypt. Nulls stay null.

Whether a column holds ciphertext is the catalogue's answer (its field is L3/L4), never
a guess from the values: :func:`protect_frame` encrypts every sensitive column it is
given, even a value that happens to look like a ciphertext, and :func:`reveal_frame`
decrypts every sensitive column, failing on a value that is not one.

Decryption happens only through :func:`decrypt_series` / :func:`reveal_frame`, which
take an authorised purpose (:data:`DECRYPT_PURPOSES` or ``share_grant:<id>``) and
write an audit record (actor, purpose, column, how many values; never a value).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence

import polars as pl
from cryptography.exceptions import InvalidTag

from catalog.model import Dataset, FieldType
from masking.audit import AuditLog
from masking.errors import DecryptionError, PurposeError
from masking.keys import KeyRing
from masking.suite import NONCE_BYTES, Aead, CipherSuite, Suite, get_suite

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
        "rekey",
    }
)
_GRANT = re.compile(r"^share_grant:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PREFIXES = {Suite.INTL: "a", Suite.GM: "s"}
LEGACY_PREFIX = "e"  # intl, AAD = the column alone
_SUITE_OF = {"a": Suite.INTL, "s": Suite.GM, LEGACY_PREFIX: Suite.INTL}
CIPHERTEXT = r"^[aes]\d+:[A-Za-z0-9_-]{38,}$"  # 12-byte nonce + 16-byte tag at least
_PREFIX = re.compile(r"^([aes])(\d+):")
_AAD_HEAD = b"streethub/at-rest/2\x1e"


def check_decrypt_purpose(purpose: str) -> str:
    """Return ``purpose`` if decryption is authorised for it, else raise PurposeError."""
    if purpose in DECRYPT_PURPOSES or _GRANT.match(purpose):
        return purpose
    raise PurposeError(
        f"decryption for purpose {purpose!r} is not authorised: one of "
        f"{', '.join(sorted(DECRYPT_PURPOSES))} or share_grant:<id>"
    )


def column_id(dataset: Dataset, field_name: str) -> str:
    """The column part of a ciphertext's AAD: ``<resource_code>.<field>``."""
    return f"{dataset.resource_code}.{field_name}"


def ciphertext_suite(value: str) -> tuple[Suite, int] | None:
    """(suite, key version) a ciphertext records, or None when it is not one."""
    m = _PREFIX.match(value)
    return None if m is None else (_SUITE_OF[m.group(1)], int(m.group(2)))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _row_aads(column: str, rows: Sequence[str | None] | pl.Series | None, n: int) -> list[bytes]:
    head = _AAD_HEAD + column.encode() + b"\x1e"
    if rows is None:
        return [head] * n
    if len(rows) != n:
        raise DecryptionError(
            f"{len(rows)} row identities for {n} values", field=column.rsplit(".", 1)[-1]
        )
    if not isinstance(rows, pl.Series):
        return [head + (r or "").encode() for r in rows]
    text = pl.lit(head.decode()) + pl.col("r").cast(pl.String).fill_null("")
    return rows.to_frame("r").select(text.cast(pl.Binary)).to_series().to_list()  # in Rust


def encrypt_series(
    series: pl.Series,
    keyring: KeyRing,
    *,
    column: str,
    rows: Sequence[str | None] | pl.Series | None = None,
    purpose: str = KEY_PURPOSE,
    suite: CipherSuite | str | None = None,
    version: int | None = None,
) -> pl.Series:
    """Encrypt every non-null value (cast to text) under the current key version.

    ``rows`` gives each value's row identity (bound into the AAD); None binds the value
    to its column only (values that never sit in a lake row). ``suite`` defaults to the
    key ring's, ``version`` to the current one (a re-key writes with the new suite's
    key version before the ring makes it current).
    """
    suite = keyring.suite if suite is None else get_suite(getattr(suite, "name", suite))
    data_key = keyring.current(purpose) if version is None else keyring.get(purpose, version)
    version, key = data_key
    values = series.cast(pl.String).to_list()
    aads = _row_aads(column, rows, len(values))
    n = len(values) - series.null_count()
    nonces = os.urandom(NONCE_BYTES * n)
    encrypt = suite.aead(key).encrypt
    prefix = f"{PREFIXES[suite.name]}{version}:"
    out: list[str | None] = []
    append = out.append
    i = 0
    for v, aad in zip(values, aads, strict=True):
        if v is None:
            append(None)
            continue
        nonce = nonces[i : i + NONCE_BYTES]
        i += NONCE_BYTES
        append(prefix + _b64e(nonce + encrypt(nonce, v.encode(), aad)))
    return pl.Series(series.name, out, dtype=pl.String)


def is_encrypted(series: pl.Series) -> bool:
    """True when the series is text and every non-null value (at least one) has a
    ciphertext's shape. A guard for output frames (``masking.masks``) only: the lake's
    protection never decides from shape (see the module docstring)."""
    if series.dtype != pl.String:
        return False
    non_null = series.drop_nulls()
    return len(non_null) > 0 and bool(non_null.str.contains(CIPHERTEXT).all())


def _decrypt_values(
    series: pl.Series,
    keyring: KeyRing,
    column: str,
    rows: Sequence[str | None] | pl.Series | None,
    purpose: str,
) -> list[str | None]:
    field = column.rsplit(".", 1)[-1]
    if series.dtype == pl.Null:
        return [None] * series.len()
    if series.dtype != pl.String:
        raise DecryptionError("column does not hold ciphertext (not text)", field=field)
    values = series.to_list()
    aads = _row_aads(column, rows, len(values))
    legacy_aad = column.encode()
    ciphers: dict[str, tuple[Aead, bool]] = {}  # prefix → (cipher, legacy column-only AAD)
    out: list[str | None] = []
    append = out.append
    for row, (v, aad) in enumerate(zip(values, aads, strict=True)):
        if v is None:
            append(None)
            continue
        cut = v.find(":", 1, 12) + 1
        found = ciphers.get(v[:cut]) if cut else None
        if found is None:
            m = _PREFIX.match(v)
            if m is None:
                raise DecryptionError("value is not a ciphertext", field=field, row=row)
            material = keyring.get(purpose, int(m.group(2))).material
            cipher = get_suite(_SUITE_OF[m.group(1)]).aead(material)
            found = ciphers[v[:cut]] = (cipher, m.group(1) == LEGACY_PREFIX)
        cipher, legacy = found
        try:
            blob = _b64d(v[cut:])
            bound = legacy_aad if legacy else aad
            append(cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], bound).decode())
        except (InvalidTag, ValueError):
            raise DecryptionError(
                "ciphertext does not decrypt (changed, or from another column or row)",
                field=field,
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
    rows: Sequence[str | None] | pl.Series | None = None,
    key_purpose: str = KEY_PURPOSE,
) -> pl.Series:
    """Decrypt a column for an authorised ``purpose``; the access is audited first.

    ``rows`` must be the row identities the values were encrypted with."""
    check_decrypt_purpose(purpose)
    count = series.len() - series.null_count()
    audit.append("decrypt", actor, purpose=purpose, column=column, values=count)
    return pl.Series(
        series.name,
        _decrypt_values(series, keyring, column, rows, key_purpose),
        dtype=pl.String,
    )


def protected_fields(frame: pl.DataFrame, dataset: Dataset) -> list[str]:
    """The columns of ``frame`` the catalogue marks sensitive (L3/L4): encrypted at rest."""
    return [f.name for f in dataset.fields if f.level.sensitive and f.name in frame.columns]


def protect_frame(
    frame: pl.DataFrame,
    dataset: Dataset,
    keyring: KeyRing,
    *,
    rows: Sequence[str | None] | pl.Series | None = None,
    suite: CipherSuite | str | None = None,
    version: int | None = None,
) -> pl.DataFrame:
    """Encrypt every L3/L4 column of ``dataset`` found in the plaintext ``frame``.

    Every value is encrypted, whatever it looks like: the frame is plaintext by contract.
    """
    replaced = [
        encrypt_series(
            frame[name],
            keyring,
            column=column_id(dataset, name),
            rows=rows,
            suite=suite,
            version=version,
        )
        for name in protected_fields(frame, dataset)
    ]
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
    rows: Sequence[str | None] | pl.Series | None = None,
    restore_types: bool = True,
) -> pl.DataFrame:
    """Decrypt the L3/L4 columns of ``frame`` (one audit record per column)."""
    check_decrypt_purpose(purpose)
    out = []
    for name in protected_fields(frame, dataset):
        plain = decrypt_series(
            frame[name],
            keyring,
            column=column_id(dataset, name),
            purpose=purpose,
            actor=actor,
            audit=audit,
            rows=rows,
        )
        out.append(_restore(plain, dataset.field(name).type) if restore_types else plain)
    return frame.with_columns(out) if out else frame


__all__ = [
    "CIPHERTEXT",
    "DECRYPT_PURPOSES",
    "ciphertext_suite",
    "column_id",
    "decrypt_series",
    "encrypt_series",
    "is_encrypted",
    "protect_frame",
    "protected_fields",
    "reveal_frame",
]
