"""How many statements a process ran on the lake, by kind (a diagnostic for benchmarks).

A statement on a DuckLake table costs a few milliseconds before it reads a byte: DuckLake
reads its catalogue (snapshot, file list, table statistics) with SQL queries of its own, and
a commit writes it the same way (``python -m bench lake_statements`` prices them). So the
fixed cost of a run follows how many statements it runs, a figure that, unlike CPU seconds
on a shared machine, does not vary from one run to the next.

Why a catalogue query costs what it does (2026-12-05, a 1,000-resident first run's lake,
SQLite catalogue): DuckLake sends each through DuckDB's SQLite scanner, which opens the
SQLite file anew for every DuckDB transaction, binds its tables anew in each, and pushes no
filter into SQLite (a query reads its catalogue tables whole). DuckLake's query for the
current snapshot took 2.3 ms alone and 0.77 ms inside a transaction, against 0.006 ms in
SQLite itself; a file list with a filter's statistics (``ducklake_file_column_stats``, every
file's every column) 2.9-3.4 ms, up to ~6.5 ms in the need model's feature query, against
0.09 ms. That run made 5,086 of them, 6.6 s of DuckLake's own timing (~19 % of the run): a
snapshot a transaction (812), a table's statistics per table after each commit that added
files (1,179), a file list per table scan (718, and 455 with statistics). So a statement
saved saves a few milliseconds, and a read inside a transaction costs less than one of its
own. The catalogue's tables grow as the lake ages, and these queries with them: on that
lake, 20,000 more rows of per-file statistics (``ducklake_file_column_stats``) made a file
list with a filter's statistics 3.4 -> 10.7 ms, 400,000 more 139 ms; 50,000 more rows of
table statistics (``ducklake_table_column_stats``) made a table's statistics 2.1 -> 20.8 ms.
A daily run (four next-day files on that street) made ~1,050 catalogue queries, 350 of them
table statistics, and added ~20 data files, ~175 rows of per-file statistics and ~17
snapshots; the files replaced keep their rows until snapshot expiry (460 days by default).
A table rebuilt with the same columns is rebuilt in place
(:func:`lakehouse.lake.replace_table`), which adds no table, column or statistics row: the
daily rebuilds of the marts added ~110 a day before.
With a PostgreSQL catalogue DuckLake runs its snapshot and statistics queries in PostgreSQL
(``postgres_query``) and its other reads through the postgres scanner, which pushes filters
down (measured below: no cheaper for our process).
DuckLake's own timing leaves out what DuckDB does around each of its queries: sampled with
native frames (``bench/_costs.py``, 2026-12-05), that 1,000-resident first run spent 28 % of
its samples in DuckLake's catalogue reads and 7 % in its commits, and most of that is DuckDB
parsing, binding and planning the SQL DuckLake writes for each query
(``ClientContext::CreatePreparedStatement``: 69 % of a filtered count's samples in a loop),
not SQLite: the same statements on a lake whose catalogue is a DuckDB file cost only ~25 %
less (a count 3.2 -> 2.3 ms, a filtered count 9.6 -> 7.2 ms, a join 11.8 -> 9.0 ms, a
one-row insert and commit 7.3 -> 6.1 ms; a plain DuckDB table answers a count in 0.3 ms), and
a DuckDB-file catalogue cannot be opened by a second process while a run writes. A
PostgreSQL catalogue (15, on loopback; the same inserts and statements, 2026-12-05 evening,
``duckdb-extension-postgres-scanner`` 1.5.5) is no cheaper for the reads either: a count
3.1 ms of CPU in our process, a filtered count 8.4, a join 10.8, each 1-2 ms more in wall
time, and PostgreSQL's own CPU on top; only a one-row insert and commit costs our process
less (4.3 ms of CPU, 5.9 ms wall, against SQLite's 7.2 and 7.9). DuckLake hands PostgreSQL
its commit's writes, its snapshot query and its per-file statistics as text
(``postgres_execute``, ``postgres_query``); its other reads DuckDB plans, whatever the
backend. Fewer statements on lake tables is the lever; a catalogue backend is not, by itself.
As the lake ages its daily runs did not slow measurably: fifteen daily runs of four next-day
files each on that street took 8.7-9.1 CPU s with no trend, while the current data files
grew 158 -> 227 (392 with those replaced) and the per-file statistics 2,265 -> 4,794 rows.

When ``STREETHUB_LAKE_STATEMENT_COUNTS`` names a file, every DuckDB instance the lake opens
(:func:`watch`) keeps DuckDB's query log in memory, and the counts are added to that file
(JSON) when the instance is closed (:func:`retire`) or the process exits:

- ``ours``: the statements our code ran (any table, the lake's or not);
- ``catalogue``: the queries on DuckLake's catalogue database (``__ducklake_metadata_…``):
  DuckLake's own reads and commit writes, and the few of ours that read its tables
  (:func:`lakehouse.lake.tables_in` and the like);
- ``transaction_control``: BEGIN, COMMIT and ROLLBACK, ours and DuckLake's;
- ``statements``: all of them; ``instances``: the DuckDB instances counted;
- ``catalogue_queries`` and ``catalogue_ms``: DuckLake's own queries on its catalogue and the
  milliseconds they took, as DuckLake's ``DuckLakeMetadata`` log times them (whole
  milliseconds a query, so the sum is low by up to one a query: a rough figure, unlike the
  counts). A commit's writes are one entry there and several statements in the query log;
- ``catalogue_<kind>`` and ``catalogue_<kind>_ms``: the same by kind of query
  (:data:`CATALOGUE_QUERY_KINDS`: a transaction's snapshot, the tables' statistics, a scan's
  file list with or without its filter's statistics, the schema read again, a commit's
  writes, other; :func:`catalogue_by_kind`).

Only counts leave the process: a statement's text, which may hold values (a literal in a
query, a column's minimum in DuckLake's statistics), stays in the instance's memory and goes
with it. Off (the default), nothing is logged.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import threading
from pathlib import Path

import duckdb

ENV = "STREETHUB_LAKE_STATEMENT_COUNTS"
# DuckLake's catalogue queries by what they read or write, told by how DuckLake 1.5's SQL for
# them begins (whitespace folded); a query of another kind, or of a DuckLake that words
# them otherwise, is "other"
CATALOGUE_QUERY_KINDS: dict[str, tuple[str, ...]] = {
    "snapshots": ("SELECT snapshot_id, schema_version",),  # a transaction's snapshot
    "table_stats": ("SELECT table_id, column_id, record_count",),  # every table's statistics
    "file_lists": ("SELECT data.data_file_id",),  # a scan's data and delete files
    # a scan's files with the statistics of the columns its filter names (to skip files)
    "filtered_file_lists": ("WITH col_",),
    # the schema read again after a commit that changed it: tables, views, macros, layout
    "schema_reads": (
        "SELECT schema_id",
        "SELECT view_id",
        "SELECT partition_id",
        "SELECT sort.",
    ),
    "commit_writes": ("INSERT", "UPDATE", "DELETE"),  # a commit's writes, one entry each
}
CATALOGUE_QUERY_OTHER = "other"
CATALOGUE_QUERY_NAMES = {  # the kinds as a report names them
    "snapshots": "transactions' snapshots",
    "table_stats": "tables' statistics",
    "file_lists": "file lists",
    "filtered_file_lists": "file lists with a filter's statistics",
    "schema_reads": "the schema read again",
    "commit_writes": "commits' writes",
    CATALOGUE_QUERY_OTHER: "other",
}
KINDS = (
    "statements",
    "ours",
    "catalogue",
    "transaction_control",
    "instances",
    "catalogue_queries",
    "catalogue_ms",
    *(
        f"catalogue_{kind}{unit}"
        for kind in (*CATALOGUE_QUERY_KINDS, CATALOGUE_QUERY_OTHER)
        for unit in ("", "_ms")
    ),
)
_CONTROL = ("BEGIN TRANSACTION", "COMMIT", "ROLLBACK")

_lock = threading.Lock()
_watched: list[duckdb.DuckDBPyConnection] = []
_registered = [False]
_pid = [os.getpid()]  # the process whose instances _watched holds (a DuckDB is not fork-safe)


def target() -> Path | None:
    """The counts file, when counting is on."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def watch(con: duckdb.DuckDBPyConnection) -> None:
    """Log ``con``'s statements (a new instance, before its first query of ours) when
    counting is on; else nothing."""
    if target() is None:
        return
    con.execute("CALL enable_logging(['QueryLog', 'DuckLakeMetadata'])")
    with _lock:
        if _pid[0] != os.getpid():  # a forked child: never touch the parent's instances
            _pid[0], _watched[:] = os.getpid(), []
        _watched.append(con)
        if not _registered[0]:
            atexit.register(_flush)
            _registered[0] = True


