"""Must-show (issue 17): escape attempts against the analysts' data, each refused twice —

(a) by DuckDB itself on the analyst database opened as the endpoint opens it
    (:func:`share_api.analysts.lock.open_locked`: read-only, external access off,
    configuration locked), the error asserted; and
(b) by the SQL endpoint (``POST /analyst/sql``), with a reason naming what was refused and
    an ``analyst.sql`` audit record of the refusal.

Plus attempts DuckDB's locks let through (metadata, settings, temporary tables, session
variables) that only the guard refuses — why the guard stands in front of the locks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from share_api.analysts.lock import open_locked
from share_api.service import Service
from tests.share_api.conftest import ANALYST_MARTS

PERMISSION = "file system operations are disabled"
LOCKED = "the configuration has been locked"
READ_ONLY = "read-only mode"


@dataclass(frozen=True)
class Escape:
    name: str
    sql: str
    duckdb_says: str  # a fragment of DuckDB's own error on the locked database
    guard_says: str  # a fragment of the endpoint's reason


@dataclass(frozen=True)
class Targets:
    """What an attacker would aim at: a file of the lake, its catalogue, a staged table."""

    lake_file: str
    lake_dir: str
    lake_catalogue: str
    staged_table: str
    out: str


def escapes(t: Targets, table: str) -> list[Escape]:
    return [
        Escape("read_parquet on a lake file", f"SELECT * FROM read_parquet('{t.lake_file}')",
               PERMISSION, "read_parquet"),
        Escape("a lake file as a table (replacement scan)", f"SELECT * FROM '{t.lake_file}'",
               PERMISSION, "names a file"),
        Escape("read_csv", f"SELECT * FROM read_csv('{t.lake_catalogue}')",
               PERMISSION, "read_csv"),
        Escape("read_text", f"SELECT * FROM read_text('{t.lake_file}')",
               PERMISSION, "read_text"),
        Escape("read_blob", f"SELECT content FROM read_blob('{t.lake_catalogue}')",
               PERMISSION, "read_blob"),
        Escape("glob over the lake", f"SELECT * FROM glob('{t.lake_dir}/**')",
               PERMISSION, "glob"),
        Escape("ATTACH the lake's catalogue", f"ATTACH '{t.lake_catalogue}' AS lake",
               PERMISSION, "ATTACH"),
        Escape("COPY … TO a file", f"COPY (SELECT * FROM {table}) TO '{t.out}'",
               PERMISSION, "COPY"),
        Escape("EXPORT DATABASE", f"EXPORT DATABASE '{t.out}'", PERMISSION, "parsed"),
        Escape("SET enable_external_access = true", "SET enable_external_access = true",
               LOCKED, "SET"),
        Escape("RESET a locked setting", "RESET enable_external_access", LOCKED, "RESET"),
        Escape("unlock the configuration", "SET lock_configuration = false", LOCKED, "SET"),
        Escape("PRAGMA", "PRAGMA threads = 64", LOCKED, "PRAGMA"),
        Escape("INSTALL", "INSTALL httpfs", "Cannot access directory", "INSTALL"),
        Escape("LOAD", "LOAD httpfs", "disabled through configuration", "LOAD"),
        Escape("a staged table", f"SELECT * FROM staged.{t.staged_table}",
               "does not exist", "staged."),
        Escape("the lake's raw zone by catalogue name",
               f"SELECT * FROM lake.raw.{t.staged_table}", "does not exist", "lake.raw."),
        Escape("comments and case", f"sElEcT * /* only a look */ FrOm ReAd_PaRqUeT("
               f"'{t.lake_file}') -- harmless", PERMISSION, "read_parquet"),
        Escape("a semicolon-chained second statement",
               f"SELECT count(*) FROM {table}; ATTACH '{t.lake_catalogue}' AS lake",
               PERMISSION, "2 statements"),
        Escape("a semicolon hidden after a comment",
               f"SELECT 1 -- ;\n; COPY {table} TO '{t.out}'", PERMISSION, "2 statements"),
        Escape("nested CTEs hiding a file reader",
               f"WITH a AS (WITH b AS (SELECT * FROM read_csv('{t.lake_catalogue}')) "
               f"SELECT * FROM b) SELECT * FROM a", PERMISSION, "read_csv"),
        Escape("a table function (parquet_metadata)",
               f"SELECT * FROM parquet_metadata('{t.lake_file}')", PERMISSION, "parquet_metadata"),
        Escape("query() running a file reader",
               f"SELECT * FROM query('SELECT * FROM read_parquet(''{t.lake_file}'')')",
               PERMISSION, "query"),
        Escape("DML: DELETE", f"DELETE FROM {table}", READ_ONLY, "DELETE"),
        Escape("DDL: DROP TABLE", f"DROP TABLE {table}", READ_ONLY, "DROP"),
        Escape("DDL: CREATE TABLE AS", f"CREATE TABLE copy AS SELECT * FROM {table}",
               READ_ONLY, "CREATE"),
        Escape("CREATE SECRET", "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 's')",
               "Cannot access directory", "CREATE"),
    ]  # fmt: skip


# DuckDB's locks let these run; the guard refuses each (name, sql, reason fragment)
GUARD_ONLY = [
    ("PRAGMA database_list (where the file lies)", "PRAGMA database_list", "PRAGMA"),
    ("CALL a pragma function", "CALL pragma_version()", "CALL"),
    ("the settings table", "SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("a setting's value", "SELECT current_setting('memory_limit')", "current_setting"),
    ("a temporary table", "CREATE TEMP TABLE t AS SELECT 1", "CREATE"),
    ("a session variable", "SET VARIABLE x = 1", "SET"),
    ("a generated table", "SELECT * FROM range(10)", "range"),
    ("DESCRIBE", "DESCRIBE SELECT 1", "DESCRIBE"),
    ("a bare CHECKPOINT", "CHECKPOINT", "not a SELECT"),
    ("a parameter", "SELECT $1", "parameters"),
]


@pytest.fixture
def targets(analyst_street, tmp_path: Path) -> Targets:
    settings = analyst_street.service.settings
    staged = sorted((settings.lake_data_dir / "staged").glob("*/*.parquet"))
    assert staged, "the mart street's lake has staged files"
    catalogue = settings.lake_metadata.removeprefix("sqlite:")
    assert Path(catalogue).is_file()
    return Targets(str(staged[0]), str(settings.lake_dir), catalogue,
                   staged[0].parent.name, str(tmp_path / "out.csv"))  # fmt: skip


def test_every_escape_is_refused_by_the_locked_database_and_by_the_endpoint(
    api, people, analyst_street, targets: Targets
):
    """One test, one analyst database built: (a) DuckDB's own refusals, then (b) the
    endpoint's, each with its reason and audit record."""
    table = ANALYST_MARTS[0]
    attempts = escapes(targets, table)
    assert len(attempts) >= 15
    refused_by_duckdb(analyst_street.path, attempts, table, targets)
    refused_by_the_endpoint(api, people, analyst_street, attempts, table, targets)


