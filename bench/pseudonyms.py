"""Pseudonym throughput on one core: masking.pseudonym against Python's HMAC, side by side.

Run through ``python -m bench pseudonyms`` (which calls :func:`main`) or
``python bench/pseudonyms.py``. The measuring runs in a child process pinned to one CPU
with ``POLARS_MAX_THREADS=1``, so every method gets exactly one core. 1 M synthetic
citizen IDs, best of 3 runs each. Writes bench/results/pseudonyms.json.

Methods:
- ``hmac.digest`` per value: the baseline everybody writes first;
- keyed inner/outer SHA-256 states ``.copy()``-ed per value: the fastest pure-Python way
  (what masking.pseudonym did before it moved into polars);
- ``PseudonymKey.hexdigests``: the HMAC inside polars (the ``polars-hash`` plugin);
- ``pseudonymise_series``: the same plus normalisation (full-width digits, trimming,
  upper-case X, 15→18-digit upgrade), as the pipelines call it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = 1_000_000
RUNS = 3
TARGET = 1_500_000
RESULTS = Path(__file__).parent / "results" / "pseudonyms.json"
CHILD_FLAG = "--one-core-child"


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


def hmac_by_copied_states(key: bytes, values: list[bytes], hash_name: str = "sha256") -> list[str]:
    """HMAC (first 20 hex) with precomputed inner/outer states, one ``.copy()`` per value;
    ``hash_name`` any 64-byte-block hash hashlib knows (``sha256``, ``sm3``)."""
    block = key.ljust(64, b"\0")
    inner = hashlib.new(hash_name, bytes(b ^ 0x36 for b in block))
    outer = hashlib.new(hash_name, bytes(b ^ 0x5C for b in block))
    out = []
    for v in values:
        h = inner.copy()
        h.update(v)
        o = outer.copy()
        o.update(h.digest())
        out.append(o.hexdigest()[:20])
    return out


def _measure(n: int) -> dict:
    import polars as pl

    from masking.keys import KeyRing
    from masking.pseudonym import PSEUDONYM_HEX, PseudonymKey, pseudonym_key, pseudonymise_series

    values = _ids(n)
    raw = [v.encode() for v in values]
    series = pl.Series("citizen_id", values)
    with tempfile.TemporaryDirectory() as tmp:
        ring = KeyRing(Path(tmp) / "keys", master_key=secrets.token_bytes(32))
        pk = pseudonym_key(ring)
        hmac_key = ring.current("pseudonym").material.hex().encode()
        # every method gives the same pseudonyms before anything is timed
        want = [hmac.digest(hmac_key, v, "sha256").hex()[:PSEUDONYM_HEX] for v in raw[:1000]]
        assert hmac_by_copied_states(hmac_key, raw[:1000]) == want
        assert pk.hexdigests(series[:1000]).to_list() == want
        assert pseudonymise_series(series[:1000], ring, kind="citizen_id").to_list() == want
        assert isinstance(pk, PseudonymKey)

        digest = hmac.digest
        timings = {
            "hmac_digest_per_value": _best(
                lambda: [digest(hmac_key, v, "sha256").hex()[:PSEUDONYM_HEX] for v in raw]
            ),
            "python_keyed_states_copy": _best(lambda: hmac_by_copied_states(hmac_key, raw)),
            "polars_hmac": _best(lambda: pk.hexdigests(series)),
            "pseudonymise_series": _best(
                lambda: pseudonymise_series(series, ring, kind="citizen_id")
            ),
        }
        threads = pl.thread_pool_size()
    rates = {name: round(n / t) for name, t in timings.items()}
    base = timings["hmac_digest_per_value"]
    return {
        "values": n,
        "runs": RUNS,
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "polars_threads": threads,
        "per_s": rates,
        "ratio_to_hmac_digest": {k: round(base / t, 2) for k, t in timings.items()},
        "target_per_s": TARGET,
        "meets_target": rates["pseudonymise_series"] >= TARGET,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _child() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    n = int(os.environ.get("BENCH_PSEUDONYM_VALUES", N))
    print(json.dumps(_measure(n)))


def main(n: int = N) -> dict:
    env = dict(os.environ, POLARS_MAX_THREADS="1", BENCH_PSEUDONYM_VALUES=str(n))
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "bench.pseudonyms", CHILD_FLAG],
        env=env, cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"pseudonym benchmark failed:\n{proc.stderr[-4000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    labels = {
        "hmac_digest_per_value": "hmac.digest per value (baseline)",
        "python_keyed_states_copy": "keyed states, .copy() per value (Python)",
        "polars_hmac": "HMAC in polars (polars-hash)",
        "pseudonymise_series": "pseudonymise_series (normalise + HMAC)",
    }
    print(f"pseudonyms over {n:,} citizen IDs, one core "
          f"(CPU {figures['cpus_allowed']}, {figures['polars_threads']} polars thread), "
          f"best of {RUNS}")  # fmt: skip
    print(f"{'method':<44}{'values/s':>12}{'× baseline':>12}")
    for key, label in labels.items():
        rate = figures["per_s"][key]
        ratio = figures["ratio_to_hmac_digest"][key]
        print(f"{label:<44}{rate:>12,}{ratio:>11.2f}×")
    print(f"load average (1 min): {figures['load_average_1m']}; target ≥ {TARGET / 1e6:.1f} M/s "
          f"for pseudonymise_series: {'met' if figures['meets_target'] else 'NOT met'}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    if CHILD_FLAG in sys.argv:
        _child()
    else:
        main()
