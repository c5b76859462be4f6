"""The lake tables that account for every delivery.

- ``landing.deliveries``: one row per delivery landed byte-for-byte (SHA-256,
  source, arrival time, size); a delivery is landed once per dataset and hash.
- ``landing.delivery_accounts``: one row per delivery read (or per pull that
  failed before anything could be landed): status, reason, and the account
  rows read = rows loaded + rows quarantined.
- ``landing.stage_accounts``: per delivery and later stage (the row gate):
  rows in = rows out + rows quarantined + rows skipped (exact duplicates of a
  row already staged, counted and not staged again).
- ``quarantine.rows``: every row that did not make it, with its source row,
  field, check and reason (values masked).
- ``landing.delivery_acks``: a data officer's acknowledgement of a failed
  delivery (who, why, when); it covers the failure accounted before it.
- ``landing.inbox_files``: every inbox file landing has dealt with (landed, or
  skipped as a copy of a landed delivery), by its ``lstat`` signature, so a
  listing tells what is new without opening a file
  (:func:`pipelines.ingest.inbox.new_entries`).
- ``landing.pulls``: when each database or API pull was attempted, landed
  something or not, so a run knows which pulls are due.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from lakehouse.lake import has_column, merge_small_files, tables_in, transaction

DDL = (
    """CREATE TABLE IF NOT EXISTS landing.deliveries (
        delivery_id VARCHAR, dept VARCHAR, dataset VARCHAR, kind VARCHAR, source VARCHAR,
        file_name VARCHAR, landed_path VARCHAR, sha256 VARCHAR, size_bytes BIGINT,
        cursor_end VARCHAR, arrived_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS landing.delivery_accounts (
        delivery_id VARCHAR, dept VARCHAR, dataset VARCHAR, status VARCHAR, reason VARCHAR,
        rows_read BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT, notes VARCHAR,
        accounted_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS quarantine.rows (
        dept VARCHAR, dataset VARCHAR, delivery_id VARCHAR, file_name VARCHAR,
        source_row BIGINT, stage VARCHAR, field VARCHAR, check_name VARCHAR, reason VARCHAR,
        value_masked VARCHAR, key_pid VARCHAR, quarantined_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS landing.stage_accounts (
        delivery_id VARCHAR, dept VARCHAR, dataset VARCHAR, stage VARCHAR,
        rows_in BIGINT, rows_out BIGINT, rows_quarantined BIGINT, accounted_at TIMESTAMPTZ,
        rows_skipped BIGINT)""",
    """CREATE TABLE IF NOT EXISTS landing.delivery_acks (
        delivery_id VARCHAR, acked_by VARCHAR, reason VARCHAR, acked_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS landing.inbox_files (
        file_key VARCHAR, dept VARCHAR, dataset VARCHAR, file_name VARCHAR,
        size_bytes BIGINT, mtime_ns BIGINT, seen_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS landing.pulls (
        dept VARCHAR, dataset VARCHAR, pulled_at TIMESTAMPTZ, landed BIGINT, failed BIGINT)""",
)
LEDGER_TABLES = {
    ("landing", "deliveries"),
    ("landing", "delivery_accounts"),
    ("landing", "stage_accounts"),
    ("landing", "delivery_acks"),
    ("landing", "inbox_files"),
    ("landing", "pulls"),
    ("quarantine", "rows"),
}

QUARANTINE_SCHEMA = {
    "dept": pl.String,
    "dataset": pl.String,
    "delivery_id": pl.String,
    "file_name": pl.String,
    "source_row": pl.Int64,
    "stage": pl.String,
    "field": pl.String,
    "check_name": pl.String,
    "reason": pl.String,
    "value_masked": pl.String,
    "key_pid": pl.String,  # pseudonym of the record's key: the correction loop follows it
    "quarantined_at": pl.Datetime("us", "UTC"),
}


# a ledger table holding its rows in this many Parquet files or more is merged (each
# delivery adds a file or two to several of them, and the run's queries read every file:
# 29 files of a 1,000-resident street's first run made a full read 2-3 x slower than one)
LEDGER_MERGE_FILES = 10

# columns added after a table's first release: a lake made before them gains them
LATER_COLUMNS: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("landing", "stage_accounts"): [("rows_skipped", "BIGINT")],
}


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ledger tables that are missing (one read of DuckLake's catalogue,
    :func:`lakehouse.lake.tables_in`: a probe of each of the seven cost ~10 ms, and a run
    ensures the ledger about six times), add the columns added since (a probe of their
    table), and merge the files of a ledger table that has gathered
    :data:`LEDGER_MERGE_FILES` or more (``lakehouse.lake.merge_small_files``: a run ensures
    the ledger at its start and its close, so the next run reads each ledger table from a
    file or two). Outside a transaction, by a writer."""
    if LEDGER_TABLES - tables_in(con):  # one read of the catalogue, not 7 probes
        with transaction(con):
            for ddl in DDL:
                con.execute(ddl)
    for (zone, table), columns in LATER_COLUMNS.items():
        for name, sql_type in columns:
            if not has_column(con, zone, table, name):
                con.execute(f'ALTER TABLE {zone}."{table}" ADD COLUMN "{name}" {sql_type}')
    merge_small_files(con, LEDGER_TABLES, LEDGER_MERGE_FILES)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def id_token(data: bytes | str) -> str:
    """The 16-character token that ledger ids (delivery, inbox file, refusal) carry: 80 bits
    of SHA-256 (of ``data``, or of the bytes a hex digest ``str`` spells) in lower-case base32.

    Not hex: 16 hex characters are all digits about once in 1,900 ids, and a run of digits
    inside an id can read as a mobile or a bank card to the leak scanner (a CI run failed on
    one). Base32 has no 0, 1, 8 or 9, so no run of it is a citizen ID or a mobile, and one
    passing for a card is below 1 in 10^11."""
    raw = bytes.fromhex(data) if isinstance(data, str) else hashlib.sha256(data).digest()
    return base64.b32encode(raw[:10]).decode("ascii").lower()


@dataclass(frozen=True)
class Landed:
    delivery_id: str
    dept: str
    dataset: str
    file_name: str
    landed_path: str
    sha256: str
    size_bytes: int
    arrived_at: dt.datetime | None = None  # when read with it (:func:`pending`) or landed

    def path(self, landing_dir: Path) -> Path:
        """Where the landed copy is now (:func:`landed_file`)."""
        return landed_file(landing_dir, self.dept, self.dataset, self.landed_path)


def landed_file(landing_dir: Path, dept: str, dataset: str, landed_path: str) -> Path:
    """Where a landed copy is now, under this home's landing zone ``landing_dir``.

    The ledger records the path a delivery was landed at, which names the home it was
    landed in. A home moved, copied or restored elsewhere keeps its zone's layout,
    ``landing/<dept>/<dataset>/<file>``: a recorded path of that layout is taken under
    ``landing_dir`` when the file is there; otherwise (another layout, a copy gone) the
    path is as recorded."""
    recorded = Path(landed_path)
    if recorded.parts[-4:-1] == (landing_dir.name, dept, dataset):
        here = landing_dir / dept / dataset / recorded.name
        if here.is_file():  # (a recorded name of ".." is no file)
            return here
    return recorded


ARGS = ("$1", "$2")  # a statement's first two parameters, named


def of_dataset(alias: str = "", params: tuple[str, str] = ("?", "?"), **also: str) -> str:
    """The ledger's filter for one dataset's rows: ``(dept, dataset) = (?, ?)`` (``alias``:
    the table's, ``params``: the placeholders, ``also``: more columns — a qualified name is
    another table's — and the SQL of their values, in the same row value), a row value
    compared on the rows read.

    The ledger's tables are small (a row a delivery, account or file) and spread over many
    small files (one an insert, until merged). Written as ``dept = ? AND dataset = ?``, the
    filter is pushed down to DuckLake, which then prunes files by their statistics with a
    query of its own on the catalogue (~4.5 ms, one a statement and table filtered). A row
    value is not a column filter DuckLake can push down: the table's few files are read
    whole and the rows filtered. Not for a filter that usually matches no file at all
    (``is_landed``'s hash): pruning every file is cheaper still, and not for the data
    zones, whose tables grow with the rows."""
    prefix = f"{alias}." if alias else ""
    columns = ", ".join(c if "." in c else f"{prefix}{c}" for c in ("dept", "dataset", *also))
    return f"({columns}) = ({', '.join((*params, *also.values()))})"


def is_landed(con: duckdb.DuckDBPyConnection, dept: str, dataset: str, sha256: str) -> bool:
    return (
        con.execute(
            "SELECT count(*) FROM landing.deliveries WHERE dept=? AND dataset=? AND sha256=?",
            [dept, dataset, sha256],
        ).fetchone()[0]
        > 0
    )


def last_cursor(con: duckdb.DuckDBPyConnection, dept: str, dataset: str) -> tuple[str | None, int]:
    """The cursor a pull of the dataset goes on from (None: from the start), and how many
    deliveries the dataset has, in one read."""
    cursor, count = con.execute(
        f"SELECT max(cursor_end), count(*) FROM landing.deliveries WHERE {of_dataset()}",
        [dept, dataset],
    ).fetchone()
    return cursor, int(count)


def unaccounted(con: duckdb.DuckDBPyConnection, dept: str, dataset: str) -> list[Landed]:
    """Landed deliveries not yet read into raw, oldest first."""
    rows = con.execute(
        f"""SELECT d.delivery_id, d.dept, d.dataset, d.file_name, d.landed_path, d.sha256,
                  d.size_bytes
           FROM landing.deliveries d
           WHERE {of_dataset("d")} AND NOT EXISTS (
               SELECT 1 FROM landing.delivery_accounts a WHERE a.delivery_id = d.delivery_id)
           ORDER BY d.arrived_at, d.file_name""",
        [dept, dataset],
    ).fetchall()
    return [Landed(*r) for r in rows]


@dataclass(frozen=True)
class Pending:
    """What a dataset's raw and staged steps have to do, from :func:`pending`."""

    unread: list[Landed]  # landed deliveries not yet read (as :func:`unaccounted`)
    ungated: list[tuple[str, str, dt.datetime]]  # read, not gated (as ``staged.unstaged``)
    staged_any: bool  # a stage account of the dataset ever put rows into staged


def pending(con: duckdb.DuckDBPyConnection, dept: str, dataset: str) -> Pending:
    """One statement for what :func:`unaccounted` and ``pipelines.ingest.staged.unstaged``
    read in two (each ledger table read once: every DuckLake table a statement reads costs
    ~10 ms of catalogue reads), and whether the dataset's staged table can hold any row —
    staged rows are only ever inserted with a stage account (``rows_out``), so none with
    rows means an empty table (:func:`pipelines.ingest.staged.gate_delivery` then skips
    looking up staged versions). Oldest first, as both."""
    return _pending(con.execute(_pending_sql(one=True), [dept, dataset]).fetchall())


def pending_by_dataset(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], Pending]:
    """:func:`pending` of every dataset with a delivery, (dept, dataset) → its Pending, in
    one statement (a run's steps start from it: ``pipelines.ingest.prefetch``); a dataset
    with none has no entry (its Pending is empty)."""
    by: dict[tuple[str, str], list[tuple]] = {}
    for r in con.execute(_pending_sql(one=False)).fetchall():
        by.setdefault((r[1], r[2]), []).append(r)
    return {key: _pending(rows) for key, rows in by.items()}


def _pending_sql(one: bool) -> str:
    """:func:`pending`'s statement: one dataset's (``one``: its dept and dataset the first
    two parameters) or every dataset's rows."""

    def mine(alias: str = "", **also: str) -> str:
        if one:
            return of_dataset(alias, ARGS, **also)
        return " AND ".join(f"{c} = {v}" for c, v in also.items()) or "true"

    return f"""SELECT d.delivery_id, d.dept, d.dataset, d.file_name, d.landed_path, d.sha256,
                  d.size_bytes, d.arrived_at, a.accounts, a.loaded, s.gated, s.rows_out
           FROM landing.deliveries d
           LEFT JOIN (SELECT delivery_id, count(*) AS accounts,
                             bool_or(status = 'loaded') AS loaded
                      FROM landing.delivery_accounts WHERE {mine()}
                      GROUP BY delivery_id) a USING (delivery_id)
           LEFT JOIN (SELECT delivery_id, true AS gated, sum(rows_out) AS rows_out
                      FROM landing.stage_accounts WHERE {mine(stage="'staged'")}
                      GROUP BY delivery_id) s USING (delivery_id)
           WHERE {mine("d")}
           ORDER BY d.arrived_at, d.file_name"""


def _pending(rows: list[tuple]) -> Pending:
    """A dataset's Pending from its rows of :func:`_pending_sql`, oldest first."""
    unread = [Landed(*r[:8]) for r in rows if not r[8]]
    ungated = [(r[0], r[3], r[7]) for r in rows if r[9] and not r[10]]
    return Pending(unread, ungated, any((r[11] or 0) > 0 for r in rows))


def record_account(
    con: duckdb.DuckDBPyConnection,
    *,
    delivery_id: str,
    dept: str,
    dataset: str,
    status: str,
    reason: str | None,
    rows_read: int,
    rows_loaded: int,
    rows_quarantined: int,
    notes: str | None = None,
) -> None:
    con.execute(
        "INSERT INTO landing.delivery_accounts VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            delivery_id,
            dept,
            dataset,
            status,
            reason,
            rows_read,
            rows_loaded,
            rows_quarantined,
            notes,
            now(),
        ],
    )


def record_failure(
    con: duckdb.DuckDBPyConnection, *, delivery_id: str, dept: str, dataset: str, reason: str
) -> None:
    """A delivery (or pull) that could not be read as a whole: nothing of it is loaded."""
    record_account(
        con,
        delivery_id=delivery_id,
        dept=dept,
        dataset=dataset,
        status="failed",
        reason=reason,
        rows_read=0,
        rows_loaded=0,
        rows_quarantined=0,
    )


def record_pull(
    con: duckdb.DuckDBPyConnection, dept: str, dataset: str, *, landed: int, failed: int
) -> None:
    """A pull was attempted now (whatever it brought): the next one is due after its cycle."""
    con.execute(
        "INSERT INTO landing.pulls VALUES (?,?,?,?,?)", [dept, dataset, now(), landed, failed]
    )


def last_pulls(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dt.datetime]:
    """(dept, dataset) → when it was last pulled."""
    rows = con.execute("SELECT dept, dataset, max(pulled_at) FROM landing.pulls GROUP BY 1, 2")
    return {(d, ds): at for d, ds, at in rows.fetchall()}


def unprocessed(
    con: duckdb.DuckDBPyConnection,
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(datasets with landed deliveries not read into raw, datasets with raw-loaded
    deliveries not through the row gate), as (dept, dataset)."""
    unread = con.execute(
        """SELECT DISTINCT d.dept, d.dataset FROM landing.deliveries d WHERE NOT EXISTS (
               SELECT 1 FROM landing.delivery_accounts a WHERE a.delivery_id = d.delivery_id)"""
    ).fetchall()
    ungated = con.execute(
        """SELECT DISTINCT a.dept, a.dataset FROM landing.delivery_accounts a
           WHERE a.status = 'loaded' AND NOT EXISTS (
               SELECT 1 FROM landing.stage_accounts s
               WHERE s.delivery_id = a.delivery_id AND s.stage = 'staged')"""
    ).fetchall()
    return {tuple(r) for r in unread}, {tuple(r) for r in ungated}


def last_change(con: duckdb.DuckDBPyConnection) -> dt.datetime | None:
    """When the ledger last changed what the scorecard reads: a delivery landed, read,
    gated or acknowledged (None: never)."""
    return con.execute(
        """SELECT max(t) FROM (
               SELECT max(arrived_at) AS t FROM landing.deliveries
               UNION ALL SELECT max(accounted_at) FROM landing.delivery_accounts
               UNION ALL SELECT max(accounted_at) FROM landing.stage_accounts
               UNION ALL SELECT max(acked_at) FROM landing.delivery_acks)"""
    ).fetchone()[0]
