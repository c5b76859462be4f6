"""Opening the lake: a DuckLake catalogue (SQLite metadata by default) over Parquet.

Several processes open the same lake at once (a Dagster run, the share API,
an analyst's notebook). DuckLake on a SQLite catalogue allows one writer and
many readers (../shared/STACK.md), so:

- a writer takes an exclusive lock file *before* ATTACH and holds it until it
  closes; a second writer waits (up to ``lake_lock_timeout_s``) instead of
  corrupting the catalogue;
- readers ATTACH read-only and never take the lock;
- the metadata file runs in WAL mode with a busy timeout so readers do not
  block on the writer's commits;
- small inserts are never inlined into the metadata (``DATA_INLINING_ROW_LIMIT
  0``): every table's rows are Parquet files under the data path.

Opening is cheap after the first time in a process: loading the two extensions
costs about 0.25 s (DuckDB verifies their signatures), so an in-memory DuckDB
with them loaded is kept between opens (:class:`_Instances`). What is kept
holds no lake state: every open ATTACHes the lake afresh (after taking the
writer lock) and every close DETACHes it (before releasing the lock), so a
process never writes from a catalogue state another writer has moved past.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import duckdb

from catalog.errors import LakeError
from catalog.settings import Settings, get_settings, shown_url
from lakehouse.extensions import bounded_instance
from lakehouse.sqltext import sql_literal
from lakehouse.statements import retire, watch

ALIAS = "lake"
ZONES = ("landing", "raw", "staged", "quarantine", "curated", "marts")


class _WriterLock:
    """An exclusive advisory lock (fcntl) on ``<lake_dir>/writer.lock``."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held until release()
        deadline = time.monotonic() + self.timeout_s
        delay = 0.05
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.close()
                    raise LakeError(
                        f"another process has been writing to the lake for over "
                        f"{self.timeout_s:.0f} s (lock {self.path}); try again when it ends"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _new_instance(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake's extensions loaded (the ~0.25 s part), bounded
    and spilling encrypted under the lake (:func:`lakehouse.extensions.bounded_instance`;
    the main job lets its file cache go after its ingest: drop_file_cache)."""
    con = bounded_instance(settings, settings.spill_dir, "sqlite_scanner", "ducklake")
    try:
        watch(con)  # counted statements (a benchmark's diagnostic), when asked
    except BaseException:
        con.close()
        raise
    return con


def _attach(
    con: duckdb.DuckDBPyConnection, settings: Settings, *, read_only: bool
) -> duckdb.DuckDBPyConnection:
    """ATTACH the lake as ``lake`` and USE it; the connection is closed if that fails."""
    try:
        # the data path comes from settings, also for a lake that was moved or copied
        # (DuckLake remembers the path it was created with; file paths are relative to it)
        options = [
            f"META_BUSY_TIMEOUT {int(settings.lake_busy_timeout_ms)}",
            f"DATA_PATH {sql_literal(str(settings.lake_data_dir) + '/')}",
            "OVERRIDE_DATA_PATH true",
        ]
        if read_only:
            options.insert(0, "READ_ONLY")
        else:
            settings.lake_data_dir.mkdir(parents=True, exist_ok=True)
            options.append("DATA_INLINING_ROW_LIMIT 0")
        if settings.lake_metadata.startswith("sqlite:"):
            options.append("META_JOURNAL_MODE 'WAL'")
            Path(settings.lake_metadata.removeprefix("sqlite:")).parent.mkdir(
                parents=True, exist_ok=True
            )
        con.execute(
            f"ATTACH {sql_literal('ducklake:' + settings.lake_metadata)} AS {ALIAS} "
            f"({', '.join(options)})"
        )
        con.execute(f"USE {ALIAS}")
    except duckdb.Error as exc:
        retire(con)
        # the whole message shown without secrets: DuckDB's own text quotes the catalogue too
        raise LakeError(
            shown_url(f"cannot open the lake at {settings.lake_metadata}: {exc}")
        ) from exc
    return con


def connect(
    settings: Settings | None = None, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A new DuckDB connection with the lake attached as ``lake`` (and USEd).

    Prefer :func:`open_lake`, which also takes the writer lock, reuses the loaded
    extensions and closes the connection. A read-write connection from here holds
    no lock: the caller must hold one.
    """
    settings = settings or get_settings()
    return _attach(_new_instance(settings), settings, read_only=read_only)


# what a DuckDB instance may hold when it goes back to the pool: nothing of ours
_BUILTIN_DATABASES = {"memory", "system", "temp"}


class _Instances:
    """In-memory DuckDB instances with the extensions loaded, idle between two opens.

    One per concurrent open (an open inside another gets a second one); kept per
    process (a child after ``fork`` starts with none: a DuckDB is not fork-safe)
    and per extension directory. An instance goes back only when its block ended
    without an exception and the lake was detached from it with nothing left
    behind (no attached database, no table or view of the block's own); else it
    is closed.
    """

    MAX_IDLE = 2

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._idle: dict[str, list[duckdb.DuckDBPyConnection]] = {}
        self.created = 0  # instances this process loaded the extensions into

    def _mine(self) -> dict[str, list[duckdb.DuckDBPyConnection]]:
        if self._pid != os.getpid():  # inherited through fork: never touch the parent's
            self._pid, self._idle, self.created = os.getpid(), {}, 0
        return self._idle

    def take(self, settings: Settings) -> duckdb.DuckDBPyConnection:
        with self._guard:
            idle = self._mine().get(str(settings.extension_dir))
            if idle:
                return idle.pop()
        return self.new(settings)

    def new(self, settings: Settings) -> duckdb.DuckDBPyConnection:
        """A new instance, never one of the pool's."""
        with self._guard:
            self._mine()  # a forked child's count starts at 0, as its pool does
            self.created += 1
        return _new_instance(settings)

    def give(self, settings: Settings, con: duckdb.DuckDBPyConnection) -> None:
        """Detach the lake and keep the instance if it is clean; close it otherwise."""
        try:
            con.execute("USE memory")
            con.execute(f"DETACH DATABASE IF EXISTS {ALIAS}")
            attached = {
                r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
            }
            leftovers = con.execute(
                "SELECT (SELECT count(*) FROM duckdb_tables() WHERE NOT internal) "
                "+ (SELECT count(*) FROM duckdb_views() WHERE NOT internal)"
            ).fetchone()[0]
        except duckdb.Error:
            retire(con)
            return
        if attached - _BUILTIN_DATABASES or leftovers:
            retire(con)
            return
        with self._guard:
            idle = self._mine().setdefault(str(settings.extension_dir), [])
            if len(idle) < self.MAX_IDLE:
                idle.append(con)
                return
        retire(con)

    def clear(self) -> None:
        """Close every idle instance of this process."""
        with self._guard:
            idle, self._idle = self._mine(), {}
        for cons in idle.values():
            for con in cons:
                retire(con)


_INSTANCES = _Instances()


MEMORY_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
"""DuckDB's units of a memory setting as ``current_setting`` prints it (``488.2 MiB``)."""


def current_limit(con: duckdb.DuckDBPyConnection) -> str:
    """``con``'s memory limit as DuckDB prints it (``488.2 MiB``)."""
    # the function named in its catalogue: a bare name is looked up in the lake's first,
    # which costs a DuckLake transaction of its own (``registered``)
    [limit] = con.execute("SELECT system.main.current_setting('memory_limit')").fetchone() or [""]
    return str(limit)


def restore_limit(con: duckdb.DuckDBPyConnection, printed: str) -> None:
    """``con``'s memory limit set back to ``printed`` (:func:`current_limit`'s figure, cut to
    0.1 of a unit: set to the middle of that tenth, the same after every restore)."""
    number, _, unit = printed.partition(" ")
    con.execute(f"SET memory_limit = '{float(number) + 0.05:.2f} {unit}'")


def drop_file_cache(con: duckdb.DuckDBPyConnection) -> None:
    """``con``'s DuckDB keeps no more of the Parquet files it reads (its external file cache
    off, what it held let go; the instance's setting: every cursor of it shares it).

    The cache serves the ingest, whose many small statements read again the files it has
    just written (without it the ingest of a 20,000-resident street's files measured 8.06/
    8.61 -> 9.22/9.09 CPU s, /work/scratch/lead/ab_ingest.py, though the machine's noise
    is of that size: a third pair gave 9.23 with it, 9.52 without). After it, the whole
    of what a run read stays cached within the lake's memory limit for the rest of the
    run: at 200,000 residents each later phase ran 30-50 MB higher with it (marts, need
    model, truth evaluation) and the run's max RSS was 1,115 against 1,075 MB without,
    at the same CPU (414 vs 413 s user)."""
    con.execute("SET GLOBAL enable_external_file_cache = false")


@contextlib.contextmanager
def memory_limit(con: duckdb.DuckDBPyConnection, limit: int) -> Iterator[None]:
    """``con``'s DuckDB bounded to ``limit`` bytes in the block when its own limit is higher,
    then restored (the limit is the instance's: every cursor of it shares it). What does not
    fit spills under the lake, encrypted (:func:`lakehouse.extensions.spill_encrypted`); an
    operator that cannot spill fails with ``duckdb.OutOfMemoryException``. DuckDB prints its
    limit cut to 0.1 of a unit (512 MB as ``488.2 MiB``), so it is set back to the middle of
    that tenth (within 0.05 MiB of what it was, and the same after every restore)."""
    before = current_limit(con)
    number, _, unit = before.partition(" ")
    try:
        lower = float(number) * MEMORY_UNITS[unit] > limit
    except (KeyError, ValueError):  # not a figure DuckDB prints: left as it is
        lower = False
    if lower:
        con.execute(f"SET memory_limit = '{limit} bytes'")
    try:
        yield
    finally:
        if lower:
            restore_limit(con, before)


def instances_created() -> int:
    """How many times this process has loaded the lake's extensions (for tests and benches)."""
    return _INSTANCES.created


def close_idle() -> None:
    """Close the DuckDB instances kept between opens (tests; a process about to fork)."""
    _INSTANCES.clear()


_IN_TRANSACTION: set[int] = set()  # the connections inside a :func:`transaction` block


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One lake transaction: committed when the block ends, rolled back if it raises
    (a SIGKILL inside it leaves the lake at its last snapshot: DuckLake commits atomically)."""
    con.execute("BEGIN TRANSACTION")
    _IN_TRANSACTION.add(id(con))
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        _IN_TRANSACTION.discard(id(con))


def in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con`` is inside a :func:`transaction` block (every lake transaction of ours
    is one: no other code begins one)."""
    return id(con) in _IN_TRANSACTION


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: object) -> Iterator[None]:
    """``table`` (Arrow, or what DuckDB reads as a relation) as the temporary view ``name`` of
    ``con`` for the block, let go after it; the block's statements in one lake transaction
    (the caller's when it is inside one: joined, not nested).

    On a cursor of the lake, outside a transaction, every statement starts a DuckLake
    transaction of its own, which reads the catalogue's current snapshot (~1.5 ms CPU on
    DuckDB 1.5.5), also one that reads no lake table (registering a view and letting it go
    are a statement each; a function's bare name is looked up in the lake's catalogue
    before the system's). A frame registered, read once and let go took 7.7 ms CPU so,
    2.6 ms in one transaction (a 1,000-resident street's lake, 2026-12-06; the main job
    registered 58). Hence: a block that writes to the lake commits at its end, all of it
    or, if it raises, none; a block that must commit on its own opens no view here."""
    try:
        with transaction(con) if not in_transaction(con) else contextlib.nullcontext():
            con.register(name, table)
            yield
            con.unregister(name)
    except BaseException:
        # its own transaction is rolled back by now; in a caller's aborted transaction the
        # view cannot go (its cursor keeps it until the end of its open): the block's own
        # error is the one raised
        with contextlib.suppress(duckdb.Error):
            con.unregister(name)
        raise


def ensure_zones(con: duckdb.DuckDBPyConnection) -> None:
    """Create the zone schemas that are missing (one snapshot, only if needed)."""
    have = {
        r[0]
        for r in con.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = ?", [ALIAS]
        ).fetchall()
    }
    missing = [zone for zone in ZONES if zone not in have]
    if missing:
        with transaction(con):
            for zone in missing:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {ALIAS}.{zone}")


