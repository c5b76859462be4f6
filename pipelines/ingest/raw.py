"""Raw: each landed delivery parsed into ``raw.<dept>__<dataset>`` with lineage columns.

Raw keeps every value as the text that was delivered, under the catalogue's
field names, with ``_delivery_id``, ``_source_row`` and ``_loaded_at``;
typing and standardising are the quality gate's work (staged zone). Each
delivery is read as a stream of batches and loaded in one transaction together
with its quarantined rows and its account, so a crash leaves the lake at its last
snapshot and a re-run loads the delivery exactly once.

Any exception while reading or mapping a delivery — a ``DeliveryError`` or
anything a parser library raises — rolls that transaction back and records the
delivery as ``failed`` in a transaction of its own; the run goes on with the next
delivery. A library's own message is never shown (it may quote a cell or the
landed path): the reason names the exception type in the officer's words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.errors import DeliveryError, StreethubError
from catalog.model import Dataset, dataset_table
from catalog.settings import get_settings
from lakehouse.lake import ensure_table, insert_frame, transaction
from masking.errors import KeyRingError
from pipelines.connectors import OPEN_COLUMNS, read_batches
from pipelines.connectors.base import (
    SOURCE_ROW,
    Parsed,
    check_required,
    map_to_fields,
    source_columns,
    split_ledger_rows,
    split_stray_headers,
)
from pipelines.ingest.ledger import (
    QUARANTINE_SCHEMA,
    Landed,
    now,
    record_account,
    record_failure,
    unaccounted,
)
from pipelines.killpoints import kill_point, register

LINEAGE = ("_delivery_id", "_source_row", "_loaded_at")

register("raw.parsed", "raw: a delivery's first batch read, nothing written")
register(
    "raw.before_commit", "raw: a delivery's rows, quarantine and account inserted, not committed"
)
register("raw.committed", "raw: a delivery committed")


def raw_table(dept: str, dataset: Dataset) -> str:
    """The dataset's raw table (:func:`catalog.model.dataset_table`)."""
    return dataset_table(dept, dataset.code)


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
    notes: str | None = None  # what the file said against the catalogue ('; '-joined)

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


def unreadable(exc: BaseException) -> str:
    """The reason for a delivery a library could not read (never the library's text)."""
    if isinstance(exc, RecursionError):
        return "too deep: the reader ran out of nesting levels (RecursionError)"
    if isinstance(exc, MemoryError):
        return "too large: the reader ran out of memory (MemoryError)"
    if isinstance(exc, UnicodeError):
        return f"wrong encoding: the file cannot be decoded ({type(exc).__name__})"
    return (
        f"unreadable: the reader stopped with {type(exc).__name__}; "
        "the file may be damaged or not of the kind its name says"
    )


