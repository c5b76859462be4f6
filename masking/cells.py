"""Sealed cells: personal information a delivery put where the catalogue expects none.

The catalogue encrypts its sensitive (L3/L4) columns whole (:func:`masking.crypto.protect_frame`).
A delivered row can still carry personal information in a column the catalogue leaves in the
clear: a hand-kept ledger's footer (``联系电话：13911112222`` written in the 所属社区 column,
``填表人：钱晓东`` in a date column), a phone typed one column to the right. Such a row is
quarantined by the gate, but the raw zone keeps every delivered row as it came, and there the
value sat in the clear.

So, in the raw zone, each value of a clear column that holds personal information by its
form is sealed on its own: encrypted as a sensitive column's values are, bound to its dataset,
column and row (``masking.crypto``). What holds personal information is the leak scanner's
rule without a registry (:func:`masking.leaks.cell_kinds`: IDs, mobiles, landlines, cards,
e-mails, plates, permits) and a name after a cue word (``填表人：``, ``联系人``; the
scrubber's trusted cues, :func:`masking.text.scrub` without jieba).

A delivered value that already has a ciphertext's shape is sealed too: in a clear raw
column, a ciphertext's shape then always means a sealed cell, and :func:`open_cells` opens
every one (a forged one fails to decrypt, as a tampered sensitive value does). The staged
zone is never sealed: what reaches it passed the gate, and a clear column of it holds what the
catalogue says (a service point's public landline stays readable in the marts).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from catalog.model import Dataset
from masking.audit import AuditLog
from masking.crypto import (
    CIPHERTEXT,
    CipherSuite,
    column_id,
    decrypt_series,
    encrypt_series,
    protected_fields,
)
from masking.keys import KeyRing
from masking.leaks import cell_kinds, may_hold_personal
from masking.text import scrub

Rows = Sequence[str | None] | pl.Series | None


def clear_fields(frame: pl.DataFrame, dataset: Dataset) -> list[str]:
    """The catalogue's fields of ``frame`` it leaves in the clear, as text."""
    sensitive = set(protected_fields(frame, dataset))
    return [
        f.name
        for f in dataset.fields
        if f.name in frame.columns and f.name not in sensitive and frame[f.name].dtype == pl.String
    ]


def personal(values: pl.Series) -> pl.Series:
    """Per value: it holds personal information by its form (the module's rule); null → False.
    Each distinct value is judged once, after a vectorised pre-filter."""
    text = values.cast(pl.String)
    distinct = text.drop_nulls().unique()
    picked = distinct.filter(may_hold_personal(distinct))
    found = [
        v for v in picked if cell_kinds(v) or any(f.kind for f in scrub(v, use_jieba=False)[1])
    ]
    if not found:
        return pl.Series(values.name, [False] * values.len(), dtype=pl.Boolean)
    return text.is_in(found).fill_null(False)


def _subset(rows: Rows, where: pl.Series) -> pl.Series | None:
    if rows is None:
        return None
    return pl.Series("rows", list(rows), dtype=pl.String).filter(where)


def seal_cells(
    frame: pl.DataFrame,
    dataset: Dataset,
    keyring: KeyRing,
    *,
    rows: Rows,
    suite: CipherSuite | str | None = None,
    version: int | None = None,
) -> pl.DataFrame:
    """``frame`` (raw, plaintext in its clear columns) with every personal value of a clear
    column, and every value with a ciphertext's shape there, encrypted in its cell."""
    replaced = []
    for name in clear_fields(frame, dataset):
        col = frame[name]
        where = personal(col) | col.str.contains(CIPHERTEXT).fill_null(False)
        if not where.any():
            continue
        sealed = encrypt_series(
            col.filter(where), keyring, column=column_id(dataset, name),
            rows=_subset(rows, where), suite=suite, version=version,
        )  # fmt: skip
        replaced.append(col.scatter(where.arg_true(), sealed))
    return frame.with_columns(replaced) if replaced else frame


def sealed(frame: pl.DataFrame, dataset: Dataset) -> bool:
    """``frame`` (raw) holds a sealed cell."""
    return any(frame[n].str.contains(CIPHERTEXT).any() for n in clear_fields(frame, dataset))


def open_cells(
    frame: pl.DataFrame,
    dataset: Dataset,
    keyring: KeyRing,
    purpose: str,
    actor: str,
    audit: AuditLog,
    *,
    rows: Rows,
) -> pl.DataFrame:
    """``frame`` (raw) with its sealed cells decrypted for ``purpose`` (audited per column,
    as a sensitive column's values are)."""
    replaced = []
    for name in clear_fields(frame, dataset):
        col = frame[name]
        where = col.str.contains(CIPHERTEXT).fill_null(False)
        if not where.any():
            continue
        plain = decrypt_series(
            col.filter(where), keyring, column=column_id(dataset, name), purpose=purpose,
            actor=actor, audit=audit, rows=_subset(rows, where),
        )  # fmt: skip
        replaced.append(col.scatter(where.arg_true(), plain))
    return frame.with_columns(replaced) if replaced else frame
