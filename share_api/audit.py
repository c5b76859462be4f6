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

A handler on the event loop need not hold a worker thread while its record is written:
``await service.audit.record_async(...)`` queues the record for the group commit's own
writer thread, which writes the batch and resolves each waiting handler's future on its
loop — the same batch, the same fsync, the record just as durable before the handler
goes on. A record may bring a row that must name it (a grant read's metrics row names
its record's ``seq``): ``then=(write, payload)`` has the batch's writer call ``write`` once
with every (record, payload) of the batch right after the records are durable, in the
same pass — one wait for the caller, not two in turn.

After a record is durable the watchers see it (:mod:`share_api.alerts`: read-rate jumps,
repeated failed sign-ins, a revoked token used) on the caller's thread.

Retention: the log is append-only and nothing in streethub removes a record; the setting
``share_audit_retention_days`` (at least 180, refused below by the settings) is what an
operator's archiving job must keep, carried as :attr:`Auditor.retention_days`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from masking.audit import AuditLog
from masking.errors import AuditError

if TYPE_CHECKING:
    from share_api.service import Service

log = logging.getLogger("streethub.share.audit")
Watcher = Callable[[dict[str, Any]], None]
# what a record brings to be written after it, in its batch's pass: write([(record,
# payload), …]) for every record of the batch naming the same write
Then = tuple[Callable[[list[tuple[dict[str, Any], Any]]], None], Any]
T = TypeVar("T")
R = TypeVar("R")
# how long the writer thread holds a batch of queued items nobody waits for, so that the
# next record a caller waits for takes them into its own write (one fsync, not two in turn)
LINGER_S = 0.05


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
    future: asyncio.Future | None = None  # an awaiting handler's (submit_async)
    # nobody waits (submit_queued): called by the batch's writer once it is written
    after: Callable[[R | None, BaseException | None], None] | None = None


def _settle(batch: list[_Pending]) -> None:
    """Resolve the futures of a written batch (on their event loop)."""
    for pending in batch:
        future = pending.future
        if future is None or future.done():  # a cancelled handler: its item was written
            continue
        if pending.error is not None:
            future.set_exception(pending.error)
        else:
            future.set_result(pending.result)


class GroupCommit(Generic[T, R]):
    """Items submitted by concurrent threads, written in batches by ``write`` (a list of
    items in, their results in order out — or None). The first thread that finds no write
    under way takes every item queued so far and writes them while the lock is released;
    threads arriving meanwhile queue for the next batch. :meth:`submit` returns the item's
    result once its batch is written, or raises what the write raised (to every thread of
    that batch).

    :meth:`submit_async` is the same for a coroutine on an event loop: the item joins the
    queue and a writer thread of the group commit's own (started on first use, a daemon)
    leads the batch when no thread is writing; the awaitable resolves, on the caller's
    loop, once the batch is written — one wake-up of each loop a batch, not one a item.

    Items nobody waits for (:meth:`submit_queued`) are held by the writer thread at most
    ``linger`` seconds from the first of them: a caller that waits meanwhile writes them
    in its own batch, and nobody waits for a write of queued items alone. :meth:`drain`
    and :meth:`close` write them at once."""

    def __init__(
        self,
        write: Callable[[list[T]], list[R] | None],
        name: str = "commit",
        linger: float = LINGER_S,
    ) -> None:
        self.write = write
        self.name = name
        self.linger = linger
        self._hurry = 0  # drains under way: queued items are written at once
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._queue: list[_Pending[T, R]] = []
        self._writing = False
        self._writer: threading.Thread | None = None
        self._closed = False

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

    def submit_async(self, item: T) -> Awaitable[R]:
        """``item`` queued for the writer thread; await the result (or the write's error).
        Call it on a running event loop."""
        future = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(item, future=future))
        return future

    def submit_queued(
        self, item: T, after: Callable[[R | None, BaseException | None], None]
    ) -> None:
        """``item`` queued for the writer thread, the caller not waiting: the batch in
        flight or the next one writes it, then calls ``after(result, error)`` on the
        writer's thread."""
        self._enqueue(_Pending(item, after=after))

    def _enqueue(self, pending: _Pending[T, R]) -> None:
        """``pending`` queued for the writer thread (started on first use)."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"the group commit {self.name} is closed")
            self._queue.append(pending)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._run, name=f"share-{self.name}", daemon=True
                )
                self._writer.start()
            elif not self._writing:
                self._cond.notify_all()

    def drain(self) -> None:
        """Wait until every item queued so far is written (a reader that must see the
        records queued without waiting: a test, an export)."""
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                while self._queue or self._writing:
                    self._cond.wait(timeout=1)
            finally:
                self._hurry -= 1

    def _run(self) -> None:
        """The writer thread: leads a batch whenever items wait and nobody writes — items
        nobody waits for once they have lingered (see the class)."""
        since: float | None = None  # when the queued items began to linger
        with self._cond:
            while True:
                if self._queue and not self._writing:
                    unwaited = all(p.after is not None for p in self._queue)
                    if unwaited and not (self._closed or self._hurry):
                        since = time.monotonic() if since is None else since
                        left = since + self.linger - time.monotonic()
                        if left > 0:
                            self._cond.wait(left)
                            continue
                    since = None
                    self._lead()
                elif self._closed:
                    return
                else:
                    since = None
                    self._cond.wait()

    def close(self) -> None:
        """Write what is queued, then stop the writer thread (a closing service)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=30)

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
            loops: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
            for i, pending in enumerate(batch):
                pending.done = True
                pending.error = error
                if error is None and results is not None:
                    pending.result = results[i]
                if pending.future is not None:
                    loops.setdefault(pending.future.get_loop(), []).append(pending)
            if error is None:
                self.stats.records += len(batch)
                self.stats.batches += 1
                self.stats.largest = max(self.stats.largest, len(batch))
            self._cond.notify_all()
            for loop, waiting in loops.items():
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(_settle, waiting)
            queued = [p for p in batch if p.after is not None]
        if queued:  # outside the lock: an ``after`` may write a record of its own
            self._cond.release()
            try:
                for pending in queued:
                    pending.after(pending.result, pending.error)  # type: ignore[misc]
            finally:
                self._cond.acquire()


