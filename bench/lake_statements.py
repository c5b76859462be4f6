"""What one statement costs on the lake, beside the same statement on a plain DuckDB table.

Why: a 1,000-resident street's run is mostly fixed cost, and a sampling profile of it
(py-spy, native frames, main thread) put nearly two-thirds of its samples inside DuckLake's
reads of its own catalogue: the file list (``DuckLakeMultiFileList::GetFiles``), the table
statistics (``GetTableStats``), the snapshot, and the commits. Each is a SQL query DuckLake
runs through DuckDB over the SQLite catalogue, so every statement that reads a lake table
pays a few of them, whatever the table holds. This benchmark measures that price per kind
of statement, on a fresh lake, so the fixed overhead can be judged as statements × price.

A small ledger-like table (``dept``, ``dataset``, ``delivery_id``, ``rows``) is made in the
lake twice, with its rows in one Parquet file and in :data:`MANY_FILES` files (one per
insert, as a ledger table holds them during a run), and once in a plain in-memory DuckDB with
no lake attached (the baseline: the same statement with no catalogue to consult). Each statement
runs :data:`REPEATS` times; the figure is CPU milliseconds per statement of this process
(the lake's DuckDB runs on one thread), with the lake's cost as a ratio to the baseline's:

- a count over the table, no filter;
- the same with a filter on one and on two columns (DuckLake turns each into a read of
  its column statistics, to skip files);
- two columns compared as one row value, ``row(a, b) = row(?, ?)`` (not pushed down: every
  file is read);
- the two-column filter inside an open transaction (the snapshot read once);
- ``USE lake`` on a new cursor (what every open of a held lake does);
- a one-row insert that commits (one snapshot).

Writes bench/results/lake_statements.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from catalog.settings import Settings
from lakehouse.lake import open_lake, transaction

RESULTS = Path(__file__).parent / "results" / "lake_statements.json"
REPEATS = 100
ROUNDS = 3  # the median of three rounds of REPEATS
MANY_FILES = 30
ROWS = 60
COLUMNS = "dept VARCHAR, dataset VARCHAR, delivery_id VARCHAR, rows BIGINT"
FILTER = ["d07", "ds3"]
BASELINE = "plain DuckDB table"


def _rows(n: int, start: int = 0) -> list[tuple[str, str, str, int]]:
    """Ledger-like rows numbered from ``start``, their departments and datasets repeating
    (12 and 5 of them)."""
    return [(f"d{i % 12:02d}", f"ds{i % 5}", f"del{i:05d}", i) for i in range(start, start + n)]


def _per_statement(fn: Callable[[], object]) -> float:
    """CPU milliseconds per call: the median of :data:`ROUNDS` rounds of :data:`REPEATS`."""
    fn()  # the first call plans and caches what a run would have cached already
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(REPEATS):
            fn()
        rounds.append((time.process_time() - started) * 1000 / REPEATS)
    return round(statistics.median(rounds), 3)


def _fill(con, table: str, files: int) -> None:
    """``table`` with :data:`ROWS` rows in ``files`` inserts (each insert commits: one file),
    each holding rows with the filter's values (no file's statistics rule them out)."""
    con.execute(f"CREATE TABLE {table} ({COLUMNS})")
    per = ROWS // files
    for f in range(files):
        rows = [*_rows(per - 1, f * per), (*FILTER, f"del{f:05d}x", 0)]
        values = ", ".join("(?, ?, ?, ?)" for _ in rows)
        con.execute(f"INSERT INTO {table} VALUES {values}", [v for r in rows for v in r])


def statements(con, table: str) -> dict[str, Callable[[], object]]:
    """The statements measured on ``table`` (through ``con``)."""
    q = f"SELECT count(*) FROM {table}"
    return {
        "count, no filter": lambda: con.execute(q).fetchall(),
        "count, filter on one column": lambda: con.execute(
            q + " WHERE dept = ?", FILTER[:1]
        ).fetchall(),
        "count, filter on two columns": lambda: con.execute(
            q + " WHERE dept = ? AND dataset = ?", FILTER
        ).fetchall(),
        "count, two columns as one row value": lambda: con.execute(
            q + " WHERE row(dept, dataset) = row(?, ?)", FILTER
        ).fetchall(),
    }


def _use(con, catalog: str) -> Callable[[], None]:
    def fn() -> None:
        cur = con.cursor()
        cur.execute(f"USE {catalog}")
        cur.close()

    return fn


def _insert(con, table: str) -> Callable[[], object]:
    row = _rows(1, 99999)[0]
    return lambda: con.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", row)


def measure(settings: Settings) -> dict:
    """CPU ms per statement (``statements``: statement → where → ms, and the lake's ratio
    to the baseline), the baseline on a plain DuckDB (no lake attached, one thread, as the
    lake's), the lake's on its tables of one and of many files (``files``: how many each
    holds)."""
    out: dict[str, dict[str, float]] = {}
    plain = duckdb.connect(config={"threads": 1})
    with open_lake(settings) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS bench")
        _fill(con, "bench.one_file", 1)
        _fill(con, "bench.many_files", MANY_FILES)
        plain.execute(f"CREATE TABLE native ({COLUMNS})")
        files = {
            table: con.execute(
                "SELECT count(*) FROM ducklake_list_files('lake', ?, schema => 'bench')", [table]
            ).fetchone()[0]
            for table in ("one_file", "many_files")
        }
        rows = con.execute("FROM bench.one_file").fetchall()
        plain.executemany("INSERT INTO native VALUES (?, ?, ?, ?)", rows)
        places = {
            BASELINE: (plain, "native"),
            "lake table, 1 file": (con, "bench.one_file"),
            f"lake table, {MANY_FILES} files": (con, "bench.many_files"),
        }
        for where, (c, table) in places.items():
            for name, fn in statements(c, table).items():
                out.setdefault(name, {})[where] = _per_statement(fn)
            with transaction(c):
                fn = statements(c, table)["count, filter on two columns"]
                in_one = out.setdefault("filter on two columns, in a transaction", {})
                in_one[where] = _per_statement(fn)
        out["a new cursor and USE"] = {
            BASELINE: _per_statement(_use(plain, "memory")),
            "lake table, 1 file": _per_statement(_use(con, "lake")),
        }
        out["a one-row insert, committed"] = {
            BASELINE: _per_statement(_insert(plain, "native")),
            "lake table, 1 file": _per_statement(_insert(con, "bench.one_file")),
        }
    plain.close()
    for figures in out.values():
        base = figures[BASELINE]
        for where in [w for w in figures if w != BASELINE]:
            figures[f"{where}: ratio"] = round(figures[where] / base, 1)
    return {"statements": out, "files": files}


def report(results: dict) -> None:
    print("a statement's CPU ms on the lake (DuckLake, SQLite catalogue) and on a plain table")
    for name, figures in results["statements"].items():
        parts = [f"plain {figures[BASELINE]:.2f}"]
        for where, value in figures.items():
            if where != BASELINE and not where.endswith(": ratio"):
                where_ = where.removeprefix("lake table, ")
                parts.append(f"{where_} {value:.2f} ({figures[f'{where}: ratio']}×)")
        print(f"  {name}: " + "; ".join(parts))


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="streethub-bench-lake-") as tmp:
        settings = Settings(home=Path(tmp) / "home").ensure_dirs()
        results = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "repeats": REPEATS,
            "rounds": ROUNDS,
            "rows": ROWS,
        } | measure(settings)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report(results)
    return results


if __name__ == "__main__":
    main()
