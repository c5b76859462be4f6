"""Raw: each landed delivery parsed into ``raw.<dept>__<dataset>`` with lineage columns.

Raw keeps every value as the text that was delivered, under the catalogue's
field names, with ``_delivery_id``, ``_source_row`` and ``_loaded_at``;
typing and standardising are the quality gate's work (staged zone). Each
delivery is loaded in one transaction together with its quarantined rows and
its account, so a crash leaves the lake at its last snapshot and a re-run
loads the delivery exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from catalog.errors import DeliveryError
from catalog.model import Dataset
from lakehouse.lake import ensure_table, insert_frame
from pipelines.connectors import read_delivery
from pipelines.connectors.base import SOURCE_ROW, map_to_fields, split_stray_headers
from pipelines.ingest.ledger import (
    QUARANTINE_SCHEMA,
    Landed,
    now,
    record_account,
    record_failure,
    unaccounted,
)

LINEAGE = ("_delivery_id", "_source_row", "_loaded_at")


def raw_table(dept: str, dataset: Dataset) -> str:
    return f"{dept}__{dataset.code}"


def ensure_raw_table(con: duckdb.DuckDBPyConnection, dept: str, dataset: Dataset) -> str:
    """Create ``raw.<dept>__<dataset>`` or add the catalogue's new fields to it."""
    name = raw_table(dept, dataset)
    lineage = [
        ("_delivery_id", "VARCHAR"),
        ("_source_row", "BIGINT"),
        ("_loaded_at", "TIMESTAMPTZ"),
    ]
    ensure_table(con, "raw", name, lineage + [(f.name, "VARCHAR") for f in dataset.fields])
    return name


@dataclass(frozen=True)
class Account:
    """What became of one delivery: rows read = rows loaded + rows quarantined."""

    delivery_id: str
    file_name: str
    status: str
    reason: str | None
    rows_read: int
    rows_loaded: int
    rows_quarantined: int

    @property
    def balances(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_quarantined


def _quarantine_frame(dept: str, dataset: Dataset, d: Landed, problems) -> pl.DataFrame:
    at = now()
    return pl.DataFrame(
        {
            "dept": [dept] * len(problems),
            "dataset": [dataset.code] * len(problems),
            "delivery_id": [d.delivery_id] * len(problems),
            "file_name": [d.file_name] * len(problems),
            "source_row": [p.source_row for p in problems],
            "stage": ["raw"] * len(problems),
            "field": [p.field for p in problems],
            "check_name": [p.check for p in problems],
            "reason": [p.reason for p in problems],
            "value_masked": [None] * len(problems),
            "key_pid": [None] * len(problems),
            "quarantined_at": [at] * len(problems),
        },
        schema=QUARANTINE_SCHEMA,
    )


def load_delivery(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    d: Landed,
    protect: Callable[[pl.DataFrame, Dataset], pl.DataFrame],
) -> Account:
    """Parse one landed delivery and load it, its quarantine and its account atomically.

    ``protect`` encrypts the sensitive (L3/L4) columns before anything is written.
    """
    try:
        parsed = split_stray_headers(read_delivery(Path(d.landed_path), dataset), dataset)
        frame = map_to_fields(parsed, dataset, d.file_name)
    except DeliveryError as exc:
        exc.file = d.file_name  # name the delivered file, not the landed copy
        account = Account(d.delivery_id, d.file_name, "failed", str(exc), 0, 0, 0)
        record_failure(
            con, delivery_id=d.delivery_id, dept=dept, dataset=dataset.code, reason=str(exc)
        )
        return account
    table = ensure_raw_table(con, dept, dataset)
    frame = frame.with_columns(
        pl.lit(d.delivery_id).alias("_delivery_id"),
        pl.lit(now()).alias("_loaded_at"),
    ).select("_delivery_id", SOURCE_ROW, "_loaded_at", *[f.name for f in dataset.fields])
    frame = protect(frame, dataset)
    quarantine = _quarantine_frame(dept, dataset, d, parsed.problems)
    con.execute("BEGIN TRANSACTION")
    try:
        insert_frame(con, "raw", table, frame)
        insert_frame(con, "quarantine", "rows", quarantine)
        record_account(
            con,
            delivery_id=d.delivery_id,
            dept=dept,
            dataset=dataset.code,
            status="loaded",
            reason=None,
            rows_read=parsed.rows_read,
            rows_loaded=frame.height,
            rows_quarantined=quarantine.height,
            notes="; ".join(parsed.notes) or None,
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return Account(
        d.delivery_id,
        d.file_name,
        "loaded",
        None,
        parsed.rows_read,
        frame.height,
        quarantine.height,
    )


def load_raw(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    protect: Callable[[pl.DataFrame, Dataset], pl.DataFrame],
) -> list[Account]:
    """Load every landed delivery of the dataset that has no account yet."""
    return [
        load_delivery(con, dept, dataset, d, protect) for d in unaccounted(con, dept, dataset.code)
    ]
