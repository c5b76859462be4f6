"""Dagster resources: the one place pipelines reach the lake and the settings."""

import contextlib
from collections.abc import Iterator

import dagster as dg
import duckdb

from catalog.settings import Settings, get_settings
from lakehouse.lake import open_lake
from pipelines.ingest.ledger import ensure_ledger
from pipelines.protection import Protection


class LakeResource(dg.ConfigurableResource):
    """Opens the lake for one unit of work: writers hold the writer lock, readers share."""

    def settings(self) -> Settings:
        return get_settings().ensure_dirs()

    def protection(self) -> Protection:
        return Protection.from_settings(self.settings())

    @contextlib.contextmanager
    def open(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with open_lake(self.settings(), read_only=read_only) as con:
            if not read_only:
                ensure_ledger(con)
            yield con
