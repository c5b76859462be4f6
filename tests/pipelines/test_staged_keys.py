"""Keys across deliveries, through the real path (inbox → landing → raw → staged).

A department re-delivers: the same rows with different bytes, one changed row, a
snapshot with a record gone. Per ``update_mode`` the staged table keeps one row per
key, the accounts balance (delivered = staged + quarantined + skipped) and the
uniqueness score measures the staged table.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import Settings
from departments.connect import connection_env
from departments.simulate import sim_dir_for, simulate
from lakehouse.lake import open_lake
from pipelines.ingest import ingest_dataset
from pipelines.ingest.ledger import ensure_ledger
from pipelines.ingest.staged import StageAccount, stage_dataset
from pipelines.protection import Protection
from quality.scores import score_datasets
from tests.pipelines.test_landing import delivered_bytes

DAY = "20261120"


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("keys_street")
    simulate(home, residents=300, seed=11, days=1, start=dt.date(2026, 11, 20))
    return home


@pytest.fixture
def home(street: Path, tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", settle_seconds=0)
    shutil.copytree(street, settings.home_abs)
    shutil.copytree(sim_dir_for(street), settings.sim_dir_abs)  # the department's database
    return settings.ensure_dirs().connected(connection_env(settings.sim_dir_abs))


def deliver(settings: Settings, cat: Catalogue, ref: str) -> list[StageAccount]:
    dept, ds = cat.dataset(ref)
    protection = Protection.from_settings(settings)
    with open_lake(settings) as con:
        ensure_ledger(con)
        ingest_dataset(con, settings, dept.code, ds)
        return stage_dataset(con, dept.code, ds, protection)


def staged(settings: Settings, table: str, columns: str = "*") -> pl.DataFrame:
    with open_lake(settings, read_only=True) as con:
        return con.execute(f"SELECT {columns} FROM staged.{table}").pl()


def uniqueness(settings: Settings, cat: Catalogue, ref: str) -> float:
    dept, ds = cat.dataset(ref)
    frame = Protection.from_settings(settings).reveal(
        staged(settings, f"{dept.code}__{ds.code}"), ds, "quality_scores"
    )
    empty = pl.DataFrame()
    scores = score_datasets(
        cat, {(dept.code, ds.code): frame}, empty, empty, empty, dt.datetime.now(dt.UTC)
    )
    row = scores.filter((pl.col("dataset") == ds.code) & (pl.col("dimension") == "uniqueness"))
    return row["score"][0]


def test_a_redelivery_with_a_trailing_crlf_stages_nothing_again(
    home: Settings, cat: Catalogue
) -> None:
    """The issue's example: 972 case ids became 3,280 staged rows; now they stay 972."""
    (first,) = deliver(home, cat, "cgj.violation_cases")
    before = staged(home, "cgj__violation_cases")
    inbox = home.inbox_dir / "cgj"
    data = delivered_bytes(home, "cgj", f"violation_cases_{DAY}.csv")
    (inbox / "violation_cases_20261121.csv").write_bytes(data + b"\r\n")
    (again,) = deliver(home, cat, "cgj.violation_cases")
    after = staged(home, "cgj__violation_cases")

    assert first.rows_out > 10 and first.balances and again.balances
    assert again.rows_out == 0  # stages nothing again
    assert again.rows_skipped == first.rows_out + first.rows_skipped  # every good row skipped
    assert again.rows_quarantined == first.rows_quarantined  # the bad ones are still bad
    assert after.height == before.height == after["case_id"].n_unique()
    assert after.sort("case_id").equals(before.sort("case_id"))  # lineage kept
    assert uniqueness(home, cat, "cgj.violation_cases") == 1.0
    with open_lake(home, read_only=True) as con:
        skipped = con.execute(
            "SELECT rows_skipped FROM landing.stage_accounts WHERE delivery_id = ?",
            [again.delivery_id],
        ).fetchone()[0]
    assert skipped == again.rows_skipped  # the ledger holds the term


