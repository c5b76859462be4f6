"""A home moved (or restored from a backup) to another path goes on where it stopped.

The ledger records the path each delivery was landed at, which names the home it was
landed in; the landed copies are found under the moved home's landing zone
(``pipelines.ingest.ledger.landed_file``): a delivery landed before the move is loaded
after it, and retention removes the copies where they now are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pytest

from catalog.loader import load_catalogue
from catalog.settings import Settings
from lakehouse.lake import close_idle, open_lake
from pipelines.ingest.landing import REMOVED_TABLE, apply_retention, land, open_landed
from pipelines.ingest.ledger import ensure_ledger, landed_file
from tests.pipelines.test_incremental import DEPT, FIRST, deliver, one_department_home, run

DATASET = "violation_cases"


def _ledger(settings: Settings) -> list[tuple[str, str, str]]:
    with open_lake(settings, read_only=True) as con:
        return con.execute(
            "SELECT landed_path, sha256, delivery_id FROM landing.deliveries ORDER BY arrived_at"
        ).fetchall()


def test_a_moved_home_loads_and_retires_what_it_landed_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    old = one_department_home(tmp_path / "a", monkeypatch)
    deliver(old, FIRST, 0, 40)
    dataset = load_catalogue(old.catalog_dir).dataset(f"{DEPT}.{DATASET}")[1]
    with open_lake(old) as con:
        ensure_ledger(con)
        assert len(land(con, old, DEPT, dataset).landed) == 1  # landed, not loaded yet
    close_idle()  # nothing of the old place held open

    new_home = tmp_path / "b" / "moved"
    new_home.parent.mkdir()
    shutil.move(old.home_abs, new_home)
    for beside in (old.witness_dir_abs,):  # what lives beside a home moves with it
        if beside.exists():
            shutil.move(beside, new_home.with_name(new_home.name + ".witness"))
    monkeypatch.setenv("STREETHUB_HOME", str(new_home))
    new = Settings(home=new_home, catalog_dir=old.catalog_dir).ensure_dirs()

    ((recorded, sha, _),) = _ledger(new)
    assert recorded.startswith(str(old.home_abs)) and not Path(recorded).exists()
    found = landed_file(new.landing_dir, DEPT, DATASET, recorded)
    assert found == new.landing_dir / DEPT / DATASET / Path(recorded).name
    with open_landed(new, found) as fh:  # the moved home's key still opens it
        assert hashlib.file_digest(fh, "sha256").hexdigest() == sha

    run(new)  # the delivery landed before the move is loaded after it
    deliver(new, "violation_cases_20261102.csv", 40, 10)
    run(new)
    with open_lake(new, read_only=True) as con:
        staged = con.execute(f'SELECT count(*) FROM staged."{DEPT}__{DATASET}"').fetchone()[0]
        accounts = con.execute(
            "SELECT status, rows_loaded FROM landing.delivery_accounts ORDER BY accounted_at"
        ).fetchall()
    assert staged == 50 and accounts == [("loaded", 40), ("loaded", 10)]

    # retention finds both copies where they are now, and removes them there
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    kept = new.model_copy(update={"landing_retention_days": 1})
    files = [landed_file(new.landing_dir, DEPT, DATASET, p) for p, _, _ in _ledger(new)]
    assert len(files) == 2 and all(f.is_file() for f in files)
    with open_lake(kept) as con:
        assert apply_retention(con, kept, at=later) == 2
        removed = con.execute(f"SELECT count(*) FROM landing.{REMOVED_TABLE}").fetchone()[0]
    assert removed == 2 and not any(f.exists() for f in files)


def test_a_copy_is_found_in_this_home_and_nothing_else_is(tmp_path: Path) -> None:
    landing = tmp_path / "home" / "landing"
    moved = "/old/home/landing/cgj/violation_cases/ab12.csv.enc"
    assert landed_file(landing, "cgj", "violation_cases", moved) == Path(moved)  # none here
    here = landing / "cgj" / "violation_cases" / "ab12.csv.enc"
    here.parent.mkdir(parents=True)
    here.write_bytes(b"x")
    assert landed_file(landing, "cgj", "violation_cases", moved) == here
    up = "/old/home/landing/cgj/violation_cases/.."  # a tampered ledger: never a folder here
    assert landed_file(landing, "cgj", "violation_cases", up) == Path(up)
    # another dataset's folder, or no landing zone at all: not this delivery's layout
    for other in ("/old/home/landing/cgj/other/ab12.csv.enc", "/elsewhere/ab12.csv.enc"):
        assert landed_file(landing, "cgj", "violation_cases", other) == Path(other)
