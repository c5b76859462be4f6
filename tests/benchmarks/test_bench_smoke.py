"""The benchmarks still run (tiny sizes, one run): a benchmark that rots is found here,
not by the next engineer who measures. Figures are not asserted: timing is bench/'s job."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest

import bench.gate
import bench.pseudonyms
import bench.staged_lookup


def test_gate_bench_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.gate, "ROWS", 4_000)
    monkeypatch.setattr(bench.gate, "GE_ROWS", 1_000)
    monkeypatch.setattr(bench.gate, "RUNS", 1)
    monkeypatch.setattr(bench.gate, "RESULTS", tmp_path / "gate.json")
    result = bench.gate.main()
    assert result["rows"] == 4_000 and result["checks"] > 20
    assert (tmp_path / "gate.json").exists()


def test_pseudonym_bench_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.pseudonyms, "RESULTS", tmp_path / "pseudonyms.json")
    figures = bench.pseudonyms.main(n=3_000)
    assert figures["values"] == 3_000 and figures["polars_threads"] == 1
    assert len(figures["cpus_allowed"]) == 1
    assert set(figures["per_s"]) == {
        "hmac_digest_per_value", "python_keyed_states_copy", "polars_hmac", "pseudonymise_series"
    }  # fmt: skip


def test_staged_lookup_bench_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.staged_lookup, "RESULTS", tmp_path / "staged_lookup.json")
    monkeypatch.setattr(bench.staged_lookup, "PER_DAY", 500)
    monkeypatch.setattr(bench.staged_lookup, "ROUNDS", 1)
    figures = bench.staged_lookup.main(days=(2, 4))
    # shipped datasets keyed by a time and by a text in the clear were found, both lookups timed
    assert [(r["key"], r["days"]) for r in figures["runs"]] == [
        ("time", 2), ("time", 4), ("text", 2), ("text", 4)
    ]  # fmt: skip
    assert all(r["bounded_cpu_s"] >= 0 and r["whole_table_cpu_s"] > 0 for r in figures["runs"])
    assert figures["runs"][1]["staged_rows"] == 4 * 500
    assert (tmp_path / "staged_lookup.json").exists()


def test_reader_memory_bench_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.readers

    monkeypatch.setattr(bench.readers, "RESULTS", tmp_path / "readers.json")
    figures = bench.readers.main(big_mb=1, line_mb=0.5)
    runs = {(r["reader"], r["file"], r["max_record_mb"]) for r in figures["runs"]}
    assert {r for r, _, _ in runs} == {"csv", "jsonl"} and len(runs) == 4
    assert all(r["peak_rss_mb"] > 0 and r["rows"] > 0 for r in figures["runs"])
    assert (tmp_path / "readers.json").exists()


def test_growth_fit_recovers_a_known_curve(tmp_path: Path) -> None:
    import bench.ingest
    from bench._growth import OUTSIDE_PHASES

    # time = 20 s + rows / 10,000 (CPU: 5 s + rows / 20,000) and RSS ∝ rows^0.5: the fit
    # must give them back, with no error on an exact line
    runs = [
        {"residents": n // 10, "rows": n, "run_s": 20 + n / 10_000, "cpu_s": 5 + n / 20_000,
         "peak_rss_mb": n**0.5}
        for n in (100_000, 500_000, 2_000_000)
    ]  # fmt: skip
    fitted = bench.ingest.exponents(runs)
    assert fitted["fixed_overhead_s"] == 20.0 and fitted["fixed_overhead_se_s"] == 0.0
    assert fitted["marginal_rows_per_s"] == 10_000
    assert fitted["cpu_fixed_overhead_s"] == 5.0 and fitted["cpu_marginal_rows_per_s"] == 20_000
    assert fitted["rss_exponent"] == 0.5
    assert 0.5 < fitted["time_exponent"] < 1.0  # the fixed part flattens the curve
    lines = bench.ingest.fit_lines(fitted, runs)
    assert "a = 20.0 ± 0.0 s" in lines[0] and "a = 5.0 ± 0.0 s" in lines[1]
    assert "cpu_fixed_overhead_by_phase_s" not in fitted  # the runs name no phase
    # the CPU in two phases (3 s + rows / 40,000 and 1 s + rows / 40,000), 1 s outside them:
    # each phase's intercept, and they add up to the whole's
    for r in runs:
        r["phase_cpu_s"] = {"ingest": 3 + r["rows"] / 40_000, "model": 1 + r["rows"] / 40_000}
    by_phase = bench.ingest.exponents(runs)["cpu_fixed_overhead_by_phase_s"]
    assert by_phase == {"ingest": 3.0, "model": 1.0, OUTSIDE_PHASES: 1.0}
    assert (
        "fixed overhead by phase"
        in bench.ingest.fit_lines(fitted | {"cpu_fixed_overhead_by_phase_s": by_phase}, runs)[2]
    )
    # a small street's run: in the line of the fixed overhead, not in the exponents (those
    # are the growth sizes'); on the line it changes nothing, above it it lifts the intercept
    small = {"residents": 1_000, "rows": 10_000, "run_s": 21.0, "cpu_s": 5.5,
             "phase_cpu_s": {"ingest": 3.25, "model": 1.25}}  # fmt: skip
    with_small = bench.ingest.exponents(runs, small)
    assert with_small["fixed_overhead_points"] == 4 and with_small["fixed_overhead_s"] == 20.0
    assert with_small["time_exponent"] == fitted["time_exponent"]
    assert "over 4 points (the 3 growth runs" in bench.ingest.fit_lines(with_small, runs)[0]
    lifted = bench.ingest.exponents(runs, small | {"run_s": 41.0, "cpu_s": 15.5})
    assert lifted["fixed_overhead_s"] > 24 and lifted["cpu_fixed_overhead_s"] > 7
    assert lifted["time_exponent"] == fitted["time_exponent"]
    assert lifted["cpu_fixed_overhead_by_phase_s"][OUTSIDE_PHASES] > 1.0  # the 10 s outside
    # a point off the line: the intercept's standard error says how far to trust it
    runs[1]["run_s"] += 30
    assert bench.ingest.exponents(runs)["fixed_overhead_se_s"] > 10
    bench.ingest.chart(runs, tmp_path / "growth.svg")
    svg = (tmp_path / "growth.svg").read_text(encoding="utf-8")
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 6


@pytest.mark.slow  # simulates a tiny street, ingests it twice and runs the main job on it
@pytest.mark.timeout(1800)  # three child runs: minutes on a busy machine
def test_ingest_bench_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.ingest
    from bench._costs import CATALOGUE_READS, COMMITS, WAITING
    from catalog.loader import load_catalogue
    from tests.reliability.conftest import fewest_per_kind, sub_catalogue

    monkeypatch.setenv("STREETHUB_BENCH_QUICK", "1")
    monkeypatch.setenv("STREETHUB_BENCH_STREETS", str(tmp_path / "streets"))
    # one department for each way of delivering (every connector, the floor's every reader,
    # pulls and files): the bench's every part runs, for ~40 % of the catalogue's datasets
    shipped = load_catalogue()
    kept = fewest_per_kind(shipped.departments)
    monkeypatch.setenv("STREETHUB_CATALOG_DIR", str(sub_catalogue(tmp_path / "catalogue", kept)))
    # a smaller street would save little: the cost is nearly all fixed, per dataset and
    # step (measured: 1 day instead of 3, 2.4x fewer rows, 5% less ingest CPU; 150
    # residents deliver 95% of 300's rows)
    monkeypatch.setattr(bench.ingest, "QUICK_SIZES", (300,))
    monkeypatch.setattr(bench.ingest, "QUICK_FLOOR_RESIDENTS", 300)
    # the scorecard's memory alone, after the run, is a figure nothing here asserts (the
    # bench keeps its failure as a figure, so it could not fail this test): not measured
    full_run = functools.partial(bench.ingest.full_run, scorecard_alone=False)
    monkeypatch.setattr(bench.ingest, "full_run", full_run)
    monkeypatch.setattr(bench.ingest, "RESULTS", tmp_path / "ingest.json")
    monkeypatch.setattr(bench.ingest, "CHART", tmp_path / "growth.svg")
    figures = bench.ingest.main()
    floor, ingest = figures["floor_vs_ingest"]["floor"], figures["floor_vs_ingest"]["ingest"]
    assert floor["files"] > 0 and floor["rows"] > 0 and floor["seconds"] > 0
    assert not floor["files_duckdb_could_not_read"]
    # the floor is the round of the median CPU of several, each reading every file
    rounds = floor["rounds_cpu_s"]
    assert len(rounds) == len(floor["rounds_s"]) == bench.ingest.FLOOR_ROUNDS > 1
    assert floor["cpu_s"] == sorted(rounds)[len(rounds) // 2]
    assert (floor["cpu_s"], floor["seconds"]) in zip(rounds, floor["rounds_s"], strict=True)
    # every catalogued dataset was ingested, files and pulls, and rows were staged
    datasets = sum(len(shipped.departments[code].datasets) for code in kept)
    assert ingest["all"]["datasets"] == len(ingest["datasets"]) == datasets
    assert datasets > ingest["files"]["datasets"] > 0
    assert ingest["pulled"]["rows"] > 0
    # the profile's buckets add up to its total, and encryption and the lake show in it
    profile = figures["floor_vs_ingest"]["profile"]
    parts = [v for k, v in profile.items() if k != "total"]
    assert abs(sum(parts) - profile["total"]) < 0.1 and min(parts[:-1]) >= 0
    assert profile["encryption at rest (encrypt raw, decrypt + re-encrypt staged)"] > 0
    assert profile["lake statements (DuckDB/DuckLake: metadata, commits, inserts)"] > 0
    # the sampled ingest (py-spy, native frames) found the ingest's frame and told DuckLake's
    # catalogue from the rest: its kinds add up to its total, the waits apart
    # (a machine whose kernel lets no process trace another has the bench say why instead)
    sampled = figures["floor_vs_ingest"]["sampled_profile"]
    if "unavailable" in sampled:
        assert sampled["unavailable"].startswith("py-spy ") and len(sampled) == 1, sampled
    else:
        kinds = {k: v for k, v in sampled.items() if k not in ("total", WAITING)}
        assert sampled["total"] > 0 and abs(sum(kinds.values()) - sampled["total"]) < 0.05
        assert kinds.get(CATALOGUE_READS, 0) > 0 and kinds.get(COMMITS, 0) > 0
    # a run's memory before any data, step by step: each step named, in order, each
    # holding what the one before it held or more (it imports and attaches, frees nothing)
    base = figures["floor_vs_ingest"]["base_rss"]
    assert [step for step, _ in base][:2] == ["interpreter", "polars, duckdb"]
    assert base[-1][0] == "Great Expectations" and len(base) == 10
    mb = [m for _, m in base]
    assert 0 < mb[0] < mb[-1] and all(b >= a - 5 for a, b in itertools.pairwise(mb))
    # a tiny street leaves some datasets nearly empty; what was delivered is mostly staged
    assert all(d["staged"] > 0 for d in ingest["datasets"].values() if d["rows"] >= 20)
    assert sum(d["staged"] for d in ingest["datasets"].values()) > 0.9 * ingest["all"]["rows"]
    # the file-delivered ingest reads what the floor read (the ingest also counts raw
    # rows DuckDB's reader drops, e.g. stray header lines)
    assert ingest["files"]["rows"] >= floor["rows"] * 0.95
    (run,) = figures["growth"]
    assert run["exit_code"] == 0 and run["rows"] > 0 and run["staged"] > 0
    # it met the street as a real one: no truth evaluated, the served APIs and the
    # databases reached by their settings alone (every row the floor's ingest read of the
    # same street, pulls included, is in it)
    assert run["truth_evaluated"] is False and run["rows"] == ingest["all"]["rows"]
    assert run["peak_rss_mb"] > 100 and run["run_s"] > 0 and run["cpu_s"] > 0
    assert run["dagster_runs"] > 0 and run["dagster_steps"] >= run["dagster_runs"]
    # the run's wall by where it went: its steps within its Dagster runs within the run
    assert 0 < run["steps_s"] <= run["runs_s"] + 0.01 and run["runs_s"] < run["run_s"]
    groups = run["step_groups"]
    assert sum(n for n, _ in groups.values()) == run["dagster_steps"]
    assert (
        groups["ingest"][0] == datasets
        and abs(sum(s for _, s in groups.values()) - run["steps_s"]) < 0.05
    )
    assert run["slowest"][0][1] == max(s for _, s in run["slowest"])
    printed = capsys.readouterr().out
    assert f"{run['steps_s']:.1f} s in steps (" in printed and "slowest steps: " in printed
    # where the run's summary says its peak was: one of the main job's phases
    phases = [
        "the departments' ingest",
        "the curated build, scorecard and leak scan",
        "the marts",
        "the need model",
        "the summary, truth evaluation and custody",
    ]
    assert run["peak_phase"] in phases
    # and where its CPU went: every phase, in order, within the child's own CPU seconds
    assert list(run["phase_cpu_s"]) == phases and min(run["phase_cpu_s"].values()) >= 0
    assert 0 < sum(run["phase_cpu_s"].values()) <= run["cpu_s"] + 0.5
    # the 300-resident street was simulated once, for the floor, and copied after
    assert figures["floor_vs_ingest"]["simulate_s"] > 0 and run["simulate_s"] is None
    assert (tmp_path / "ingest.json").exists()


def test_the_goals_are_printed_together_beside_their_figures(tmp_path: Path) -> None:
    import json

    import bench.__main__ as bench_main
    import bench.ingest
    from bench._costs import CATALOGUE_READS, COMMITS, WAITING

    runs = [
        {"residents": n // 15, "rows": n, "run_s": 30 + n / 5_000, "cpu_s": 25 + n / 6_000,
         "peak_rss_mb": 400 + n / 2_000}
        for n in (150_000, 720_000, 2_880_000)
    ]  # fmt: skip
    ingest = {
        "goals": bench.ingest.GOALS,
        "floor_vs_ingest": {"residents": 20_000, "ratio_files": 7.5},
        "growth": runs,
        "fitted": bench.ingest.exponents(runs),
        "fixed_cost": {"residents": 1_000, "cpu_s": 31.0, "dagster_steps": 40, "peak_rss_mb": 500,
                       "lake_statements": {"statements": 9_102, "ours": 1_913, "catalogue": 5_453,
                                           "transaction_control": 1_736, "instances": 1},
                       "sampled_profile": {CATALOGUE_READS: 27.0, "our Python": 65.0,
                                           COMMITS: 8.0, "total": 100.0, WAITING: 5.0},
                       "stack_floor": {"parts_cpu_s": {"imports": 1.5, "registry": 2.5},
                                       "cpu_s": 4.0, "dagster_runs": 4, "dagster_steps": 40}},
    }  # fmt: skip
    incremental = {
        "residents": 20_000, "goals": {"no_op_fraction": 0.1, "daily_fraction": 0.2},
        "no_op_cpu_fraction": 0.08, "no_op_fraction": 0.12,
        "daily_cpu_fraction": 0.31, "daily_fraction": 0.3,
    }  # fmt: skip
    (tmp_path / "ingest.json").write_text(json.dumps(ingest))
    (tmp_path / "incremental.json").write_text(json.dumps(incremental))
    text = "\n".join(bench_main.goals(tmp_path))
    assert "7.5× (goal ≤ 3.0×: MISSED)" in text
    assert "a = 30.0 ± 0.0 s (fixed overhead; goal < 20 s: MISSED)" in text
    assert "peak RSS at 192,000 residents: 1840.0 MB (goal < 1024 MB: MISSED)" in text
    assert "no-op run (20,000 residents): 8.0% of the first run's CPU" in text
    assert "(goal ≤ 10%: met)" in text and "31.0%" in text and "(goal ≤ 20%: MISSED)" in text
    assert "40 Dagster steps" in text
    assert "9,102 statements on the lake, 1,913 of them ours" in text
    assert "DuckLake's catalogue (reads, commits) 35% of its samples" in text  # waits not counted
    # the stack's floor beside the CPU's fixed overhead (25 s): what is left of ours
    assert (
        "the stack alone, no work of ours (4 Dagster runs, 40 steps): 4.0 CPU s (imports 1.5, "
        "MLflow's new registry 2.5); the fixed overhead less that: 21.0 CPU s of ours, where "
        "the goal leaves 16.0 s"
    ) in text
    assert bench_main.goals(tmp_path / "nothing") == []


def test_the_goals_are_summed_up_once_by_the_run_of_several(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m bench ingest incremental` runs each in a child: a child prints no
    summary (the ingest's would show the last incremental figures), its parent one."""
    import types

    import bench.__main__ as bench_main

    ran: list[str] = []
    monkeypatch.setattr(
        bench_main.importlib,
        "import_module",
        lambda name: types.SimpleNamespace(main=lambda: ran.append(name)),
    )
    monkeypatch.setattr(bench_main, "goals", lambda: ["a goal"])
    monkeypatch.setenv(bench_main.ONE_OF_MANY, "1")
    assert bench_main.main(["incremental"]) == 0
    assert ran == ["bench.incremental"] and "issue 10" not in capsys.readouterr().out
    monkeypatch.delenv(bench_main.ONE_OF_MANY)
    assert bench_main.main(["incremental"]) == 0
    assert capsys.readouterr().out.count("issue 10 (Any street), the goals:\n  a goal") == 1


