"""``simulate(history_days=N)``: the need model's inputs span the asked days, the outcomes
and the need truth are delivered, and a street without a history is as it always was."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from bench.streets import REGISTER_DAYS as BENCH_REGISTER_DAYS
from departments import history, needs
from departments.outcomes import OUTCOME_SPECS
from departments.simulate import sim_dir_for, simulate, truth_dir

RESIDENTS, SEED, LAST, HISTORY = 400, 3, dt.date(2026, 11, 30), 60
OUTCOMES = {(s.dept, s.code) for s in OUTCOME_SPECS}
# what a history changes or adds: everything else is as without one
HISTORY_DATASETS = OUTCOMES | {("iot", "door_access_events"), ("wjw", "elderly_health_checks"),
                               ("wjw", "chronic_followups"), ("rx", "appeals")}  # fmt: skip


def fingerprint(home: Path, manifest: dict, skip: set) -> dict:
    """Every dataset's delivered bytes (file hashes, or its system's rows) and truth."""
    sim = sim_dir_for(home)
    out = {}
    for dept, datasets in manifest["departments"].items():
        for code, entry in datasets.items():
            if (dept, code) in skip:
                continue
            found = {"sha256": entry.get("sha256"), "rows": entry["rows"]}
            if "location" in entry:
                found["system"] = (sim / entry["location"]).read_bytes()
            for f in sorted((truth_dir(sim) / dept / code).glob("*.parquet")):
                found[f.name] = pl.read_parquet(f).to_dicts()
            out[f"{dept}.{code}"] = found
    return out


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("needs")
    plain = simulate(root / "plain", residents=RESIDENTS, seed=SEED, days=1, start=LAST)
    hist = simulate(root / "hist", residents=RESIDENTS, seed=SEED, days=1, start=LAST,
                    history_days=HISTORY)  # fmt: skip
    return root, plain, hist


def test_history_spans_the_asked_days(streets):
    root, _, manifest = streets
    first_door = LAST - dt.timedelta(days=HISTORY - 1)
    doors = manifest["departments"]["iot"]["door_access_events"]["files"]
    assert doors[-1] == f"door_access_events_{LAST:%Y%m%d}.jsonl"  # the archive, then daily
    assert len(doors) == 1 + -(-(HISTORY - 1) // history.BACKFILL_FILE_DAYS)
    truth = truth_dir(sim_dir_for(root / "hist"))
    passes = pl.read_parquet(truth / "iot" / "door_access_events" / "clean.parquet")
    days = passes["event_time"].str.slice(0, 10).str.to_date().unique()  # Beijing dates
    assert sorted(days) == [first_door + dt.timedelta(days=i) for i in range(HISTORY)]
    assert manifest["needs"]["history_days"] == HISTORY
    first = dt.date.fromisoformat(manifest["needs"]["first"])
    assert first == LAST - dt.timedelta(days=history.process_days(HISTORY) - 1)
    appeals = pl.read_parquet(truth / "rx" / "appeals" / "clean.parquet")
    accepted = appeals["accepted_at"].str.to_datetime().dt.date()
    assert accepted.min() >= first and accepted.max() <= LAST
    assert (accepted.max() - accepted.min()).days > history.LOOKBACK_DAYS
    events = pl.read_parquet(truth / "needs" / "events.parquet")
    assert set(events["need"]) == set(needs.NEEDS)
    assert events["date"].min() >= first and events["date"].max() <= LAST
    checks = pl.read_parquet(truth / "wjw" / "elderly_health_checks" / "clean.parquet")
    assert checks["体检日期"].str.to_date().min() >= first


def test_the_outcomes_are_delivered_one_record_an_event(streets):
    root, _, manifest = streets
    truth = truth_dir(sim_dir_for(root / "hist"))
    events = pl.read_parquet(truth / "needs" / "events.parquet")
    for spec, need in zip(OUTCOME_SPECS, ("home_care", "health_event", "financial_assistance",
                                          "emergency_help"), strict=True):  # fmt: skip
        clean = pl.read_parquet(truth / spec.dept / spec.code / "clean.parquet")
        mine = events.filter(pl.col("need") == need)
        dupes = manifest["departments"][spec.dept][spec.code]["defects"].get("duplicate_row", 0)
        assert clean.height == mine.height + dupes, spec.code
        assert set(clean["_person"]) == set(mine["_person"]), spec.code


def test_the_truth_is_keyed_for_evaluation(streets):
    root, _, manifest = streets
    truth = truth_dir(sim_dir_for(root / "hist")) / "needs"
    probs = pl.read_parquet(truth / "probabilities.parquet")
    registry = pl.read_parquet(truth.parent / "gaj" / "registered_residents" / "clean.parquet")
    permits = pl.read_parquet(truth.parent / "gaj" / "residence_permits" / "clean.parquet")
    people = set(registry["gmsfhm"]) | set(permits["gmsfhm"])
    assert set(probs["_person"]) == people
    assert [c.isoformat() for c in probs["cutoff"].unique().sort()] == manifest["needs"]["cutoffs"]
    for need in needs.NEEDS:
        assert probs[f"p_{need}"].is_between(0, 1).all()
    assert probs.select("_person", "cutoff").is_unique().all()
    grid = pl.read_parquet(truth / "grid_expected.parquet")
    assert (grid["week_start"].dt.weekday() == 1).all() and (grid["expected"] > 0).all()
    planted = pl.read_parquet(truth / "elderly_events.parquet")
    assert (planted["lead_days"] >= needs.PLANTED_MIN_LEAD).all()
    assert json.loads((sim_dir_for(root / "hist") / "manifest.json").read_text())["needs"]


def test_a_history_leaves_every_other_dataset_as_it_was(streets):
    root, plain, hist = streets
    assert fingerprint(root / "plain", plain, HISTORY_DATASETS) == fingerprint(
        root / "hist", hist, HISTORY_DATASETS
    )


def test_the_need_process_changes_no_other_dataset_of_a_default_street(streets, tmp_path,
                                                                        monkeypatch):  # fmt: skip
    """Without a history the need process draws from streams of its own: a street whose
    process planted nothing has every other dataset byte for byte as the default street."""
    root, plain, _ = streets
    real = needs.run

    def planting_nothing(*args):
        proc = real(*args)
        proc.events = {need: [] for need in needs.NEEDS}
        return proc

    monkeypatch.setattr(needs, "run", planting_nothing)
    empty = simulate(tmp_path / "home", residents=RESIDENTS, seed=SEED, days=1, start=LAST)
    assert all(sum(empty["departments"][d][c]["records"].values()) == 0 for d, c in OUTCOMES)
    assert all(sum(plain["departments"][d][c]["records"].values()) > 0 for d, c in OUTCOMES)
    assert fingerprint(tmp_path / "home", empty, OUTCOMES) == fingerprint(
        root / "plain", plain, OUTCOMES
    )


@pytest.mark.parametrize("year", [2026, 2027, 2028])  # 2028: a leap year
def test_whether_the_model_trains_without_a_history_is_not_a_matter_of_the_date(year):
    """Every last day of a year: registers of :data:`history.REGISTER_DAYS` never give the
    hub's need model the cut-offs it trains on, even where the oldest outcome read as the 1st
    of its month (a date delivered as its month alone); registers of the benchmarks' 270 days
    always do, even where the oldest outcome came ten days into the registers. (180 days, the
    registers' length before, trained on some days: this fails with it.)"""
    from marts.need_model.step import can_train, cutoffs_between

    day, trained = dt.date(year, 1, 1), {}
    while day.year == year:
        first = day - dt.timedelta(days=history.process_days(None) - 1)
        oldest = min(first.replace(day=1), first - dt.timedelta(days=7))  # dirt's worst
        trained[day] = can_train(cutoffs_between(oldest, day))
        bench_first = day - dt.timedelta(days=history.process_days(None, BENCH_REGISTER_DAYS) - 11)
        assert can_train(cutoffs_between(bench_first, day)), day
        day += dt.timedelta(days=1)
    assert not any(trained.values()), [d for d, t in trained.items() if t][:5]


def test_the_registers_hold_the_asked_days(tmp_path):
    manifest = simulate(tmp_path / "home", residents=RESIDENTS, seed=SEED, days=1, start=LAST,
                        register_days=BENCH_REGISTER_DAYS)  # fmt: skip
    truth = truth_dir(sim_dir_for(tmp_path / "home"))
    days = pl.read_parquet(truth / "needs" / "events.parquet")["date"]
    first = LAST - dt.timedelta(days=BENCH_REGISTER_DAYS - 1)
    assert days.min() >= first and days.max() <= LAST
    assert (days.min() - first).days < 10  # events from the registers' first days on
    assert manifest["needs"]["first"] == first.isoformat()


def test_streethub_simulate_asks_for_the_registers_days(tmp_path, monkeypatch):
    """The option the benchmarks' streets are simulated with (bench/streets.py)."""
    from typer.testing import CliRunner

    from catalog.settings import get_settings
    from pipelines.cli import app

    monkeypatch.setenv("STREETHUB_HOME", str(tmp_path / "home"))

    args = ["simulate", "--residents", str(RESIDENTS), "--seed", str(SEED), "--days", "1"]
    done = CliRunner().invoke(app, [*args, "--history-days", "0", "--register-days", "270"])
    assert done.exit_code == 0, done.output
    manifest = json.loads((get_settings().sim_dir_abs / "manifest.json").read_text())
    end = dt.date.fromisoformat(manifest["end"])
    assert manifest["needs"]["first"] == (end - dt.timedelta(days=269)).isoformat()
    assert CliRunner().invoke(app, [*args, "--register-days", "0"]).exit_code != 0  # min 1
