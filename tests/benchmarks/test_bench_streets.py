"""The benchmarks' street cache: a street is simulated once per key (residents, seed,
days, the simulator's source), handed out as a fresh copy, never modified."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import bench.streets as streets
from departments.connect import connection_env

SIM = "home.departments"
DB = "systems/gaj/registry.sqlite"  # as the manifest names it: in the simulator's folder


def _fake_simulate(calls: list[dict]):
    """Writes the layout `streethub simulate` leaves (a manifest naming its database by
    its path in the simulator's folder, an inbox file) instead of simulating."""

    def simulate(folder: Path, key: dict) -> float:
        calls.append(key)
        (folder / "home" / "inbox").mkdir(parents=True)
        (folder / "home" / "inbox" / "a.csv").write_text("x\n1\n")
        manifest = {k: key[k] for k in ("residents", "seed", "days")}
        end = dt.date(2026, 12, 4)  # the registers as the key asks (a hand-made street's
        first = end - dt.timedelta(days=key.get("register_days", 150) - 1)  # own default)
        manifest |= {"end": end.isoformat(), "needs": {"history_days": None,
                                                       "first": first.isoformat()}}  # fmt: skip
        system = {"database": DB, "table": "hukou"}
        manifest["departments"] = {"gaj": {"r": {"kind": "sql_db", "system": system}}}
        (folder / SIM).mkdir()
        (folder / SIM / "manifest.json").write_text(json.dumps(manifest))
        return 1.5

    return simulate


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []
    monkeypatch.setenv(streets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(streets, "_simulate", _fake_simulate(calls))
    return calls


def test_a_street_is_simulated_once_and_copied_after(tmp_path: Path, cache: list[dict]) -> None:
    first = streets.street(tmp_path / "a", 1_000, seed=7)
    assert len(cache) == 1 and not first.cached and first.simulate_s == 1.5
    (first.home / "inbox" / "a.csv").unlink()  # a run empties its copy's inbox
    second = streets.street(tmp_path / "b", 1_000, seed=7)
    assert len(cache) == 1 and second.cached and second.simulate_s is None
    assert second.source_checked and (second.home / "inbox" / "a.csv").exists()
    # the copy is reached at its own database, not the cache's (the manifest, copied as it
    # is, names it relative to the folder)
    url = connection_env(second.sim_dir)["STREETHUB_GAJ_DB_URL"]
    assert url == f"sqlite:{tmp_path / 'b' / SIM / DB}"
    # another seed, or another simulator source, is another street
    streets.street(tmp_path / "c", 1_000, seed=8)
    assert len(cache) == 2


def test_a_changed_simulator_is_simulated_again(
    tmp_path: Path, cache: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    streets.street(tmp_path / "a", 500)
    monkeypatch.setattr(streets, "source_hash", lambda: "f" * 64)
    assert not streets.street(tmp_path / "b", 500).cached and len(cache) == 2


def test_a_street_simulated_by_hand_is_used_by_its_manifest(
    tmp_path: Path, cache: list[dict]
) -> None:
    hand = Path(streets.cache_dir()) / "r2000"
    _fake_simulate([])(
        hand, {"residents": 2_000, "seed": 7, "days": 3, "register_days": streets.REGISTER_DAYS}
    )
    got = streets.street(tmp_path / "a", 2_000)
    assert got.cached and not got.source_checked and not cache
    assert not streets.street(tmp_path / "b", 2_000, days=1).cached  # other days: simulated
    # registers of the simulator's default days (the need model would not train): simulated
    _fake_simulate([])(Path(streets.cache_dir()) / "r3000", {"residents": 3_000, "seed": 7,
                                                             "days": 3})  # fmt: skip
    assert not streets.street(tmp_path / "c", 3_000).cached
    assert cache[-1]["register_days"] == streets.REGISTER_DAYS


def test_the_source_hash_follows_the_simulators_files(tmp_path: Path) -> None:
    (tmp_path / "sim.py").write_text("A = 1\n")
    before = streets.source_hash(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "sim.pyc").write_bytes(b"\0")
    assert streets.source_hash(tmp_path) == before
    (tmp_path / "sim.py").write_text("A = 2\n")
    assert streets.source_hash(tmp_path) != before


def test_what_serves_or_documents_a_street_keeps_the_cache(tmp_path: Path) -> None:
    (tmp_path / "sim.py").write_text("A = 1\n")
    before = streets.source_hash(tmp_path)
    for name in (*streets.NOT_THE_STREET, "README.md"):
        (tmp_path / name).write_text("served, not made\n")
    assert streets.source_hash(tmp_path) == before
    (tmp_path / "pkg").mkdir()  # a module of that name deeper down makes the street
    (tmp_path / "pkg" / "server.py").write_text("B = 1\n")
    assert streets.source_hash(tmp_path) != before
