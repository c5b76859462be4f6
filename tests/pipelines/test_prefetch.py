"""A run's ledger read once (``pipelines.ingest.prefetch``): what each dataset's step reads
of the ledger before it writes, read for every dataset in the writer's hold, each handed out
once. Small generated files in a private home."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from catalog.loader import load_catalogue
from catalog.settings import Settings
from lakehouse.lake import hold_lake, open_lake
from pipelines.ingest import prefetch
from pipelines.ingest.inbox import landing_state
from pipelines.ingest.landing import land
from pipelines.ingest.ledger import ensure_ledger, pending

OLD = time.time() - 3600  # long settled
CSV = b"case_id,opened_at\r\nA-1,2026-11-20 22:57:33\r\n"


def _deliver(settings: Settings, name: str, data: bytes) -> None:
    path = settings.inbox_dir / "cgj" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))


@pytest.fixture
def landed(tmp_path: Path) -> Settings:
    """A home whose ledger has two landed, unread deliveries of cgj.violation_cases."""
    settings = Settings(home=tmp_path / "home").ensure_dirs()
    cgj = load_catalogue().dataset("cgj.violation_cases")[1]
    _deliver(settings, "violation_cases_1.csv", CSV)
    _deliver(settings, "violation_cases_2.csv", CSV + b"A-2,2026-11-21 08:00:00\r\n")
    with open_lake(settings) as con:
        ensure_ledger(con)
        assert len(land(con, settings, "cgj", cgj).landed) == 2
    return settings


def test_the_ledger_read_ahead_is_what_each_dataset_reads_of_it(landed: Settings) -> None:
    cat = load_catalogue()
    with hold_lake(landed), open_lake(landed) as con:
        ahead = prefetch.read_ahead(con, landed)
        assert ahead is not None
        assert set(ahead.pending) == {("cgj", "violation_cases")}
        for dept, ds in cat.datasets():
            key = (dept.code, ds.code)
            mine = pending(con, *key)
            assert ahead.pending.get(key, mine) == mine
            assert ahead.landing.get(key, landing_state(con, *key)) == landing_state(con, *key)
        assert len(ahead.pending[("cgj", "violation_cases")].unread) == 2
        assert len(ahead.landing[("cgj", "violation_cases")].hashes) == 2


def test_each_datasets_read_ahead_is_handed_out_once_and_only_in_its_hold(
    landed: Settings,
) -> None:
    cgj = load_catalogue().dataset("cgj.violation_cases")[1]
    with hold_lake(landed):
        with open_lake(landed) as con:
            ahead = prefetch.read_ahead(con, landed)
            _deliver(landed, "violation_cases_3.csv", CSV + b"A-3,2026-11-22 08:00:00\r\n")
            assert len(land(con, landed, "cgj", cgj).landed) == 1  # after the read ahead
        with prefetch.serving(ahead), open_lake(landed) as con:
            served = prefetch.pending_of(con, "cgj", "violation_cases")
            assert len(served.unread) == 2  # as read ahead: the dataset's step starts from it
            assert len(prefetch.pending_of(con, "cgj", "violation_cases").unread) == 3  # read
            known = prefetch.landing_state_of(con, "cgj", "violation_cases")
            assert known.deliveries == 2
            assert prefetch.landing_state_of(con, "cgj", "violation_cases").deliveries == 3
            # a dataset the ledger has no row of: nothing pending or known, a new state each
            # time (landing adds the hashes it lands to the one it was given)
            first = prefetch.landing_state_of(con, "mzj", "elderly_alone")
            first.hashes.add("x")
            assert first.deliveries == 0
            assert prefetch.landing_state_of(con, "mzj", "elderly_alone").hashes == set()
    with prefetch.serving(ahead), open_lake(landed) as con:  # the hold it was read in ended
        assert len(prefetch.pending_of(con, "gaj", "registered_residents").unread) == 0
        assert prefetch.landing_state_of(con, "cgj", "violation_cases").deliveries == 3


def test_nothing_is_read_ahead_without_the_writers_hold(landed: Settings) -> None:
    with open_lake(landed) as con:
        assert prefetch.read_ahead(con, landed) is None
    with hold_lake(landed, read_only=True), open_lake(landed, read_only=True) as con:
        assert prefetch.read_ahead(con, landed) is None
