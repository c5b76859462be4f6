"""The leak scanner reads a wide table in parts of a batch (memory: about BATCH_CELLS cells
at once): the counts and the samples are those of a scan of whole batches."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from catalog.identifiers import id_check_char_str
from masking.names import KnownNames
from pipelines import leaks

NAMES = KnownNames({"王小明", "李华"})


def citizen_id(born: dt.date, seq: str) -> str:
    first17 = f"110105{born:%Y%m%d}{seq}"
    return first17 + id_check_char_str(first17)


def _table() -> duckdb.DuckDBPyConnection:
    """A table of 8 text columns over 1,000 rows, with leaks of several kinds in several
    columns, rows and batches (more than a sample list holds), and clean values between."""
    con = duckdb.connect()
    rows = []
    for i in range(1_000):
        ident = citizen_id(dt.date(1950, 1, 1) + dt.timedelta(days=i), f"{i % 1000:03d}")
        rows.append(
            (
                f"备注{i}",
                f"1{3 + i % 7}{i:09d}" if i % 7 == 3 else f"编号{i}",
                ident if i % 11 == 5 else None,
                "王小明来电" if i % 13 == 0 else "无",
                f"user{i}@example.com" if i % 17 == 2 else "",
                f"a{i}:{'x' * 40}",  # a ciphertext's form: passed over
                str(i * 7),
                "李华" if i % 19 == 4 else "社区",
            )
        )
    con.execute(f"CREATE TABLE t ({', '.join(f'c{k} VARCHAR' for k in range(8))})")
    con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * 8)})", rows)
    return con


def _scan(con: duckdb.DuckDBPyConnection):
    return leaks._scan_query(con, "SELECT * FROM t ORDER BY c6::INT", NAMES)


@pytest.mark.parametrize("cells", [8 * 40, 8 * 25, 8 * 7])
def test_parts_of_a_batch_count_and_sample_as_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch, cells: int
) -> None:
    con = _table()
    monkeypatch.setattr(leaks, "BATCH_ROWS", 200)
    monkeypatch.setattr(leaks, "BATCH_CELLS", 8 * 200)
    whole = _scan(con)
    monkeypatch.setattr(leaks, "BATCH_CELLS", cells)
    assert leaks._read_rows(8) < 200  # read in parts
    parts = _scan(con)
    assert whole.total > 10 and len(whole.by_column) >= 4  # samples are chosen among many
    assert len(whole.samples) == 10
    assert parts.by_kind == whole.by_kind
    assert parts.by_column == whole.by_column
    assert parts.cells_scanned == whole.cells_scanned
    assert parts.samples == whole.samples


def test_reads_end_where_batches_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaks, "BATCH_ROWS", 100_000)
    monkeypatch.setattr(leaks, "BATCH_CELLS", 1_000_000)
    assert leaks._read_rows(5) == 100_000
    assert leaks._read_rows(60) == 12_500  # 16,666 would not end where a batch does
    for width in range(1, 300):
        read = leaks._read_rows(width)
        assert 100_000 % read == 0 and (read * width <= 1_000_000 or read == 1)


def test_a_text_without_full_width_forms_is_read_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """``cell_kinds`` skips the half-width translation of a text with no full-width form:
    the kinds are those the translation gives (full-width IDs and mobiles still found)."""
    import re

    from masking import leaks as scanner

    ident = citizen_id(dt.date(1949, 12, 31), "002")
    full = "".join(chr(ord(c) + 0xFEE0) for c in ident)
    texts = [ident, full, "电话：１３８　１２３４　５６７８", "王小明来电", "无", f"证号{ident}01"]
    found = [scanner.cell_kinds(t, NAMES) for t in texts]
    monkeypatch.setattr(scanner, "_FULL_WIDTH", re.compile(r"[\s\S]"))  # always translate
    assert found == [scanner.cell_kinds(t, NAMES) for t in texts]
    assert found[1] == {"citizen_id"} and "mobile" in found[2] and found[3] == {"person_name"}


def _small_tables(con: duckdb.DuckDBPyConnection) -> list[leaks._Query]:
    """Six small tables beside ``t``, each with leaks of its own: a card column in one and
    the same name plain in the next, a structured column of names, mobiles, IDs."""
    card = "8800123456789010"  # Luhn-valid, no issuer prefix: a card only in a card column
    queries = []
    for k in range(6):
        rows = [
            (
                card if i % 9 == k else f"号{i}",
                "李华" if i % 5 == k % 5 else f"李华{k}店",
                f"13{k}{i:08d}" if i % 4 == 0 else None,
                citizen_id(dt.date(1960, 1, 1) + dt.timedelta(days=i), f"{k:03d}")
                if i % 10 == k
                else "无",
            )
            for i in range(40 + 13 * k)
        ]
        con.execute(f"CREATE TABLE s{k} (a VARCHAR, b VARCHAR, c VARCHAR, d VARCHAR)")
        con.executemany(f"INSERT INTO s{k} VALUES (?, ?, ?, ?)", rows)
        cards = frozenset({"a"}) if k % 2 == 0 else frozenset()
        whole = frozenset({"b"}) if k % 3 == 0 else frozenset()
        queries.append(leaks._Query(f"SELECT * FROM s{k} ORDER BY a, b, c, d", whole, cards))
    return queries


def _plain(counts) -> tuple:
    return dict(counts.by_kind), counts.by_column, counts.samples, counts.cells_scanned


def test_small_tables_scanned_together_count_as_each_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small tables (one read of at most WAIT_CELLS cells) wait and are scanned together
    (here in several groups; a table read in parts between, and one of more cells scanned
    alone): each query's counts are those of a scan of it alone, and of its whole frame."""
    from masking.leaks import scan_frame

    con = _table()
    small = _small_tables(con)
    monkeypatch.setattr(leaks, "BATCH_ROWS", 200)
    monkeypatch.setattr(leaks, "BATCH_CELLS", 8 * 100)  # t in parts
    monkeypatch.setattr(leaks, "WAIT_CELLS", 400)  # the small ones in groups; s5 (420) alone
    queries = [*small[:3], leaks._Query("SELECT * FROM t ORDER BY c6::INT"), *small[3:]]
    groups = []
    scan_frames = leaks.scan_frames

    def counted(scans, **kw):
        groups.append([s.frame.height for s in scans])
        return scan_frames(scans, **kw)

    monkeypatch.setattr(leaks, "scan_frames", counted)
    together = leaks._scan_queries(con, queries, NAMES)
    monkeypatch.setattr(leaks, "scan_frames", scan_frames)
    # s0-s4 in groups of at most 400 cells, s5 (105 rows) alone, t (1,000 rows) in parts
    assert [g for g in groups if len(g) > 1] and [105] in groups
    assert sorted(h for g in groups for h in g if h < 100) == [40, 53, 66, 79, 92]
    assert sum(h for g in groups for h in g if h == 100) == 1_000
    alone = [leaks._scan_query(con, q.sql, NAMES, q.whole, cards=q.cards) for q in queries]
    assert [_plain(c) for c in together] == [_plain(c) for c in alone]
    for q, counts in zip(queries, together, strict=True):
        if q in small:
            frame = con.execute(q.sql).pl()
            whole = scan_frame(frame, known_names=NAMES, whole_name_columns=q.whole,
                               card_columns=q.cards)  # fmt: skip
            assert _plain(counts) == _plain(whole)
            assert counts.by_kind["mobile"] and counts.by_kind["citizen_id"]
            assert ("bank_card" in counts.by_kind) == bool(q.cards)
    assert _plain(together[3]) == _plain(_scan(con))


