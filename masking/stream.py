"""A streaming AEAD for whole files (landed deliveries, archived inbox originals).

A file is cut into segments of ``SEGMENT_BYTES`` (64 KiB) of plaintext; each segment
is sealed on its own with the suite's AEAD (AES-256-GCM, or SM4-GCM under 国密), so
memory stays at a segment or two whatever the file's size. The layout::

    header  = MAGIC (8) ‖ format (1) ‖ suite (1) ‖ key version (4) ‖ segment size (4)
              ‖ file id (16, random)
    segment = ciphertext ‖ tag (16)          (one per 64 KiB; the last one may be short
                                               or empty, never absent)

- **file key**: the suite's MAC under the data key (purpose ``landing``) over the
  header: every file has a key of its own, bound to its id, suite and key version;
- **nonce** of segment *i*: *i* (11 bytes, big-endian) ‖ final flag (1 byte), unique
  under the file key; the **AAD** is the header ‖ that nonce.

So a segment moved within a file (its index), taken from another file (its file key),
dropped at the end (the flag: the new last segment was not sealed as final), or a file
with anything appended after its final segment, all fail authentication; a whole file
swapped for another landed file decrypts, and is caught by the reader comparing the
plaintext's SHA-256 with the one the delivery was recorded under
(:func:`verified_chunks`).

A file that does not start with :data:`MAGIC` is not encrypted (a file landed before
encryption): callers decide whether to read it as it is. Errors name the segment,
never a byte of the file or of a key.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag

from masking.errors import DecryptionError
from masking.suite import TAG_BYTES, Suite, get_suite

MAGIC = b"\x89SHLAND\n"  # not text, not a zip or Parquet start: no delivery begins with it
FORMAT = 1
SEGMENT_BYTES = 64 * 1024
FILE_ID_BYTES = 16
_HEAD = struct.Struct(">8sBBII16s")
HEADER_BYTES = _HEAD.size  # 34
_SUITE_CODE = {Suite.INTL: 1, Suite.GM: 2}
_CODE_SUITE = {v: k for k, v in _SUITE_CODE.items()}
_KDF_LABEL = b"streethub-stream-file-key|"

KeyLookup = Callable[[int], bytes]  # key version -> the 32-byte data key


class StreamError(DecryptionError):
    """An encrypted file does not decrypt: damaged, truncated, reordered, swapped or
    under a key this ring does not hold. The message names the segment, never content."""


def is_encrypted(prefix: bytes) -> bool:
    """True when ``prefix`` (a file's first bytes, at least 8) starts an encrypted file."""
    return prefix[: len(MAGIC)] == MAGIC


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class Header:
    """The plaintext header of an encrypted file (authenticated by every segment)."""

    __slots__ = ("file_id", "key_version", "raw", "segment_bytes", "suite")

    def __init__(self, suite: Suite, key_version: int, segment_bytes: int, file_id: bytes):
        self.suite = suite
        self.key_version = key_version
        self.segment_bytes = segment_bytes
        self.file_id = file_id
        self.raw = _HEAD.pack(
            MAGIC, FORMAT, _SUITE_CODE[suite], key_version, segment_bytes, file_id
        )

    @classmethod
    def parse(cls, raw: bytes) -> Header:
        if len(raw) < HEADER_BYTES or not is_encrypted(raw):
            raise StreamError("not an encrypted file, or its header is cut short")
        _magic, fmt, code, version, seg, file_id = _HEAD.unpack(raw[:HEADER_BYTES])
        if fmt != FORMAT:
            raise StreamError(f"encrypted file of unknown format {fmt}")
        if code not in _CODE_SUITE:
            raise StreamError(f"encrypted file under an unknown cipher suite (code {code})")
        if not 16 <= seg <= 16 * 1024 * 1024:
            raise StreamError("encrypted file with an impossible segment size")
        return cls(_CODE_SUITE[code], version, seg, file_id)

    def __repr__(self) -> str:
        return (
            f"Header(suite={self.suite.value}, key_version={self.key_version}, "
            f"segment_bytes={self.segment_bytes})"
        )


def _aead(header: Header, key: bytes):
    suite = get_suite(header.suite)
    return suite.aead(suite.mac(key, _KDF_LABEL + header.raw))


class StreamEncryptor:
    """Encrypts one file chunk by chunk (``update`` / ``finalize``, like a cipher context;
    it fits landing's one-pass ``transform``). Holds at most one segment plus a chunk."""

    def __init__(
        self,
        suite: Suite | str,
        key_version: int,
        key: bytes,
        *,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.header = Header(Suite(suite), key_version, segment_bytes, os.urandom(FILE_ID_BYTES))
        self._aead = _aead(self.header, key)
        self._seg = segment_bytes
        self._buf = bytearray()
        self._index = 0
        self._started = False
        self._done = False

    def __repr__(self) -> str:
        return f"StreamEncryptor({self.header!r})"

    def _seal(self, data: bytes | bytearray | memoryview, final: bool) -> bytes:
        nonce = _nonce(self._index, final)
        self._index += 1
        return self._aead.encrypt(nonce, data, self.header.raw + nonce)

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [self.header.raw]

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise ValueError("the stream is finalised")
        out = self._start()
        seg = self._seg
        view = memoryview(data)
        at = 0
        if self._buf:  # top up the held segment; seal it once more follows it
            at = min(len(view), seg - len(self._buf))
            self._buf += view[:at]
            if len(self._buf) < seg or at == len(view):
                return b"".join(out)
            out.append(self._seal(self._buf, False))
            self._buf = bytearray()
        # whole segments straight from the caller's chunk (no copy); the last one is held
        # back: a segment is sealed as final or not only once it is known whether more follows
        while len(view) - at > seg:
            out.append(self._seal(view[at : at + seg], False))
            at += seg
        self._buf += view[at:]
        return b"".join(out)

    def finalize(self) -> bytes:
        if self._done:
            raise ValueError("the stream is finalised")
        out = self._start()
        out.append(self._seal(self._buf, True))
        self._buf = bytearray()
        self._done = True
        return b"".join(out)


def encrypt_chunks(
    chunks: Iterable[bytes], suite: Suite | str, key_version: int, key: bytes
) -> Iterator[bytes]:
    """The encrypted file of ``chunks``, chunk by chunk."""
    enc = StreamEncryptor(suite, key_version, key)
    for chunk in chunks:
        out = enc.update(chunk)
        if out:
            yield out
    yield enc.finalize()


def read_header(fh: BinaryIO) -> Header:
    return Header.parse(_read_exact(fh, HEADER_BYTES))


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        data = fh.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def decrypt_chunks(
    fh: BinaryIO, key_for: KeyLookup, header: Header | None = None
) -> Iterator[bytes]:
    """The plaintext of an encrypted file open at its start (or just after its header,
    given ``header``), one segment at a time; raises :class:`StreamError` at the first
    segment that fails (damaged, reordered, from another file, truncated, extended)."""
    header = header or read_header(fh)
    aead = _aead(header, key_for(header.key_version))
    ct_seg = header.segment_bytes + TAG_BYTES
    carry = b""
    index = 0
    while True:
        data = carry + _read_exact(fh, ct_seg + 1 - len(carry))
        final = len(data) <= ct_seg
        ct, carry = (data, b"") if final else (data[:ct_seg], data[ct_seg:])
        if len(ct) < TAG_BYTES:
            raise StreamError(
                f"encrypted file cut short: segment {index} is incomplete (truncated?)"
            )
        nonce = _nonce(index, final)
        try:
            plain = aead.decrypt(nonce, ct, header.raw + nonce)
        except InvalidTag:
            what = (
                "the file ends before its final segment (truncated?), or it was changed"
                if final
                else "changed, moved or taken from another file"
            )
            raise StreamError(
                f"encrypted file: segment {index} fails authentication ({what})"
            ) from None
        if plain:
            yield plain
        if final:
            return
        index += 1


def verified_chunks(chunks: Iterable[bytes], sha256_hex: str | None) -> Iterator[bytes]:
    """``chunks`` passed through; at their end, the SHA-256 of everything must equal
    ``sha256_hex`` (when given), else :class:`StreamError` — a file swapped for another."""
    if sha256_hex is None:
        yield from chunks
        return
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
        yield chunk
    if not hmac.compare_digest(h.hexdigest(), sha256_hex.lower()):
        raise StreamError(
            "the file's content does not match the SHA-256 it was recorded under "
            "(swapped for another file, or replaced)"
        )


class ChunkReader(io.RawIOBase):
    """A read-only, non-seekable binary file over an iterator of chunks (streaming)."""

    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None] | None = None):
        super().__init__()
        self._chunks = chunks
        self._buf = memoryview(b"")
        self._eof = False
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while not self._buf:
            if self._eof:
                return False
            nxt = next(self._chunks, None)
            if nxt is None:
                self._eof = True
                return False
            self._buf = memoryview(nxt)
        return True

    def readinto(self, b) -> int:
        out = memoryview(b).cast("B")
        n = 0
        while n < len(out) and self._fill():
            k = min(len(out) - n, len(self._buf))
            out[n : n + k] = self._buf[:k]
            self._buf = self._buf[k:]
            n += k
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        parts, got = [], 0
        while got < size and self._fill():
            k = min(size - got, len(self._buf))
            parts.append(self._buf[:k].tobytes())
            self._buf = self._buf[k:]
            got += k
        return b"".join(parts)

    def readall(self) -> bytes:
        parts = [self._buf.tobytes()] if self._buf else []
        self._buf = memoryview(b"")
        while self._fill():
            parts.append(self._buf.tobytes())
            self._buf = memoryview(b"")
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            if self._on_close is not None:
                self._on_close()
        super().close()