# py-spy's frames as it writes them: Python ``function (file:line)``, native ``function (library)``
_RUN = 'process 7:"python streethub run"'
_TOP = "<module> (streethub:6);run (pipelines/cli.py:420);run_main (pipelines/main_job.py:132)"
_LAKE = "_duckdb.cpython-311-x86_64-linux-gnu.so"
_STEP = "_ingest (pipelines/defs/sources/assets.py:101);materialize (dagster/_core/x.py:9)"


def _stack(*frames: str) -> list[str]:
    return ";".join((_RUN, _TOP, *frames)).split(";")


def test_a_runs_samples_are_told_apart_by_kind_of_cost(tmp_path: Path) -> None:
    from bench._costs import REST, WAITING, cost_kind, cost_shares, share_lines

    execute = f"pending (pipelines/ingest/ledger.py:234);duckdb::ClientContext::Query ({_LAKE})"
    files = "duckdb::DuckLakeMultiFileList::GetFiles (ducklake.duckdb_extension)"
    commit = "duckdb::DuckLakeTransaction::Commit (ducklake.duckdb_extension)"
    scan = f"duckdb::PhysicalTableScan::GetData ({_LAKE})"
    samples = {
        # DuckLake's catalogue wherever it is paid, a commit told from a read
        (execute, files): "DuckLake's catalogue reads",
        (execute, commit, "duckdb::DuckLakeMetadataManager::Execute (ducklake.duckdb_extension)"):
            "DuckLake's commits",
        (execute, "duckdb::DuckLakeTransaction::GetSnapshot (ducklake.duckdb_extension)"):
            "DuckLake's catalogue reads",
        # DuckDB reading our data, under a Dagster step: DuckDB's, not Dagster's
        (_STEP, "compute (dagster/_core/y.py:3)", "_ingest (pipelines/ingest/raw.py:5)",
         execute, scan): "DuckDB's own work",
        # Dagster's own work (its event log through SQLAlchemy) below our step
        (_STEP, "store_event (dagster/_core/storage/z.py:1)",
         "execute (sqlalchemy/engine/base.py:2)"): "Dagster",
        # a library ours called, by what it is
        ("_staged (quality/standardise.py:634)", "collect (polars/lazyframe/frame.py:2)"):
            "polars",
        ("_encrypt_batch (masking/crypto.py:228)", "collect (polars/lazyframe/frame.py:2)"):
            "encryption",
        ("register (marts/need_model/registry.py:9)", "log_metric (mlflow/tracking/client.py:1)",
         "execute (sqlalchemy/engine/base.py:2)"): "MLflow",
        ("_validate (quality/expectations.py:1)",
         "graph_validate (great_expectations/validator/validator.py:3)"): "Great Expectations",
        # a module loaded, whoever asked: the import, not the asker
        ("_gx (quality/expectations.py:90)", "_find_and_load (<frozen importlib._bootstrap>:1176)",
         "<module> (great_expectations/__init__.py:1)"): "module loading",
        ("cell_kinds (masking/leaks.py:264)",): "our Python",
    }  # fmt: skip
    for frames, kind in samples.items():
        assert cost_kind(_stack(*frames)).startswith(kind), frames
    assert cost_kind([_RUN, "0x7f0 (libc.so.6)"]) == REST  # no frame of ours or of a library's
    # a thread that waits (a progress bar's refresher between frames) is not at work
    waits = (
        "Thread._bootstrap (threading.py:1002)",
        "_RefreshThread.run (rich/live.py:35)",
        "Condition.wait (threading.py:331)",
        "PyThread_acquire_lock_timed (libpython3.11.so)",
    )
    assert cost_kind([_RUN, *waits]) == WAITING
    # the shares: samples / rate per kind, largest first, adding up to the total
    raw = tmp_path / "run.raw"
    raw.write_text(
        f"{';'.join(_stack(execute, files))} 30\n"
        f"{';'.join(_stack('cell_kinds (masking/leaks.py:264)'))} 10\n"
        f"{';'.join(_stack(execute, files))} 20\n"
        f"{';'.join([_RUN, *waits])} 40\n"
        "garbage line\n",
        encoding="utf-8",
    )
    shares = cost_shares(raw, rate=100)
    kinds = [next(k for k in shares if "catalogue" in k), "our Python", "total", WAITING]
    assert list(shares) == kinds
    assert shares["total"] == 0.6 and shares["our Python"] == 0.1 and shares[WAITING] == 0.4
    assert share_lines(shares)[1] == " 17%  our Python"  # of the total, waits not counted
    # within one function's calls: the samples that have its frame only
    inside = cost_shares(raw, rate=100, within="pending (pipelines/ingest/ledger.py:")
    assert list(inside) == [kinds[0], "total", WAITING] and inside["total"] == 0.5