def test_upsert_a_changed_row_replaces_that_row_only(home: Settings, cat: Catalogue) -> None:
    deliver(home, cat, "cgj.violation_cases")
    before = staged(home, "cgj__violation_cases", "case_id, address, _delivery_id")
    case_id, address, _ = before.sort("case_id").row(3)
    inbox = home.inbox_dir / "cgj"
    lines = (
        delivered_bytes(home, "cgj", f"violation_cases_{DAY}.csv").decode("utf-8-sig").split("\r\n")
    )
    (i,) = [n for n, line in enumerate(lines) if line.startswith(f"{case_id},")]
    assert address in lines[i]
    lines[i] = lines[i].replace(address, address + "（更正）", 1)
    (inbox / "violation_cases_20261121.csv").write_bytes("\r\n".join(lines).encode("utf-8-sig"))
    (acc,) = deliver(home, cat, "cgj.violation_cases")
    after = staged(home, "cgj__violation_cases", "case_id, address, _delivery_id")

    assert (acc.rows_out, acc.rows_replaced, acc.balances) == (1, 1, True)
    assert after.height == before.height == after["case_id"].n_unique()
    mine = after.filter(pl.col("case_id") == case_id)
    assert mine["address"].to_list() == [address + "（更正）"]
    assert mine["_delivery_id"][0] == acc.delivery_id
    others = after.filter(pl.col("case_id") != case_id).sort("case_id")
    assert others.equals(before.filter(pl.col("case_id") != case_id).sort("case_id"))
    with open_lake(home, read_only=True) as con:  # the old version is one snapshot back
        last = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots('lake')").fetchone()
        old = con.execute(
            f"SELECT address FROM staged.cgj__violation_cases AT (VERSION => {last[0] - 1}) "
            "WHERE case_id = ?",
            [case_id],
        ).fetchall()
    assert old == [(address,)]


def test_append_a_conflicting_duplicate_is_quarantined(home: Settings, cat: Catalogue) -> None:
    deliver(home, cat, "iot.door_access_events")
    before = staged(home, "iot__door_access_events", "event_id, direction")
    inbox = home.inbox_dir / "iot"
    lines = delivered_bytes(home, "iot", f"door_access_events_{DAY}.jsonl").decode().splitlines()
    records = [json.loads(line) for line in lines]
    staged_ids = set(before["event_id"])
    i = next(n for n, r in enumerate(records) if r.get("event_id") in staged_ids)
    records[i]["direction"] = "out" if records[i]["direction"] == "in" else "in"
    lines[i] = json.dumps(records[i], ensure_ascii=False)
    (inbox / "door_access_events_20261121.jsonl").write_text(
        "\n".join(lines) + "\n", encoding="utf-8"
    )
    (acc,) = deliver(home, cat, "iot.door_access_events")

    assert acc.rows_out == 0 and acc.balances
    with open_lake(home, read_only=True) as con:
        q = con.execute(
            "SELECT source_row, check_name, reason, key_pid FROM quarantine.rows "
            "WHERE delivery_id = ? AND check_name = 'conflicting_key'",
            [acc.delivery_id],
        ).pl()
    assert q["source_row"].to_list() == [i + 1]
    assert "already staged with other values" in q["reason"][0]
    assert records[i]["event_id"] not in q["reason"][0]  # names rows, not values
    assert q["key_pid"][0] is not None
    after = staged(home, "iot__door_access_events", "event_id, direction")
    assert after.sort("event_id").equals(before.sort("event_id"))  # the staged event stays


def test_snapshot_replaces_the_dataset_and_keeps_a_good_version_of_a_bad_new_row(
    home: Settings, cat: Catalogue
) -> None:
    (first,) = deliver(home, cat, "scjg.merchants")
    cols = "credit_code, address, community_code, _delivery_id"
    before = staged(home, "scjg__merchants", cols)
    inbox = home.inbox_dir / "scjg"
    doc = json.loads(delivered_bytes(home, "scjg", f"merchants_{DAY}.json").decode("utf-8"))
    known = set(before["credit_code"])
    good = [n for n, r in enumerate(doc["data"]) if r.get("credit_code") in known]
    gone, changed, broken = (doc["data"][n]["credit_code"] for n in good[:3])
    for r in doc["data"]:
        if r.get("credit_code") == changed:
            r["address"] = r["address"] + "（迁址）"
        if r.get("credit_code") == broken:
            r["community_code"] = "not a code"
    doc["data"] = [r for r in doc["data"] if r.get("credit_code") != gone]
    (inbox / "merchants_20261121.json").write_text(
        json.dumps(doc, ensure_ascii=False), encoding="utf-8"
    )
    (acc,) = deliver(home, cat, "scjg.merchants")
    after = staged(home, "scjg__merchants", cols)

    assert acc.balances and acc.rows_out == 1 and acc.rows_replaced == 1
    assert acc.rows_withdrawn == 1
    assert acc.rows_quarantined == first.rows_quarantined + 1
    assert after.height == before.height - 1 == after["credit_code"].n_unique()
    assert gone not in set(after["credit_code"])  # withdrawn: no longer in the register
    row = after.filter(pl.col("credit_code") == changed).row(0, named=True)
    assert row["address"].endswith("（迁址）") and row["_delivery_id"] == acc.delivery_id
    kept = after.filter(pl.col("credit_code") == broken).row(0, named=True)
    assert kept["_delivery_id"] == first.delivery_id  # its last good version stays
    assert kept["community_code"] != "not a code"


