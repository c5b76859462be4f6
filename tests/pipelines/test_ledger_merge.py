"""The ledger's small files are merged when a table has gathered many (one read a table,
not one per delivery), with its rows, time travel and change feed as they were."""

from __future__ import annotations

from catalog.settings import Settings
from lakehouse.lake import data_files, open_lake, transaction
from lakehouse.snapshots import current_snapshot
from pipelines.ingest.ledger import LEDGER_MERGE_FILES, ensure_ledger, record_pull

DELIVERIES = LEDGER_MERGE_FILES + 2


def _deliver(con, i: int) -> None:
    with transaction(con):
        con.execute(
            "INSERT INTO landing.deliveries (delivery_id, dept, dataset, sha256, arrived_at) "
            "VALUES (?, 'd', 'x', ?, now())",
            [f"del{i:02d}", f"{i:064x}"],
        )


def test_ledger_files_merged_with_rows_time_travel_and_feed_kept(settings: Settings) -> None:
    with open_lake(settings) as con:
        ensure_ledger(con)
        for i in range(DELIVERIES // 2):
            _deliver(con, i)
        half = current_snapshot(con)
        for i in range(DELIVERIES // 2, DELIVERIES):
            _deliver(con, i)
        for _ in range(3):  # a table below the threshold keeps its files
            record_pull(con, "d", "x", landed=1, failed=0)
        before = sorted(con.execute("SELECT * FROM landing.deliveries").fetchall())
        files = data_files(con)
        assert files[("landing", "deliveries")] == DELIVERIES
        assert files[("landing", "pulls")] == 3
        last = current_snapshot(con)

        ensure_ledger(con)

        files = data_files(con)
        assert files[("landing", "deliveries")] == 1
        assert files[("landing", "pulls")] == 3
        assert sorted(con.execute("SELECT * FROM landing.deliveries").fetchall()) == before
        merges = con.execute(
            "SELECT changes FROM lake.snapshots() WHERE snapshot_id > ?", [last]
        ).fetchall()
        assert len(merges) == 1 and "tables_inserted_into" not in merges[0][0]
        then = con.execute(
            f"SELECT count(*) FROM landing.deliveries AT (VERSION => {half})"
        ).fetchone()[0]
        assert then == DELIVERIES // 2
        # the change feed the leak scan reads: the later half, each row once, none twice
        fed = con.execute(
            "SELECT delivery_id FROM ducklake_table_insertions('lake', 'landing', "
            f"'deliveries', {half + 1}, {current_snapshot(con)}) ORDER BY 1"
        ).fetchall()
        assert [r[0] for r in fed] == [f"del{i:02d}" for i in range(DELIVERIES // 2, DELIVERIES)]
        merged = current_snapshot(con)
        ensure_ledger(con)  # nothing left to merge: no snapshot
        assert current_snapshot(con) == merged
