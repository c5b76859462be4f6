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
take an authorised purpose (:data:`DECRYPT_PURPOSES`, or ``share_grant:<id>`` for a column
the live grant covers, as the share service's ``grant_check`` answers) and write an audit
record (actor, purpose, column, how many values; never a value).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence

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
        "mart_build",  # a mart reads sensitive curated values in plain text to mask them
        "community_visit",  # a community worker reveals a resident of their community to visit
        "need_model",  # the need model reads its encrypted feature table to train and score
    }
)
_GRANT = re.compile(r"^share_grant:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PREFIXES = {Suite.INTL: "a", Suite.GM: "s"}
LEGACY_PREFIX = "e"  # intl, AAD = the column alone
_SUITE_OF = {"a": Suite.INTL, "s": Suite.GM, LEGACY_PREFIX: Suite.INTL}
CIPHERTEXT = r"^[aes]\d+:[A-Za-z0-9_-]{38,}$"  # 12-byte nonce + 16-byte tag at least
_PREFIX = re.compile(r"^([aes])(\d+):")
_AAD_HEAD = b"streethub/at-rest/2\x1e"
_NONCE_CHARS = NONCE_BYTES * 4 // 3  # base64 characters of a nonce, no padding
_BATCH = 50_000  # values whose nonces, texts and AADs are Python objects at once
assert NONCE_BYTES % 3 == 0, "the nonce and the sealed part are encoded apart"


# (grant id, column id) → whether that grant exists, is live and covers the column: the
# share service's answer (``share_api.grants.decrypt_check``; masking cannot ask it itself)
GrantCheck = Callable[[str, str], bool]


def check_decrypt_purpose(
    purpose: str, *, column: str | None = None, grant_check: GrantCheck | None = None
) -> str:
    """Return ``purpose`` if decryption is authorised for it, else raise PurposeError.

    ``share_grant:<id>`` is authorised only for a ``column`` that ``grant_check`` says the
    live grant ``<id>`` covers; without a checker (or a column) it is refused.
    """
    if purpose in DECRYPT_PURPOSES:
        return purpose
    if _GRANT.match(purpose):
        grant_id = purpose.partition(":")[2]
        if grant_check is None or column is None:
            raise PurposeError(f"decryption for {purpose!r} needs the share service's grant check")
        if not grant_check(grant_id, column):
            raise PurposeError(
                f"decryption for {purpose!r} refused: no live grant covering column {column}"
            )
        return purpose
    raise PurposeError(
        f"decryption for purpose {purpose!r} is not authorised: one of "
        f"{', '.join(sorted(DECRYPT_PURPOSES))} or share_grant:<id> of a live grant"
    )


def staged_row_identity(key_pid: pl.Expr) -> pl.Expr:
    """A staged row's identity, the row part of its ciphertexts' AAD: ``k:`` + the row's key
    pseudonym (``_key_pid``); the one rule for everyone who opens staged values."""
    return pl.lit("k:") + key_pid.cast(pl.String).fill_null("")


def column_id(dataset: Dataset, field_name: str) -> str:
    """The column part of a ciphertext's AAD: ``<resource_code>.<field>``."""
    return f"{dataset.resource_code}.{field_name}"


def ciphertext_suite(value: str) -> tuple[Suite, int] | None:
    """(suite, key version) a ciphertext records, or None when it is not one."""
    m = _PREFIX.match(value)
    return None if m is None else (_SUITE_OF[m.group(1)], int(m.group(2)))


def _b64url(blobs: pl.Series) -> pl.Series:
    """Binary → unpadded base64url text, in Rust."""
    return (
        blobs.bin.encode("base64").str.replace_many(["+", "/"], ["-", "_"]).str.strip_chars_end("=")
    )


def _unb64url(texts: pl.Series) -> pl.Series:
    """Unpadded base64url text → binary, in Rust; null where a text is not base64url."""
    pad = (
        pl.when(pl.col("t").str.len_bytes() % 4 == 2)
        .then(pl.lit("=="))
        .when(pl.col("t").str.len_bytes() % 4 == 3)
        .then(pl.lit("="))
        .otherwise(pl.lit(""))
    )
    std = pl.col("t").str.replace_many(["-", "_"], ["+", "/"]) + pad
    return texts.to_frame("t").select(std.str.decode("base64", strict=False)).to_series()


def _row_aads(
    column: str, rows: Sequence[str | None] | pl.Series | None, n: int
) -> pl.Series | bytes:
    """Each value's AAD (binary, built in Rust), or the one AAD of column-bound values."""
    head = _AAD_HEAD + column.encode() + b"\x1e"
    if rows is None:
        return head
    _check_rows(column, rows, n)
    rows = rows if isinstance(rows, pl.Series) else pl.Series(list(rows), dtype=pl.String)
    text = pl.lit(head.decode()) + pl.col("r").cast(pl.String).fill_null("")
    return rows.to_frame("r").select(text.cast(pl.Binary)).to_series()


def _scatter(name: str, present: pl.Series, values: pl.Series) -> pl.Series:
    """``values`` (one per present position) back among the nulls, as text."""
    if values.len() == present.len():
        return values.alias(name)
    out = pl.Series(name, [None] * present.len(), dtype=pl.String)
    return out.scatter(present.arg_true(), values) if values.len() else out


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
    _check_rows(column, rows, series.len())
    seal = suite.aead(key).encrypt
    head = pl.lit(f"{PREFIXES[suite.name]}{version}:")
    texts = [  # a batch at a time, start to end: its copies and Python objects only
        _encrypt_batch(series.slice(start, _BATCH), seal, head, _batch_aads(column, rows, start))
        for start in range(0, series.len(), _BATCH)
    ]
    if not texts:
        return pl.Series(series.name, [], dtype=pl.String)
    return pl.concat(texts, rechunk=False).alias(series.name)


def _check_rows(column: str, rows: Sequence[str | None] | pl.Series | None, n: int) -> None:
    if rows is not None and len(rows) != n:
        raise DecryptionError(
            f"{len(rows)} row identities for {n} values", field=column.rsplit(".", 1)[-1]
        )


def _batch_aads(
    column: str, rows: Sequence[str | None] | pl.Series | None, start: int
) -> pl.Series | bytes:
    """The AADs of the batch of values starting at ``start`` (:func:`_row_aads`)."""
    if rows is None:
        return _row_aads(column, None, 0)
    part = rows[start : start + _BATCH]
    return _row_aads(column, part, len(part))


def _encrypt_batch(
    part: pl.Series, seal: Callable, head: pl.Expr, aads: pl.Series | bytes
) -> pl.Series:
    """Ciphertexts of one batch of values (nulls stay null)."""
    text = part.cast(pl.String)
    present = text.is_not_null()
    values = text.filter(present).cast(pl.Binary).to_list()
    n = len(values)
    bound = [aads] * n if isinstance(aads, bytes) else aads.filter(present).to_list()
    block = os.urandom(NONCE_BYTES * n)
    nonces = [block[i : i + NONCE_BYTES] for i in range(0, NONCE_BYTES * n, NONCE_BYTES)]
    sealed = list(map(seal, nonces, values, bound))
    # base64(nonce ‖ sealed) is base64(nonce) + base64(sealed) (the nonce is a whole
    # number of 3-byte groups), so the two are encoded as columns, in Rust
    joined = pl.concat_str(
        [
            head,
            _b64url(pl.Series(nonces, dtype=pl.Binary)),
            _b64url(pl.Series(sealed, dtype=pl.Binary)),
        ]
    )
    return _scatter(part.name, present, pl.select(joined).to_series())


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
) -> pl.Series:
    """Plaintext of every value (nulls stay null); one cipher call per value, everything
    else (prefix split, base64, AADs, UTF-8) column-wise in Rust, a batch of values at a
    time from start to end (a column's intermediate parts are never held whole)."""
    field = column.rsplit(".", 1)[-1]
    if series.dtype == pl.Null:
        return pl.Series(series.name, [None] * series.len(), dtype=pl.String)
    if series.dtype != pl.String:
        raise DecryptionError("column does not hold ciphertext (not text)", field=field)
    _check_rows(column, rows, series.len())
    ciphers: dict[str, Aead] = {}

    def cipher_of(prefix: str) -> Aead:
        if prefix not in ciphers:
            material = keyring.get(purpose, int(prefix[1:])).material
            ciphers[prefix] = get_suite(_SUITE_OF[prefix[0]]).aead(material)
        return ciphers[prefix]

    texts = [
        _decrypt_batch(
            series.slice(start, _BATCH), start, column, _batch_aads(column, rows, start), cipher_of
        )
        for start in range(0, series.len(), _BATCH)
    ]
    if not texts:
        return pl.Series(series.name, [], dtype=pl.String)
    return pl.concat(texts, rechunk=False).alias(series.name)