def refused_by_duckdb(path: Path, attempts: list[Escape], table: str, targets: Targets) -> None:
    con = open_locked(path, memory_limit="256MB", threads=1)
    try:
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0  # readable
        let_through = []
        for attempt in attempts:
            try:
                con.execute(attempt.sql).fetchall()
                let_through.append(attempt.name)
            except duckdb.Error as exc:
                assert attempt.duckdb_says in str(exc), (attempt.name, str(exc)[:200])
        assert let_through == []
        # nothing was written, the database still holds only its tables
        assert not Path(targets.out).exists()
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert table in tables and "copy" not in tables
    finally:
        con.close()


def refused_by_the_endpoint(
    api, people, analyst_street, attempts: list[Escape], table: str, targets: Targets
) -> None:
    service: Service = analyst_street.service
    analyst = people.make(analyst_street.org, "requester", kind="analyst")
    ok = api.post("/analyst/sql", json={"sql": f"SELECT count(*) AS n FROM {table}"},
                  headers=analyst.headers)  # fmt: skip
    assert ok.status_code == 200, ok.text  # the endpoint works: refusals are the guard's
    tried = [(e.name, e.sql, e.guard_says) for e in attempts] + GUARD_ONLY
    table_of_refusals = []
    for name, sql, says in tried:
        answer = api.post("/analyst/sql", json={"sql": sql}, headers=analyst.headers)
        assert answer.status_code == 400, (name, answer.status_code, answer.text[:200])
        reason = answer.json()["detail"]
        assert says.lower() in reason.lower(), (name, reason)
        table_of_refusals.append((name, reason))
    records = [
        r
        for r in service.audit.log.records()
        if r["action"] == "analyst.sql" and r["actor"] == analyst.actor
    ]
    assert [r["outcome"] for r in records] == ["ok"] + ["refused"] * len(tried)
    # the audited reason is the answer's, a name the analyst typed that neither DuckDB nor
    # the database knows (a path, an unknown table) written … there
    for record, (name, reason) in zip(records[1:], table_of_refusals, strict=True):
        pattern = ".+".join(re.escape(part) for part in record["reason"].split("…"))
        assert re.fullmatch(pattern, reason), (name, record["reason"], reason)
        assert targets.lake_dir not in record["reason"]
    assert all(r["status"] == 400 and "sql" not in r for r in records[1:])
    assert not Path(targets.out).exists()
    for name, reason in table_of_refusals:
        print(f"{name:45} → {reason}")
