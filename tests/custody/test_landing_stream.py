"""The streaming AEAD of landed files (masking.stream) and its one reader (open_landed).

Each attack on an encrypted file is tried on real ciphertext under both suites: a flipped
byte, segments reordered, a segment from another file, the file cut at a segment edge and
inside one, bytes appended, a header changed, the whole file swapped for another landed
file. Each fails, naming a segment and never a byte of the file. Memory stays bounded.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.stream import (
    HEADER_BYTES,
    SEGMENT_BYTES,
    SeekableDecryptor,
    StreamEncryptor,
    StreamError,
    decrypt_chunks,
    encrypt_chunks,
    is_encrypted,
)
from masking.suite import TAG_BYTES
from pipelines.connectors.landed import expected_sha256
from pipelines.ingest.landing import encryptor, open_landed

KEY = bytes(range(32))
CT_SEG = SEGMENT_BYTES + TAG_BYTES
SECRET = "110105194912310035,张三,13812345678\r\n".encode()
SUITES = ["intl", "gm"]


def seal(data: bytes, suite: str = "intl", key: bytes = KEY, chunk: int = 10_000) -> bytes:
    parts = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    return b"".join(encrypt_chunks(parts, suite, 1, key))


def open_(blob: bytes, key: bytes = KEY) -> bytes:
    return b"".join(decrypt_chunks(io.BytesIO(blob), lambda v: key))


def refused(blob: bytes, key: bytes = KEY) -> str:
    with pytest.raises(StreamError) as info:
        open_(blob, key)
    text = str(info.value)
    assert "张三" not in text and "110105" not in text
    return text


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize(
    "size", [0, 1, SEGMENT_BYTES - 1, SEGMENT_BYTES, SEGMENT_BYTES + 1, 3 * SEGMENT_BYTES, 200_000]
)
def test_round_trip_at_segment_edges_and_nothing_in_the_clear(suite: str, size: int) -> None:
    data = (SECRET * (size // len(SECRET) + 1))[:size]
    blob = seal(data, suite)
    assert is_encrypted(blob) and open_(blob) == data
    segments = max(1, -(-size // SEGMENT_BYTES))
    assert len(blob) == HEADER_BYTES + size + segments * TAG_BYTES
    assert b"110105194912310035" not in blob and "张三".encode() not in blob
    reader = SeekableDecryptor(io.BytesIO(blob), len(blob), lambda v: KEY)
    assert reader.size() == size
    reader.seek(size // 2)
    assert reader.read() == data[size // 2 :]


@hsettings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=3 * SEGMENT_BYTES + 100),
    cuts=st.lists(st.integers(0, 3 * SEGMENT_BYTES + 100), max_size=6),
)
def test_any_chunking_gives_the_same_plaintext(data: bytes, cuts: list[int]) -> None:
    edges = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(edges)]
    blob = b"".join(encrypt_chunks(chunks, "intl", 1, KEY))
    assert open_(blob) == data
    seekable = SeekableDecryptor(io.BytesIO(blob), len(blob), lambda v: KEY)
    assert seekable.read() == data


@pytest.mark.parametrize("suite", SUITES)
def test_every_tampering_fails_naming_the_segment(suite: str) -> None:
    data = SECRET * 6000  # about 3.5 segments
    blob = seal(data, suite)
    body = blob[HEADER_BYTES:]
    seg = [body[i : i + CT_SEG] for i in range(0, len(body), CT_SEG)]
    head = blob[:HEADER_BYTES]
    assert len(seg) == 4

    flipped = bytearray(blob)
    flipped[HEADER_BYTES + CT_SEG + 5] ^= 1
    assert "segment 1 fails authentication" in refused(bytes(flipped))
    assert "segment 0" in refused(head + seg[1] + seg[0] + seg[2] + seg[3])  # reordered
    other = seal(data, suite)  # same plaintext, another file: another file key
    other_seg = other[HEADER_BYTES + CT_SEG : HEADER_BYTES + 2 * CT_SEG]
    assert "segment 1" in refused(head + seg[0] + other_seg + seg[2] + seg[3])
    # cut at a segment edge: the new last segment was not sealed as final
    assert "segment 2" in refused(head + seg[0] + seg[1] + seg[2])
    assert "truncated" in refused(head + seg[0] + seg[1] + seg[2])
    assert "segment 3" in refused(blob[:-7])  # cut inside the last segment
    assert "segment 3" in refused(blob + b"\x00" * 40)  # appended after the final segment
    # the header is authenticated by every segment (a key version or suite changed)
    bumped = bytearray(blob)
    bumped[13] ^= 1  # the key version's lowest byte
    assert "segment 0" in refused(bytes(bumped))
    assert "header" in refused(blob[:10])
    assert "segment 0" in refused(blob, key=bytes(32))  # the wrong key


def test_a_header_claiming_the_other_suite_fails() -> None:
    blob = bytearray(seal(SECRET * 10, "intl"))
    blob[9] = 2  # suite code: gm
    assert "segment 0" in refused(bytes(blob))


def test_encryption_memory_is_bounded_by_segments_not_the_file() -> None:
    chunk = os.urandom(1 << 20)
    tracemalloc.start()
    try:
        enc = StreamEncryptor("intl", 1, KEY)
        out = 0
        for _ in range(48):  # 48 MiB through the encryptor
            out += len(enc.update(chunk))
        out += len(enc.finalize())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out == HEADER_BYTES + 48 * (1 << 20) + 48 * 16 * TAG_BYTES
    assert peak < 4 * (1 << 20), f"peak {peak:,} bytes"  # a chunk in, a chunk out


def test_decryption_memory_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        for part in encrypt_chunks((os.urandom(1 << 20) for _ in range(32)), "intl", 1, KEY):
            fh.write(part)
    tracemalloc.start()
    try:
        with open(path, "rb") as fh:
            n = sum(len(c) for c in decrypt_chunks(fh, lambda v: KEY))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 32 * (1 << 20)
    assert peak < 1 << 20, f"peak {peak:,} bytes"


def test_no_key_material_in_reprs() -> None:
    enc = StreamEncryptor("intl", 3, KEY)
    assert KEY.hex() not in repr(enc) and "key_version=3" in repr(enc)


# -- open_landed: the one reader -------------------------------------------------------


def land_bytes(settings: Settings, data: bytes, name: str | None = None) -> Path:
    folder = settings.landing_dir / "cgj" / "violation_cases"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{hashlib.sha256(data).hexdigest()}.csv")
    enc = encryptor(settings)
    path.write_bytes(enc.update(data) + enc.finalize())
    return path


@pytest.mark.parametrize("suite", SUITES)
def test_open_landed_streams_and_seeks_under_the_rings_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suite: str
) -> None:
    monkeypatch.setenv("STREETHUB_CIPHER_SUITE", suite)
    settings = Settings(home=tmp_path / "home").ensure_dirs()
    data = SECRET * 5000
    path = land_bytes(settings, data)
    assert path.read_bytes()[9] == (1 if suite == "intl" else 2)  # the suite is recorded
    with open_landed(settings, path) as fh:
        assert not fh.seekable() and fh.read(10) == data[:10] and fh.read() == data[10:]
    with open_landed(settings, path, seekable=True) as fh:
        fh.seek(-100, io.SEEK_END)
        assert fh.read() == data[-100:]
        fh.seek(3)
        assert fh.read(5) == data[3:8]


def test_open_landed_catches_a_swapped_file_by_its_sha256(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home").ensure_dirs()
    a, b = SECRET * 10, SECRET * 11
    path_a, path_b = land_bytes(settings, a), land_bytes(settings, b)
    path_a.write_bytes(path_b.read_bytes())  # B's ciphertext where A's was: each decrypts
    assert expected_sha256(path_a) == hashlib.sha256(a).hexdigest()
    for seekable in (False, True):
        with (
            pytest.raises(StreamError, match="does not match the SHA-256"),
            open_landed(settings, path_a, seekable=seekable) as fh,
        ):
            fh.read()
    with open_landed(settings, path_a, verify=False) as fh:  # a caller hashing itself
        assert fh.read() == b


def test_open_landed_reads_a_plaintext_file_landed_before_encryption(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home").ensure_dirs()
    folder = settings.landing_dir / "cgj" / "violation_cases"
    folder.mkdir(parents=True)
    old = folder / f"{hashlib.sha256(SECRET).hexdigest()}.csv"
    old.write_bytes(SECRET)
    with open_landed(settings, old) as fh:
        assert fh.read() == SECRET
    with open_landed(settings, old, seekable=True) as fh:
        fh.seek(4)
        assert fh.read(3) == SECRET[4:7]
    old.write_bytes(SECRET + b"x")  # changed since it was landed
    with pytest.raises(StreamError, match="SHA-256"), open_landed(settings, old) as fh:
        fh.read()


def test_open_landed_uses_the_keys_of_the_home_the_file_lies_in(tmp_path: Path) -> None:
    mine = Settings(home=tmp_path / "mine").ensure_dirs()
    other = Settings(home=tmp_path / "other").ensure_dirs()
    path = land_bytes(other, SECRET)
    with open_landed(mine, path) as fh:  # e.g. get_settings() of another home
        assert fh.read() == SECRET


def test_without_the_key_a_landed_file_does_not_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(KEY).decode())
    settings = Settings(home=tmp_path / "home").ensure_dirs()
    path = land_bytes(settings, SECRET * 100)
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(bytes(32)).decode())
    with pytest.raises(KeyRingError), open_landed(settings, path) as fh:
        fh.read()


def test_the_landing_bench_runs_and_reports_both_suites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import bench.landing

    monkeypatch.setattr(bench.landing, "TOTAL_MIB", 2)
    monkeypatch.setattr(bench.landing, "RUNS", 1)
    monkeypatch.setattr(bench.landing, "RESULTS", tmp_path / "landing.json")
    bench.landing.main()
    result = json.loads((tmp_path / "landing.json").read_text())
    assert set(result["suites"]) == {"intl", "gm"}
    assert all(r["encrypt_mb_s"] > 0 and r["decrypt_mb_s"] > 0 for r in result["suites"].values())
