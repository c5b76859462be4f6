"""Pseudonym throughput: keyed-state HMAC (masking.pseudonym) vs ``hmac.digest`` per value.

Run through ``python -m bench`` (which calls :func:`main`) or ``python bench/pseudonyms.py``.
One core, 1 M synthetic citizen IDs, best of 3 runs. Writes bench/results/pseudonyms.json.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import tempfile
import time
from pathlib import Path

import polars as pl

N = 1_000_000
RUNS = 3
RESULTS = Path(__file__).parent / "results" / "pseudonyms.json"


def _ids(n: int) -> list[str]:
    base = 110105194912310000
    return [str(base + i * 7) for i in range(n)]


def _best(fn, runs: int = RUNS) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(n: int = N) -> dict:
    from masking.keys import KeyRing
    from masking.pseudonym import PSEUDONYM_HEX, KeyedHasher, pseudonymise_series

    values = _ids(n)
    key = secrets.token_bytes(32)
    fast = KeyedHasher(key)
    raw = [v.encode() for v in values]
    assert fast.hexdigests(raw[:3]) == [
        hmac.digest(key, v.encode(), "sha256").hex()[:PSEUDONYM_HEX] for v in values[:3]
    ]

    def baseline() -> list[str]:
        digest = hmac.digest
        return [digest(key, v.encode(), "sha256").hex()[:PSEUDONYM_HEX] for v in values]

    with tempfile.TemporaryDirectory() as tmp:
        ring = KeyRing(Path(tmp) / "keys", master_key=secrets.token_bytes(32))
        series = pl.Series("citizen_id", values)
        pseudonymise_series(series[:10], ring, kind="citizen_id")  # create the key
        t_base = _best(baseline)
        t_fast = _best(lambda: fast.hexdigests(raw))
        t_series = _best(lambda: pseudonymise_series(series, ring, kind="citizen_id"))
    figures = {
        "values": n,
        "runs": RUNS,
        "cpu_count": os.cpu_count(),
        "baseline_hmac_digest_per_value_per_s": round(n / t_base),
        "keyed_states_copy_per_s": round(n / t_fast),
        "pseudonymise_series_with_normalisation_per_s": round(n / t_series),
        "speedup_vs_baseline": round(t_base / t_fast, 2),
        "target_per_s": 1_500_000,
        "meets_target": n / t_fast >= 1_500_000,
        "digest_hex_chars": PSEUDONYM_HEX,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(f"pseudonyms over {n:,} citizen IDs, one core, best of {RUNS}")
    print(f"{'method':<46}{'values/s':>14}")
    print(
        f"{'hmac.digest per value (baseline)':<46}{figures['baseline_hmac_digest_per_value_per_s']:>14,}"
    )
    print(
        f"{'keyed inner/outer states, .copy() per value':<46}{figures['keyed_states_copy_per_s']:>14,}"
    )
    print(
        f"{'pseudonymise_series (normalise + hash)':<46}{figures['pseudonymise_series_with_normalisation_per_s']:>14,}"
    )
    print(f"load average (1 min) during the run: {figures['load_average_1m']}")
    print(f"speed-up vs baseline: {figures['speedup_vs_baseline']}×; target ≥ 1.5 M/s: "
          f"{'met' if figures['meets_target'] else 'NOT met'}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
