"""The share service's auditor: every call's record, group-committed to the home's audit log.

``service.audit.record(action, actor, **scalars)`` appends one record to the Custody
issue's hash-chained, MACed, checkpointed, witnessed log (:mod:`masking.audit.log`) and
returns it once it is durable. Records from concurrent request threads are batched: the
first thread to find no write in progress becomes the leader, takes every record queued
so far and writes them with :meth:`AuditLog.append_many` — one lock, one write, one fsync
for the batch — while the others wait for it; a thread that arrives during a write is in
the next batch. So N concurrent reads cost about one fsync, never N.
The batching itself is :class:`GroupCommit`, for any writer of concurrent requests' rows
(a state table's inserts in one transaction a batch, say).

After a record is durable the watchers see it (:mod:`share_api.alerts`: read-rate jumps,
repeated failed sign-ins, a revoked token used) on the caller's thread.

Retention: the log is append-only and nothing in streethub removes a record; the setting
``share_audit_retention_days`` (at least 180, refused below by the settings) is what an
operator's archiving job must keep, carried as :attr:`Auditor.retention_days`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from masking.audit import AuditLog
from masking.errors import AuditError

if TYPE_CHECKING:
    from share_api.service import Service

log = logging.getLogger("streethub.share.audit")
Watcher = Callable[[dict[str, Any]], None]
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    """How a group commit went: items written, batches (= fsyncs / transactions), the
    largest batch."""

    records: int = 0
    batches: int = 0
    largest: int = 0

    @property
    def per_batch(self) -> float:
        return self.records / self.batches if self.batches else 0.0


@dataclass
class _Pending(Generic[T, R]):
    item: T
    result: R | None = None
    done: bool = False
    error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Items submitted by concurrent threads, written in batches by ``write`` (a list of
    items in, their results in order out — or None). The first thread that finds no write
    under way takes every item queued so far and writes them while the lock is released;
    threads arriving meanwhile queue for the next batch. :meth:`submit` returns the item's
    result once its batch is written, or raises what the write raised (to every thread of
    that batch)."""

    def __init__(self, write: Callable[[list[T]], list[R] | None]) -> None:
        self.write = write
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._queue: list[_Pending[T, R]] = []
        self._writing = False

    def submit(self, item: T) -> R:
        pending: _Pending[T, R] = _Pending(item)
        with self._cond:
            self._queue.append(pending)
            while not pending.done:
                if self._writing:
                    self._cond.wait()
                else:
                    self._lead()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def _lead(self) -> None:
        """Write every queued item as one batch (called holding the lock, released during
        the write)."""
        batch, self._queue = self._queue, []
        self._writing = True
        self._cond.release()
        results: list[R] | None = None
        error: BaseException | None = None
        try:
            results = self.write([p.item for p in batch])
        except BaseException as exc:  # every waiter of the batch learns why
            error = exc
        finally:
            self._cond.acquire()
            self._writing = False
            for i, pending in enumerate(batch):
                pending.done = True
                pending.error = error
                if error is None and results is not None:
                    pending.result = results[i]
            if error is None:
                self.stats.records += len(batch)
                self.stats.batches += 1
                self.stats.largest = max(self.stats.largest, len(batch))
            self._cond.notify_all()


@dataclass
class Auditor:
    """Group-committing front of an :class:`AuditLog` (one per service process)."""

    log: AuditLog
    retention_days: int  # records younger than this are never archived away
    watchers: list[Watcher] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._commit: GroupCommit[tuple[str, str, dict[str, Any]], dict[str, Any]] = GroupCommit(
            lambda entries: self.log.append_many(entries)
        )

    @property
    def stats(self) -> BatchStats:
        return self._commit.stats

    @classmethod
    def for_service(cls, service: Service) -> Auditor:
        from share_api.alerts import Watch

        log = AuditLog.from_settings(service.settings, service.keyring)
        auditor = cls(log, retention_days=service.settings.share_audit_retention_days)
        auditor.watchers.append(Watch(service).observe)
        return auditor

    def record(self, action: str, actor: str, **details: Any) -> dict[str, Any]:
        """Append one record (details are scalars, never a value of the data) and return
        it, with its ``seq`` and ``hash``, once it is durable."""
        AuditLog.check_details(details)
        try:
            record = self._commit.submit((action, actor, details))
        except Exception as exc:
            raise AuditError(
                f"the audit record {action} was not written ({type(exc).__name__})"
            ) from exc
        for watch in self.watchers:
            try:
                watch(record)
            except Exception as exc:  # the record is durable: the call it audits goes on
                log.error(
                    "audit watcher failed on record %s (%s): %s",
                    record["seq"],
                    action,
                    type(exc).__name__,
                )
        return record

    def find(self, seq: int) -> dict[str, Any] | None:
        """The record ``seq`` (None when there is none)."""
        return self.log.find(seq)

    def receipt(self, record: dict[str, Any]) -> dict[str, Any]:
        """A receipt of ``record`` that verifies with the exported public key alone."""
        return self.log.sign_receipt(record)

    def public_keys(self) -> dict[str, Any]:
        """The public-key document ``streethub audit export-key`` writes (no secret)."""
        return self.log.public_key_document()

    def close(self) -> None:
        """Sign a checkpoint over what this process wrote (the end of a server run)."""
        if self.stats.records:
            self.log.checkpoint()
