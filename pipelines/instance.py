"""The Dagster instance of the embedded default: DAGSTER_HOME under STREETHUB_HOME.

Its event log is Dagster's SQLite event log (a database per run and an index database,
under ``DAGSTER_HOME/history/runs`` as by default) with one change, named in dagster.yaml:
:class:`PooledSqliteEventLogStorage` keeps each database it writes to open instead of
creating an engine, connecting and closing for every event (Dagster's ``NullPool``). A run
of the main job writes about 20 events a dataset; measured on 25 ingest-shaped steps, the
run's own CPU went from 8.0 to 2.6 s (and its wall time from 37 to 11 s on a busy disk).
A new run's database is a copy of an empty one initialised once per process
(:meth:`PooledSqliteEventLogStorage.new_run_database`): Dagster creating its tables and
checking alembic's revision for every run was ~4 % of a daily delivery's run.
Its connections commit with ``PRAGMA synchronous = NORMAL`` (:data:`SYNCHRONOUS`): in WAL
mode a commit then waits for no fsync (the WAL is synced at checkpoints); a power loss may
lose the last events, never the database's consistency (SQLite's WAL guarantee). The
fsync of every event's commit was ~4 % of a 1,000-resident first run's samples.
Which tables the index database has is asked of SQLite until it has them
(:meth:`PooledSqliteEventLogStorage.has_table`): Dagster asks before every asset event's tags
and every check evaluation, each time with an engine and a connection of its own (~14 % of
the CPU of a run of 31 trivial ingest-shaped steps). So are the columns of its
``asset_keys`` table and the data migrations it records as completed
(:meth:`PooledSqliteEventLogStorage.has_asset_key_col`, ``has_secondary_index``): Dagster
inspects the table before every asset event and every read of asset records, and reads the
migrations table before every such read (~800 schema reads in a 1,000-resident first run).
The main job's runs share one instance (:func:`shared_instance`): each
``DagsterInstance.get()`` opens the run, event and schedule storages anew (alembic's
revision checked, tables created if missing), ~0.1 s a time.
Alembic reads every one of Dagster's migration scripts (a Python module each) whenever it
checks or stamps a storage's revision: nine times in a first run on a new home (the three
storages checked and stamped, the run database's template), ~0.13 s CPU each. Their
revision map is read once per process here (:func:`_revisions_once`): the scripts are the
installed Dagster's and do not change while a process runs.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

import dagster as dg
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionMap
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, StaticPool

from catalog.settings import Settings

REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"
FALLBACK = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
SYNCHRONOUS = "NORMAL"  # the event log's commits in WAL mode: no fsync each (docstring)
# the instance of the block :func:`shared_instance` runs (the main job's)
_SHARED: ContextVar[dg.DagsterInstance | None] = ContextVar("shared_instance", default=None)


def prepare_dagster_home(settings: Settings) -> Path:
    """Create DAGSTER_HOME with streethub's dagster.yaml, export it, return it."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if REPO_DAGSTER_YAML.exists():
        shutil.copyfile(REPO_DAGSTER_YAML, target)
    elif not target.exists():
        target.write_text(FALLBACK, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@contextlib.contextmanager
def shared_instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    """DAGSTER_HOME prepared (:func:`prepare_dagster_home`) and its instance opened once for
    the block, which :func:`dagster_instance` then returns; disposed at the end."""
    prepare_dagster_home(settings)
    with dg.DagsterInstance.get() as instance:
        token = _SHARED.set(instance)
        try:
            yield instance
        finally:
            _SHARED.reset(token)


def dagster_instance() -> dg.DagsterInstance:
    """Inside :func:`shared_instance`, its instance; else a new one of DAGSTER_HOME
    (``DagsterInstance.get()``)."""
    shared = _SHARED.get()
    return shared if shared is not None else dg.DagsterInstance.get()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log with each database kept open (one connection per database
    file, used under the storage's own lock, as Dagster's connections are): the index
    database always, the newest :attr:`OPEN_RUNS` run databases. An idle connection holds no
    SQLite lock, so the UI's and the daemon's processes read and write as before. A process
    forked from one that had them open starts its own. ``base_dir`` defaults to where
    Dagster keeps the event log of a DAGSTER_HOME (``history/runs``); without a DAGSTER_HOME
    (Dagster's throwaway instance of ``dg check defs``) a temporary folder removed at exit."""

    OPEN_RUNS = 4
    _template: bytes | None = None  # an initialised, empty run database (per process)

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._tables: set[str] = set()  # tables the index database was found to have
        self._asset_key_cols: set[str] = set()  # columns its asset_keys table was found to have
        self._secondary_indexes: set[str] = set()  # data migrations it records as completed
        super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> dict:
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict
    ) -> PooledSqliteEventLogStorage:
        base = config_value.get("base_dir")
        if not base and os.environ.get("DAGSTER_HOME"):
            base = str(Path(os.environ["DAGSTER_HOME"]) / "history" / "runs")
        if not base:  # a throwaway instance (`dg check defs`): a log of its own, removed at exit
            base = tempfile.mkdtemp(prefix="streethub-dagster-events-")
            atexit.register(shutil.rmtree, base, ignore_errors=True)
        return cls(base, inst_data=inst_data)

    def _engine(self, shard: str) -> Engine:
        if self._engines_pid != os.getpid():  # forked: never share the parent's connections
            self._engines, self._engines_pid = OrderedDict(), os.getpid()
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _synchronous)
            self._engines[shard] = engine
            runs = [s for s in self._engines if s != INDEX_SHARD_NAME]
            for old in runs[: max(0, len(runs) - self.OPEN_RUNS)]:
                self._engines.pop(old).dispose()
        else:
            self._engines.move_to_end(shard)
        return engine

    def has_table(self, table_name: str) -> bool:
        """Whether the index database has the table: asked of SQLite (Dagster's way, a
        connection of its own: Dagster asks inside the index's transaction, under the
        storage's lock) until it has it — Dagster's migrations add tables, nothing here
        drops one but :meth:`wipe`."""
        return _until_found(
            self._tables, table_name, functools.partial(super().has_table, table_name)
        )

    def has_asset_key_col(self, column_name: str) -> bool:
        """Whether the index database's ``asset_keys`` table has the column: asked of SQLite
        (Dagster inspects the table each time: before every asset event and every read of
        asset records) until it has it — migrations add columns, nothing here drops one."""
        if column_name in self._asset_key_cols:
            return True
        return super().has_asset_key_col(column_name)

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        ask = functools.partial(super()._has_asset_key_col_on_connection, conn, column_name)
        return _until_found(self._asset_key_cols, column_name, ask)

    def has_secondary_index(self, name: str) -> bool:
        """Whether the index database records the data migration ``name`` as completed:
        asked of SQLite (Dagster asks before every read of asset records) until it does —
        Dagster only ever marks one completed, and only :meth:`wipe` forgets it."""
        return _until_found(
            self._secondary_indexes, name, functools.partial(super().has_secondary_index, name)
        )

    def _dispose_engines(self) -> None:
        while self._engines:
            self._engines.popitem()[1].dispose()

    def _empty_run_database(self) -> bytes:
        """The bytes of a run database as Dagster's ``_initdb`` leaves it (its tables, WAL
        journal mode, alembic's revision stamped), made once per process."""
        cls = PooledSqliteEventLogStorage
        if cls._template is None:
            with tempfile.TemporaryDirectory(prefix="streethub-dagster-run-db-") as folder:
                path = Path(folder) / "run.db"
                engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
                self._initdb(engine)
                engine.dispose()  # the last connection closed: the WAL is checkpointed
                cls._template = path.read_bytes()
        return cls._template

    def new_run_database(self, shard: str) -> bool:
        """Create a run's database file as a copy of :meth:`_empty_run_database`; False when
        the file exists (another process made it: it is initialised the usual way)."""
        target = Path(self.path_for_shard(shard))
        if shard == INDEX_SHARD_NAME or target.exists():
            return False
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        partial.write_bytes(self._empty_run_database())
        try:
            os.link(partial, target)  # never over a file another process created meanwhile
        except FileExistsError:
            return False
        finally:
            partial.unlink()
        return True

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                if not self.new_run_database(shard):
                    self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def wipe(self) -> None:
        with self._db_lock:
            self._dispose_engines()  # the run databases' files are deleted
            self._tables.clear()
            self._asset_key_cols.clear()
            self._secondary_indexes.clear()
        super().wipe()

    def dispose(self) -> None:
        with self._db_lock:
            self._dispose_engines()
        super().dispose()


