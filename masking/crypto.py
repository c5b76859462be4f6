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

Decryption happens only through :func:`decrypt_columns` (and :func:`decrypt_series`,
:func:`reveal_frame` over it), which takes an authorised purpose (:data:`DECRYPT_PURPOSES`,
or ``share_grant:<id>`` for a column the live grant covers, as the share service's
``grant_check`` answers) and writes an audit record a column (actor, purpose, column, how
many values; never a value) before the first value is decrypted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence

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


def _b64url(blob: pl.Expr) -> pl.Expr:
    """Binary → unpadded base64url text, in Rust."""
    return (
        blob.bin.encode("base64").str.replace_many(["+", "/"], ["-", "_"]).str.strip_chars_end("=")
    )


def _unb64url(text: pl.Expr) -> pl.Expr:
    """Unpadded base64url text → binary, in Rust; null where a text is not base64url."""
    tail = text.str.len_bytes() % 4
    pad = (
        pl.when(tail == 2)
        .then(pl.lit("=="))
        .when(tail == 3)
        .then(pl.lit("="))
        .otherwise(pl.lit(""))
    )
    return (text.str.replace_many(["-", "_"], ["+", "/"]) + pad).str.decode("base64", strict=False)


def _aad_head(column: str) -> bytes:
    """The AAD of a value bound to its column alone, and the head of a row-bound one's."""
    return _AAD_HEAD + column.encode() + b"\x1e"


def _row_aad(column: str, rows: pl.Expr) -> pl.Expr:
    """Each value's AAD (binary, built in Rust): the column's head, then the row identity."""
    return (pl.lit(_aad_head(column).decode()) + rows.cast(pl.String).fill_null("")).cast(pl.Binary)


def _batch_rows(rows: Sequence[str | None] | pl.Series | None, start: int) -> pl.Series | None:
    """The row identities of the batch of values starting at ``start`` (None: column-bound)."""
    if rows is None:
        return None
    if isinstance(rows, pl.Series):
        return rows.slice(start, _BATCH)
    return pl.Series(list(rows[start : start + _BATCH]), dtype=pl.String)


def _batch_frame(part: pl.Series, rows: pl.Series | None) -> pl.LazyFrame:
    """One batch's present (non-null) values ``v``, each with its position ``p`` in the
    batch and, when bound to rows, its row identity ``r``."""
    columns = {"v": part} if rows is None else {"v": part, "r": rows}
    return pl.DataFrame(columns).lazy().with_row_index("p").filter(pl.col("v").is_not_null())


