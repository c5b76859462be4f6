"""A text delivery (CSV, JSON Lines, JSON) sent compressed: gzip, or a zip archive of one file.

Departments send large exports compressed: an IoT platform's nightly JSON Lines as
``.jsonl.gz``, a ledger e-mailed or uploaded as a ``.zip``. The landed file is what was
delivered (its SHA-256, encrypted as it is); readers open it here and get its content,
told by the file's first bytes, not by its name:

- **gzip**: decompressed as it is read (members one after another, as ``gzip`` writes
  them appended). A stream cut short ends where it was cut: the rows before it load and
  the cut row is quarantined as any truncated file's ("possibly truncated"); a stream
  that fails its check (CRC, length) or is not gzip past its first bytes fails the
  delivery ("corrupt gzip stream"), as rows already read may be wrong.
- **zip**: the archive must hold exactly one file (folders, ``__MACOSX/`` and dot files
  aside): a delivery is one file, and which of several to read is not ours to guess.
  A password-protected member (a common way to send personal data by e-mail) fails with
  the reason to ask for the file through the inbox instead; so does a method ``zipfile``
  cannot read. Damage fails the delivery ("corrupt zip archive").

Either way the content may not pass ``max_file_bytes`` (a zip bomb: 1 MB that unpacks to
terabytes): reading stops with "too large" once it does, whatever the archive declared.
The read's notes say how the file came (``the file is gzip-compressed``, ``the file is a
zip archive of one file, read unpacked``).
"""

from __future__ import annotations

import contextlib
import gzip
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from catalog.errors import DeliveryError
from catalog.model import ConnectorKind
from catalog.settings import Settings
from pipelines.connectors.landed import open_landed
from pipelines.connectors.records import Prefixed

# the kinds whose connectors read a delivery sent compressed (csv, jsonl, json: through
# open_delivered), and the names it may come under beside its pattern's (ingest.inbox)
COMPRESSIBLE = frozenset({ConnectorKind.csv, ConnectorKind.jsonl, ConnectorKind.json})
COMPRESSED_SUFFIXES = (".gz", ".zip")
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
ZIP_EMPTY = b"PK\x05\x06"  # an archive with no member: its end record alone
SKIPPED = ("__MACOSX/",)  # what macOS's archiver adds beside the files
READ_BYTES = 1 << 20  # a piece of what a reader asks whole


class _Decompressed:
    """``inner`` read with a limit on what it gives and its failures put in the officer's
    words (``read`` only: what the readers ask)."""

    def __init__(self, inner: BinaryIO, kind: str, limit: int, dataset: str, file: str) -> None:
        self._inner, self._kind, self._limit = inner, kind, limit
        self._dataset, self._file = dataset, file
        self._given = 0
        self._ended = False

    def _fail(self, msg: str) -> DeliveryError:
        return DeliveryError(msg, dataset=self._dataset, file=self._file)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:  # all of it (a JSON document is read whole)
            return b"".join(iter(lambda: self.read(READ_BYTES), b""))
        if self._ended:
            return b""
        try:  # one piece at a time: a read of many would lose them all to a cut at its end
            data = self._inner.read1(size)
        except EOFError:  # cut short: what came before stands, the cut row is quarantined
            self._ended = True
            return b""
        except (OSError, zlib.error, zipfile.BadZipFile) as exc:
            raise self._fail(
                f"corrupt {self._kind}: the compressed data does not check "
                f"({type(exc).__name__}); the file was damaged on its way"
            ) from None
        self._given += len(data)
        if self._given > self._limit:
            raise self._fail(
                f"too large: the {self._kind} unpacks to more than {self._limit:,} bytes "
                "(STREETHUB_MAX_FILE_BYTES)"
            )
        return data


def _one_member(zf: zipfile.ZipFile, dataset: str, file: str) -> zipfile.ZipInfo:
    members = [
        m
        for m in zf.infolist()
        if not m.is_dir()
        and not m.filename.startswith(SKIPPED)
        and not Path(m.filename).name.startswith(".")
    ]
    if len(members) != 1:
        raise DeliveryError(
            f"the zip archive holds {len(members)} files: a delivery is one file (ask the "
            "department for each file on its own, or for an archive of one)",
            dataset=dataset,
            file=file,
        )
    member = members[0]
    if member.flag_bits & 0x1:
        raise DeliveryError(
            "the zip archive is password-protected: the hub cannot read it (ask the "
            "department to deliver the file through its inbox, which is kept encrypted, "
            "instead of protecting the archive)",
            dataset=dataset,
            file=file,
        )
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DeliveryError(
            f"the zip archive's file is compressed with method {member.compress_type}, "
            "which the hub does not read (ask for a plain zip: deflate)",
            dataset=dataset,
            file=file,
        )
    return member


@contextlib.contextmanager
def open_delivered(
    settings: Settings, path: Path | str, dataset: str, file: str
) -> Iterator[tuple[BinaryIO, str | None]]:
    """The content of a landed text delivery, decompressed where it came compressed (see
    the module docstring), and the note saying so (None: as it is)."""
    limit = settings.max_file_bytes
    with open_landed(settings, path) as fh:
        head = fh.read(len(ZIP_MAGIC))
        if head.startswith(GZIP_MAGIC):
            with gzip.GzipFile(fileobj=Prefixed(head, fh), mode="rb") as inner:
                stream = _Decompressed(inner, "gzip stream", limit, dataset, file)  # type: ignore[arg-type]
                yield stream, "the file is gzip-compressed"  # type: ignore[misc]
            return
        if not head.startswith((ZIP_MAGIC, ZIP_EMPTY)):
            yield Prefixed(head, fh), None  # type: ignore[misc]
            return
    with open_landed(settings, path, seekable=True) as source:  # a zip is read from its end
        try:
            zf = zipfile.ZipFile(source)  # type: ignore[arg-type]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DeliveryError(
                f"corrupt zip archive: its directory cannot be read ({type(exc).__name__}; "
                "cut short? truncated?)",
                dataset=dataset,
                file=file,
            ) from None
        with zf:
            member = _one_member(zf, dataset, file)
            with zf.open(member) as inner:
                stream = _Decompressed(inner, "zip archive", limit, dataset, file)  # type: ignore[arg-type]
                yield (  # type: ignore[misc]
                    stream,
                    "the file is a zip archive of one file, read unpacked",
                )
