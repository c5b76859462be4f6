"""The Dagster instance of a home: its event log keeps its SQLite databases open, and
still reads and writes like Dagster's own (another instance on the same home — the UI's —
sees every event; a wiped log starts again)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from catalog.settings import Settings
from pipelines.instance import PooledSqliteEventLogStorage, prepare_dagster_home


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