def test_lake_statement_bench_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.lake_statements as lake_bench

    monkeypatch.setattr(lake_bench, "REPEATS", 2)
    monkeypatch.setattr(lake_bench, "ROUNDS", 1)
    monkeypatch.setattr(lake_bench, "MANY_FILES", 6)
    monkeypatch.setattr(lake_bench, "RESULTS", tmp_path / "lake_statements.json")
    figures = lake_bench.main()
    # the tables hold their rows in the files the figures are labelled with: one, and one
    # per insert (each of which carries the filter's values, so no file is ruled out)
    assert figures["files"] == {"one_file": 1, "many_files": 6}
    statements = figures["statements"]
    assert len(statements) == 7
    for name, where in statements.items():
        places = {w for w in where if not w.endswith(": ratio")}
        assert "plain DuckDB table" in places and "lake table, 1 file" in places, name
        assert all(where[w] > 0 for w in places), name
        assert {f"{w}: ratio" for w in places - {"plain DuckDB table"}} <= set(where), name
    assert set(statements["count, filter on two columns"]) >= {"lake table, 6 files"}
    assert (tmp_path / "lake_statements.json").exists()


def test_the_stack_floor_runs_each_part_in_a_process_of_its_own() -> None:
    """The floor's parts do what they say (the no-op steps run, the lake's rows read back),
    each in a fresh process, and add up to the floor."""
    from bench._stack_floor import floor_line, measure
    from catalog.loader import load_catalogue
    from catalog.settings import Settings

    datasets = len(list(load_catalogue(Settings().catalog_dir).datasets()))
    floor = measure(runs=2, steps=3, rounds=1, parts=("dagster", "lake"))
    assert floor["done"] == {"dagster": 3, "lake": 2 * datasets}
    assert all(cpu > 0 for cpu in floor["parts_cpu_s"].values())
    assert floor["cpu_s"] == round(sum(floor["parts_cpu_s"].values()), 2)
    assert floor_line(floor).startswith(
        f"the stack alone, no work of ours (2 Dagster runs, 3 steps): {floor['cpu_s']} CPU s "
        "(Dagster's runs and steps "
    )


def test_rekey_bench_measures_both_ways_on_a_staged_street(staged_street, tmp_path: Path) -> None:
    """The re-key bench's measurement (``bench.rekey.measure``: both ways in children, on
    copies) on the session's staged street, one round; the street is left as it was."""
    import bench.rekey

    figures = bench.rekey.measure(staged_street.home, tmp_path, rounds=1)
    counted = bench.rekey.deliveries(staged_street.home)
    assert figures["datasets"] > 20 and 0 < figures["rows"] <= counted["rows"]
    assert set(figures["cpu_s"]) == set(bench.rekey.WAYS) and figures["ratio_cpu"] > 0
    assert not list(tmp_path.iterdir())  # every copy removed