def _placed(name: str, n: int, positions: pl.Series, values: pl.Series) -> pl.Series:
    """``values`` (text, one per present value) at their ``positions`` of a batch of ``n``
    values, null elsewhere."""
    if values.len() == n:  # no null: the present values are the batch, in order
        return values.alias(name)
    out = pl.Series(name, [None] * n, dtype=pl.String)
    return out.scatter(positions, values) if values.len() else out


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
    head = f"{PREFIXES[suite.name]}{version}:"
    texts = [  # a batch at a time, start to end: its copies and Python objects only
        _encrypt_batch(series.slice(start, _BATCH), seal, head, column, _batch_rows(rows, start))
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


def _encrypt_batch(
    part: pl.Series, seal: Callable, head: str, column: str, rows: pl.Series | None
) -> pl.Series:
    """Ciphertexts of one batch of values (nulls stay null): the present values and their
    AADs made in one query, one cipher call per value, the texts made in another."""
    present = (
        _batch_frame(part.cast(pl.String), rows)
        .select(
            "p",
            pl.col("v").cast(pl.Binary),
            *([] if rows is None else [_row_aad(column, pl.col("r")).alias("a")]),
        )
        .collect()
    )
    values = present["v"].to_list()
    n = len(values)
    bound = [_aad_head(column)] * n if rows is None else present["a"].to_list()
    block = os.urandom(NONCE_BYTES * n)
    nonces = [block[i : i + NONCE_BYTES] for i in range(0, NONCE_BYTES * n, NONCE_BYTES)]
    sealed = list(map(seal, nonces, values, bound))
    del values, bound
    # base64(nonce ‖ sealed) is base64(nonce) + base64(sealed) (the nonce is a whole
    # number of 3-byte groups), so the two are encoded as columns, in Rust
    texts = (
        pl.DataFrame(
            [pl.Series("n", nonces, dtype=pl.Binary), pl.Series("s", sealed, dtype=pl.Binary)]
        )
        .select(pl.concat_str([pl.lit(head), _b64url(pl.col("n")), _b64url(pl.col("s"))]))
        .to_series()
    )
    return _placed(part.name, part.len(), present["p"], texts)


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
            series.slice(start, _BATCH), start, column, _batch_rows(rows, start), cipher_of
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
    rows: pl.Series | None,
    cipher_of: Callable[[str], Aead],
) -> pl.Series:
    """Plaintext of one batch of :func:`_decrypt_values` (its first value at ``offset`` of
    the column: errors name the column's row): every present value's prefix, nonce, sealed
    part and AAD made in one query, one cipher call per value."""
    field = column.rsplit(".", 1)[-1]
    text, body = pl.col("v"), pl.col("body")
    parts = (
        _batch_frame(part, rows)
        .with_columns(text.str.slice(text.str.slice(0, 12).str.find(":") + 1).alias("body"))
        .select(
            "p",
            text.str.extract(r"^([aes]\d+):", 1).alias("prefix"),
            _unb64url(body.str.slice(0, _NONCE_CHARS)).alias("nonce"),
            _unb64url(body.str.slice(_NONCE_CHARS)).alias("sealed"),
            (body.str.len_bytes() < _NONCE_CHARS).alias("short"),
            *([] if rows is None else [_row_aad(column, pl.col("r")).alias("a")]),
        )
        .collect()
    )
    prefixes = parts["prefix"]
    if prefixes.null_count():
        first = int(prefixes.is_null().arg_max() or 0)
        raise DecryptionError(
            "value is not a ciphertext", field=field, row=offset + parts["p"][first]
        )
    if parts["nonce"].null_count() or parts["sealed"].null_count() or parts["short"].any():
        bad = parts["nonce"].is_null() | parts["sealed"].is_null() | parts["short"].fill_null(True)
        raise _undecryptable(field, offset + parts["p"][int(bad.arg_max() or 0)])
    if not parts.height:  # nulls only
        return _placed(part.name, part.len(), parts["p"], pl.Series([], dtype=pl.String))
    if prefixes.n_unique() == 1:  # one key version (the usual case): no grouping
        groups = [(prefixes[0], parts)]
    else:
        groups = [(p, g) for (p,), g in parts.group_by("prefix", maintain_order=True)]
    opened: list[pl.DataFrame] = []
    for prefix, group in groups:
        cipher = cipher_of(prefix)
        if prefix[0] == LEGACY_PREFIX:
            bound = [column.encode()] * group.height
        elif rows is None:
            bound = [_aad_head(column)] * group.height
        else:
            bound = group["a"].to_list()
        nonces, data = group["nonce"].to_list(), group["sealed"].to_list()
        try:
            plain = list(map(cipher.decrypt, nonces, data, bound))
        except (InvalidTag, ValueError):
            k = _first_failure(cipher, nonces, data, bound)
            raise _undecryptable(field, offset + group["p"][k]) from None
        opened.append(pl.DataFrame([group["p"], pl.Series("o", plain, dtype=pl.Binary)]))
    both = opened[0] if len(opened) == 1 else pl.concat(opened).sort("p")
    try:
        texts = both["o"].cast(pl.String)
    except pl.exceptions.ComputeError:  # authentic but not UTF-8: not one of ours
        raise _undecryptable(field, None) from None
    return _placed(part.name, part.len(), both["p"], texts)


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
    (plain,) = decrypt_columns(
        [(column, series)], keyring, purpose=purpose, actor=actor, audit=audit, rows=rows,
        key_purpose=key_purpose, grant_check=grant_check,
    )  # fmt: skip
    return plain


def decrypt_columns(
    columns: Sequence[tuple[str, pl.Series]],
    keyring: KeyRing,
    *,
    purpose: str,
    actor: str,
    audit: AuditLog,
    rows: Sequence[str | None] | pl.Series | None = None,
    key_purpose: str = KEY_PURPOSE,
    grant_check: GrantCheck | None = None,
) -> Iterator[pl.Series]:
    """Decrypt ``(column id, values)`` pairs of one frame (``rows``: its row identities) for
    an authorised ``purpose``: every column is checked, then their accesses are audited
    together (a record a column, as :func:`decrypt_series` writes, in one write and one
    fsync of the log), then the plaintexts come one column at a time, so a caller may let
    go of each before the next is decrypted. Nothing is audited or decrypted until the
    first is asked for."""
    for column, _ in columns:
        check_decrypt_purpose(purpose, column=column, grant_check=grant_check)
    audit.append_many(
        [
            (
                "decrypt",
                actor,
                {
                    "purpose": purpose,
                    "column": column,
                    "values": values.len() - values.null_count(),
                },
            )
            for column, values in columns
        ]
    )
    for column, values in columns:
        yield _decrypt_values(values, keyring, column, rows, key_purpose).alias(values.name)


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
    out = []
    # every column checked, then audited, before the first is decrypted
    opened = decrypt_columns(
        [(column_id(dataset, name), frame[name]) for name in names], keyring, purpose=purpose,
        actor=actor, audit=audit, rows=rows, grant_check=grant_check,
    )  # fmt: skip
    for name, plain in zip(names, opened, strict=True):
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
    "decrypt_columns",
    "decrypt_series",
    "encrypt_series",
    "is_encrypted",
    "protect_frame",
    "protected_fields",
    "reveal_frame",
    "staged_row_identity",
]
