"""What a DuckDB connection over personal data spills to disk is encrypted: a table larger
than the memory limit is offloaded to temporary files, and no value of it is in them."""

from __future__ import annotations

from pathlib import Path

import duckdb

from catalog.settings import Settings
from lakehouse.extensions import spill_encrypted
from lakehouse.lake import close_idle, open_lake

MARK = b"110105194912310021"


def _offload(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"CREATE TABLE t AS SELECT '{MARK.decode()}-' || i::VARCHAR AS v FROM range(1500000) r(i)"
    )


def _spilled(directory: Path) -> list[bytes]:
    return [f.read_bytes() for f in directory.glob("*") if f.is_file()]


def test_spill_is_encrypted(settings: Settings, tmp_path: Path) -> None:
    # the same table spills in the clear without the setting: the check below could fail
    plain = duckdb.connect(config={"memory_limit": "32MB", "threads": 1})
    plain.execute(f"SET temp_directory = '{tmp_path / 'plain'}'")
    _offload(plain)
    assert any(MARK in b for b in _spilled(tmp_path / "plain"))
    plain.close()

    con = duckdb.connect(config={"memory_limit": "32MB", "threads": 1})
    spill_encrypted(con, settings, tmp_path / "enc")
    _offload(con)
    spilled = _spilled(tmp_path / "enc")
    assert sum(len(b) for b in spilled) > 1_000_000  # it did spill
    assert not any(MARK in b for b in spilled)
    assert con.execute("SELECT count(*), min(v) FROM t").fetchone() == (
        1_500_000,
        f"{MARK.decode()}-0",
    )
    con.close()


def test_the_lake_spills_encrypted(settings: Settings) -> None:
    close_idle()
    with open_lake(settings) as con:
        enc, where, purged = con.execute(
            "SELECT current_setting('temp_file_encryption'), current_setting('temp_directory'), "
            "current_setting('allocator_background_threads')"
        ).fetchone()
    assert enc is True
    assert Path(where) == settings.lake_dir / "spill"
    assert purged is True  # freed memory goes back to the system (lakehouse.lake)
    close_idle()
