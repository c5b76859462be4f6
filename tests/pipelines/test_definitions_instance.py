"""The Dagster instance of a home: its event log keeps its SQLite databases open, and
still reads and writes like Dagster's own (another instance on the same home — the UI's —
sees every event; a wiped log starts again)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from catalog.settings import Settings
from pipelines.instance import (
    PooledSqliteEventLogStorage,
    dagster_instance,
    prepare_dagster_home,
    shared_instance,
)


@dg.asset
def counted() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 1})


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored after the test
    home = prepare_dagster_home(Settings(home=tmp_path / "home"))
    with dg.DagsterInstance.get() as instance:
        assert Path(instance.root_directory) == home
        yield instance


def materialisations(instance: dg.DagsterInstance) -> int:
    return len(instance.fetch_materializations(counted.key, limit=100).records)


def test_the_event_log_is_dagsters_sqlite_log_kept_open(instance: dg.DagsterInstance) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    runs_dir = Path(instance.root_directory) / "history" / "runs"  # Dagster's own place
    assert Path(storage._base_dir) == runs_dir
    results = [dg.materialize([counted], instance=instance) for _ in range(6)]
    assert all(r.success for r in results)
    assert materialisations(instance) == 6
    assert {p.stem for p in runs_dir.glob("*.db")} >= {r.run_id for r in results} | {"index"}
    # open: the index and the newest run databases only
    assert len(storage._engines) <= storage.OPEN_RUNS + 1 and "index" in storage._engines
    # another instance on the home (the UI's, the next run's) reads what this one wrote
    # while this one keeps its databases open, and writes beside it
    other = dg.DagsterInstance.from_ref(instance.get_ref())
    assert materialisations(other) == 6
    assert dg.materialize([counted], instance=other).success
    assert materialisations(instance) == 7
    other.dispose()
    storage.wipe()  # the run databases deleted: nothing kept open points into them
    assert materialisations(instance) == 0
    assert dg.materialize([counted], instance=instance).success
    assert materialisations(instance) == 1


def _schema(path: Path) -> tuple[list, list, str]:
    con = sqlite3.connect(path)
    try:
        tables = sorted(con.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
        revision = con.execute("SELECT version_num FROM alembic_version").fetchall()
        return tables, revision, con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()


def test_a_new_run_database_is_the_one_dagster_would_make(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = instance.event_log_storage
    storage._empty_run_database()  # made once per process (by Dagster's _initdb)
    initialised: list = []
    with monkeypatch.context() as patched:
        patched.setattr(storage, "_initdb", lambda engine: initialised.append(engine))
        run = dg.materialize([counted], instance=instance)
    assert run.success and not initialised  # the run's database copied, not initialised
    made = Path(storage.path_for_shard(run.run_id))
    # Dagster's own initialisation of a run database, for comparison
    engine = create_engine(f"sqlite:///{tmp_path / 'dagster.db'}", poolclass=NullPool)
    SqliteEventLogStorage._initdb(storage, engine)
    engine.dispose()
    assert _schema(made)[0] and _schema(made) == _schema(tmp_path / "dagster.db")
    assert _schema(made)[2] == "wal" and _schema(made)[1]  # stamped at alembic's head
    assert not storage.new_run_database(run.run_id)  # an existing file is never replaced
    assert len(instance.all_logs(run.run_id)) > 5  # the run's events are in it


def test_the_event_log_commits_without_an_fsync_each(instance: dg.DagsterInstance) -> None:
    """Every database the event log writes is in WAL mode and its connection commits with
    ``synchronous = NORMAL`` (1; SQLite's default, FULL, is 2): no fsync per event."""
    storage = instance.event_log_storage
    result = dg.materialize([counted], instance=instance)
    for shard in ("index", result.run_id):
        with storage._connect(shard) as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert materialisations(instance) == 1


@dg.asset_check(asset=counted)
def counted_is_one() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def test_the_index_tables_are_asked_of_sqlite_until_found(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster asks whether a table exists before every asset event's tags and check
    evaluation; SQLite is asked only until it has the table, and a table it lacks is
    asked again."""
    asked: list[str] = []
    dagsters = SqliteEventLogStorage.has_table

    def counting(storage: SqliteEventLogStorage, name: str) -> bool:
        asked.append(name)
        return dagsters(storage, name)

    monkeypatch.setattr(SqliteEventLogStorage, "has_table", counting)
    storage = instance.event_log_storage
    for _ in range(3):
        assert dg.materialize([counted, counted_is_one], instance=instance).success
    assert {"asset_event_tags", "asset_check_executions"} <= set(asked)
    assert len(asked) == len(set(asked))  # each table asked once in three runs
    assert storage.has_table("asset_check_executions") and len(asked) == len(set(asked))
    assert not storage.has_table("no_such_table") and not storage.has_table("no_such_table")
    assert asked.count("no_such_table") == 2
    assert len(storage.get_asset_check_execution_history(counted_is_one.check_key, 10)) == 3
    storage.wipe()
    assert storage.has_table("asset_event_tags") and asked.count("asset_event_tags") == 2


def test_the_index_schema_is_asked_of_sqlite_until_found(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster reads the ``asset_keys`` table's columns before every asset event and read of
    asset records, and the completed data migrations before every such read; SQLite is
    asked only until it has the column or the migration, one it lacks is asked again, and
    a wiped log is asked afresh."""
    columns: list[str] = []
    migrations: list[tuple[str, bool]] = []
    dagsters_columns = SqliteEventLogStorage._has_asset_key_col_on_connection
    dagsters_migrations = SqliteEventLogStorage.has_secondary_index

    def counting_columns(storage: SqliteEventLogStorage, conn, name: str) -> bool:
        columns.append(name)
        return dagsters_columns(storage, conn, name)

    def counting_migrations(storage: SqliteEventLogStorage, name: str) -> bool:
        found = dagsters_migrations(storage, name)
        migrations.append((name, found))
        return found

    monkeypatch.setattr(SqliteEventLogStorage, "_has_asset_key_col_on_connection", counting_columns)
    monkeypatch.setattr(SqliteEventLogStorage, "has_secondary_index", counting_migrations)
    storage = instance.event_log_storage
    for _ in range(3):
        assert dg.materialize([counted, counted_is_one], instance=instance).success
        assert materialisations(instance) > 0 and storage.get_asset_records([counted.key])
    found = [name for name, yes in migrations if yes]
    assert "last_materialization_timestamp" in columns and found  # both asked, both found
    assert len(columns) == len(set(columns)) and len(found) == len(set(found))
    assert storage.has_asset_key_col("last_materialization_timestamp")
    assert storage.has_secondary_index(found[0])
    assert len(columns) == len(set(columns))  # answered without asking SQLite again
    assert [n for n, yes in migrations if yes] == found
    assert not storage.has_asset_key_col("no_such_column")
    assert not storage.has_asset_key_col("no_such_column")
    assert columns.count("no_such_column") == 2
    assert not storage.has_secondary_index("no_such_migration")
    assert not storage.has_secondary_index("no_such_migration")
    assert migrations.count(("no_such_migration", False)) == 2
    assert materialisations(instance) == 3
    storage.wipe()
    assert storage.has_asset_key_col("last_materialization_timestamp")
    assert columns.count("last_materialization_timestamp") == 2
    assert storage.has_secondary_index(found[0])
    assert [n for n, yes in migrations if yes].count(found[0]) == 2


def test_the_main_jobs_runs_share_one_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored after the test
    settings = Settings(home=tmp_path / "home")
    with shared_instance(settings) as shared:
        assert dagster_instance() is shared and dagster_instance() is shared
        assert Path(shared.root_directory) == settings.dagster_home
        assert dg.materialize([counted], instance=dagster_instance()).success
    outside = dagster_instance()  # a new instance of DAGSTER_HOME, as before
    assert outside is not shared and materialisations(outside) == 1
    outside.dispose()


def test_dagsters_migration_scripts_are_read_once_per_process(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from dagster._core.storage.sql import get_alembic_config
    from dagster._core.storage.sqlite_storage import __file__ as storage_file

    # the instance above checked and stamped its storages: their map is the shared one
    first = ScriptDirectory.from_config(get_alembic_config(storage_file))
    again = ScriptDirectory.from_config(get_alembic_config(storage_file))
    assert first is not again and first.revision_map is again.revision_map
    # the same heads and revisions as a map read afresh from the same folder
    fresh = ScriptDirectory(first.dir, version_locations=first.version_locations)
    assert first.get_heads() == fresh.get_heads() and first.get_heads()
    assert {r.revision for r in first.walk_revisions()} == {
        r.revision for r in fresh.walk_revisions()
    }
    # a script folder that is not Dagster's gets a map of its own each time
    (tmp_path / "scripts" / "versions").mkdir(parents=True)
    (tmp_path / "scripts" / "script.py.mako").write_text("", encoding="utf-8")
    config = Config()
    config.set_main_option("script_location", str(tmp_path / "scripts"))
    other = ScriptDirectory.from_config(config)
    assert other.revision_map is not ScriptDirectory.from_config(config).revision_map