def _decrypt_batch(
    part: pl.Series,
    offset: int,
    column: str,
    aads: pl.Series | bytes,
    cipher_of: Callable[[str], Aead],
) -> pl.Series:
    """Plaintext of one batch of :func:`_decrypt_values` (its first value at ``offset`` of
    the column: errors name the column's row)."""
    field = column.rsplit(".", 1)[-1]
    present = part.is_not_null()
    parts = (
        part.filter(present)
        .to_frame("v")
        .with_row_index("i")
        .select(
            "i",
            pl.col("v").str.extract(r"^([aes]\d+):", 1).alias("prefix"),
            pl.col("v").str.slice(0, 12).str.find(":").alias("cut"),
            "v",
        )
    )
    bad = parts.filter(pl.col("prefix").is_null())
    if bad.height:
        raise DecryptionError(
            "value is not a ciphertext", field=field, row=offset + _row_of(present, bad)
        )
    body = parts.select(pl.col("v").str.slice(pl.col("cut") + 1)).to_series()
    parts = parts.drop("v", "cut").with_columns(
        _unb64url(body.str.slice(0, _NONCE_CHARS)).alias("nonce"),
        _unb64url(body.str.slice(_NONCE_CHARS)).alias("sealed"),
    )
    bad = parts.filter(
        pl.col("nonce").is_null()
        | pl.col("sealed").is_null()
        | (body.str.len_bytes() < _NONCE_CHARS)
    )
    if bad.height:
        raise _undecryptable(field, offset + _row_of(present, bad))
    del body
    aad_of = aads.filter(present) if isinstance(aads, pl.Series) else None
    plain: list[pl.DataFrame] = []
    for (prefix,), group in parts.group_by("prefix", maintain_order=True):
        cipher = cipher_of(prefix)
        if prefix[0] == LEGACY_PREFIX:
            bound = [column.encode()] * group.height
        elif aad_of is None:
            bound = [aads] * group.height
        else:
            bound = aad_of.gather(group["i"]).to_list()
        nonces, sealed = group["nonce"].to_list(), group["sealed"].to_list()
        try:
            opened = list(map(cipher.decrypt, nonces, sealed, bound))
        except (InvalidTag, ValueError):
            k = _first_failure(cipher, nonces, sealed, bound)
            raise _undecryptable(field, offset + _row_of(present, group[k:])) from None
        plain.append(pl.DataFrame({"i": group["i"], "p": pl.Series(opened, dtype=pl.Binary)}))
    opened_all = (
        (plain[0] if len(plain) == 1 else pl.concat(plain).sort("i"))["p"]
        if plain
        else pl.Series([], dtype=pl.Binary)
    )
    try:
        text = opened_all.cast(pl.String)
    except pl.exceptions.ComputeError:  # authentic but not UTF-8: not one of ours
        raise _undecryptable(field, None) from None
    return _scatter(part.name, present, text)


