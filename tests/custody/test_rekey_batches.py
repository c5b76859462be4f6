"""``streethub keys rekey`` on a dataset of several deliveries: each table is re-keyed a batch
of whole deliveries at a time (``pipelines.rekey.delivery_batches``), not one delivery at a
time, and every quarantined record of the dataset gets its new key pseudonym in one UPDATE.

A department's monthly files carry their dirt in the same places, so the same source row of
each delivery is quarantined for another person: a record matched by its row number alone
would be given another delivery's pseudonym. Batches of one delivery, of two, and of the
whole table must all leave every value as it was and every record its own pseudonym.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from catalog.loader import load_catalogue
from catalog.model import Dataset
from catalog.settings import Settings
from catalog.street import get_street
from lakehouse.lake import close_idle, open_lake
from masking.audit import AuditLog
from masking.keys import KeyRing
from pipelines import rekey as rekey_module
from pipelines.ingest import ingest_dataset
from pipelines.ingest.ledger import ensure_ledger
from pipelines.ingest.staged import stage_dataset
from pipelines.protection import Protection, key_pids
from pipelines.rekey import delivery_batches, rekey
from tests.onboarding.conftest import DATASET, DEPT, write_catalogue
from tests.onboarding.delivery import build_delivery
from tests.streets import copy_home, deliver_settled

MONTHS = ("202609", "202610", "202611")
TABLE = f"{DEPT}__{DATASET}"


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Dataset]:
    """A hub that onboarded 残联 from its YAML file and staged three monthly deliveries of
    it, each with the delivery generator's dirt (never written: tests copy it)."""
    root = tmp_path_factory.mktemp("rekey-batches")
    catalogue = write_catalogue(root / "catalogue")
    _, ds = load_catalogue(catalogue).dataset(f"{DEPT}.{DATASET}")
    settings = Settings(
        home=root / "home", catalog_dir=catalogue, sim_dir=root / "none", settle_seconds=0
    ).ensure_dirs()
    protection = Protection.from_settings(settings)
    communities = get_street().community_names
    for i, month in enumerate(MONTHS):
        text = build_delivery(communities, clean=12, seed=20 + i).text
        deliver_settled(settings.inbox_dir / DEPT, f"disability_certificates_{month}.csv", text)
        with open_lake(settings) as con:
            ensure_ledger(con)
            ingest_dataset(con, settings, DEPT, ds)
            stage_dataset(con, DEPT, ds, protection)
    close_idle()
    return settings, ds


def _revealed(settings: Settings, ds: Dataset) -> dict[str, pl.DataFrame]:
    """The dataset's raw and staged rows in the clear, in delivery and row order (the
    pseudonyms and digests left out: the re-key recomputes them)."""
    ring = KeyRing.from_settings(settings, enforce_suite=False)
    reader = Protection(ring, AuditLog.from_settings(settings, ring), "test:rekey")
    out = {}
    with open_lake(settings, read_only=True) as con:
        for zone in ("raw", "staged"):
            frame = con.execute(
                f"SELECT * FROM {zone}.{TABLE} ORDER BY _delivery_id, _source_row"
            ).pl()
            frame = reader.reveal_text(frame, ds, "rekey")
            pids = [c for c in frame.columns if c.startswith("_pid_")]
            out[zone] = frame.drop("_key_pid", "_row_digest", *pids, strict=False)
    return out


def _quarantined(settings: Settings) -> pl.DataFrame:
    with open_lake(settings, read_only=True) as con:
        return con.execute(
            "SELECT DISTINCT delivery_id, source_row, key_pid FROM quarantine.rows "
            "WHERE dept = ? AND dataset = ? AND key_pid IS NOT NULL "
            "ORDER BY delivery_id, source_row",
            [DEPT, DATASET],
        ).pl()


