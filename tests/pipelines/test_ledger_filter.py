"""The ledger's dataset filter (``ledger.of_dataset``): the same rows as ``dept = ? AND
dataset = ?``, and evaluated on the rows read instead of pushed down to DuckLake (which would
query its catalogue for the files' statistics first, ~4.5 ms a statement)."""

from __future__ import annotations

from catalog.settings import Settings
from lakehouse.lake import open_lake, transaction
from pipelines.ingest.ledger import ARGS, ensure_ledger, of_dataset, pending

DATASETS = [("d", "x"), ("d", "y"), ("e", "x")]


def _deliver(con, dept: str, dataset: str, i: int) -> None:
    with transaction(con):  # a file of its own, as a landing's commit makes
        con.execute(
            "INSERT INTO landing.deliveries (delivery_id, dept, dataset, file_name, sha256, "
            "arrived_at) VALUES (?, ?, ?, ?, ?, now())",
            [f"{dept}.{dataset}.{i}", dept, dataset, f"f{i}.csv", f"{i:064x}"],
        )


def _plan(con, where: str, args: list[str]) -> str:
    rows = con.execute(f"EXPLAIN SELECT count(*) FROM landing.deliveries WHERE {where}", args)
    return "\n".join(r[1] for r in rows.fetchall())


def test_of_dataset_reads_the_same_rows_unpushed(settings: Settings) -> None:
    with open_lake(settings) as con:
        ensure_ledger(con)
        for i, (dept, dataset) in enumerate(DATASETS * 2):
            _deliver(con, dept, dataset, i)
        for dept, dataset in DATASETS:
            pushed = con.execute(
                "SELECT delivery_id FROM landing.deliveries WHERE dept = ? AND dataset = ? "
                "ORDER BY 1",
                [dept, dataset],
            ).fetchall()
            mine = con.execute(
                f"SELECT delivery_id FROM landing.deliveries WHERE {of_dataset()} ORDER BY 1",
                [dept, dataset],
            ).fetchall()
            assert mine == pushed and len(mine) == 2
            # named parameters and an alias, as pending() writes it
            named = con.execute(
                f"SELECT d.delivery_id FROM landing.deliveries d WHERE {of_dataset('d', ARGS)} "
                "ORDER BY 1",
                [dept, dataset],
            ).fetchall()
            assert named == pushed
            unread = pending(con, dept, dataset).unread
            assert sorted(u.delivery_id for u in unread) == [r[0] for r in pushed]

        # the plain filter reaches DuckLake's scan as column filters; the row value stays a
        # filter above the scan (DuckLake never sees it, so it never prunes by statistics)
        plain = _plan(con, "dept = ? AND dataset = ?", ["d", "x"])
        row = _plan(con, of_dataset(), ["d", "x"])
        assert "DUCKLAKE_SCAN" in plain and "Filters" in plain
        assert "DUCKLAKE_SCAN" in row and "Filters" not in row and "FILTER" in row


def test_of_dataset_takes_more_columns_and_other_tables() -> None:
    assert of_dataset() == "(dept, dataset) = (?, ?)"
    assert of_dataset("d", ARGS) == "(d.dept, d.dataset) = ($1, $2)"
    assert (
        of_dataset(params=ARGS, stage="'staged'") == "(dept, dataset, stage) = ($1, $2, 'staged')"
    )
    assert (
        of_dataset("a", **{"s.stage": "'staged'"})
        == "(a.dept, a.dataset, s.stage) = (?, ?, 'staged')"
    )
