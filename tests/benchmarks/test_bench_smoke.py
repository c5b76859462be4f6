"""The benchmarks still run (tiny sizes, one run): a benchmark that rots is found here,
not by the next engineer who measures. Figures are not asserted: timing is bench/'s job."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.gate
import bench.pseudonyms


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


def test_reader_memory_bench_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.readers

    monkeypatch.setattr(bench.readers, "RESULTS", tmp_path / "readers.json")
    figures = bench.readers.main(big_mb=1, line_mb=0.5)
    runs = {(r["reader"], r["file"], r["max_record_mb"]) for r in figures["runs"]}
    assert {r for r, _, _ in runs} == {"csv", "jsonl"} and len(runs) == 4
    assert all(r["peak_rss_mb"] > 0 and r["rows"] > 0 for r in figures["runs"])
    assert (tmp_path / "readers.json").exists()
