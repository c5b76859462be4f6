"""A run's ledger read once: what each dataset's step reads of it before it writes.

Every ingest step began with two reads of the ledger for its own dataset: what an earlier
run left pending (:func:`pipelines.ingest.ledger.pending`) and what landing must know
(:func:`pipelines.ingest.inbox.landing_state`: the inbox entries dealt with, the
deliveries' hashes). Each statement on the ledger costs DuckLake's catalogue reads for
every ledger table it reads, whatever the rows: 56 such statements and ~390 catalogue
queries a first run of the simulated street. Read for every dataset at once, at the start
of a run's steps, they are two statements.

Why that is exact: the run holds the lake as its writer (:func:`lakehouse.lake.hold_lake`),
so no other process writes the ledger until it ends, and a step writes the ledger rows of
its own dataset only (a delivery, file or account names its dataset). So a dataset's rows
as read at the start are its rows when its step starts, and each dataset's are handed out
once: a second read of it (a step run again, a later run in the same hold) reads the
ledger. Without a writer's hold (a sensor's run, a test's open) nothing is read ahead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb

from catalog.settings import Settings
from lakehouse.lake import writers_hold
from pipelines.ingest.inbox import LandingState, landing_state, landing_states
from pipelines.ingest.ledger import Pending, pending, pending_by_dataset

_LOCAL = threading.local()  # the steps of a run run in the thread that holds the lake


@dataclass
class RunLedger:
    """The ledger as a run's steps start from it, each dataset's taken once."""

    settings: Settings  # of the lake it was read from
    hold: object  # the writer's hold it was read in (lakehouse.lake.writers_hold)
    pending: dict[tuple[str, str], Pending]
    landing: dict[tuple[str, str], LandingState]
    taken: set[tuple[str, str, str]] = field(default_factory=set)

    def take(self, what: str, dept: str, dataset: str) -> Pending | LandingState | None:
        """``what`` ("pending" or "landing") of the dataset, the first time it is asked in
        the hold it was read in; None after that (read the ledger)."""
        if writers_hold(self.settings) is not self.hold or (what, dept, dataset) in self.taken:
            return None
        self.taken.add((what, dept, dataset))
        # a dataset the ledger has no row of: nothing pending, nothing known (new objects:
        # landing adds the hashes it lands to its state's)
        if what == "pending":
            return self.pending.pop((dept, dataset), None) or Pending([], [], False)
        return self.landing.pop((dept, dataset), None) or LandingState(set(), set(), 0)


def read_ahead(con: duckdb.DuckDBPyConnection, settings: Settings) -> RunLedger | None:
    """Every dataset's pending deliveries and landing state in two statements, when this
    thread holds ``settings``' lake as its writer (None otherwise: nothing is read)."""
    hold = writers_hold(settings)
    if hold is None:
        return None
    return RunLedger(settings, hold, pending_by_dataset(con), landing_states(con))


@contextlib.contextmanager
def serving(ledger: RunLedger | None) -> Iterator[None]:
    """``ledger`` (:func:`read_ahead`) answers this thread's first :func:`pending_of` and
    :func:`landing_state_of` of each dataset for the block."""
    before = getattr(_LOCAL, "ledger", None)
    _LOCAL.ledger = ledger
    try:
        yield
    finally:
        _LOCAL.ledger = before


def _taken(what: str, dept: str, dataset: str) -> Pending | LandingState | None:
    ledger: RunLedger | None = getattr(_LOCAL, "ledger", None)
    return ledger.take(what, dept, dataset) if ledger is not None else None


def pending_of(con: duckdb.DuckDBPyConnection, dept: str, dataset: str) -> Pending:
    """:func:`pipelines.ingest.ledger.pending`, from the run's ledger read ahead when it
    serves (its first ask of the dataset)."""
    got = _taken("pending", dept, dataset)
    return got if isinstance(got, Pending) else pending(con, dept, dataset)


def landing_state_of(con: duckdb.DuckDBPyConnection, dept: str, dataset: str) -> LandingState:
    """:func:`pipelines.ingest.inbox.landing_state`, from the run's ledger read ahead when
    it serves (its first ask of the dataset)."""
    got = _taken("landing", dept, dataset)
    return got if isinstance(got, LandingState) else landing_state(con, dept, dataset)


__all__ = ["RunLedger", "landing_state_of", "pending_of", "read_ahead", "serving"]
