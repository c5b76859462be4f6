"""The protection the pipelines apply: sensitive columns encrypted at rest, bound to their
row, decrypted only for an authorised purpose (audited), quarantined values masked.

One object per process, built from settings (the key ring's provider and suite).

Row identity (the row part of every at-rest value's AAD, ``masking.crypto``) comes from
the lineage columns the zone's frames carry, never from the caller:

=======  ==========================  ================================================
zone     a frame carrying            identity
=======  ==========================  ================================================
staged   ``_key_pid``                ``k:`` + the key pseudonym (a staged value belongs
                                     to its business key: re-keying a row breaks it)
raw      ``_delivery_id`` and        ``d:`` + delivery id + US + source row
         ``_source_row``
=======  ==========================  ================================================

A frame with sensitive columns and neither is refused (select the identity columns with
the values: :data:`STAGED_IDENTITY`, :data:`RAW_IDENTITY`).

Person pseudonyms (:func:`person_pids`): beside each staged row's ciphertext, one
deterministic pseudonym per field :func:`catalog.authority.pid_fields` names (the subject's
citizen ID or mobile), ``_pid_<field>``: the hub pseudonym of the standardised value, the
same for the same normalised ID in every department, null when the value is null. Tables
join on the person through them without decrypting anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from catalog.authority import pid_column, pid_fields
from catalog.model import Dataset
from catalog.settings import Settings
from masking.audit import AuditLog
from masking.cells import open_cells, seal_cells
from masking.crypto import protect_frame, protected_fields, reveal_frame
from masking.errors import DecryptionError
from masking.keys import KeyRing
from masking.masks import mask_values
from masking.pseudonym import key_text, pseudonymise_series, row_digests
from pipelines.connectors.base import SOURCE_ROW
from quality.keys import KEY_PID

ACTOR = "pipelines"
STAGED_IDENTITY = (KEY_PID,)
RAW_IDENTITY = ("_delivery_id", SOURCE_ROW)


def row_identity(frame: pl.DataFrame, dataset: Dataset) -> pl.Series:
    """Each row's identity for the AAD, from the frame's lineage columns (table above)."""
    if KEY_PID in frame.columns:
        expr = pl.lit("k:") + pl.col(KEY_PID).cast(pl.String).fill_null("")
    elif all(c in frame.columns for c in RAW_IDENTITY):
        expr = pl.concat_str(
            [pl.lit("d:"), pl.col("_delivery_id").fill_null(""), pl.lit("\x1f"),
             pl.col(SOURCE_ROW).cast(pl.String).fill_null("")]
        )  # fmt: skip
    else:
        raise DecryptionError(
            f"the frame carries no row identity: a staged frame needs {KEY_PID}, a raw one "
            f"{' and '.join(RAW_IDENTITY)}",
            dataset=dataset.code,
        )
    return frame.select(expr.alias("_row_identity")).to_series()


def _rows(frame: pl.DataFrame, dataset: Dataset) -> pl.Series | None:
    return row_identity(frame, dataset) if protected_fields(frame, dataset) else None


def is_raw(frame: pl.DataFrame) -> bool:
    """A raw zone's frame: its rows are a delivery's (``_delivery_id``, ``_source_row``), not a
    staged key's (``_key_pid``)."""
    return KEY_PID not in frame.columns and all(c in frame.columns for c in RAW_IDENTITY)