def retire(con: duckdb.DuckDBPyConnection) -> None:
    """Close ``con``, its counts added to the file first when it was watched."""
    with _lock:
        watched = _pid[0] == os.getpid() and any(c is con for c in _watched)
        if watched:
            _watched[:] = [c for c in _watched if c is not con]
    if watched:
        _add(_counts(con))
    con.close()


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    control = ", ".join(f"'{c}'" for c in _CONTROL)
    try:
        row = con.execute(
            f"""SELECT count(*),
                   count(*) FILTER (WHERE message IN ({control})),
                   count(*) FILTER (WHERE message NOT IN ({control})
                                    AND contains(message, '__ducklake_metadata_'))
               FROM duckdb_logs WHERE type = 'QueryLog'"""
        ).fetchone()
        # DuckLake's own entries; the parsed view exists once the extension is loaded
        by_kind = con.execute(
            f"""SELECT {_kind_case()} AS kind, count(*), coalesce(sum(elapsed_ms), 0)
               FROM (SELECT ltrim(regexp_replace(query, '\\s+', ' ', 'g')) AS q, elapsed_ms
                     FROM duckdb_logs_parsed('DuckLakeMetadata'))
               GROUP BY kind"""
        ).fetchall()
    except duckdb.Error:  # closed elsewhere: its log went with it
        return {}
    total, control_n, catalogue = (int(v) for v in row)
    kinds = {str(k): (int(n), int(ms)) for k, n, ms in by_kind}
    return {
        "statements": total,
        "ours": total - control_n - catalogue,
        "catalogue": catalogue,
        "transaction_control": control_n,
        "instances": 1,
        "catalogue_queries": sum(n for n, _ in kinds.values()),
        "catalogue_ms": sum(ms for _, ms in kinds.values()),
        **{f"catalogue_{k}": n for k, (n, _) in kinds.items()},
        **{f"catalogue_{k}_ms": ms for k, (_, ms) in kinds.items()},
    }


