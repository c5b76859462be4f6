"""Recovery after a crash: what a killed run held is given back before the next run.

A run killed with SIGKILL (an OOM kill, a pulled plug, an operator's ``kill -9``)
leaves behind what it held: its Dagster run stays STARTED and keeps its
concurrency-pool slots (with the ``lake`` pool at 1, every later run waits
forever), and a landing copy may be half-written. The lake itself needs no
repair: a DuckLake commit is atomic, and the writer lock is an fcntl lock the
kernel drops with the process. The next run finishes what was landed but not
accounted (``pipelines.ingest.ledger.unaccounted``).
"""

from __future__ import annotations

import dagster as dg


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark runs whose process is gone as failed and free their pool slots; return their ids."""
    return []
