"""Drive ingestion of a whole street without Dagster, in this process or as a child.

``python tests/reliability/driver.py HOME`` lands, reads (raw) and gates
(staged) every dataset of the catalogue, then writes the quality scorecard
(``--no-scorecard``: not; ``--scorecard-only``: only it, over what is staged;
``--land-first``: each dataset landed, then read and gated, as two transactions a
delivery, not one: the two-transaction path); the
departments' APIs are served without faults. Kill points on that path
(``STREETHUB_KILL_AT``) let a test SIGKILL the child at a named place.

Each dataset is ingested on its own: an exception in one is recorded in the
returned outcome and the others go on (the production rule being tested is
that the ingest functions themselves never let a delivery's failure escape).
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from catalog.loader import load_catalogue
from catalog.settings import Settings
from departments.connect import simulated_systems
from lakehouse.lake import open_lake
from pipelines.connectors.http_api import RetryPolicy
from pipelines.killpoints import SCORECARD_BEFORE_WRITE, SCORECARD_WRITTEN, kill_point

FAST = RetryPolicy(attempts=12, base_delay_s=0.01, max_delay_s=0.05, timeout_s=10)


@dataclass
class Outcome:
    """What one drive did: datasets whose ingestion raised (should stay empty)."""

    escaped: dict[str, str] = field(default_factory=dict)


def ingest_street(
    settings: Settings, *, scorecard: bool = True, land_first: bool = False
) -> Outcome:
    """Land → raw → staged for every dataset (faultless APIs), then the scorecard.
    ``land_first``: each dataset's new deliveries landed, then read and gated (the
    two-transaction path), not each read and gated in its landing's transaction."""
    from pipelines.ingest import ingest_and_stage
    from pipelines.ingest.landing import land
    from pipelines.ingest.ledger import ensure_ledger
    from pipelines.ingest.staged import load_and_stage
    from pipelines.protection import Protection

    cat = load_catalogue(settings.catalog_dir)
    protection = Protection.from_settings(settings)
    outcome = Outcome()
    # the simulated departments' systems (when the simulator's folder holds a street),
    # reached through the connection settings they publish
    with simulated_systems(settings.sim_dir_abs, fault_rate=0.0, slow_rate=0.0) as env:
        settings = settings.connected(env)
        with open_lake(settings) as con:  # once: each open costs ~0.3 s
            ensure_ledger(con)
            for dept, ds in cat.datasets():
                try:
                    if land_first:
                        land(con, settings, dept.code, ds, wait_for_settle=True, policy=FAST)
                        load_and_stage(con, dept.code, ds, protection)
                    else:  # as a run's dataset step: one transaction a new delivery
                        ingest_and_stage(
                            con, settings, dept.code, ds, protection=protection, policy=FAST
                        )
                except Exception as exc:  # the test reports it; production must not raise
                    outcome.escaped[f"{dept.code}.{ds.code}"] = f"{type(exc).__name__}: {exc}"
    if scorecard:
        write_scorecard(settings)
    return outcome


def write_scorecard(settings: Settings) -> None:
    """The quality scorecard over what is staged, as the Dagster asset writes it."""
    from pipelines.protection import Protection
    from pipelines.quality_run import compute_quality, load_inputs, write_quality, write_report

    cat = load_catalogue(settings.catalog_dir)
    with open_lake(settings, read_only=True) as con:
        inputs = load_inputs(con, cat, Protection.from_settings(settings))
        out = compute_quality(settings, cat, inputs, dt.datetime.now(dt.UTC))
    kill_point(SCORECARD_BEFORE_WRITE)
    with open_lake(settings) as con:
        write_quality(con, out)
    kill_point(SCORECARD_WRITTEN)
    write_report(settings, inputs, out)


if __name__ == "__main__":
    home = Path(sys.argv[1])  # --no-scorecard: land, raw and staged only
    if "--scorecard-only" in sys.argv[2:]:  # the scorecard over what a drive staged before
        write_scorecard(Settings(home=home).ensure_dirs())
        sys.exit(0)
    result = ingest_street(
        Settings(home=home).ensure_dirs(),
        scorecard="--no-scorecard" not in sys.argv[2:],
        land_first="--land-first" in sys.argv[2:],
    )
    for name, error in result.escaped.items():
        print(f"ESCAPED {name}: {error}", file=sys.stderr)
    sys.exit(3 if result.escaped else 0)