def _kind_case() -> str:
    """SQL naming a catalogue query's kind (:data:`CATALOGUE_QUERY_KINDS`) from ``q``."""
    whens = " ".join(
        f"WHEN starts_with(q, '{start}') THEN '{kind}'"
        for kind, starts in CATALOGUE_QUERY_KINDS.items()
        for start in starts
    )
    return f"CASE {whens} ELSE '{CATALOGUE_QUERY_OTHER}' END"


def catalogue_by_kind(counts: dict[str, int]) -> dict[str, tuple[int, int]]:
    """A counts file's catalogue queries by kind: kind → (queries, ms), largest ms first
    ({}: counted before the kinds were, 2026-12-06)."""
    kinds = (*CATALOGUE_QUERY_KINDS, CATALOGUE_QUERY_OTHER)
    found = {
        k: (int(counts[f"catalogue_{k}"]), int(counts.get(f"catalogue_{k}_ms", 0)))
        for k in kinds
        if f"catalogue_{k}" in counts
    }
    return dict(sorted(found.items(), key=lambda kv: -kv[1][1]))


def _add(counts: dict[str, int]) -> None:
    path = target()
    if path is None or not counts:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:  # several processes may add to one file
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.seek(0)
        text = fh.read()
        held = json.loads(text) if text.strip() else {}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({k: int(held.get(k, 0)) + counts.get(k, 0) for k in KINDS}))


def _flush() -> None:
    with _lock:
        cons, _watched[:] = list(_watched), []
        if _pid[0] != os.getpid():  # inherited through fork: the parent counts its own
            return
    for con in cons:
        _add(_counts(con))


def read(path: Path) -> dict[str, int] | None:
    """The counts a file holds (None: none written)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return json.loads(text) if text.strip() else None
