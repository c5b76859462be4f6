"""An analyst database opened with ``open_locked``: DuckDB itself refuses every way out of
the file (files, the lake, COPY, extensions, settings), while the tables stay readable.
(The full escape suite, from the database and the SQL endpoint, is ASQL's.)"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from catalog.settings import Settings
from share_api.analysts.lock import open_locked
from tests.share_api.conftest import ANALYST_MARTS


def _lake_file(settings: Settings) -> Path:
    return next(settings.lake_data_dir.rglob("*.parquet"))


def test_the_tables_read_and_the_limits_hold(analyst_db: Path) -> None:
    con = open_locked(analyst_db, memory_limit="128MB", threads=1)
    try:
        for mart in ANALYST_MARTS:
            assert con.execute(f'SELECT count(*) FROM "{mart}"').fetchone()[0] > 0
        got = con.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit'), "
            "current_setting('enable_external_access'), current_setting('lock_configuration'), "
            "current_setting('access_mode')"
        ).fetchone()
    finally:
        con.close()
    assert got[0] == 1 and got[1].startswith("122") and got[2:] == (False, True, "read_only")


def test_duckdb_refuses_every_way_out(analyst_db: Path, share_settings: Settings) -> None:
    lake_file = _lake_file(share_settings)
    metadata = share_settings.lake_dir / "metadata.sqlite"
    out = analyst_db.parent / "copied.csv"
    refused = {  # statement → (DuckDB's exception, what its message says)
        f"SELECT * FROM read_parquet('{lake_file}')": (duckdb.PermissionException, "disabled"),
        f"SELECT * FROM '{lake_file}'": (duckdb.PermissionException, "disabled"),
        "SELECT * FROM read_csv('/etc/passwd')": (duckdb.PermissionException, "disabled"),
        f"ATTACH 'ducklake:sqlite:{metadata}' AS lake": (duckdb.PermissionException, "disabled"),
        f"ATTACH '{metadata}' AS meta (TYPE sqlite)": (duckdb.PermissionException, "disabled"),
        f"COPY {ANALYST_MARTS[0]} TO '{out}'": (duckdb.PermissionException, "disabled"),
        f"EXPORT DATABASE '{out.parent / 'exported'}'": (duckdb.PermissionException, "disabled"),
        "INSTALL httpfs": (duckdb.PermissionException, "disabled"),
        "LOAD sqlite_scanner": (duckdb.PermissionException, "disabled"),
        f"SELECT * FROM glob('{lake_file.parent}/*')": (duckdb.PermissionException, "disabled"),
        "SET enable_external_access = true": (duckdb.InvalidInputException, "locked"),
        "RESET enable_external_access": (duckdb.InvalidInputException, "locked"),
        "SET lock_configuration = false": (duckdb.InvalidInputException, "locked"),
        "SET memory_limit = '8GB'": (duckdb.InvalidInputException, "locked"),
        f"CREATE TABLE x AS SELECT * FROM {ANALYST_MARTS[0]}": (
            duckdb.InvalidInputException,
            "read-only",
        ),
        "CREATE MACRO m(x) AS x": (duckdb.InvalidInputException, "read-only"),
    }
    con = open_locked(analyst_db, memory_limit="128MB", threads=1)
    try:
        for sql, (kind, says) in refused.items():
            with pytest.raises(kind, match=says):
                con.execute(sql).fetchall()
        # still the same settings after every attempt
        assert con.execute("SELECT current_setting('enable_external_access')").fetchone() == (
            False,
        )
    finally:
        con.close()
    assert not out.exists() and not (out.parent / "exported").exists()


def test_an_open_file_reads_whole_while_a_new_build_replaces_it(analyst_street) -> None:
    """A notebook holding the file keeps reading the old one; the next open sees the new."""
    from share_api.analysts.build import BUILD_TABLE, ensure_analyst_db

    svc = analyst_street.service
    held = open_locked(analyst_street.path)
    try:
        before = held.execute(f'SELECT built_at FROM "{BUILD_TABLE}"').fetchone()
        ensure_analyst_db(svc.settings, analyst_street.org, service=svc, force=True)
        assert held.execute(f'SELECT built_at FROM "{BUILD_TABLE}"').fetchone() == before
        assert held.execute(f'SELECT count(*) FROM "{ANALYST_MARTS[0]}"').fetchone()[0] > 0
    finally:
        held.close()
    fresh = open_locked(analyst_street.path)
    try:
        assert fresh.execute(f'SELECT built_at FROM "{BUILD_TABLE}"').fetchone() > before
    finally:
        fresh.close()