class UnreadableDelivery(Exception):
    """Anything raised while reading or mapping a delivery, carrying its reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def mapped_batches(dataset: Dataset, d: Landed) -> Iterator[tuple[Parsed, pl.DataFrame]]:
    """Each batch of the delivery and its plaintext frame under catalogue names, lineage
    added (the caller encrypts it before anything is written).

    Whatever reading or mapping raises leaves as :class:`UnreadableDelivery`.
    """
    open_columns = dataset.delivery.kind in OPEN_COLUMNS
    seen: set[str] = set()
    rows = 0
    batches: Iterator[Parsed] | None = None
    while True:
        try:
            if batches is None:
                batches = read_batches(d.path(get_settings().landing_dir), dataset)
            parsed = next(batches, None)
            if parsed is None:
                if open_columns and rows:
                    check_required(dataset, seen, d.file_name)
                return
            parsed = split_ledger_rows(split_stray_headers(parsed, dataset), dataset)
            frame = map_to_fields(parsed, dataset, d.file_name, require=not open_columns)
            seen.update(source_columns(parsed.frame))
            rows += frame.height
            frame = frame.with_columns(
                pl.lit(d.delivery_id).alias("_delivery_id"),
                pl.lit(now()).alias("_loaded_at"),
            ).select("_delivery_id", SOURCE_ROW, "_loaded_at", *[f.name for f in dataset.fields])
        except KeyRingError:
            raise  # reading a landed (encrypted) file without its key: the run's problem
        except StreethubError as exc:
            exc.file = d.file_name  # name the delivered file, not the landed copy
            raise UnreadableDelivery(str(exc)) from None
        except Exception as exc:  # any library's error: accounted, never shown verbatim
            failure = DeliveryError(unreadable(exc), dataset=dataset.code, file=d.file_name)
            raise UnreadableDelivery(str(failure)) from None
        yield parsed, frame


def insert_delivery(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    d: Landed,
    batches: Iterator[tuple[Parsed, pl.DataFrame]],
    first: tuple[Parsed, pl.DataFrame] | None,
    protect: Callable[[pl.DataFrame, Dataset], pl.DataFrame],
    kept: list[pl.DataFrame] | None = None,
    held_quarantine: list[pl.DataFrame] | None = None,
) -> Account:
    """Inside the caller's transaction: the delivery's batches (``first``, then the rest of
    ``batches``) encrypted by ``protect`` and inserted into raw, their quarantine, and the
    delivery's account. ``kept``: each batch's plaintext is appended to it (the row gate
    of the same transaction reads it instead of the raw rows back); ``held_quarantine``: the
    batches' quarantine rows are appended to it instead of inserted (the gate inserts them
    with its own: one insert)."""
    read = loaded = quarantined = 0
    notes: list[str] = []
    # the table too, if missing (a run made it before its steps: pipelines.ingest.tables)
    table = ensure_raw_table(con, dept, dataset)
    batch = first
    while batch is not None:
        parsed, frame = batch
        quarantine = _quarantine_frame(dept, dataset, d, parsed.problems)
        insert_frame(con, "raw", table, protect(frame, dataset))
        if held_quarantine is None:
            insert_frame(con, "quarantine", "rows", quarantine)
        elif quarantine.height:
            held_quarantine.append(quarantine)
        if kept is not None:
            kept.append(frame)
        read += parsed.rows_read
        loaded += frame.height
        quarantined += quarantine.height
        notes += [n for n in parsed.notes if n not in notes]
        batch = next(batches, None)
    record_account(
        con,
        delivery_id=d.delivery_id,
        dept=dept,
        dataset=dataset.code,
        status="loaded",
        reason=None,
        rows_read=read,
        rows_loaded=loaded,
        rows_quarantined=quarantined,
        notes="; ".join(notes) or None,
    )
    return Account(
        d.delivery_id, d.file_name, "loaded", None, read, loaded, quarantined,
        "; ".join(notes) or None,
    )  # fmt: skip


def failed_delivery(
    con: duckdb.DuckDBPyConnection, dept: str, dataset: Dataset, d: Landed, exc: UnreadableDelivery
) -> Account:
    """A delivery that could not be read, accounted failed in a transaction of its own."""
    record_failure(
        con, delivery_id=d.delivery_id, dept=dept, dataset=dataset.code, reason=exc.reason
    )
    return Account(d.delivery_id, d.file_name, "failed", exc.reason, 0, 0, 0)


def load_delivery(
    con: duckdb.DuckDBPyConnection,
    dept: str,
    dataset: Dataset,
    d: Landed,
    protect: Callable[[pl.DataFrame, Dataset], pl.DataFrame],
) -> Account:
    """Read one landed delivery batch by batch and load it, its quarantine and its
    account in one transaction; a delivery that cannot be read is accounted failed.

    ``protect`` encrypts the sensitive (L3/L4) columns before anything is written.
    """
    try:
        batches = mapped_batches(dataset, d)
        first = next(batches, None)
        kill_point("raw.parsed")
        with transaction(con):
            account = insert_delivery(con, dept, dataset, d, batches, first, protect)
            kill_point("raw.before_commit")
    except UnreadableDelivery as exc:
        return failed_delivery(con, dept, dataset, d, exc)
    kill_point("raw.committed")
    return account


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
