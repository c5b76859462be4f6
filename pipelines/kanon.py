"""k-anonymity of lake datasets, as a data officer checks it before anything is published.

For a staged dataset: its quasi-identifiers come from the catalogue, the encrypted ones
are decrypted for the ``k_anonymity`` purpose (audited, values never printed), k is
measured, and :func:`masking.kanon.enforce_k` shows what publishing would have to do
(generalisation steps, suppressed rows) or why it would be refused. The marts use
``enforce_k`` itself when they publish person-level rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from catalog.errors import LakeError
from catalog.model import Catalogue
from lakehouse.lake import tables_in
from masking.errors import KAnonymityError
from masking.kanon import EnforceReport, KReport, check_k, enforce_k, quasi_identifiers
from pipelines.ingest.raw import raw_table
from pipelines.protection import STAGED_IDENTITY, Protection

PURPOSE = "k_anonymity"


@dataclass(frozen=True)
class KanonResult:
    ref: str
    quasi_identifiers: list[str]
    measured: KReport
    enforced: EnforceReport | None  # None when publishing would be refused
    refused: str | None


def kanon_dataset(
    con: duckdb.DuckDBPyConnection,
    cat: Catalogue,
    protection: Protection,
    ref: str,
    k: int,
    max_suppression: float = 0.05,
) -> KanonResult:
    """Measure k over a staged dataset's quasi-identifiers, and what enforcing it takes."""
    dept, ds = cat.dataset(ref)
    qis = quasi_identifiers(ds)
    if not qis:
        raise KAnonymityError(f"{dept.code}.{ds.code} has no quasi-identifiers in the catalogue")
    table = raw_table(dept.code, ds)
    if ("staged", table) not in tables_in(con, "staged"):
        raise LakeError(f"staged.{table} does not exist yet: run the pipeline first")
    cols = ", ".join(f'"{q}"' for q in (*STAGED_IDENTITY, *qis))  # identity: values' AAD
    frame = con.execute(f'SELECT {cols} FROM staged."{table}"').pl()
    frame = protection.reveal(frame, ds, PURPOSE)
    measured = check_k(frame, qis, k)
    try:
        _, enforced = enforce_k(frame, qis, k, max_suppression=max_suppression)
    except KAnonymityError as exc:
        return KanonResult(f"{dept.code}.{ds.code}", qis, measured, None, str(exc))
    return KanonResult(f"{dept.code}.{ds.code}", qis, measured, enforced, None)
