"""The share service benchmark still runs (tiny sizes, one round): its harness — two uvicorn
processes, the load generator, the downloads — on a copy of the session's mart street.
Figures are not asserted beyond their being measured: timing is bench/'s job."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.share
from bench._load import LoadResult
from bench._profile import summarise_profile


def test_percentiles_are_nearest_rank() -> None:
    result = LoadResult(clients=1, seconds=2.0, latencies_s=[i / 1000 for i in range(1, 101)])
    assert result.percentile_ms(0.5) == pytest.approx(50.0)
    assert result.percentile_ms(0.99) == pytest.approx(99.0)
    assert result.percentile_ms(1.0) == pytest.approx(100.0)
    assert result.per_s == 50.0


def test_profile_summary_counts_each_sample_once_per_table(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.write_text(
        "main (a/x.py:1);read (share_api/grants.py:10);page (share_api/views.py:5) 6\n"
        "main (a/x.py:1);read (share_api/grants.py:11);read (share_api/grants.py:12) 3\n"
        "main (a/x.py:1);send (uvicorn/h.py:2) 1\n"
    )
    text = summarise_profile(raw, "CPU")
    assert text.startswith("CPU: 10 samples")
    # a function on the stack twice (recursion, two lines) counts once a sample
    assert "90.0%  read (share_api/grants.py)" in text
    assert "90.0%  share_api" in text and "100.0%  a" in text
    assert "60.0%  page (share_api/views.py)" in text  # the leaf table
    assert "30.0%  read (share_api/grants.py)" in text.split("leaf")[1]
    # only the samples with a frame of a function
    within = summarise_profile(raw, "wall", within="read")
    assert within.startswith("wall: 9 samples") and "uvicorn" not in within


@pytest.mark.timeout(900)
def test_share_bench_runs(mart_street, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"SECONDS": 1.0, "WARMUP_S": 0.2, "ROUNDS": 1, "PAGES": 2}.items():
        monkeypatch.setattr(bench.share, name, value)
    figures = bench.share.main(
        mart_street.settings.home_abs,
        clients=(4,),
        big_rows=3_000,
        runs=1,
        profile=False,
        results=tmp_path / "share.json",
    )
    page = figures["pages"]["4"]
    for side in ("baseline", "share"):
        assert page[side]["requests"] > 0 and page[side]["errors"] == 0, page[side]
    assert all(set(r["statuses"]) == {"200"} for r in page["rounds"]["share"])
    rows = figures["big_rows"]
    assert rows >= 3_000  # padded to 3,000 rows, or the table held more already
    assert figures["downloads"]["rows"] == {"arrow": rows, "parquet": rows, "local_parquet": rows}
    assert len(figures["verdicts"]) == 5  # ratio, p99 + errors, CPU a request, arrow, parquet
    assert (tmp_path / "share.json").exists()