@dataclass
class _Held:
    """A lake kept attached by :func:`hold_lake` (one per process and thread at a time)."""

    lake: tuple[str, str]  # (metadata, data path): which lake
    read_only: bool
    con: duckdb.DuckDBPyConnection  # a new one after renew_hold
    cursors: int = 0  # open_lake blocks of the hold open now


_HELD = threading.local()
_HELD_WRITERS: set[tuple[str, str]] = set()  # lakes a writer's hold keeps, in any thread
# lake opens that re-used a held lake instead of attaching it (for tests and benches)
_HELD_OPENS = [0]


def _lake_of(settings: Settings) -> tuple[str, str]:
    return (settings.lake_metadata, str(settings.lake_data_dir))


def held_opens() -> int:
    """How many :func:`open_lake` blocks in this process were served by a held lake."""
    return _HELD_OPENS[0]


@contextlib.contextmanager
def hold_lake(settings: Settings | None = None, *, read_only: bool = False) -> Iterator[None]:
    """Keep the lake attached for a block of many units of work (a Dagster run of the main
    job: every step, check and helper opens the lake; attaching it costs 0.1-0.5 s).

    Inside the block, in this thread, every :func:`open_lake` of the same lake — a writer's
    when the hold is a writer's (it holds the writer lock for the whole block), a reader's
    in either case — gets a cursor of the held connection instead of a fresh ATTACH: the
    catalogue DuckLake has loaded, its extensions and caches are kept, and no other writer
    can move the catalogue meanwhile (the lock). Each open's cursor is closed at the end of
    its block; a failed block's cursor rolls back and leaves the held connection as it was.
    Opens of another lake, from another thread, or a writer's inside a reader's hold, go
    their usual way. Nested holds of the same lake are one hold."""
    settings = settings or get_settings()
    held: _Held | None = getattr(_HELD, "held", None)
    if held is not None and held.lake == _lake_of(settings) and (read_only or not held.read_only):
        yield
        return
    with _attached(settings, read_only) as state:
        _HELD.held = state
        if not read_only:
            _HELD_WRITERS.add(_lake_of(settings))
        try:
            yield
        finally:
            _HELD.held = held
            if not read_only:
                _HELD_WRITERS.discard(_lake_of(settings))


