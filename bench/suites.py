"""The two cipher suites side by side: at-rest encryption and pseudonyms, values per second.

Run through ``python -m bench suites`` (``make bench``). 200,000 synthetic citizen IDs,
best of 3 runs each. Rates are values per CPU-second of this process (``process_time``:
what a shared, loaded machine cannot distort much; the per-value work is one Python
thread, the polars plugin's HMAC-SHA256 may spread over more); wall-clock rates are kept
in the JSON beside them. Writes bench/results/suites.json.

Measured per suite (``intl``: AES-256-GCM + HMAC-SHA256; ``gm``: SM4-GCM + HMAC-SM3):

- ``encrypt``: ``masking.crypto.encrypt_series`` with a row identity per value (what
  ``Protection.protect`` does per sensitive column);
- ``decrypt``: ``decrypt_series`` of the same (audit record included);
- ``pseudonymise``: ``masking.pseudonym.pseudonymise_series`` (normalise + HMAC).

And the batched HMAC-SM3 alternatives that chose ``gm``'s pseudonym path (there is no
polars plugin for SM3): ``hmac.digest(..., "sm3")`` per value, hashlib's inner/outer SM3
states copied per value, and ``CipherSuite.keyed_mac`` (``cryptography``'s keyed HMAC
state copied per value, the one used).
"""

from __future__ import annotations

import hmac
import json
import os
import tempfile
import time
from pathlib import Path

from bench.pseudonyms import hmac_by_copied_states

N = 200_000
RUNS = 3
RESULTS = Path(__file__).parent / "results" / "suites.json"


def _ids(n: int) -> list[str]:
    base = 110105194912310000
    return [str(base + i * 7) for i in range(n)]


WALL: dict[str, float] = {}


def _best(fn, runs: int, label: str = "") -> float:
    """The best CPU time of ``runs`` runs (the best wall time kept in :data:`WALL`)."""
    best, wall = float("inf"), float("inf")
    for _ in range(runs):
        t, w = time.process_time(), time.perf_counter()
        fn()
        best = min(best, time.process_time() - t)
        wall = min(wall, time.perf_counter() - w)
    WALL[label] = wall
    return max(best, 1e-9)


def _measure(n: int, runs: int, work: Path) -> dict:
    import polars as pl

    from masking.audit import AuditLog
    from masking.crypto import decrypt_series, encrypt_series
    from masking.keys import KeyRing
    from masking.pseudonym import pseudonymise_series
    from masking.suite import get_suite

    ids = pl.Series("citizen_id", _ids(n))
    rows = pl.Series([f"k:{i:020x}" for i in range(n)])
    col = "JD-GAJ-001.citizen_id"
    rates: dict[str, dict[str, int]] = {}
    for suite in ("intl", "gm"):
        ring = KeyRing(work / suite / "keys", master_key=os.urandom(32), suite=suite)
        audit = AuditLog(work / suite / "audit", ring)
        enc = encrypt_series(ids, ring, column=col, rows=rows)
        assert enc[0][0] == ("a" if suite == "intl" else "s")

        def decrypt(ring=ring, audit=audit, enc=enc) -> None:
            decrypt_series(
                enc, ring, column=col, rows=rows, purpose="rekey", actor="b", audit=audit
            )

        timings = {
            "encrypt": _best(
                lambda ring=ring: encrypt_series(ids, ring, column=col, rows=rows),
                runs,
                f"{suite}.encrypt",
            ),
            "decrypt": _best(decrypt, runs, f"{suite}.decrypt"),
            "pseudonymise": _best(
                lambda ring=ring: pseudonymise_series(ids, ring, kind="citizen_id"),
                runs,
                f"{suite}.pseudonymise",
            ),
        }
        rates[suite] = {k: round(n / t) for k, t in timings.items()}
    key = os.urandom(32).hex().encode()
    raw = [v.encode() for v in _ids(n)]
    mac = get_suite("gm").keyed_mac(key)
    want = hmac.digest(key, raw[0], "sm3").hex()[:20]
    assert hmac_by_copied_states(key, raw[:1], "sm3") == [want] and mac(raw[0]).hex()[:20] == want
    sm3 = {
        "hmac_digest_per_value": _best(
            lambda: [hmac.digest(key, v, "sm3").hex()[:20] for v in raw], runs, "sm3.hmac"
        ),
        "hashlib_states_copy": _best(
            lambda: hmac_by_copied_states(key, raw, "sm3"), runs, "sm3.hashlib"
        ),
        "keyed_mac_copy (chosen)": _best(
            lambda: [mac(v).hex()[:20] for v in raw], runs, "sm3.keyed"
        ),
    }
    return {
        "values": n,
        "runs": runs,
        "per_s": rates,
        "hmac_sm3_alternatives_per_s": {k: round(n / t) for k, t in sm3.items()},
        "rates_are": "values per CPU-second (process_time), best of the runs",
        "wall_per_s": {k: round(n / max(t, 1e-9)) for k, t in WALL.items()},
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main(n: int = N, runs: int = RUNS) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-suites-") as tmp:
        figures = _measure(n, runs, Path(tmp))
    print(f"cipher suites over {n:,} citizen IDs, best of {runs} "
          f"(load average {figures['load_average_1m']})")  # fmt: skip
    print(f"{'values per CPU-second':<34}{'intl':>12}{'gm (国密)':>12}{'gm/intl':>10}")
    labels = {
        "encrypt": "at-rest encryption (row-bound)",
        "decrypt": "at-rest decryption",
        "pseudonymise": "pseudonyms (normalise + HMAC)",
    }
    for key, label in labels.items():
        a, g = figures["per_s"]["intl"][key], figures["per_s"]["gm"][key]
        print(f"{label:<34}{a:>12,}{g:>12,}{g / a:>10.2f}")
    print("HMAC-SM3 batched alternatives (values per CPU-second):")
    for label, rate in figures["hmac_sm3_alternatives_per_s"].items():
        print(f"  {label:<32}{rate:>12,}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
