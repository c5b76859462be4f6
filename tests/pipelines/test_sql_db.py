"""Pulling a department's database (pipelines/connectors/sql_db.py): one reader a process,
its sqlite scanner loaded once, every pull's database attached for that pull alone."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from catalog.errors import DeliveryError
from catalog.settings import Settings
from lakehouse import extensions
from pipelines.connectors import sql_db
from tests.pipelines.test_connectors import make_dataset

PEOPLE = [  # (citizen ID, name, birth date, a number the legacy system keeps as an integer)
    ("11010519491231002X", "张三丰", "1949-12-31", 7),
    ("110105195001010019", "李四", "1950-01-01", 42),
]


def _registry(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (身份证号 TEXT, 姓名 TEXT, 出生日期 TEXT, 序号 INTEGER)")
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", PEOPLE)
    return path


def test_pulls_share_one_reader_that_loads_its_extension_once_and_keeps_nothing_attached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[tuple] = []
    real = extensions.load_extensions
    monkeypatch.setattr(extensions, "load_extensions", lambda *a: loads.append(a[2:]) or real(*a))
    monkeypatch.setattr(sql_db, "_READERS", {})
    db = _registry(tmp_path / "registry.sqlite")
    settings = Settings(home=tmp_path / "home", db_urls={"gaj": f"sqlite:{db}"})
    ds = make_dataset("sql_db", table="t", cursor_column="出生日期")

    first = sql_db.pull_sql(settings, "gaj", ds, None)
    rows = [json.loads(line) for line in first.data.decode().splitlines()]
    assert first.rows == 2 and first.cursor_end == "1950-01-01"
    assert [r["序号"] for r in rows] == ["7", "42"]  # every column as text, on every cursor
    again = sql_db.pull_sql(settings, "gaj", ds, "1949-12-31")  # from the cursor on
    assert again.rows == 1 and json.loads(again.data)["姓名"] == "李四"
    missing = make_dataset("sql_db", table="no_such_table", cursor_column="出生日期")
    with pytest.raises(DeliveryError, match="no_such_table"):
        sql_db.pull_sql(settings, "gaj", missing, None)

    assert loads == [("sqlite_scanner",), ("httpfs",)]  # once for the three pulls
    attached = (
        sql_db._readers(settings)
        .execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal")
        .fetchall()
    )
    assert attached == [("memory",)]  # each pull's database let go, the failed one's too


def test_the_reader_is_bounded_and_spills_encrypted_under_the_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull sorts a department's rows: DuckDB's defaults (80 % of the machine, spilling in
    the clear into ``.tmp/`` of the working directory) are not the reader's."""
    monkeypatch.setattr(sql_db, "_READERS", {})
    settings = Settings(home=tmp_path / "home", lake_memory_limit="64MB", lake_threads=1)
    reader = sql_db._readers(settings)
    limit, threads, encrypted, folder, zone = reader.execute(
        "SELECT current_setting('memory_limit'), current_setting('threads'), "
        "current_setting('temp_file_encryption'), current_setting('temp_directory'), "
        "current_setting('TimeZone')"
    ).fetchone()
    assert limit == "61.0 MiB" and threads == 1 and encrypted is True and zone == "UTC"
    assert Path(folder).parent == settings.spill_dir
