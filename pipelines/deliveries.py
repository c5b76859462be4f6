"""Failed deliveries worked, not repeated: listed, acknowledged, retried.

A delivery that could not be read stays ``failed`` in ``landing.delivery_accounts``
with its reason. A data officer can acknowledge it (``landing.delivery_acks``:
who, why, when — it covers the failure accounted before it, so a retry that fails
again needs a new acknowledgement) or, after a catalogue or connector fix, retry
reading its landed copy through the same code as the raw asset and the row gate.
Every acknowledgement and retry is on the audit log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import duckdb

from catalog.errors import StreethubError
from catalog.model import Catalogue
from catalog.settings import get_settings
from lakehouse.lake import tables_in, transaction
from masking.audit import AuditLog
from masking.errors import DecryptionError
from pipelines.ingest.landing import open_landed
from pipelines.ingest.ledger import Landed, now
from pipelines.ingest.raw import Account, load_delivery
from pipelines.ingest.staged import StageAccount, stage_delivery
from pipelines.protection import Protection

REFUSED_PREFIX = "refused:"  # reasons of files refused at landing: nothing was landed

_NO_ACKS = (
    "(SELECT NULL::VARCHAR AS delivery_id, NULL::VARCHAR AS acked_by, NULL::VARCHAR AS reason, "
    "NULL::TIMESTAMPTZ AS acked_at WHERE false)"
)


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery's account as a data officer sees it (never a value)."""

    delivery_id: str
    dept: str
    dataset: str
    file_name: str | None  # as delivered (show it escaped); None for a pull that never landed
    status: str
    reason: str | None
    rows_read: int
    rows_loaded: int
    rows_quarantined_raw: int  # rows that could not be parsed
    stage_rows_in: int | None  # None: not through the row gate (yet)
    rows_staged: int | None
    rows_quarantined_gate: int | None
    rows_skipped: int | None
    accounted_at: dt.datetime
    acked_by: str | None
    ack_reason: str | None
    acked_at: dt.datetime | None
    # what the file said against the catalogue as it was read (another encoding, tabs, a
    # header under a title, compressed …), '; '-joined: for the officer to correct it
    notes: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def rows_quarantined(self) -> int:
        """Quarantined at raw (unparseable) and at the row gate."""
        return self.rows_quarantined_raw + (self.rows_quarantined_gate or 0)

    @property
    def acknowledged(self) -> bool:
        return self.acked_at is not None

    @property
    def awaiting_gate(self) -> bool:
        """Read into raw, not yet through the row gate (its staged step did not run)."""
        return self.status == "loaded" and self.stage_rows_in is None

    @property
    def balances(self) -> bool:
        """rows delivered = staged + quarantined + skipped (raw's own account while it waits
        for the gate); a failed delivery read nothing."""
        if self.status != "loaded":
            return True
        if self.rows_read != self.rows_loaded + self.rows_quarantined_raw:
            return False
        if self.stage_rows_in is None:
            return True
        staged, skipped = self.rows_staged or 0, self.rows_skipped or 0
        return self.stage_rows_in == self.rows_loaded and (
            self.rows_read == staged + self.rows_quarantined + skipped
        )


