"""Whether a process of this host is alive, and when it started: the one rule for what a dead
process left behind (a Dagster run marked failed, a DuckDB spill folder removed)."""

from __future__ import annotations

import psutil


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists and is not a zombie (one that has exited
    and waits for its parent to reap it holds nothing any more: no lock, no open file). A
    process of another user, which this one may not inspect, counts as alive."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), None when it is gone or may
    not be inspected."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


__all__ = ["alive", "started_at"]
