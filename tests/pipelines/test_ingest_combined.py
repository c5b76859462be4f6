"""A new delivery landed, read into raw and gated in one transaction
(``pipelines.ingest.ingest_and_stage``: ``pipelines.ingest.staged.stage_with_landing``)
lands, loads, gates, quarantines and accounts exactly what the separate transactions did
(landing committed; raw committed, read back, decrypted, gated, committed again:
``ingest_dataset`` then ``stage_dataset``), with one lake commit a delivery instead of three.

One small street of three days (several deliveries a dataset in one run: the first
against an empty staged table, the later ones replacing and withdrawing staged rows;
appended, upserted and snapshot datasets; a database pull with an update cursor), copied
with its keys; one copy ingested each way; every raw, staged and quarantine row and every
account compared, times of processing and ciphertexts (random nonces) aside.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import shutil
import time
from pathlib import Path

import polars as pl
import pytest

from catalog.loader import load_catalogue
from catalog.settings import Settings
from departments.connect import connection_env
from departments.server import running_server
from departments.simulate import simulate
from lakehouse.lake import open_lake
from pipelines.connectors.http_api import RetryPolicy
from pipelines.ingest import ingest_and_stage, ingest_dataset
from pipelines.ingest.ledger import ensure_ledger, pending
from pipelines.ingest.raw import raw_table
from pipelines.ingest.staged import stage_dataset
from pipelines.protection import Protection

FAST = RetryPolicy(attempts=12, base_delay_s=0.01, max_delay_s=0.05, timeout_s=5)
DEPTS = ("wg", "mzj", "iot", "gaj")  # csv, excel, jsonl, a database with a cursor
TIMES = {"_loaded_at", "_staged_at", "quarantined_at", "accounted_at"}
PULL_STAMP = r"_pull_\d{8}T\d{6}"  # a pulled delivery's name holds the time of its pull


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("combined")
    home = root / "street" / "home"
    simulate(home, residents=300, seed=5, days=3, start=dt.date(2026, 11, 1))
    for other in (p for p in (home / "inbox").iterdir() if p.name not in DEPTS):
        shutil.rmtree(other)
    old = time.time() - 3600
    for path in (home / "inbox").rglob("*"):
        os.utime(path, (old, old))
    Protection.from_settings(Settings(home=home)).keyring.current("pseudonym")  # keys made
    return root / "street"


def _ingest(street: Path, dest: Path, combined: bool) -> tuple[Settings, dict]:
    shutil.copytree(street, dest)
    settings = Settings(home=dest / "home").ensure_dirs()
    cat = load_catalogue()
    got: dict = {}
    with running_server(settings.sim_dir_abs, fault_rate=0.0) as url:
        settings = settings.connected(connection_env(settings.sim_dir_abs, url))
        protection = Protection.from_settings(settings)
        with open_lake(settings) as con:
            ensure_ledger(con)
            for dept, ds in cat.datasets():
                if dept.code not in DEPTS:
                    continue
                if combined:
                    _, accounts, staged = ingest_and_stage(
                        con, settings, dept.code, ds, protection=protection, policy=FAST
                    )
                else:
                    _, accounts = ingest_dataset(con, settings, dept.code, ds, policy=FAST)
                    staged = stage_dataset(con, dept.code, ds, protection)
                accounts = [
                    dataclasses.replace(a, file_name=re.sub(PULL_STAMP, "", a.file_name))
                    for a in accounts
                ]
                got[f"{dept.code}.{ds.code}"] = (accounts, staged)
            # nothing left to read or gate
            for dept, ds in cat.datasets():
                todo = pending(con, dept.code, ds.code)
                assert not todo.unread and not todo.ungated
    return settings, got


def _snapshots(settings: Settings) -> int:
    with open_lake(settings, read_only=True) as con:
        return con.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchone()[0]


def _rows(con, zone: str, table: str, drop: set[str]) -> pl.DataFrame:
    frame = con.execute(f'SELECT * FROM {zone}."{table}"').pl()
    frame = frame.drop([c for c in frame.columns if c in drop | TIMES])
    if "file_name" in frame.columns:
        frame = frame.with_columns(pl.col("file_name").str.replace(PULL_STAMP, ""))
    return frame.sort(frame.columns)


def test_one_transaction_a_delivery_loads_and_stages_what_two_did(
    street: Path, tmp_path: Path
) -> None:
    new, got_new = _ingest(street, tmp_path / "new", combined=True)
    old, got_old = _ingest(street, tmp_path / "old", combined=False)
    assert got_new == got_old  # every raw and stage account, repairs included
    # one commit a delivery (its landing, raw and staged), where there were three
    deliveries = sum(len(accounts) for accounts, _ in got_old.values())
    commits = [_snapshots(settings) for settings in (new, old)]
    assert commits[1] - commits[0] == 2 * deliveries > 0, (commits, deliveries)
    several = [k for k, (a, _) in got_old.items() if len(a) > 1]
    assert several, "the street should give some dataset several deliveries in one run"
    # later deliveries met the staged rows of the first (copies skipped against staged)
    assert sum(s.rows_skipped for k in several for s in got_old[k][1][1:]) > 0
    cat = load_catalogue()
    compared = 0
    with open_lake(new, read_only=True) as a, open_lake(old, read_only=True) as b:
        for dept, ds in cat.datasets():
            if dept.code not in DEPTS:
                continue
            sensitive = {f.name for f in ds.fields if f.level.sensitive}
            for zone in ("raw", "staged"):
                x, y = (_rows(c, zone, raw_table(dept.code, ds), sensitive) for c in (a, b))
                assert x.columns == y.columns and x.equals(y), (zone, ds.code)
                compared += x.height
        for zone, table, drop in (
            ("quarantine", "rows", set()),
            ("landing", "delivery_accounts", set()),
            ("landing", "stage_accounts", set()),
            ("landing", "deliveries", {"landed_path", "source", "arrived_at"}),  # paths, times
        ):
            x, y = (_rows(c, zone, table, drop) for c in (a, b))
            assert x.height > 0 and x.equals(y), table
    assert compared > 1000
