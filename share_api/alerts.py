"""Anomaly alerts: a principal's reads jump far above its normal rate, repeated failed
sign-ins from one source, a token used after it was revoked.

:class:`Watch` sees every audit record once it is durable (the auditor calls it) and
decides from the records alone: ``data.read`` records count a principal's reads a
minute; ``auth.failed`` records count failures per source (the caller's address, else
the token, else the actor) and name a revoked token by ``reason="revoked"``. An alert
is a log line (``streethub.share.alerts``, warning), an ``alert.open`` audit record and
a row of :data:`alerts` (``GET /alerts``, :func:`open_alerts`). One open alert a kind
and subject: a repeat while it is open adds to its count (no new record).

The counters live in the server process (a restart forgets the rate history, and each
process of a multi-process server judges its own share of the reads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from share_api.db import aware, metadata, new_id, utc_now

if TYPE_CHECKING:
    from share_api.service import Service

log = logging.getLogger("streethub.share.alerts")

KINDS = ("read_rate", "failed_signins", "revoked_token")
MAX_SOURCES = 10_000  # sources of failed sign-ins kept before the quiet ones are forgotten

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # one of KINDS
    sa.Column("subject", sa.Text, nullable=False),  # the actor, source or token it is about
    sa.Column("org", sa.Text),  # the organisation concerned, when known
    sa.Column("summary", sa.Text, nullable=False),  # counts and thresholds, never a value
    sa.Column("count", sa.Integer, nullable=False, default=1),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("audit_seq", sa.Integer),  # the alert.open record
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("closed_by", sa.Text),
    sa.Index("ix_alerts_open", "closed_at", "kind", "subject"),
)


@dataclass(frozen=True)
class Thresholds:
    """When to alert. A read-rate jump: at least ``read_floor`` reads in a minute and at
    least ``read_factor`` × the principal's mean reads a minute over the previous
    ``read_history`` minutes. Failed sign-ins: ``failed_signins`` within
    ``failed_window`` seconds from one source."""

    read_floor: int = 600
    read_factor: float = 10.0
    read_history: int = 60
    failed_signins: int = 5
    failed_window: float = 300.0


@dataclass
class _Reads:
    first_minute: int
    minutes: dict[int, int] = field(default_factory=dict)
    alerted_minute: int = -1


class Watch:
    """Judges audit records as they are written (thread-safe; cheap on the read path)."""

    def __init__(
        self,
        service: Service,
        thresholds: Thresholds | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.thresholds = thresholds or Thresholds()
        self.clock = clock
        self._lock = threading.Lock()
        self._reads: dict[str, _Reads] = {}
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    @property
    def sources(self) -> int:
        """How many sources of failed sign-ins are being counted."""
        return len(self._failures)

    def observe(self, record: dict[str, Any]) -> None:
        action = record.get("action")
        if action == "data.read":
            self._read(record)
        elif action == "auth.failed":
            self._failed(record)

    # -- read rate -------------------------------------------------------------------------
    def _read(self, record: dict[str, Any]) -> None:
        t = self.thresholds
        actor = str(record.get("actor"))
        minute = int(self.clock() // 60)
        with self._lock:
            reads = self._reads.get(actor)
            if reads is None:
                reads = self._reads[actor] = _Reads(first_minute=minute)
            if minute not in reads.minutes:  # a new minute: forget what is past the history
                for old in [m for m in reads.minutes if m < minute - t.read_history]:
                    del reads.minutes[old]
            now = reads.minutes[minute] = reads.minutes.get(minute, 0) + 1
            if now < t.read_floor or reads.alerted_minute == minute:
                return
            span = min(t.read_history, minute - reads.first_minute)
            before = sum(reads.minutes.get(m, 0) for m in range(minute - span, minute))
            normal = before / span if span else 0.0
            if now < t.read_factor * normal:
                return
            reads.alerted_minute = minute
        raise_alert(
            self.service,
            "read_rate",
            actor,
            org=actor.split("/", 1)[0],
            summary=f"{now} reads this minute; normal {normal:.1f} a minute "
            f"over the previous {span} minute(s)",
            reads_this_minute=now,
            normal_per_minute=round(normal, 2),
        )

    # -- sign-ins --------------------------------------------------------------------------
    def _failed(self, record: dict[str, Any]) -> None:
        if record.get("reason") == "revoked":
            token = str(record.get("token") or record.get("token_id") or record.get("actor"))
            raise_alert(
                self.service,
                "revoked_token",
                token,
                org=_org_of(record),
                summary="a revoked token was presented",
                path=record.get("path"),
            )
        source = str(record.get("client") or record.get("token") or record.get("actor"))
        t = self.thresholds
        now = self.clock()
        with self._lock:
            times = self._failures[source]
            times.append(now)
            while times and times[0] <= now - t.failed_window:
                times.popleft()
            count = len(times)
            if len(self._failures) > MAX_SOURCES:  # many sources: forget the quiet ones
                for gone in [
                    k for k, v in self._failures.items() if v[-1] <= now - t.failed_window
                ]:
                    del self._failures[gone]
        if count >= t.failed_signins:
            raise_alert(
                self.service,
                "failed_signins",
                source,
                org=_org_of(record),
                summary=f"{count} failed sign-ins within {t.failed_window:.0f} s",
                failures=count,
            )


def _org_of(record: dict[str, Any]) -> str | None:
    org = record.get("org")
    if org:
        return str(org)
    actor = str(record.get("actor") or "")
    return actor.split("/", 1)[0] if "/" in actor else None


def raise_alert(
    service: Service,
    kind: str,
    subject: str,
    *,
    org: str | None,
    summary: str,
    **details: Any,
) -> str:
    """Open an alert (log line + ``alert.open`` audit record + a row), or add to the open
    one of the same kind and subject; its id. ``details``: scalars for the record."""
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}")
    lock = service.extra.setdefault("alerts.lock", threading.Lock())
    with lock:  # one check-then-open at a time: concurrent repeats add to one alert
        return _raise(service, kind, subject, org=org, summary=summary, details=details)


def _raise(service, kind, subject, *, org, summary, details) -> str:
    now = utc_now()
    with service.engine.begin() as con:
        open_id = con.execute(
            sa.select(alerts.c.id).where(
                alerts.c.kind == kind, alerts.c.subject == subject, alerts.c.closed_at.is_(None)
            )
        ).scalar()
        if open_id is not None:
            con.execute(
                alerts.update()
                .where(alerts.c.id == open_id)
                .values(count=alerts.c.count + 1, last_at=now, summary=summary)
            )
            return open_id
    alert_id = new_id("alert")
    log.warning("alert %s: %s on %s (%s)", alert_id, kind, subject, summary)
    record = service.audit.record(
        "alert.open",
        "streethub",
        alert=alert_id,
        kind=kind,
        subject=subject,
        org=org,
        **{k: v for k, v in details.items() if v is not None},
    )
    with service.engine.begin() as con:
        con.execute(
            alerts.insert().values(
                id=alert_id,
                kind=kind,
                subject=subject,
                org=org,
                summary=summary,
                count=1,
                opened_at=now,
                last_at=now,
                audit_seq=record["seq"],
            )
        )
    return alert_id


def open_alerts(service: Service, org: str | None = None) -> list[dict[str, Any]]:
    """The open alerts, newest first: every one (``org`` None) or those about ``org``."""
    query = sa.select(alerts).where(alerts.c.closed_at.is_(None))
    if org is not None:
        query = query.where(alerts.c.org == org)
    with service.engine.connect() as con:
        rows = con.execute(query.order_by(alerts.c.opened_at.desc())).mappings().all()
    return [_shown(r) for r in rows]


def close_alert(service: Service, alert_id: str, actor: str) -> dict[str, Any] | None:
    """Close an open alert (audited ``alert.close``); the closed alert, or None."""
    now = utc_now()
    with service.engine.begin() as con:
        done = con.execute(
            alerts.update()
            .where(alerts.c.id == alert_id, alerts.c.closed_at.is_(None))
            .values(closed_at=now, closed_by=actor)
        ).rowcount
        row = con.execute(sa.select(alerts).where(alerts.c.id == alert_id)).mappings().first()
    if not done or row is None:
        return None
    service.audit.record("alert.close", actor, alert=alert_id, kind=row["kind"])
    return _shown(row)


def _shown(row) -> dict[str, Any]:
    out = dict(row)
    for key in ("opened_at", "last_at", "closed_at"):
        when = aware(out[key])
        if when is not None:
            out[key] = when.isoformat()
    return out
