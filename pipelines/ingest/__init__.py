"""Landing and raw: every delivery landed once, read once, and accounted for."""

from __future__ import annotations

import duckdb

from catalog.model import Dataset
from catalog.settings import Settings
from pipelines.ingest.landing import LandingResult, land
from pipelines.ingest.raw import Account, load_raw


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
