"""Named points where a test may kill ingestion (SIGKILL), to prove recovery.

A kill point is a line such as ``kill_point("raw.before_commit")`` on the
ingest path. It does nothing unless the setting ``STREETHUB_KILL_AT`` names
that point, in which case the process kills itself with SIGKILL at once: no
``finally``, no ``atexit``, exactly what an OOM killer or a pulled plug does.
The tests in ``tests/reliability`` arm one point per run and show that the next
run finishes and the lake then equals an uninterrupted run's.

Every point is listed in :data:`KILL_POINTS` so a test can walk all of them and a
typo in a call is caught (an unknown name raises).
"""

from __future__ import annotations

import os
import signal

from catalog.settings import Settings

KILL_POINTS: dict[str, str] = {}


def register(name: str, where: str) -> str:
    """Declare a kill point (module import time); returns its name."""
    KILL_POINTS[name] = where
    return name


def kill_point(name: str) -> None:
    """SIGKILL this process if the settings arm ``name``; otherwise nothing."""
    if name not in KILL_POINTS:
        raise KeyError(f"unknown kill point {name!r}; register it in its module")
    armed = os.environ.get("STREETHUB_KILL_AT")
    if armed is None:  # the common case costs one dict lookup
        return
    if Settings().kill_at == name:
        os.kill(os.getpid(), signal.SIGKILL)


# The scorecard is written from two places (the Dagster asset and the reliability
# test driver), so its points are declared here, once.
SCORECARD_BEFORE_WRITE = register(
    "scorecard.before_write", "scorecard: quality computed, nothing written"
)
SCORECARD_WRITTEN = register(
    "scorecard.written", "scorecard: quality tables committed, HTML report not yet written"
)
