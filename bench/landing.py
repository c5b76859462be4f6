"""Landing encryption throughput, both cipher suites side by side.

Run through ``python -m bench landing`` (which calls :func:`main`) or
``python -m bench.landing``. Measures, on one thread, best of 3 over 64 MiB of synthetic
CSV-like bytes in 1 MiB chunks (landing's chunk size):

- ``sha256 only``: what landing did per byte before encryption (the floor);
- ``encrypt``: landing's one pass now — SHA-256 of the original plus the streaming AEAD
  (:class:`masking.stream.StreamEncryptor`, 64 KiB segments), per suite;
- ``decrypt``: the reader every connector uses (:func:`masking.stream.decrypt_chunks`,
  SHA-256 checked as :func:`open_landed` does), per suite.

Everything stays in memory (no disk in the figures). Throughput is measured in CPU time
of the process (``time.process_time``: the work is one thread), so a machine shared with
others does not shrink it; the wall-clock figure is reported beside it.
Writes bench/results/landing.json.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import time
from pathlib import Path

from masking.stream import StreamEncryptor, decrypt_chunks, verified_chunks

MIB = 1024 * 1024
TOTAL_MIB = 64
CHUNK = MIB
RUNS = 3
RESULTS = Path(__file__).parent / "results" / "landing.json"


def _data() -> list[bytes]:
    row = "110105194912310035,张三,13812345678,2026-11-20 22:57:33,北京市朝阳区\r\n".encode()
    block = (row * (CHUNK // len(row) + 1))[:CHUNK]
    return [block] * TOTAL_MIB


def _best(fn, clock=time.process_time) -> float:
    best = float("inf")
    for _ in range(RUNS):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def measure(suite: str, chunks: list[bytes], key: bytes) -> dict[str, float]:
    def encrypt(keep: list[bytes] | None = None) -> None:
        """Landing's pass without the disk: the ciphertext is dropped as a write would
        (kept only once, for the decryption figure)."""
        h = hashlib.sha256()
        enc = StreamEncryptor(suite, 1, key)
        for c in chunks:
            h.update(c)
            out = enc.update(c)
            if keep is not None:
                keep.append(out)
        out = enc.finalize()
        if keep is not None:
            keep.append(out)

    parts: list[bytes] = []
    encrypt(parts)
    blob = b"".join(parts)
    expect = hashlib.sha256(b"".join(chunks)).hexdigest()

    def decrypt() -> None:
        for _ in verified_chunks(decrypt_chunks(io.BytesIO(blob), lambda v: key), expect):
            pass

    mb = len(chunks) * CHUNK / 1e6
    return {
        "encrypt_mb_s": round(mb / _best(encrypt), 1),
        "decrypt_mb_s": round(mb / _best(decrypt), 1),
        "encrypt_mb_s_wall": round(mb / _best(encrypt, time.perf_counter), 1),
        "overhead_bytes_per_mib": round((len(blob) - len(chunks) * CHUNK) / len(chunks), 1),
    }


def main() -> None:
    chunks = _data()
    key = os.urandom(32)

    def sha_only() -> None:
        h = hashlib.sha256()
        for c in chunks:
            h.update(c)

    floor = round(TOTAL_MIB * MIB / 1e6 / _best(sha_only), 1)
    suites = {name: measure(name, chunks, key) for name in ("intl", "gm")}
    result = {
        "what": (
            "landing encryption, one thread, 64 MiB in 1 MiB chunks, best of 3 "
            "(MB per CPU second; encrypt_mb_s_wall: per wall second)"
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "sha256_only_mb_s": floor,
        "suites": suites,
    }
    print(
        "landing encryption (MB per CPU second, one thread; encrypt includes the original's "
        f"SHA-256; load {os.getloadavg()[0]:.1f})"
    )
    print(f"  sha256 only (before encryption): {floor:8.1f}")
    print(f"  {'suite':6s} {'encrypt':>9s} {'decrypt':>9s} {'encrypt (wall)':>15s}")
    for name, r in suites.items():
        print(
            f"  {name:6s} {r['encrypt_mb_s']:9.1f} {r['decrypt_mb_s']:9.1f} "
            f"{r['encrypt_mb_s_wall']:15.1f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