def _undecryptable(field: str, row: int | None) -> DecryptionError:
    return DecryptionError(
        "ciphertext does not decrypt (changed, or from another column or row)",
        field=field,
        row=row,
    )


def _first_failure(cipher: Aead, nonces: list, sealed: list, bound: list) -> int:
    """Which value of a batch that failed does not decrypt (value by value: errors only)."""
    for k, (nonce, data, aad) in enumerate(zip(nonces, sealed, bound, strict=True)):
        try:
            cipher.decrypt(nonce, data, aad)
        except (InvalidTag, ValueError):
            return k
    return 0


def _row_of(present: pl.Series, bad: pl.DataFrame) -> int:
    """The series position of the first row of ``bad`` (whose ``i`` counts present values)."""
    return int(present.arg_true()[int(bad["i"][0])])


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
    grant_check: GrantCheck | None = None,
) -> pl.Series:
    """Decrypt a column for an authorised ``purpose``; the access is audited first.

    ``rows`` must be the row identities the values were encrypted with; ``grant_check``
    answers for a ``share_grant:<id>`` purpose (:func:`check_decrypt_purpose`)."""
    check_decrypt_purpose(purpose, column=column, grant_check=grant_check)
    count = series.len() - series.null_count()
    audit.append("decrypt", actor, purpose=purpose, column=column, values=count)
    return _decrypt_values(series, keyring, column, rows, key_purpose).alias(series.name)


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
    grant_check: GrantCheck | None = None,
) -> pl.DataFrame:
    """Decrypt the L3/L4 columns of ``frame`` (one audit record per column); every column is
    checked before any is decrypted. The other columns come back in memory of their own
    (:func:`copied_columns`), so the caller letting go of ``frame`` lets go of its ciphertexts."""
    names = protected_fields(frame, dataset)
    if not _GRANT.match(purpose):
        check_decrypt_purpose(purpose)
    for name in names:
        check_decrypt_purpose(purpose, column=column_id(dataset, name), grant_check=grant_check)
    out = []
    for name in names:
        plain = decrypt_series(
            frame[name],
            keyring,
            column=column_id(dataset, name),
            purpose=purpose,
            actor=actor,
            audit=audit,
            rows=rows,
            grant_check=grant_check,
        )
        out.append(_restore(plain, dataset.field(name).type) if restore_types else plain)
    if not out:
        return frame
    return frame.with_columns(
        *out, *copied_columns(frame, [c for c in frame.columns if c not in names])
    )


def copied_columns(frame: pl.DataFrame, columns: Iterable[str]) -> list[pl.Expr]:
    """``columns`` of ``frame`` copied into buffers of their own (expressions for a
    ``select`` or ``with_columns`` of it). A frame read from DuckDB is one allocation shared
    by all its columns, and polars keeps sharing it (a text column even through filters and
    gathers): a raw delivery's plain columns kept its ciphertexts alive beside their
    plaintext (174,000 registered residents: ~100 MB more at staging); a few key columns
    kept of a read keep the whole read."""
    return [
        pl.col(c) + "" if frame.schema[c] == pl.String else pl.col(c).gather(pl.int_range(pl.len()))
        for c in columns
    ]


__all__ = [
    "CIPHERTEXT",
    "DECRYPT_PURPOSES",
    "GrantCheck",
    "check_decrypt_purpose",
    "ciphertext_suite",
    "column_id",
    "copied_columns",
    "decrypt_series",
    "encrypt_series",
    "is_encrypted",
    "protect_frame",
    "protected_fields",
    "reveal_frame",
    "staged_row_identity",
]
