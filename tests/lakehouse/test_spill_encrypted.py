"""What a DuckDB connection over personal data spills to disk is encrypted: a table larger
than the memory limit is offloaded to temporary files, and no value of it is in them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from catalog.settings import Settings
from lakehouse.extensions import bounded_instance, spill_encrypted, spill_folder
from lakehouse.lake import close_idle, open_lake
from lakehouse.session import scratch

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
    assert Path(where).parent == settings.spill_dir  # a folder of the instance's own
    assert purged is True  # freed memory goes back to the system (lakehouse.lake)
    close_idle()


def test_two_instances_spill_at_once_each_into_its_own_folder(
    settings: Settings, tmp_path: Path
) -> None:
    """DuckDB names its temporary files the same in every instance: two that spilled into
    one folder at once overwrote each other's blocks and died of a segmentation fault (so
    this test, with one folder for both, crashes its process)."""
    root = tmp_path / "spill"
    small = settings.model_copy(update={"lake_memory_limit": "32MB"})
    a, b = (bounded_instance(small, root) for _ in range(2))
    folders = [
        Path(c.execute("SELECT current_setting('temp_directory')").fetchone()[0]) for c in (a, b)
    ]
    assert folders[0] != folders[1] and {f.parent for f in folders} == {root}
    for con, tag in ((a, "a"), (b, "b")):  # both hold their spilled table at once
        con.execute(
            f"CREATE TABLE t AS SELECT '{tag}-{MARK.decode()}-' || i::VARCHAR AS v "
            "FROM range(1500000) r(i)"
        )
    assert all(f.is_dir() and any(f.iterdir()) for f in folders)  # both spilled
    assert not any(MARK in data for f in folders for data in _spilled(f))  # encrypted
    for con, tag in ((a, "a"), (b, "b")):
        assert con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE v LIKE '{tag}-%') FROM t"
        ).fetchone() == (1_500_000, 1_500_000)
    a.close()
    assert not folders[0].exists() and folders[1].exists()  # DuckDB removes its own on close
    b.close()
    assert list(root.iterdir()) == []


def test_a_dead_process_spill_folder_is_removed_by_the_next_instance(tmp_path: Path) -> None:
    root, host = tmp_path / "spill", socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    left = root / f"{host}-{int(dead.stdout)}-0"  # a killed run's folder, its blocks left
    left.mkdir(parents=True)
    (left / "duckdb_temp_storage_DEFAULT-0.tmp").write_bytes(b"\0" * 64)
    mine = root / f"{host}-{os.getpid()}-999"  # a live process's (this one's) is kept
    other = root / f"another-host-{int(dead.stdout)}-0"  # another host's: not ours to judge
    for kept in (mine, other):
        kept.mkdir()
    new = spill_folder(root)
    assert not left.exists() and mine.exists() and other.exists()
    assert new.parent == root and new.name.startswith(f"{host}-{os.getpid()}-")
    assert not new.exists()  # DuckDB makes it when it first spills


def test_a_scratch_duckdb_never_spills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scratch DuckDB (frames already in memory, maybe personal) fails past its memory
    rather than write what does not fit in the clear (DuckDB's default: ``.tmp/`` here)."""
    monkeypatch.chdir(tmp_path)
    con = scratch()
    assert con.execute("SELECT current_setting('temp_directory')").fetchone()[0] == ""
    con.execute("SET memory_limit = '32MB'")
    with pytest.raises(duckdb.OutOfMemoryException):
        _offload(con)
    con.close()
    assert not (tmp_path / ".tmp").exists()
    plain = duckdb.connect(config={"memory_limit": "32MB", "threads": 1})
    _offload(plain)  # DuckDB's default spills here, in the clear: the check above could fail
    assert any(MARK in data for data in _spilled(tmp_path / ".tmp"))
    plain.close()
