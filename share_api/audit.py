"""The share service's auditor: every call's record, group-committed to the home's audit log.

``service.audit.record(action, actor, **scalars)`` appends one record to the Custody
issue's hash-chained, MACed, checkpointed, witnessed log (:mod:`masking.audit.log`) and
returns it once it is durable. Records from concurrent request threads are batched: the
first thread to find no write in progress becomes the leader, takes every record queued
so far and writes them with :meth:`AuditLog.append_many` — one lock, one write, one fsync
for the batch — while the others wait for it; a thread that arrives during a write is in
the next batch. So N concurrent reads cost about one fsync, never N.

After a record is durable the watchers see it (:mod:`share_api.alerts`: read-rate jumps,
repeated failed sign-ins, a revoked token used) on the caller's thread.

Retention: the log is append-only; the share service never removes a record, and the
retention setting (``share_audit_retention_days``) may not be set below
:data:`MIN_RETENTION_DAYS` (the issue's 180 days), so an operator's archiving job must
keep at least that much (:func:`retention_days`, :meth:`Auditor.retained_since`).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from masking.audit import AuditLog
from masking.errors import AuditError

if TYPE_CHECKING:
    from catalog.settings import Settings
    from share_api.service import Service

MIN_RETENTION_DAYS = 180

Watcher = Callable[[dict[str, Any]], None]


def retention_days(settings: Settings) -> int:
    """How long audit records are kept: the setting, never below 180 days."""
    days = int(getattr(settings, "share_audit_retention_days", MIN_RETENTION_DAYS))
    if days < MIN_RETENTION_DAYS:
        raise AuditError(
            f"share_audit_retention_days is {days}: audit records are kept at least "
            f"{MIN_RETENTION_DAYS} days"
        )
    return days


@dataclass
class _Pending:
    entry: tuple[str, str, dict[str, Any]]
    record: dict[str, Any] | None = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    """How the group commit went: records written, batches (= fsyncs), the largest batch."""

    records: int = 0
    batches: int = 0
    largest: int = 0

    @property
    def per_batch(self) -> float:
        return self.records / self.batches if self.batches else 0.0


@dataclass
class Auditor:
    """Group-committing front of an :class:`AuditLog` (one per service process)."""

    log: AuditLog
    retention_days: int = MIN_RETENTION_DAYS
    watchers: list[Watcher] = field(default_factory=list)
    stats: BatchStats = field(default_factory=BatchStats)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False

    @classmethod
    def for_service(cls, service: Service) -> Auditor:
        from share_api.alerts import Watch

        log = AuditLog.from_settings(service.settings, service.keyring)
        auditor = cls(log, retention_days=retention_days(service.settings))
        auditor.watchers.append(Watch(service).observe)
        return auditor

    def record(self, action: str, actor: str, **details: Any) -> dict[str, Any]:
        """Append one record (details are scalars, never a value of the data) and return
        it, with its ``seq`` and ``hash``, once it is durable."""
        AuditLog.check_details(details)
        item = _Pending((action, actor, details))
        with self._cond:
            self._queue.append(item)
            while item.record is None and item.error is None:
                if self._writing:
                    self._cond.wait()
                else:
                    self._lead()
        if item.error is not None:
            raise AuditError(
                f"the audit record {action} was not written ({type(item.error).__name__})"
            ) from item.error
        for watch in self.watchers:
            watch(item.record)
        return item.record

    def _lead(self) -> None:
        """Write every queued record as one batch (called holding the condition's lock,
        which is released during the write so others can queue for the next batch)."""
        batch, self._queue = self._queue, []
        self._writing = True
        self._cond.release()
        records: list[dict[str, Any]] | None = None
        error: BaseException | None = None
        try:
            records = self.log.append_many([p.entry for p in batch])
        except BaseException as exc:  # every waiter of the batch learns why
            error = exc
        finally:
            self._cond.acquire()
            self._writing = False
            if records is not None:
                for pending, record in zip(batch, records, strict=True):
                    pending.record = record
                self.stats.records += len(records)
                self.stats.batches += 1
                self.stats.largest = max(self.stats.largest, len(records))
            else:
                for pending in batch:
                    pending.error = error
            self._cond.notify_all()

    def find(self, seq: int) -> dict[str, Any] | None:
        """The record ``seq`` (None when there is none)."""
        return self.log.find(seq)

    def receipt(self, record: dict[str, Any]) -> dict[str, Any]:
        """A receipt of ``record`` that verifies with the exported public key alone."""
        return self.log.sign_receipt(record)

    def public_keys(self) -> dict[str, Any]:
        """The public-key document ``streethub audit export-key`` writes (no secret)."""
        return self.log.public_key_document()

    def retained_since(self, now: dt.datetime | None = None) -> dt.datetime:
        """Records newer than this must still be in the log (retention)."""
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=self.retention_days)

    def close(self) -> None:
        """Sign a checkpoint over what this process wrote (the end of a server run)."""
        if self.stats.records:
            self.log.checkpoint()