def writers_hold(settings: Settings | None = None) -> object | None:
    """The hold this thread has of ``settings``' lake as its writer (:func:`hold_lake`), as an
    object that stays the same for the whole hold (a renewal too); None when it has none.
    While it lasts no other process writes to the lake (the writer lock), and in this
    process only this thread's opens are served by it."""
    settings = settings or get_settings()
    held: _Held | None = getattr(_HELD, "held", None)
    if held is None or held.read_only or held.lake != _lake_of(settings):
        return None
    return held


def renew_hold(settings: Settings | None = None) -> bool:
    """Give the lake this thread holds (:func:`hold_lake`) a new DuckDB instance, the same
    hold and writer lock kept, and close the old one: what the old instance kept of the
    units of work it served goes with it. True when renewed; False when nothing is held.

    A DuckDB instance keeps C heap for every DuckLake statement it ran (DuckLake keeps the
    catalogue of each schema version it loaded for the instance's life: duckdb/ducklake
    #852), and only closing the instance gives it back; DETACH does not. Measured on DuckDB
    1.5.5 in a hold (glibc's heap in use, 2026-12-03): 1,000 one-row commits +4.5 MB, 1,000
    reads +1.0 MB, 600 and 1,200 small units of work that write and read +12.8 and +21.5 MB;
    after the ingest and marts of a 200,000-resident street, a new instance had 57 MB less
    in use. Attaching anew costs the extensions' load (~0.25 s), so a long run renews once,
    after its many small units of work (the main job, before its need model). Between units
    of work only: an open block of the hold is refused (LakeError), its cursor would be
    closed. The new instance has DuckDB's defaults: a setting made with SET GLOBAL on the old
    one (:func:`drop_file_cache`) is made again by the caller."""
    settings = settings or get_settings()
    held: _Held | None = getattr(_HELD, "held", None)
    if held is None or held.lake != _lake_of(settings):
        return False
    if held.cursors:
        raise LakeError(
            f"the held lake cannot be renewed while {held.cursors} block(s) of it are open"
        )
    new = _attach(_INSTANCES.new(settings), settings, read_only=held.read_only)
    old, held.con = held.con, new
    retire(old)
    return True