@dataclass
class Protection:
    keyring: KeyRing
    audit: AuditLog
    actor: str = ACTOR  # who decrypts, on the audit log

    @classmethod
    def from_settings(cls, settings: Settings, actor: str = ACTOR) -> Protection:
        """The pipelines' protection; refused while a re-key is unfinished (half the lake
        would pseudonymise under one suite, half under the other)."""
        from pipelines.rekey import refuse_if_pending

        refuse_if_pending(settings)
        keyring = KeyRing.from_settings(settings)
        return cls(keyring, AuditLog.from_settings(settings, keyring), actor)

    def protect(self, frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
        """Encrypt every L3/L4 column of the plaintext frame (raw and staged zones), each
        value bound to its dataset, column and row; in a raw frame, seal the personal values
        a delivery put in the other columns too (``masking.cells``)."""
        out = protect_frame(frame, dataset, self.keyring, rows=_rows(frame, dataset))
        if is_raw(frame):
            out = seal_cells(out, dataset, self.keyring, rows=row_identity(frame, dataset))
        return out

    def _opened(self, frame: pl.DataFrame, dataset: Dataset, purpose: str) -> pl.DataFrame:
        """A raw frame's sealed cells opened for ``purpose``; any other frame as it is."""
        if not is_raw(frame):
            return frame
        return open_cells(
            frame, dataset, self.keyring, purpose, self.actor, self.audit,
            rows=row_identity(frame, dataset),
        )  # fmt: skip

    def reveal_text(self, frame: pl.DataFrame, dataset: Dataset, purpose: str) -> pl.DataFrame:
        """Decrypt for ``purpose``, keeping values as text (raw → the row gate)."""
        return reveal_frame(
            self._opened(frame, dataset, purpose), dataset, self.keyring, purpose, self.actor,
            self.audit, rows=_rows(frame, dataset), restore_types=False,
        )  # fmt: skip

    def reveal(self, frame: pl.DataFrame, dataset: Dataset, purpose: str) -> pl.DataFrame:
        """Decrypt for ``purpose`` and restore the catalogue's types (staged → scores)."""
        return reveal_frame(
            self._opened(frame, dataset, purpose), dataset, self.keyring, purpose, self.actor,
            self.audit, rows=_rows(frame, dataset),
        )  # fmt: skip

    def key_pid(self, frame: pl.DataFrame, dataset: Dataset) -> pl.Series:
        """Pseudonym of each row's business key (plaintext frame): joins without the key."""
        return key_pids(frame, dataset, self.keyring)

    def person_pids(self, frame: pl.DataFrame, dataset: Dataset) -> list[pl.Series]:
        """The ``_pid_<field>`` columns of the plaintext, standardised frame
        (:func:`person_pids`)."""
        return person_pids(frame, dataset, self.keyring)

    def row_digest(self, frame: pl.DataFrame, dataset: Dataset) -> pl.Series:
        """Keyed digest of each row's catalogue fields (plaintext, standardised frame)."""
        return row_digests(frame, [f.name for f in dataset.fields], self.keyring)

    @staticmethod
    def mask_series(values: pl.Series, pii_kind: str) -> pl.Series:
        """Mask quarantined values with the field's display mask before they are stored."""
        return mask_values(values, pii_kind)


def key_pids(frame: pl.DataFrame, dataset: Dataset, keyring: KeyRing, **key) -> pl.Series:
    """Pseudonym of each row's business key (``key``: a suite / version for a re-key): of
    its one field's value, normalised by the field's PII kind, or of a composite key's
    :func:`masking.pseudonym.key_text` (injective: no value imitates a field boundary)."""
    fields = [dataset.field(k) for k in dataset.key]
    if len(fields) == 1:
        f = fields[0]
        kind = None if f.pii.value == "none" else f.pii.value
        return pseudonymise_series(frame[f.name], keyring, kind=kind, **key).alias("key_pid")
    joined = frame.select(key_text([pl.col(f.name) for f in fields])).to_series()
    return pseudonymise_series(joined, keyring, **key).alias("key_pid")


def person_pids(frame: pl.DataFrame, dataset: Dataset, keyring: KeyRing, **key) -> list[pl.Series]:
    """One ``_pid_<field>`` column per :func:`catalog.authority.pid_fields` field of the
    plaintext, standardised ``frame``: the pseudonym of the value under the field's PII kind
    (normalised as every pseudonym is), null where it is null or the frame lacks the field
    (``key``: a suite / version for a re-key)."""
    out = []
    for f in pid_fields(dataset):
        name = pid_column(f.name)
        if f.name not in frame.columns:
            out.append(pl.Series(name, [None] * frame.height, dtype=pl.String))
            continue
        pids = pseudonymise_series(frame[f.name], keyring, kind=f.pii.value, **key)
        out.append(pids.alias(name))
    return out