def list_deliveries(
    con: duckdb.DuckDBPyConnection,
    *,
    failed: bool = False,
    dept: str | None = None,
    acknowledged: bool = True,
    delivery_id: str | None = None,
) -> list[DeliveryRow]:
    """Every delivery account, oldest first; ``failed`` keeps failed ones, ``acknowledged=False``
    drops failures an officer has acknowledged."""
    tables = tables_in(con, "landing")
    if ("landing", "delivery_accounts") not in tables:
        return []  # a lake nothing was ever delivered to
    acks = "landing.delivery_acks" if ("landing", "delivery_acks") in tables else _NO_ACKS
    where, params = ["true"], []
    if failed:
        where.append("a.status = 'failed'")
    if dept is not None:
        where.append("a.dept = ?")
        params.append(dept)
    if delivery_id is not None:
        where.append("a.delivery_id = ?")
        params.append(delivery_id)
    if not acknowledged:
        where.append("k.acked_at IS NULL")
    rows = con.execute(
        f"""WITH k AS (
                SELECT delivery_id, arg_max(acked_by, acked_at) AS acked_by,
                       arg_max(reason, acked_at) AS reason, max(acked_at) AS acked_at
                FROM {acks} GROUP BY delivery_id),
            d AS (SELECT delivery_id, any_value(file_name) AS file_name
                  FROM landing.deliveries GROUP BY delivery_id),
            s AS (SELECT delivery_id, sum(rows_in) AS rows_in, sum(rows_out) AS rows_out,
                         sum(rows_quarantined) AS rows_quarantined,
                         sum(coalesce(rows_skipped, 0)) AS rows_skipped
                  FROM landing.stage_accounts WHERE stage = 'staged' GROUP BY delivery_id)
            SELECT a.delivery_id, a.dept, a.dataset, d.file_name, a.status, a.reason,
                   coalesce(a.rows_read, 0), coalesce(a.rows_loaded, 0),
                   coalesce(a.rows_quarantined, 0), s.rows_in, s.rows_out, s.rows_quarantined,
                   s.rows_skipped, a.accounted_at,
                   k.acked_by, k.reason, k.acked_at, a.notes
            FROM landing.delivery_accounts a
            LEFT JOIN d USING (delivery_id)
            LEFT JOIN s USING (delivery_id)
            LEFT JOIN k ON k.delivery_id = a.delivery_id AND a.status = 'failed'
                       AND k.acked_at >= a.accounted_at
            WHERE {" AND ".join(where)}
            ORDER BY a.accounted_at, a.delivery_id""",
        params,
    ).fetchall()
    return [DeliveryRow(*r) for r in rows]


def split_by_run(
    failures: list[DeliveryRow], started_at: dt.datetime
) -> tuple[list[DeliveryRow], list[DeliveryRow]]:
    """(failed during the run that started at ``started_at``, older ones not acknowledged).

    A run fails for the first list only: an older failure is shown until an officer
    acknowledges or retries it, without failing every later run."""
    this_run = [f for f in failures if f.failed and f.accounted_at >= started_at]
    older = [f for f in failures if f.failed and f.accounted_at < started_at and not f.acknowledged]
    return this_run, older


def noted_in_run(rows: list[DeliveryRow], started_at: dt.datetime) -> list[DeliveryRow]:
    """The deliveries read during the run that started at ``started_at`` with a note on
    what the file said against the catalogue."""
    return [r for r in rows if r.notes and not r.failed and r.accounted_at >= started_at]


def find_delivery(con: duckdb.DuckDBPyConnection, delivery_id: str) -> DeliveryRow:
    """The newest account of one delivery, or a StreethubError naming the id."""
    rows = list_deliveries(con, delivery_id=delivery_id)
    if not rows:
        raise StreethubError(
            f"no delivery {delivery_id!r} in the accounts (see `streethub deliveries list`)"
        )
    return rows[-1]


def acknowledge(
    con: duckdb.DuckDBPyConnection, audit: AuditLog, actor: str, delivery_id: str, reason: str
) -> DeliveryRow:
    """Record that ``actor`` has seen a failed delivery and why it may stay so; audited.

    Needs a writer connection with the ledger ensured. Refuses a delivery that did not fail,
    one already acknowledged, and an empty reason."""
    if not reason.strip():
        raise StreethubError("an acknowledgement needs a reason (--reason)")
    row = find_delivery(con, delivery_id)
    if not row.failed:
        raise StreethubError(f"delivery {delivery_id} is {row.status}, not failed: nothing to ack")
    if row.acknowledged:
        raise StreethubError(
            f"delivery {delivery_id} is already acknowledged by {row.acked_by} "
            f"at {row.acked_at:%Y-%m-%d %H:%M} UTC"
        )
    with transaction(con):
        con.execute(
            "INSERT INTO landing.delivery_acks VALUES (?,?,?,?)",
            [delivery_id, actor, reason, now()],
        )
        audit.append(
            "deliveries.ack",
            actor,
            delivery_id=delivery_id,
            dept=row.dept,
            dataset=row.dataset,
            reason=reason,
        )
    return find_delivery(con, delivery_id)