def _serving_hold(settings: Settings, read_only: bool) -> _Held | None:
    """This thread's hold when it serves an open of ``settings``' lake; else None."""
    held: _Held | None = getattr(_HELD, "held", None)
    if held is None or held.lake != _lake_of(settings) or (held.read_only and not read_only):
        return None
    return held


@contextlib.contextmanager
def open_lake(
    settings: Settings | None = None, *, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the lake for one unit of work and close it afterwards.

    Writers hold the lake's writer lock for the whole block; readers do not.
    A reader opening a lake that was never initialised gets a LakeError. The
    connection is only valid inside the block (its DuckDB may serve the next open).
    Inside :func:`hold_lake` the held lake serves the block (a cursor of it).
    """
    settings = settings or get_settings()
    held = _serving_hold(settings, read_only)
    if held is not None:
        cur = held.con.cursor()
        cur.execute(f"USE {ALIAS}")
        _HELD_OPENS[0] += 1
        held.cursors += 1
        try:
            yield cur
        finally:
            held.cursors -= 1
            cur.close()  # an open transaction of a failed block is rolled back
        return
    with _attached(settings, read_only) as state:
        yield state.con


@contextlib.contextmanager
def _attached(settings: Settings, read_only: bool) -> Iterator[_Held]:
    """The lake attached to an instance of the pool, for a block (a writer's lock held):
    the instance attached at the block's end (a new one after :func:`renew_hold`) goes back
    to the pool, or is closed after a failure."""
    lock = None
    if read_only:
        meta = settings.lake_metadata
        if meta.startswith("sqlite:") and not Path(meta.removeprefix("sqlite:")).exists():
            raise LakeError(
                f"the lake has not been initialised yet ({meta}); run `streethub lake init`"
            )
    else:
        if _lake_of(settings) in _HELD_WRITERS:  # our own lock: waiting would never end
            raise LakeError(
                "the lake is held for writing by another thread of this process (hold_lake)"
            )
        lock = _WriterLock(settings.lake_dir / "writer.lock", settings.lake_lock_timeout_s)
        lock.acquire()
    try:
        state = _Held(
            _lake_of(settings),
            read_only,
            _attach(_INSTANCES.take(settings), settings, read_only=read_only),
        )
        try:
            if not read_only:
                ensure_zones(state.con)
            yield state
        except BaseException:
            retire(state.con)  # never reused after a failure: its state is unknown
            raise
        else:
            _INSTANCES.give(settings, state.con)  # detached before the lock is released
    finally:
        if lock is not None:
            lock.release()


def init_lake(settings: Settings | None = None) -> None:
    """Create the lake (catalogue, data folder, zone schemas) if it does not exist."""
    settings = (settings or get_settings()).ensure_dirs()
    with open_lake(settings):
        pass


def ensure_table(
    con: duckdb.DuckDBPyConnection, zone: str, table: str, columns: list[tuple[str, str]]
) -> None:
    """Create ``lake.<zone>.<table>`` with ``columns`` (name, SQL type), or add the missing
    ones to an existing table (the catalogue gained a field).

    Inside or outside a transaction: ``CREATE TABLE IF NOT EXISTS`` never fails, so the
    probe of the table's columns after it cannot abort the caller's transaction. Called
    inside a delivery's own transaction, the table is created in that delivery's snapshot
    (no commit of its own: a separate CREATE costs a DuckLake commit, 0.05-0.1 s) and each
    statement costs about a millisecond (the snapshot is loaded once a transaction).
    Never through ``duckdb_columns()``, which loads every table's metadata in the lake (a
    second or more per delivery on a street's lake)."""
    body = ", ".join(f'"{c}" {t}' for c, t in columns)
    con.execute(f'CREATE TABLE IF NOT EXISTS {zone}."{table}" ({body})')
    have = {d[0] for d in con.execute(f'SELECT * FROM {zone}."{table}" LIMIT 0').description}
    for c, t in columns:
        if c not in have:
            con.execute(f'ALTER TABLE {zone}."{table}" ADD COLUMN "{c}" {t}')


INSERT_ROWS = 40_000  # rows an INSERT hands DuckDB at once (its Parquet writer buffers them)


def insert_frame(con: duckdb.DuckDBPyConnection, zone: str, table: str, frame) -> None:
    """Append an Arrow-convertible frame (polars) to ``lake.<zone>.<table>`` by column name.

    A large frame goes in slices of :data:`INSERT_ROWS` (one Parquet file each): DuckDB's
    writer holds a whole row group of what it is given, which for a 180,000-row delivery
    was ~180 MB on top of the frame itself. Call it inside a transaction (every caller
    does): outside one, each slice would commit on its own."""
    if frame.height == 0:
        return
    for start in range(0, frame.height, INSERT_ROWS):
        # read by DuckDB's replacement scan of this frame's local, not ``con.register``: a
        # registered view stays referenced until the transaction ends, so a transaction's
        # inserts stayed in memory until its COMMIT (five 400,000-row frames: +240 MB)
        _streethub_insert_batch = frame.slice(start, INSERT_ROWS).to_arrow()
        con.execute(f'INSERT INTO {zone}."{table}" BY NAME SELECT * FROM _streethub_insert_batch')


def replace_table(
    con: duckdb.DuckDBPyConnection,
    zone: str,
    table: str,
    source: str,
    *,
    order_by: str | None = None,
) -> None:
    """Replace the rows of ``lake.<zone>.<table>`` with those of ``source`` (a table, a view,
    a registered frame or a parenthesised query, as SQL; ``order_by``: the rows' order as
    written), creating the table where it is missing. Inside or outside a transaction.

    In place (``DELETE`` then ``INSERT``: the same table, its data files replaced) where
    the table has the source's columns, names and types in that order; otherwise
    ``CREATE OR REPLACE TABLE``, which makes a new table. Either way time travel keeps the
    old rows. A new table costs a DuckLake schema change — a commit ~15 ms dearer, and the
    next statement reloads the lake's catalogue (~20 ms) — and leaves its entries in the
    catalogue (the table, its columns, their statistics) until snapshot expiry removes
    them: a hub that made a new table for each daily rebuild of its marts added ~110 rows a
    day to tables that DuckDB's SQLite scanner reads whole for every table a statement
    touches (``lakehouse.statements``). An empty table replaced by nothing is made anew,
    so that the write still shows in its metadata (``marts.staleness``)."""
    target = f'{zone}."{table}"'
    rows = f"SELECT * FROM {source}" + (f" ORDER BY {order_by}" if order_by else "")
    try:
        have = _column_types(con, f"SELECT * FROM {target}")
    except duckdb.CatalogException:  # no such table (the caller's transaction goes on)
        have = None
    if (
        have is not None
        and have == _column_types(con, f"SELECT * FROM {source}")
        and not _both_empty(con, target, source)
    ):
        con.execute(f"DELETE FROM {target}")
        con.execute(f"INSERT INTO {target} {rows}")
    else:
        con.execute(f"CREATE OR REPLACE TABLE {target} AS {rows}")


def replace_with_frame(con: duckdb.DuckDBPyConnection, zone: str, table: str, frame) -> None:
    """:func:`replace_table` with the rows of an Arrow-convertible frame (polars), registered
    on ``con`` for it and let go after it (:func:`registered`: in one lake transaction)."""
    with registered(con, "_streethub_replace_frame", frame.to_arrow()):
        replace_table(con, zone, table, "_streethub_replace_frame")


def _column_types(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) of each column of the query's result, in order (no row read)."""
    return [(d[0], str(d[1])) for d in con.execute(f"{sql} LIMIT 0").description]


def _both_empty(con: duckdb.DuckDBPyConnection, target: str, source: str) -> bool:
    """Whether ``source`` has no row and neither has ``target`` (read only when the source
    is empty: a lake table's read costs DuckLake's catalogue queries)."""
    return not any(
        con.execute(f"SELECT EXISTS (SELECT 1 FROM {rel})").fetchone()[0]
        for rel in (source, target)
    )


METADATA = f"__ducklake_metadata_{ALIAS}"  # the catalogue database DuckLake attaches


def tables_in(con: duckdb.DuckDBPyConnection, zone: str | None = None) -> set[tuple[str, str]]:
    """(zone, table) of every committed table in the lake, or in one zone.

    Read from DuckLake's own catalogue tables (``ducklake_table``/``ducklake_schema``,
    the current ones have no ``end_snapshot``): 0.01–0.03 s. ``duckdb_tables()`` loads
    every table's metadata first — 0.3 s a call on a 1,500-resident street's lake and
    over 4 s for the first call in a process — and every summary, account check and
    scorecard listed the lake. Not for a table created in the caller's own open
    transaction (it is not committed yet): probe that with :func:`has_table`."""
    sql = (
        f"SELECT s.schema_name, t.table_name FROM {METADATA}.ducklake_table t "
        f"JOIN {METADATA}.ducklake_schema s USING (schema_id) "
        "WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL"
    )
    params: list[str] = []
    if zone is not None:
        sql += " AND s.schema_name = ?"
        params.append(zone)
    return {(z, t) for z, t in con.execute(sql, params).fetchall()}


def has_table(con: duckdb.DuckDBPyConnection, zone: str, table: str) -> bool:
    """Whether ``lake.<zone>.<table>`` exists, without listing the lake: the first listing
    after an open loads every table's metadata (0.3–1.7 s on a street's lake), a probe
    only that table's. Not inside a transaction: a missing table would abort it."""
    try:
        con.execute(f'SELECT 1 FROM {zone}."{table}" LIMIT 0')
    except duckdb.CatalogException:
        return False
    return True


def has_column(con: duckdb.DuckDBPyConnection, zone: str, table: str, column: str) -> bool:
    """Whether an existing ``lake.<zone>.<table>`` has ``column`` (a probe, as above)."""
    try:
        con.execute(f'SELECT "{column}" FROM {zone}."{table}" LIMIT 0')
    except duckdb.BinderException:
        return False
    return True


def row_count(con: duckdb.DuckDBPyConnection, zone: str, table: str) -> int:
    """Rows in ``lake.<zone>.<table>``; 0 when the table does not exist yet. One statement
    (a missing table is told by the error, as :func:`has_table` does), so not inside a
    transaction either."""
    try:
        return int(con.execute(f'SELECT count(*) FROM {zone}."{table}"').fetchone()[0])
    except duckdb.CatalogException:
        return 0


def data_files(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], int]:
    """(zone, table) → how many Parquet files hold its current rows (committed tables with
    any), from DuckLake's own catalogue in one read."""
    rows = con.execute(
        f"SELECT s.schema_name, t.table_name, count(*) FROM {METADATA}.ducklake_data_file f "
        f"JOIN {METADATA}.ducklake_table t USING (table_id) "
        f"JOIN {METADATA}.ducklake_schema s USING (schema_id) "
        "WHERE f.end_snapshot IS NULL AND t.end_snapshot IS NULL AND s.end_snapshot IS NULL "
        "GROUP BY 1, 2"
    ).fetchall()
    return {(z, t): int(n) for z, t, n in rows}


def merge_small_files(
    con: duckdb.DuckDBPyConnection, tables: Iterable[tuple[str, str]], min_files: int
) -> dict[tuple[str, str], int]:
    """Merge the Parquet files of each of ``tables`` that holds its rows in ``min_files`` or
    more into as few as DuckLake's target file size allows (``ducklake_merge_adjacent_files``).

    Every insert writes a file, and every query of a table opens each of them: a table that
    grows by a few rows at a time (the ledger: a row or two per delivery) is read file by
    file. The merge keeps time travel and the change feed (``ducklake_table_insertions``
    still dates each row by its own snapshot; the merge's snapshot inserts nothing), and the
    files it replaced go when snapshot expiry no longer needs them. One snapshot per merged
    table; outside a transaction, by a writer. Returns the files each merged table had."""
    counts = data_files(con)
    merged: dict[tuple[str, str], int] = {}
    for zone, table in sorted(tables):
        n = counts.get((zone, table), 0)
        if n >= min_files:
            con.execute(
                f"CALL ducklake_merge_adjacent_files({sql_literal(ALIAS)}, {sql_literal(table)}, "
                f"schema => {sql_literal(zone)})"
            ).fetchall()
            merged[(zone, table)] = n
    return merged