class SeekableDecryptor(io.RawIOBase):
    """Random access into an encrypted file (a format that seeks: Parquet, a zip's
    directory): each segment is decrypted on its own by its index, one kept at a time.
    Which segment is final follows from the file's size, so a file cut at a segment
    edge fails on its (new) last segment, which a reader of these formats reads first."""

    def __init__(self, fh: BinaryIO, size: int, key_for: KeyLookup) -> None:
        super().__init__()
        fh.seek(0)
        self._fh = fh
        self._header = read_header(fh)
        self._aead = _aead(self._header, key_for(self._header.key_version))
        self._seg = self._header.segment_bytes
        ct_seg = self._seg + TAG_BYTES
        body = size - HEADER_BYTES
        self._segments = max(1, -(-body // ct_seg))
        self._size = body - self._segments * TAG_BYTES
        if self._size < 0 or body - (self._segments - 1) * ct_seg < TAG_BYTES:
            raise StreamError("encrypted file cut short: its last segment is incomplete")
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def size(self) -> int:
        return self._size

    def _segment(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        ct_seg = self._seg + TAG_BYTES
        self._fh.seek(HEADER_BYTES + index * ct_seg)
        ct = _read_exact(self._fh, ct_seg)
        final = index == self._segments - 1
        nonce = _nonce(index, final)
        try:
            plain = self._aead.decrypt(nonce, ct, self._header.raw + nonce)
        except InvalidTag:
            raise StreamError(
                f"encrypted file: segment {index} fails authentication "
                "(changed, moved, taken from another file, or the file was cut short)"
            ) from None
        self._cached = (index, plain)
        return plain

    def readinto(self, b) -> int:
        out = memoryview(b).cast("B")
        n = 0
        while n < len(out) and self._pos < self._size:
            index, at = divmod(self._pos, self._seg)
            plain = self._segment(index)
            k = min(len(out) - n, len(plain) - at)
            if k <= 0:
                raise StreamError(f"encrypted file: segment {index} is shorter than its place")
            out[n : n + k] = plain[at : at + k]
            n += k
            self._pos += k
        return n

    def close(self) -> None:
        self._cached = None
        super().close()
