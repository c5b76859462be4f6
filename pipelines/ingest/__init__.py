"""Landing and raw: every delivery landed once, read once, and accounted for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb

from catalog.model import Dataset
from catalog.settings import Settings
from pipelines.ingest.landing import LandingResult, land
from pipelines.ingest.raw import Account, load_raw
from pipelines.ingest.staged import StageAccount, stage_with_landing

if TYPE_CHECKING:
    from pipelines.protection import Protection


def ingest_dataset(
    con: duckdb.DuckDBPyConnection, settings: Settings, dept: str, dataset: Dataset, **pull_kw
) -> tuple[LandingResult, list[Account]]:
    """Land what is new for one dataset and load every unread delivery into raw.

    Runs right after a delivery: files still settling are waited for (at most the
    settle period) unless ``wait_for_settle=False`` is passed.
    """
    from pipelines.protection import Protection

    landed = land(con, settings, dept, dataset, **{"wait_for_settle": True, **pull_kw})
    return landed, load_raw(con, dept, dataset, Protection.from_settings(settings).protect)


def ingest_and_stage(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    dept: str,
    dataset: Dataset,
    *,
    protection: Protection | None = None,
    **pull_kw,
) -> tuple[LandingResult, list[Account], list[StageAccount]]:
    """What a run's dataset step does: what an earlier run left read and gated, then what is
    new landed, each new delivery read into raw and through the row gate in its landing's
    own transaction — one lake commit a delivery
    (:func:`pipelines.ingest.staged.stage_with_landing`). Waits for settling files as
    :func:`ingest_dataset` does."""
    from pipelines.protection import Protection

    protection = protection or Protection.from_settings(settings)
    kw = {"wait_for_settle": True, **pull_kw}
    return stage_with_landing(
        con,
        dept,
        dataset,
        protection,
        lambda load: land(con, settings, dept, dataset, load=load, **kw),
    )
