"""The share service's state: SQLAlchemy Core tables on one :data:`metadata`.

SQLite in WAL mode under the home (``<home>/share/share.db``) by default; the same code on
PostgreSQL when ``STREETHUB_SHARE_DB_URL`` names one (the Scale-out issue runs CI on it).
Every module of ``share_api`` that keeps state declares its tables on :data:`metadata`
and is listed in :data:`TABLE_MODULES`, so :func:`create_schema` makes them all.

Conventions (so PostgreSQL needs no change): ids are text (:func:`new_id`), times are
timezone-aware UTC (``sa.DateTime(timezone=True)``, :func:`utc_now`), JSON goes in
``sa.JSON`` columns, no SQLite-only SQL; cross-module references are plain text ids.
"""

from __future__ import annotations

import datetime as dt
import importlib
import secrets
from pathlib import Path
from typing import overload

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from catalog.settings import Settings

metadata = sa.MetaData()
POOL_SIZE = 40  # SQLite connections kept open: one per request worker thread (anyio's)

# the modules that declare tables on ``metadata`` (imported by create_schema)
TABLE_MODULES = (
    "share_api.principals",
    "share_api.requests",
    "share_api.grants",
    "share_api.consent",
    "share_api.feedback",
    "share_api.alerts",
    "share_api.sharing.versions",
    "share_api.sharing.files",
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@overload
def aware(value: dt.datetime) -> dt.datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: dt.datetime | None) -> dt.datetime | None:
    """A stored time as tz-aware UTC (None stays None): SQLite hands back the naive UTC
    datetimes it stored, PostgreSQL aware ones."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def new_id(prefix: str) -> str:
    """A random, unguessable id: ``<prefix>-<16 hex>`` (grant ids become table names)."""
    return f"{prefix}-{secrets.token_hex(8)}"


def default_url(settings: Settings) -> str:
    path: Path = settings.home_abs / "share" / "share.db"
    return f"sqlite:///{path}"


def engine_for(settings: Settings, url: str | None = None) -> Engine:
    """The service's engine: ``url``, else the setting, else SQLite under the home."""
    url = url or getattr(settings, "share_db_url", None) or default_url(settings)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # a file: one pooled connection per request thread (anyio's 40 by default); the
        # default pool (5 + 10) opened and closed a connection (and its pragmas) per
        # request under load. An in-memory database keeps SQLAlchemy's own pool.
        on_disk = bool(path) and path != ":memory:"
        pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_SIZE} if on_disk else {}
        engine = sa.create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_con, _record) -> None:  # pragma: no cover - driver callback
            cur = dbapi_con.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create every table of :data:`TABLE_MODULES` that does not exist yet."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    metadata.create_all(engine)
