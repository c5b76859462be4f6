"""Dagster resources: the one place pipelines reach the lake and the settings."""

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar

import dagster as dg
import duckdb

from catalog.settings import Settings, get_settings
from lakehouse.lake import open_lake
from pipelines.ingest.ledger import ensure_ledger
from pipelines.memory import release
from pipelines.protection import Protection

# the lake whose ledger a caller has ensured for the block it runs (the main job, once per
# run): writers' opens inside it skip ensure_ledger's probes (a dozen catalogue reads each)
_LEDGER_READY: ContextVar[tuple[str, str] | None] = ContextVar("ledger_ready", default=None)
# settings per environment (STREETHUB_* variables), read once (a step asks many times)
_SETTINGS: dict[tuple[tuple[str, str], ...], Settings] = {}


def _lake_id(settings: Settings) -> tuple[str, str]:
    return (settings.lake_metadata, str(settings.lake_data_dir))


@contextlib.contextmanager
def ledger_ready(settings: Settings) -> Iterator[None]:
    """A block in which the caller has ensured the lake's ledger (:func:`ensure_ledger`)
    and holds the lake (no one else can drop it meanwhile)."""
    token = _LEDGER_READY.set(_lake_id(settings))
    try:
        yield
    finally:
        _LEDGER_READY.reset(token)


def current_settings() -> Settings:
    """The settings of this process's environment (parsed once per environment), their
    folders made."""
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("STREETHUB_")))
    settings = _SETTINGS.get(key)
    if settings is None:
        settings = _SETTINGS[key] = get_settings()
    return settings.ensure_dirs()


class LakeResource(dg.ConfigurableResource):
    """Opens the lake for one unit of work: writers hold the writer lock, readers share."""

    def settings(self) -> Settings:
        return current_settings()

    def protection(self) -> Protection:
        return Protection.from_settings(self.settings())

    @contextlib.contextmanager
    def open(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        settings = self.settings()
        try:
            with open_lake(settings, read_only=read_only) as con:
                if not read_only and _LEDGER_READY.get() != _lake_id(settings):
                    ensure_ledger(con)
                yield con
        finally:
            if not read_only:  # a step's unit of work ends: what it held goes back
                release()
