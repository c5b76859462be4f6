"""The one reader of landed files: :func:`open_landed` (re-exported by
:mod:`pipelines.ingest.landing`).

Landing encrypts every delivery as it copies it (:mod:`masking.stream`, purpose
``landing`` of the key ring). Every connector, the leak scanner and anything else that
looks inside a landed file opens it here and gets a read-only binary file:

- **streaming** (the default): decrypted segment by segment as it is read, memory a
  segment or two; at the end the plaintext's SHA-256 must be the one the file was landed
  under (a swapped or replaced file fails), and every segment must authenticate
  (changed, reordered, cut short or extended files fail);
- **seekable** (``seekable=True``, for formats that seek: Parquet, a zip's directory):
  the whole file is first checked in one streaming pass, then segments are decrypted
  on demand by index — no plaintext copy on disk or whole in memory.

A file landed before encryption (no magic at its start) is read as it is, its SHA-256
checked the same way. The expected SHA-256 is the ``sha256`` given, else the landed
name's stem when it is one (landing names each file by it).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from catalog.errors import DeliveryError
from catalog.settings import Settings
from masking.stream import (
    HEADER_BYTES,
    ChunkReader,
    SeekableDecryptor,
    StreamEncryptor,
    decrypt_chunks,
    is_encrypted,
    read_header,
    verified_chunks,
)

PURPOSE = "landing"
READ_BYTES = 1 << 20
_SHA_NAME = re.compile(r"^[0-9a-f]{64}$")


def expected_sha256(path: Path | str) -> str | None:
    """The SHA-256 a landed file is named by (``<sha256>.<ext>``), or None."""
    stem = Path(path).name.split(".", 1)[0]
    return stem if _SHA_NAME.match(stem) else None


def home_of(settings: Settings, path: Path | str) -> Settings:
    """The settings of the home a landed (or archived) file lies in: its keys are that
    home's. A caller reading without its own settings (``get_settings()`` from the
    environment) still reads a file of another home with the right ring."""
    parents = Path(os.path.realpath(path)).parents
    if len(parents) < 4 or parents[2].name not in ("landing", "archive"):
        return settings  # not laid out as <home>/landing/<dept>/<dataset>/<file>
    home = parents[3]
    return settings if home == settings.home_abs else settings.model_copy(update={"home": home})


def landing_keys(settings: Settings):
    """``key_for(version)`` for the landing data key (the ring is opened once per file)."""
    from masking.keys import KeyRing

    ring = KeyRing.from_settings(settings, enforce_suite=False)  # each file names its suite
    return lambda version: ring.get(PURPOSE, version).material


def encryptor(settings: Settings) -> StreamEncryptor:
    """A new encrypted file's transform: the streaming AEAD under the current ``landing``
    data key and the deployment's suite (each file gets a key and an id of its own)."""
    from masking.keys import KeyRing

    ring = KeyRing.from_settings(settings)
    version, key = ring.current(PURPOSE)
    return StreamEncryptor(ring.suite.name, version, key)


def _plain_chunks(fh: BinaryIO) -> Iterator[bytes]:
    while chunk := fh.read(READ_BYTES):
        yield chunk


def landed_encrypted(path: Path | str) -> bool:
    """Whether the file at ``path`` is encrypted (reads its first bytes only)."""
    with open(path, "rb") as fh:
        return is_encrypted(fh.read(HEADER_BYTES))


@contextlib.contextmanager
def open_landed(
    settings: Settings,
    path: Path | str,
    *,
    seekable: bool = False,
    sha256: str | None = None,
    verify: bool = True,
) -> Iterator[BinaryIO]:
    """A landed file's delivered bytes as a read-only binary file (see the module docstring).

    ``verify=False``: no SHA-256 check (for a caller that hashes the bytes itself); every
    segment is still authenticated.

    Raises :class:`masking.stream.StreamError` (a ``DecryptionError``) when the file does
    not decrypt or does not match its SHA-256, and ``KeyRingError`` without its key.
    """
    expect = (sha256 or expected_sha256(path)) if verify else None
    fh = open(path, "rb")  # noqa: SIM115 - closed by the reader or below
    try:
        encrypted = is_encrypted(fh.read(HEADER_BYTES))
        fh.seek(0)
        if not encrypted:
            if expect is None:
                reader: BinaryIO = fh
            elif seekable:
                _drain(verified_chunks(_plain_chunks(fh), expect))
                fh.seek(0)
                reader = fh
            else:
                reader = ChunkReader(verified_chunks(_plain_chunks(fh), expect))
        else:
            key_for = landing_keys(home_of(settings, path))
            if seekable:
                header = read_header(fh)
                _drain(verified_chunks(decrypt_chunks(fh, key_for, header), expect))
                reader = SeekableDecryptor(fh, os.fstat(fh.fileno()).st_size, key_for)
            else:
                reader = ChunkReader(verified_chunks(decrypt_chunks(fh, key_for), expect))
        try:
            yield reader
        finally:
            if reader is not fh:
                reader.close()
    finally:
        fh.close()


def _drain(chunks: Iterator[bytes]) -> None:
    for _ in chunks:
        pass


def read_landed_bytes(
    settings: Settings, path: Path | str, *, limit: int, dataset: str, file: str
) -> bytes:
    """A landed file whole, for a reader that only takes bytes (calamine); over ``limit``
    bytes it is refused as too large before it is held."""
    with open_landed(settings, path) as fh:
        data = fh.read(limit + 1)
        if len(data) > limit:
            raise DeliveryError(
                f"too large: the file is over {limit:,} bytes, the limit for reading it whole",
                dataset=dataset,
                file=file,
            )
        fh.read()  # the end of the stream: its SHA-256 is checked there
    return data
