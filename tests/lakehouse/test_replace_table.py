"""lakehouse.lake.replace_table: a table's rows replaced in place when its columns stay the
same (no new table in DuckLake's catalogue), made anew when they change."""

from __future__ import annotations

import polars as pl
import pytest

from catalog.settings import Settings
from lakehouse.lake import (
    METADATA,
    init_lake,
    open_lake,
    replace_table,
    replace_with_frame,
    transaction,
)
from lakehouse.snapshots import current_snapshot, read_at
from marts.staleness import last_changed


def _catalogue_rows(con) -> dict[str, int]:
    """Rows of DuckLake's catalogue tables that a new table adds to."""
    return {
        t: con.execute(f"SELECT count(*) FROM {METADATA}.ducklake_{t}").fetchone()[0]
        for t in ("table", "column", "table_column_stats")
    }


def _table_id(con, zone: str, table: str) -> int:
    return con.execute(
        f"SELECT t.table_id FROM {METADATA}.ducklake_table t "
        f"JOIN {METADATA}.ducklake_schema s USING (schema_id) "
        "WHERE s.schema_name = ? AND t.table_name = ? AND t.end_snapshot IS NULL",
        [zone, table],
    ).fetchone()[0]


def _replace(con, frame: pl.DataFrame, order_by: str | None = None) -> None:
    with transaction(con):
        if order_by is None:
            replace_with_frame(con, "marts", "t", frame)
            return
        con.register("frame", frame.to_arrow())
        try:
            replace_table(con, "marts", "t", "frame", order_by=order_by)
        finally:
            con.unregister("frame")


@pytest.fixture
def lake(settings: Settings):
    init_lake(settings)
    with open_lake(settings) as con:
        yield con


def test_same_columns_replace_the_rows_in_place(lake) -> None:
    _replace(lake, pl.DataFrame({"k": ["a", "b"], "n": [1, 2]}))
    first, before = _table_id(lake, "marts", "t"), _catalogue_rows(lake)
    old_snapshot = current_snapshot(lake)
    for n in range(3):
        _replace(lake, pl.DataFrame({"k": ["c", "d", "e"], "n": [n, n + 1, n + 2]}))
    assert _table_id(lake, "marts", "t") == first
    assert _catalogue_rows(lake) == before  # no table, column or statistics row added
    assert lake.execute("SELECT k, n FROM marts.t ORDER BY k").fetchall() == [
        ("c", 2), ("d", 3), ("e", 4),
    ]  # fmt: skip
    old = read_at(lake, "marts", "t", snapshot=old_snapshot).order("k").fetchall()
    assert old == [("a", 1), ("b", 2)]  # time travel keeps the old rows


@pytest.mark.parametrize(
    "changed",
    [
        pl.DataFrame({"k": ["a"], "n": [1], "extra": [True]}),  # a column added
        pl.DataFrame({"k": ["a"], "n": [1.5]}),  # a type changed
        pl.DataFrame({"n": [1], "k": ["a"]}),  # the same columns in another order
    ],
)
def test_other_columns_make_the_table_anew(lake, changed: pl.DataFrame) -> None:
    _replace(lake, pl.DataFrame({"k": ["a", "b"], "n": [1, 2]}))
    first = _table_id(lake, "marts", "t")
    _replace(lake, changed)
    assert _table_id(lake, "marts", "t") != first
    got = lake.execute("SELECT * FROM marts.t").pl()
    assert got.columns == changed.columns and got.height == 1


def test_a_missing_table_is_created_inside_the_callers_transaction(lake) -> None:
    with transaction(lake):
        lake.execute("CREATE TABLE marts.before_it (x INTEGER)")
        lake.execute("INSERT INTO marts.before_it VALUES (7)")
        replace_with_frame(lake, "marts", "t", pl.DataFrame({"k": ["a"]}))
    # the probe of the missing table did not abort the transaction: both are committed
    assert lake.execute("SELECT * FROM marts.before_it").fetchall() == [(7,)]
    assert lake.execute("SELECT * FROM marts.t").fetchall() == [("a",)]


def test_the_rows_are_written_in_the_order_asked(lake) -> None:
    frame = pl.DataFrame({"k": ["c", "a", "b"], "n": [3, 1, 2]})
    _replace(lake, frame)
    _replace(lake, frame, order_by='"n"')  # a source by name, as the history marts give it
    assert [r[0] for r in lake.execute("SELECT k FROM marts.t").fetchall()] == ["a", "b", "c"]


def test_an_empty_table_replaced_by_nothing_still_shows_the_write(lake) -> None:
    empty = pl.DataFrame(schema={"k": pl.String})
    _replace(lake, empty)
    written = last_changed(lake)["marts.t"]
    lake.execute("CREATE TABLE marts.other (x INTEGER)")  # a later snapshot
    _replace(lake, empty)
    assert last_changed(lake)["marts.t"] > written  # the marts' staleness sees it rebuilt
    _replace(lake, pl.DataFrame({"k": ["a"]}))
    again = last_changed(lake)["marts.t"]
    lake.execute("CREATE TABLE marts.third (x INTEGER)")
    _replace(lake, pl.DataFrame({"k": ["b"]}))  # in place: its files replaced
    assert last_changed(lake)["marts.t"] > again