def test_a_sqlite_files_tables_scanned_together_count_as_each_alone(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite file's reads wait and are scanned together (up to HELD_CELLS cells): the
    counts and samples are those of each table's reads scanned one by one, in order (the
    leaks stand in the tables' second reads and after: the samples' rows count from each
    read's first)."""
    import sqlite3

    import polars as pl

    from masking.leaks import LeakCounts, scan_frame
    from pipelines import leak_files

    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    tables = {}
    for k in range(9):
        rows = [
            (
                f"13{k}{i:08d}" if i % 3 == k % 3 and i >= 20 else f"记录{i}",
                "李华" if i % 4 == k % 4 and i >= 20 else None,
                citizen_id(dt.date(1970, 1, 1) + dt.timedelta(days=i), f"{k:03d}")
                if i % 5 == k % 5 and i >= 20
                else "",
                i * 11,
            )
            for i in range(7 + 9 * k)
        ]
        db.execute(f"CREATE TABLE t{k} (a TEXT, b TEXT, c TEXT, n INTEGER)")
        db.executemany(f"INSERT INTO t{k} VALUES (?, ?, ?, ?)", rows)
        tables[f"t{k}"] = rows
    db.commit()
    db.close()
    monkeypatch.setattr(leak_files, "ROWS", 20)  # the larger tables in several reads
    monkeypatch.setattr(leak_files, "HELD_CELLS", 150)  # scanned in several groups
    found = leak_files.scan_sqlite(path, NAMES)
    expected = LeakCounts()
    for table, rows in tables.items():
        for start in range(0, len(rows), 20):
            part = rows[start : start + 20]
            frame = pl.DataFrame(
                [list(col) for col in zip(*part, strict=True)],
                schema=[f"{table}.{c}" for c in "abcn"],
                orient="col",
            )
            expected.add(scan_frame(frame, known_names=NAMES, row_offset=start))
    assert found.total > 20 and set(found.by_kind) == {"mobile", "person_name", "citizen_id"}
    assert min(row for row, _, _ in found.samples) >= 20
    assert _plain(found) == _plain(expected)
