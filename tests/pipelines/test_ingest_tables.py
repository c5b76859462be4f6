"""A run's raw and staged tables, created in one commit before its first dataset step.

The tables are the ones a delivery's own transaction made before (same columns, same
order, same types), and what the run loads into them is what the old path loaded: one
simulated department ingested through Dagster (the new path) and, on a copy of the same
street with the same keys, through the ingest functions alone (each table created in its
first delivery's commit, the old path).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from catalog.loader import load_catalogue
from catalog.settings import Settings
from lakehouse.lake import METADATA, open_lake, transaction
from pipelines.ingest import ingest_dataset
from pipelines.ingest.ledger import ensure_ledger
from pipelines.ingest.raw import ensure_raw_table, raw_table
from pipelines.ingest.staged import ensure_staged_table, stage_dataset
from pipelines.ingest.tables import ensure_dataset_tables
from pipelines.protection import Protection

DEPT = "wjw"


def columns(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(zone, table) → its (column, type) in order, every committed raw and staged table, from
    DuckLake's catalogue in one read (a DESCRIBE of each empty table reads it per column)."""
    rows = con.execute(
        f"""SELECT s.schema_name, t.table_name, c.column_name, c.column_type
            FROM {METADATA}.ducklake_column c JOIN {METADATA}.ducklake_table t USING (table_id)
            JOIN {METADATA}.ducklake_schema s USING (schema_id)
            WHERE c.end_snapshot IS NULL AND t.end_snapshot IS NULL AND s.end_snapshot IS NULL
              AND c.parent_column IS NULL AND s.schema_name IN ('raw', 'staged')
            ORDER BY s.schema_name, t.table_name, c.column_order"""
    ).fetchall()
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for zone, table, column, kind in rows:
        out.setdefault((zone, table), []).append((column, kind))
    return out


def tables_created(con: duckdb.DuckDBPyConnection) -> list[set[str]]:
    """The tables each snapshot that created any created (``zone.table``)."""
    rows = con.execute(
        "SELECT changes['tables_created'] FROM ducklake_snapshots('lake') ORDER BY snapshot_id"
    ).fetchall()
    return [set(r[0]) for r in rows if r[0]]


def test_every_datasets_tables_as_the_delivery_made_them_in_one_commit(tmp_path: Path) -> None:
    cat = load_catalogue()
    datasets = [(dept.code, ds) for dept, ds in cat.datasets()]
    new, old = (Settings(home=tmp_path / name).ensure_dirs() for name in ("new", "old"))
    protection = Protection.from_settings(old)
    with open_lake(new) as con:
        assert ensure_dataset_tables(con, datasets) == 2 * len(datasets)
        assert ensure_dataset_tables(con, datasets) == 0  # nothing missing: no commit
        made = tables_created(con)
        assert made == [
            {f"{z}.{raw_table(d, ds)}" for d, ds in datasets for z in ("raw", "staged")}
        ]
        got = columns(con)
    with open_lake(old) as con:
        with transaction(con):  # one commit: the columns are the same
            for d, ds in datasets:  # as load_delivery and stage_delivery make them
                ensure_raw_table(con, d, ds)
                ensure_staged_table(con, d, ds, protection)
        want = columns(con)
    assert len(got) == 2 * len(datasets) and got == want


def _settled(home: Path) -> None:
    old = time.time() - 3600
    for path in (home / "inbox").rglob("*"):
        os.utime(path, (old, old))


def _rows(settings: Settings, zone: str, table: str, sensitive: set[str]) -> pl.DataFrame:
    """The table's rows but the times they were written and the ciphertexts (random nonces;
    the staged row digests are of the plaintext), in a stable order."""
    with open_lake(settings, read_only=True) as con:
        frame = con.execute(f'SELECT * FROM {zone}."{table}"').pl()
    drop = {"_loaded_at", "_staged_at", *sensitive}
    frame = frame.drop([c for c in frame.columns if c in drop])
    return frame.sort(frame.columns)


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One department's deliveries of a small street, its keys made (a copy shares them)."""
    from departments.simulate import simulate

    root = tmp_path_factory.mktemp("tables")
    simulate(root / "a" / "home", residents=200, seed=3, days=1, start=dt.date(2026, 11, 1))
    for other in (p for p in (root / "a" / "home" / "inbox").iterdir() if p.name != DEPT):
        shutil.rmtree(other)
    settings = Settings(home=root / "a" / "home")
    Protection.from_settings(settings).keyring.current("pseudonym")  # the ring, made here
    assert (settings.keys_dir / "keyring.json").exists()
    return root


def test_a_run_creates_its_tables_first_and_loads_what_the_old_path_did(
    street: Path, tmp_path: Path, monkeypatch
) -> None:
    from pipelines.defs.sources.assets import build_dataset_assets
    from pipelines.resources import LakeResource

    new_home, old_home = tmp_path / "new" / "home", tmp_path / "old" / "home"
    shutil.copytree(street / "a", new_home.parent)
    shutil.copytree(street / "a", old_home.parent)
    for home in (new_home, old_home):
        _settled(home)
    dept = load_catalogue().departments[DEPT]
    chosen = dept.datasets[:2]  # two of its datasets: the run's table commit holds both
    new, old = Settings(home=new_home), Settings(home=old_home)
    assert new.key_file_abs == old.key_file_abs  # the same keys: the same digests

    monkeypatch.setenv("STREETHUB_HOME", str(new_home))
    monkeypatch.setenv("STREETHUB_SIM_DIR", str(new_home.parent / "home.departments"))
    assets = [a for ds in chosen for a in build_dataset_assets(dept, ds)]
    result = dg.materialize(
        assets,
        selection=[k for a in assets for k in a.keys],
        resources={"lake": LakeResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    names = {raw_table(DEPT, ds) for ds in chosen}
    with open_lake(new, read_only=True) as con:
        made = tables_created(con)
    # the run's datasets' tables in one commit, and no delivery's commit created one
    ours = [m for m in made if any(t.split(".", 1)[0] in ("raw", "staged") for t in m)]
    assert ours == [{f"{z}.{n}" for n in names for z in ("raw", "staged")}]

    with open_lake(old) as con:  # the old path: each table in its first delivery's commit
        ensure_ledger(con)
        protection = Protection.from_settings(old)
        for ds in chosen:
            ingest_dataset(con, old, DEPT, ds, wait_for_settle=False)
            stage_dataset(con, DEPT, ds, protection)
        made = tables_created(con)
    assert sum(1 for m in made if any(t.startswith("raw.") for t in m)) == len(names)

    compared = 0
    for ds in chosen:
        sensitive = {f.name for f in ds.fields if f.level.sensitive}
        for zone in ("raw", "staged"):
            a, b = (_rows(s, zone, raw_table(DEPT, ds), sensitive) for s in (new, old))
            assert a.columns == b.columns and a.height > 0, (zone, ds.code)
            assert a.equals(b), (zone, ds.code)
            compared += a.height
    a, b = (_rows(s, "quarantine", "rows", {"quarantined_at"}) for s in (new, old))
    assert a.height > 0 and a.equals(b)
    assert compared > 0