def test_upsert_by_cursor_a_record_changed_in_the_registry_replaces_its_version(
    home: Settings, cat: Catalogue
) -> None:
    """The police registry changes a resident's phone and bumps gxsj; the next pull brings
    only that record, and its newer version replaces the staged one."""
    import sqlite3

    from masking.keys import KeyRing
    from masking.pseudonym import pseudonymise_series

    (first,) = deliver(home, cat, "gaj.registered_residents")
    before = staged(home, "gaj__registered_residents", "_key_pid, _row_digest, _delivery_id")
    db = sqlite3.connect(home.db_url("gaj").removeprefix("sqlite:"))
    ids = [r[0] for r in db.execute("SELECT gmsfhm FROM hukou ORDER BY gxsj LIMIT 50")]
    pids = pseudonymise_series(pl.Series(ids), KeyRing.from_settings(home), kind="citizen_id")
    known = set(before["_key_pid"])
    cid, pid = next((c, p) for c, p in zip(ids, pids, strict=True) if p in known)
    with db:
        db.execute(
            "UPDATE hukou SET lxdh = '13900001111', gxsj = '2099-01-01 09:00:00' WHERE gmsfhm = ?",
            [cid],
        )
    db.close()
    (acc,) = deliver(home, cat, "gaj.registered_residents")
    after = staged(home, "gaj__registered_residents", "_key_pid, _row_digest, _delivery_id")

    assert (acc.rows_in, acc.rows_out, acc.rows_replaced, acc.balances) == (1, 1, 1, True)
    assert after.height == before.height == after["_key_pid"].n_unique()
    mine = after.filter(pl.col("_key_pid") == pid)
    assert mine["_delivery_id"].to_list() == [acc.delivery_id]
    old = before.filter(pl.col("_key_pid") == pid)["_row_digest"][0]
    assert mine["_row_digest"][0] != old  # compared by digest: one field changed
    assert first.rows_out > 100


def test_expectations_check_reads_the_dataset_as_staged_after_an_identical_redelivery(
    home: Settings, cat: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upsert dataset re-delivered byte-for-byte plus CRLF stages nothing of its own; the
    expectations check judges the staged table (the dataset as it stands), so it still sees
    every row instead of an empty newest delivery."""
    import dagster as dg

    from pipelines.defs.quality.checks import build_expectations_check
    from pipelines.defs.sources.assets import build_dataset_assets, staged_key
    from pipelines.resources import LakeResource

    monkeypatch.setenv("STREETHUB_HOME", str(home.home_abs))
    monkeypatch.setenv("STREETHUB_SETTLE_SECONDS", "0")
    (first,) = deliver(home, cat, "cgj.violation_cases")
    inbox = home.inbox_dir / "cgj"
    data = delivered_bytes(home, "cgj", f"violation_cases_{DAY}.csv")
    (inbox / "violation_cases_20261121.csv").write_bytes(data + b"\r\n")
    (again,) = deliver(home, cat, "cgj.violation_cases")
    assert first.rows_out > 10 and again.rows_out == 0

    dept, ds = cat.dataset("cgj.violation_cases")
    result = dg.materialize(
        [*build_dataset_assets(dept, ds), build_expectations_check(dept, ds)],
        selection=[staged_key(dept.code, ds.code)],
        resources={"lake": LakeResource()},
        raise_on_error=False,
    )
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "expectations"
    ]
    failed = evaluation.metadata["failed"].value
    assert evaluation.metadata["expectations"].value > 5
    assert not any("row_count" in f.lower() for f in failed), failed  # the rows are there