@contextlib.contextmanager
def _unwritten_is_audit_error(action: str):
    """A record that could not be written is an :class:`AuditError` naming its action."""
    try:
        yield
    except Exception as exc:
        raise AuditError(
            f"the audit record {action} was not written ({type(exc).__name__})"
        ) from exc


@dataclass(frozen=True)
class _Failed:
    """A record written whose ``then`` write failed: its caller gets ``error``."""

    error: BaseException


@dataclass
class Auditor:
    """Group-committing front of an :class:`AuditLog` (one per service process)."""

    log: AuditLog
    retention_days: int  # records younger than this are never archived away
    watchers: list[Watcher] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queued_failed = False  # a queued record was not written (record_queued_then)
        self._commit: GroupCommit[tuple, dict[str, Any] | _Failed] = GroupCommit(
            self._write, name="audit"
        )

    def _write(self, items: list[tuple]) -> list[dict[str, Any] | _Failed]:
        """A batch: its records appended (one write, one fsync), then each ``then`` write
        called once with its (record, payload) pairs; a failed one fails its callers only
        (their records are durable all the same)."""
        records: list[dict[str, Any] | _Failed] = list(
            self.log.append_many([item[:3] for item in items])
        )
        thens: dict[Callable, list[int]] = {}
        for i, item in enumerate(items):
            if item[3] is not None:
                thens.setdefault(item[3][0], []).append(i)
        for write, at in thens.items():
            try:
                write([(records[i], items[i][3][1]) for i in at])
            except Exception as exc:
                for i in at:
                    records[i] = _Failed(exc)
        return records

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
        return self.record_then(action, actor, details)

    def record_then(
        self, action: str, actor: str, details: dict[str, Any], then: Then | None = None
    ) -> dict[str, Any]:
        """:meth:`record`, and ``then`` (``(write, payload)``) written in the same pass
        once the record is durable (see the module's docstring); returns when both are."""
        AuditLog.check_details(details)
        with _unwritten_is_audit_error(action):
            record = self._commit.submit((action, actor, details, then))
        return self._done(record, action)

    async def record_async(
        self, action: str, actor: str, details: dict[str, Any], then: Then | None = None
    ) -> dict[str, Any]:
        """:meth:`record_then` for a handler on the event loop: the record joins the same
        group commit, written by its writer thread; returns once it is durable, without
        holding a worker thread meanwhile. The watchers then see it on the loop (the
        read-rate count is in memory; an alert they raise is written as usual)."""
        AuditLog.check_details(details)
        with _unwritten_is_audit_error(action):
            record = await self._commit.submit_async((action, actor, details, then))
        return self._done(record, action)

    def record_queued(self, action: str, actor: str, **details: Any) -> None:
        """Queue one record for the group commit without waiting for it: the batch in
        flight or the next one writes it (milliseconds later), then the watchers see it.
        For what is not a first disclosure — a size probe, a further byte range of a file
        whose download is already durable on record — so that nothing a caller was
        refused for, and no first byte of anything, depends on it. A record that could
        not be written is logged (its action, never a value); the next awaited record
        meets the same unwritable log and refuses its call."""
        self.record_queued_then(action, actor, details)

    def record_queued_then(
        self, action: str, actor: str, details: dict[str, Any], then: Then | None = None
    ) -> None:
        """:meth:`record_queued`, and ``then`` (``(write, payload)``, as for
        :meth:`record_then`) written in the same pass once the record is durable.

        Fail closed: once a queued record could not be written, the next ones are written
        as :meth:`record_then` is — waited for, an :class:`AuditError` refusing their call
        while the log stays unwritable — until a record is written again."""
        if self._queued_failed:
            self.record_then(action, actor, details, then)
            return
        AuditLog.check_details(details)

        def after(record: dict[str, Any] | _Failed | None, error: BaseException | None):
            if error is None and isinstance(record, dict):
                self._done(record, action)
            else:
                self._queued_failed = True
                log.error("a queued audit record (%s) was not written", action)

        self._commit.submit_queued((action, actor, details, then), after)

    def flush(self) -> None:
        """Return once every record queued so far (:meth:`record_queued`) is written."""
        self._commit.drain()

    def _done(self, record: dict[str, Any] | _Failed, action: str) -> dict[str, Any]:
        if isinstance(record, _Failed):
            raise record.error
        self._queued_failed = False  # a record written: the log takes them again
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
        """Write what is queued and sign a checkpoint over what this process wrote (the
        end of a server run)."""
        self._commit.close()
        if self.stats.records:
            self.log.checkpoint()