def _raw_rows_per_delivery(settings: Settings) -> int:
    with open_lake(settings, read_only=True) as con:
        return con.execute(
            f"SELECT max(n) FROM (SELECT count(*) AS n FROM raw.{TABLE} GROUP BY _delivery_id)"
        ).fetchone()[0]


@pytest.mark.parametrize("batch", ["one delivery", "two deliveries", "the whole table"])
def test_a_rekey_in_batches_of_deliveries_keeps_every_value_and_each_record_its_pseudonym(
    street: tuple[Settings, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: str
) -> None:
    settings, ds = street
    settings = copy_home(settings.home, tmp_path).model_copy(
        update={"catalog_dir": settings.catalog_dir, "sim_dir": settings.sim_dir}
    )
    per_delivery = _raw_rows_per_delivery(settings)
    rows = {"one delivery": 1, "two deliveries": 2 * per_delivery, "the whole table": 10**9}
    monkeypatch.setattr(rekey_module, "BATCH_ROWS", rows[batch])
    with open_lake(settings, read_only=True) as con:
        batches = delivery_batches(con, "raw", TABLE)
    assert len(batches) == {"one delivery": 3, "two deliveries": 2, "the whole table": 1}[batch]

    before, held = _revealed(settings, ds), _quarantined(settings)
    # the case the batches must get right: one source row quarantined in every delivery,
    # each time another person's record
    repeated = held.group_by("source_row").agg(pl.col("key_pid").n_unique().alias("keys"))
    assert repeated.filter(pl.col("keys") == len(MONTHS)).height > 0

    report = rekey(settings, "gm", "test:officer")
    assert report.datasets[f"{DEPT}.{DATASET}"][f"raw.{TABLE}"] == before["raw"].height

    after = _revealed(settings, ds)
    for zone, frame in before.items():
        assert after[zone].equals(frame), zone  # every value the same, in the same rows
    now = _quarantined(settings)
    assert now.select("delivery_id", "source_row").equals(held.select("delivery_id", "source_row"))
    assert not set(now["key_pid"]) & set(held["key_pid"])  # every pseudonym is new
    # and each record's is the one its own raw row gives under the new key
    ring = KeyRing.from_settings(settings, enforce_suite=False)
    raw = after["raw"].join(
        now.rename({"delivery_id": "_delivery_id", "source_row": "_source_row"}),
        on=["_delivery_id", "_source_row"],
        how="inner",
    )
    want = key_pids(raw, ds, ring, suite="gm", version=ring.current("pseudonym").version)
    assert raw.height == now.height and raw["key_pid"].to_list() == want.to_list()


def test_batches_cover_every_row_once_deliveries_whole_and_rows_without_a_delivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw; CREATE TABLE raw.t (_delivery_id VARCHAR, _source_row INT)")
    sizes = {None: 2, "d1": 3, "d2": 1, "d3": 4, "d4": 2}
    for delivery, n in sizes.items():
        con.executemany("INSERT INTO raw.t VALUES (?, ?)", [[delivery, i] for i in range(n)])
    monkeypatch.setattr(rekey_module, "BATCH_ROWS", 5)
    batches = delivery_batches(con, "raw", "t")
    seen: list[str | None] = []
    for batch in batches:
        where, params = batch.where()
        got = con.execute(f"SELECT _delivery_id FROM raw.t {where}", params).fetchall()
        held = {d for (d,) in got}
        assert len(got) == sum(sizes[d] for d in held)  # whole deliveries
        assert len(got) <= 5 or len(held) == 1  # within the budget, or one delivery alone
        seen += [d for (d,) in got]
    assert sorted(seen, key=str) == sorted(
        [d for d, n in sizes.items() for _ in range(n)], key=str
    )  # every row in exactly one batch
    assert [b.unnamed for b in batches] == [True, False, False]
    assert not any(b.whole for b in batches)
    monkeypatch.undo()
    (whole,) = delivery_batches(con, "raw", "t")  # the default budget: the whole table
    assert whole.whole and whole.where() == ("", [])