def _until_found(found: set[str], name: str, ask: Callable[[], bool]) -> bool:
    """``ask()`` whether the schema has ``name`` until it says yes; from then on ``found``
    (where a yes is kept) answers without asking."""
    if name in found:
        return True
    if ask():
        found.add(name)
        return True
    return False


# Dagster's migration scripts (the alembic folder of the installed package)
_DAGSTER_DIR = Path(dg.__file__).resolve().parent
# (folder, version folders, sourceless, recursive) → the revision map read from them
_REVISION_MAPS: dict[tuple, RevisionMap] = {}


def _revisions_once(from_config):
    """``ScriptDirectory.from_config`` whose scripts of Dagster's migrations share one
    revision map per process: a new map reads every migration module again (the map is
    built lazily, from the folder and options it is keyed on here). Other script folders
    are left as alembic makes them."""

    @functools.wraps(from_config)
    def from_config_once(cls, config):
        script = from_config(config)
        if not Path(script.dir).resolve().is_relative_to(_DAGSTER_DIR):
            return script
        key = (
            script.dir,
            tuple(script.version_locations or ()),
            script.sourceless,
            script.recursive_version_locations,
        )
        script.revision_map = _REVISION_MAPS.setdefault(key, script.revision_map)
        return script

    from_config_once.__wrapped_by_streethub__ = True
    return from_config_once


if not getattr(ScriptDirectory.from_config, "__wrapped_by_streethub__", False):
    ScriptDirectory.from_config = classmethod(_revisions_once(ScriptDirectory.from_config))


def _synchronous(connection, _record) -> None:
    """A new event-log connection commits with :data:`SYNCHRONOUS`."""
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
    cursor.close()
