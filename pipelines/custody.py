"""The custody steps that close every run of the main job.

After the departments' data is in: landed copies past their retention are deleted, lake
snapshots past theirs are expired (so replaced personal data does not live on), what the
run changed is scanned for personal data in the clear — the lake's rows the run's leak check
did not read (all it inserted when the check did not run) and every file it wrote under the
home, landed files proven ciphertext —, and the audit
log is checkpointed (signed, witnessed outside the home, a printable receipt) and
verified from the newest witnessed checkpoint on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from catalog.errors import StreethubError
from catalog.model import Catalogue
from catalog.settings import Settings
from lakehouse.lake import open_lake
from lakehouse.snapshots import Expired, expire
from masking.audit import AuditLog
from masking.keys import KeyRing
from pipelines.ingest.landing import apply_retention
from pipelines.ingest.ledger import ensure_ledger
from pipelines.leak_marks import write_mark
from pipelines.leaks import ScanReport, scan_changed


@dataclass(frozen=True)
class Custody:
    """What the closing steps did."""

    keys: str  # where the master key lives (never key material)
    migration: str | None  # a key-layout migration this run made
    landed_removed: int
    expired: Expired
    scan: ScanReport
    receipt: str | None  # the audit checkpoint's receipt (None: empty log)
    audit_records: int


def close_run(settings: Settings, cat: Catalogue, started_at: dt.datetime) -> Custody:
    """Retention, snapshot expiry, the leak scan of what changed since ``started_at``, and
    the audit checkpoint. Raises StreethubError on a leak, a file that could not be read
    or proven, or an audit log that does not verify."""
    ring = KeyRing.from_settings(settings)
    with open_lake(settings) as con:
        ensure_ledger(con)
        removed = apply_retention(con, settings)
        expired = expire(con, settings)
    with open_lake(settings, read_only=True) as con:
        scan = scan_changed(settings, cat, con, since=started_at, from_mark=True)
    log = AuditLog.from_settings(settings, ring)
    checkpoint = log.checkpoint()  # first: it also upgrades a log of the older format
    verified = log.verify(since_witnessed=True)
    if not verified.ok:
        raise StreethubError("the audit log does not verify: " + "; ".join(verified.problems[:3]))
    if scan.leaks or scan.problems:
        places = sorted({f.place for f in scan.findings if f.leaks or f.problem})
        raise StreethubError(
            f"{scan.leaks} value(s) of personal information in the clear, "
            f"{len(scan.problems)} place(s) not readable or not proven ciphertext, in what "
            f"this run changed: {', '.join(places[:5])}; `streethub leaks scan --all` for rows "
            "and columns"
        )
    if scan.mark is not None:
        write_mark(settings, scan.mark)
    return Custody(
        keys=ring.provider.describe(),
        migration=ring.migration,
        landed_removed=removed,
        expired=expired,
        scan=scan,
        receipt=checkpoint.receipt if checkpoint is not None else None,
        audit_records=verified.records,
    )
