"""The protection the pipelines apply: sensitive columns encrypted at rest, decrypted
only for an authorised purpose (audited), quarantined values masked.

One object per process, built from settings; keys are generated at first use
under STREETHUB_HOME/keys (or the master key comes from STREETHUB_MASTER_KEY).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from catalog.model import Dataset
from catalog.settings import Settings
from masking.audit import AuditLog
from masking.crypto import protect_frame, reveal_frame
from masking.keys import KeyRing
from masking.masks import mask_value
from masking.pseudonym import pseudonymise_series, row_digests

ACTOR = "pipelines"


@dataclass
class Protection:
    keyring: KeyRing
    audit: AuditLog
    actor: str = ACTOR  # who decrypts, on the audit log

    @classmethod
    def from_settings(cls, settings: Settings, actor: str = ACTOR) -> Protection:
        keyring = KeyRing.from_settings(settings)
        return cls(keyring, AuditLog.from_settings(settings, keyring), actor)

    def protect(self, frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
        """Encrypt every L3/L4 column of the frame (raw and staged zones)."""
        return protect_frame(frame, dataset, self.keyring)

    def reveal_text(self, frame: pl.DataFrame, dataset: Dataset, purpose: str) -> pl.DataFrame:
        """Decrypt for ``purpose``, keeping values as text (raw → the row gate)."""
        return reveal_frame(
            frame, dataset, self.keyring, purpose, self.actor, self.audit, restore_types=False
        )

    def reveal(self, frame: pl.DataFrame, dataset: Dataset, purpose: str) -> pl.DataFrame:
        """Decrypt for ``purpose`` and restore the catalogue's types (staged → scores)."""
        return reveal_frame(frame, dataset, self.keyring, purpose, self.actor, self.audit)

    def key_pid(self, frame: pl.DataFrame, dataset: Dataset) -> pl.Series:
        """Pseudonym of each row's business key (plaintext frame): joins without the key."""
        fields = [dataset.field(k) for k in dataset.key]
        if len(fields) == 1:
            f = fields[0]
            kind = None if f.pii.value == "none" else f.pii.value
            return pseudonymise_series(frame[f.name], self.keyring, kind=kind).alias("key_pid")
        joined = frame.select(
            pl.concat_str([pl.col(f.name).fill_null("") for f in fields], separator="|")
        ).to_series()
        return pseudonymise_series(joined, self.keyring).alias("key_pid")

    def row_digest(self, frame: pl.DataFrame, dataset: Dataset) -> pl.Series:
        """Keyed digest of each row's catalogue fields (plaintext, standardised frame)."""
        return row_digests(frame, [f.name for f in dataset.fields], self.keyring)

    @staticmethod
    def mask_series(values: pl.Series, pii_kind: str) -> pl.Series:
        """Mask quarantined values with the field's display mask before they are stored."""
        return pl.Series(values.name, [mask_value(v, pii_kind) for v in values.to_list()],
                         dtype=pl.String)  # fmt: skip
