"""``bench/suites.py`` still runs (tiny size, one run) and reports both suites side by side;
figures are not asserted (timing is bench/'s job)."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.suites


def test_suites_bench_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.suites, "RESULTS", tmp_path / "suites.json")
    figures = bench.suites.main(n=2_000, runs=1)
    assert figures["values"] == 2_000
    for suite in ("intl", "gm"):
        assert set(figures["per_s"][suite]) == {"encrypt", "decrypt", "pseudonymise"}
        assert all(rate > 0 for rate in figures["per_s"][suite].values())
    assert set(figures["hmac_sm3_alternatives_per_s"]) == {
        "hmac_digest_per_value", "hashlib_states_copy", "keyed_mac_copy (chosen)"
    }  # fmt: skip
    assert (tmp_path / "suites.json").exists()
