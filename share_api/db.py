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

import contextlib
import datetime as dt
import importlib
import logging
import secrets
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, overload

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from catalog.settings import Settings

if TYPE_CHECKING:
    from share_api.service import Service

metadata = sa.MetaData()
log = logging.getLogger("streethub.share")
POOL_SIZE = 40  # SQLite connections kept open: one per request worker thread (anyio's)

# the modules that declare tables on ``metadata`` (imported by create_schema)
TABLE_MODULES = (
    "share_api.principals",
    "share_api.requests",
    "share_api.grants",
    "share_api.consent",
    "share_api.worklist",
    "share_api.feedback",
    "share_api.alerts",
    "share_api.sharing.versions",
    "share_api.sharing.files",
    "share_api.sharing.tokens",
    "share_api.portal.accounts",
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
    """Create every table of :data:`TABLE_MODULES` that does not exist yet, and the
    revision counters' rows."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    metadata.create_all(engine)
    add_missing_columns(engine)
    for name in Revisions._fields:
        with engine.connect() as con:
            if con.execute(_REVISION_OF, {"name": name}).first() is not None:
                continue
        try:
            with engine.begin() as con:
                con.execute(revisions.insert().values(name=name, value=0))
        except sa.exc.IntegrityError:  # another process made it first
            pass


class SchemaError(RuntimeError):
    """The database holds a table of an older shape that cannot be brought up to date."""


def add_missing_columns(engine: Engine) -> list[str]:
    """Bring tables made by an older version up to :data:`metadata`: a column this version
    declares and the table lacks is added when it may be empty (nullable, the same
    ``ALTER TABLE … ADD COLUMN`` on SQLite and PostgreSQL); one that may not is a
    :class:`SchemaError` naming the table and columns, at start, instead of a failed query
    on some later request. Returns ``table.column`` of every column added (each logged)."""
    inspector = sa.inspect(engine)
    present = set(inspector.get_table_names())
    added: list[str] = []
    refused: list[str] = []
    for table in metadata.sorted_tables:
        if table.name not in present:
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable or column.primary_key:
                refused.append(f"{table.name}.{column.name}")
                continue
            kind = column.type.compile(dialect=engine.dialect)
            name = engine.dialect.identifier_preparer.quote(column.name)
            with engine.begin() as con:
                con.execute(sa.text(f'ALTER TABLE "{table.name}" ADD COLUMN {name} {kind}'))
            added.append(f"{table.name}.{column.name}")
    for what in added:
        log.warning("share database: column %s added (a table made by an older version)", what)
    if refused:
        raise SchemaError(
            "the share database was made by an older version and lacks required columns "
            f"({', '.join(refused)}): migrate it (for sharing_files, a registry of files "
            "made again on use: drop the table) and start the service again"
        )
    return added


# -- revision counters ---------------------------------------------------------------------
#
# What a request's sign-in, grant and consent exclusion depend on is kept in memory per
# process (principals, grants, consent) and checked on every request by ONE cheap query of
# these counters: each change of a token, person, role, organisation, grant or consent
# choice bumps its counter in the same transaction as the change, so a revocation made by
# any process shows on the very next request of every process.

revisions = sa.Table(
    "share_revisions",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
_REVISION_OF = sa.select(revisions.c.value).where(revisions.c.name == sa.bindparam("name"))
_READ_REVISIONS = 'SELECT "name", "value" FROM "share_revisions"'


class Revisions(NamedTuple):
    """The counters as read at one moment (-1: a counter with no row yet)."""

    principals: int
    grants: int
    consent: int


def bump(con: sa.Connection, name: str) -> None:
    """Bump the counter ``name`` (a field of :class:`Revisions`) in ``con``'s transaction:
    call it in the transaction that makes the change."""
    if name not in Revisions._fields:
        raise ValueError(f"no revision counter {name}")
    done = con.execute(
        revisions.update().where(revisions.c.name == name).values(value=revisions.c.value + 1)
    )
    if not done.rowcount:
        con.execute(revisions.insert().values(name=name, value=1))


class RevisionReader:
    """Reads the counters with one statement on a DBAPI connection of its own (no pool
    checkout, no SQLAlchemy statement machinery: ~20 us on SQLite), so the event loop can
    ask it on every request. Each read is its own statement outside any transaction, so it
    sees every commit made before it, by any process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._raw = None

    def read(self) -> Revisions:
        with self._lock:
            if self._raw is None:
                raw = self.engine.raw_connection()
                if self.engine.dialect.name != "sqlite":  # no transaction held open
                    raw.driver_connection.autocommit = True
                self._raw = raw
            cur = self._raw.cursor()
            try:
                cur.execute(_READ_REVISIONS)
                found = dict(cur.fetchall())
            finally:
                cur.close()
        return Revisions(*(int(found.get(name, -1)) for name in Revisions._fields))

    def close(self) -> None:
        with self._lock:
            if self._raw is not None:
                self._raw.close()
                self._raw = None


_FIXED: ContextVar[Revisions | None] = ContextVar("share_revisions", default=None)


def revision_reader(service: Service) -> RevisionReader:
    return service.kept("db.revisions", lambda: RevisionReader(service.engine))


def current_revisions(service: Service) -> Revisions:
    """The counters now — or as fixed for the request under way (:func:`fixed_revisions`):
    one query a request, whatever asks."""
    fixed = _FIXED.get()
    return fixed if fixed is not None else revision_reader(service).read()


@contextlib.contextmanager
def fixed_revisions(service: Service, revs: Revisions | None = None) -> Iterator[Revisions]:
    """Within the block, :func:`current_revisions` answers ``revs`` (default: read now)
    without asking the database again: a request reads the counters once."""
    revs = revs if revs is not None else revision_reader(service).read()
    token = _FIXED.set(revs)
    try:
        yield revs
    finally:
        _FIXED.reset(token)
