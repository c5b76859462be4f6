"""A transaction's inserted frames leave memory as they are written: what insert_frame
appends inside one transaction is not held until its COMMIT (a registered view was, until
the transaction ended: five 400,000-row frames kept ~240 MB)."""

from __future__ import annotations

import polars as pl
import psutil

from catalog.settings import Settings
from lakehouse.lake import close_idle, ensure_table, insert_frame, open_lake, transaction

ROWS = 300_000


def _frame(i: int) -> pl.DataFrame:
    n = pl.int_range(ROWS, eager=True)
    return pl.DataFrame(
        {
            "a": n.cast(pl.String).str.pad_start(40, "0"),
            "b": (n + i * ROWS).cast(pl.String).str.pad_start(30, "v"),
            "c": n,
        }
    )


def test_inserts_in_a_transaction_are_not_held_until_commit(settings: Settings) -> None:
    close_idle()
    me = psutil.Process()
    with open_lake(settings) as con:
        ensure_table(con, "curated", "probe", [("a", "VARCHAR"), ("b", "VARCHAR"), ("c", "BIGINT")])
        with transaction(con):
            insert_frame(con, "curated", "probe", _frame(0))
            after_first = me.memory_info().rss
            for i in range(1, 6):
                insert_frame(con, "curated", "probe", _frame(i))
            grown = me.memory_info().rss - after_first
        assert con.execute("SELECT count(*), count(DISTINCT b) FROM curated.probe").fetchone() == (
            6 * ROWS,
            6 * ROWS,
        )
    close_idle()
    # five more frames of ~23 MB each as Arrow: held, they would add well over 100 MB
    assert grown < 60 * 2**20, f"{grown / 2**20:.0f} MB held inside the transaction"