@dataclass(frozen=True)
class Retried:
    """What a retry did: the raw account, and the gate's when it loaded."""

    account: Account
    stage: StageAccount | None


def _landed_copy(con: duckdb.DuckDBPyConnection, row: DeliveryRow) -> Landed:
    """The delivery's landed copy, checked against its recorded SHA-256; or why not."""
    if (row.reason or "").lower().startswith(REFUSED_PREFIX):
        raise StreethubError(
            f"delivery {row.delivery_id} was refused at landing: there is no landed copy to "
            "read again. Have the department deliver it again, or acknowledge it "
            "(`streethub deliveries ack`)"
        )
    found = con.execute(
        "SELECT delivery_id, dept, dataset, file_name, landed_path, sha256, size_bytes "
        "FROM landing.deliveries WHERE delivery_id = ? ORDER BY arrived_at LIMIT 1",
        [row.delivery_id],
    ).fetchone()
    if found is None:
        raise StreethubError(
            f"delivery {row.delivery_id} has no landed copy (a pull that failed before "
            "anything arrived): the next scheduled pull asks again; acknowledge it "
            "(`streethub deliveries ack`)"
        )
    landed = Landed(*found)
    path = landed.path(get_settings().landing_dir)
    if not path.is_file():
        raise StreethubError(f"delivery {row.delivery_id}: its landed copy is missing; refused")
    try:  # the landed copy is encrypted: its delivered bytes are hashed (LANDING's reader)
        with open_landed(get_settings(), path, verify=False) as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except DecryptionError:
        digest = "undecryptable"
    if digest != landed.sha256:
        raise StreethubError(
            f"delivery {row.delivery_id}: its landed copy no longer matches its SHA-256 "
            f"(recorded {landed.sha256[:12]}…, now {digest[:12]}…); refused"
        )
    return landed


def retry(
    con: duckdb.DuckDBPyConnection,
    cat: Catalogue,
    protection: Protection,
    audit: AuditLog,
    actor: str,
    delivery_id: str,
) -> Retried:
    """Read a failed delivery's landed copy again (after a catalogue or connector fix).

    Needs a writer connection (the lake writer lock) with the ledger ensured. The failed
    account is removed, then the delivery goes through ``load_delivery`` (the raw asset's
    code) and, when it loads, ``stage_delivery`` (the gate's); a crash between the two
    leaves it landed but unaccounted, which the next run reads. Audited."""
    row = find_delivery(con, delivery_id)
    if not row.failed:
        raise StreethubError(f"delivery {delivery_id} is {row.status}, not failed: no retry")
    landed = _landed_copy(con, row)
    try:
        dataset = next(ds for ds in cat.departments[row.dept].datasets if ds.code == row.dataset)
    except (KeyError, StopIteration):
        raise StreethubError(
            f"delivery {delivery_id}: dataset {row.dept}.{row.dataset} is not in the catalogue"
        ) from None
    with transaction(con):
        con.execute(
            "DELETE FROM landing.delivery_accounts WHERE delivery_id = ? AND status = 'failed'",
            [delivery_id],
        )
    account = load_delivery(con, row.dept, dataset, landed, protection.protect)
    stage = None
    if account.status == "loaded":
        stage = stage_delivery(con, row.dept, dataset, delivery_id, landed.file_name, protection)
    audit.append(
        "deliveries.retry",
        actor,
        delivery_id=delivery_id,
        dept=row.dept,
        dataset=row.dataset,
        status=account.status,
        rows_read=account.rows_read,
        rows_staged=stage.rows_out if stage else 0,
        rows_quarantined=account.rows_quarantined + (stage.rows_quarantined if stage else 0),
        rows_skipped=stage.rows_skipped if stage else 0,
    )
    return Retried(account, stage)
