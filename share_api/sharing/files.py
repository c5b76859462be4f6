"""Grant versions materialised as files: what the Delta Sharing file route serves, and the
share API's prepared whole-view downloads (issue 14).

A version's **data files** are its grant's view (``share_api.views.grant_view``: the same
view the JSON, Arrow and Parquet reads serve), masked, filtered and pseudonymised for the
recipient, as of the version's lake snapshot, under the grant's *current* terms and the
*current* opt-outs (``versions.materialisation_state``: privacy first — a later opt-out or
narrowed terms apply to old versions too, whose files are then made again with new ids).
A view becomes Parquet parts of at most :data:`SHARE_PART_ROWS` rows; each part's id is
stable: same grant, same materialisation state, same part, same kind → same id.

Each file lives under ``<home>/share/files/<grant>/`` encrypted with the streaming AEAD
(``masking.stream``, 64 KiB segments) under a key of its own, derived from the key ring's
``landing`` key with a label of the share files (so a share file never decrypts as a landed
delivery, nor the reverse); it is registered in ``sharing_files`` with its plaintext size,
SHA-256 and column statistics (``numRecords``, ``minValues``, ``maxValues``,
``nullCount``: what ``hints.prune`` reads). :func:`open_plain` reads one back seekably
(``SeekableDecryptor``: a ranged read decrypts only the segments it covers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from masking.stream import SeekableDecryptor, StreamEncryptor, read_header
from masking.suite import get_suite
from share_api.db import aware, metadata, utc_now
from share_api.sharing.errors import SharingError
from share_api.sharing.versions import TableVersion, materialisation_state, read_snapshot

if TYPE_CHECKING:
    from share_api.grants import Grant
    from share_api.service import Service

SHARE_PART_ROWS = 1 << 20  # rows a data file holds at most (a 1 M-row view is one file)
KINDS = ("data", "cdf")
KEY_PURPOSE = "landing"  # the ring's file-encryption key; share files derive their own
_KEY_LABEL = b"streethub-share-files|"
STRING_STATS = 32  # characters of a string statistic (Delta's own truncation)

sharing_files = sa.Table(
    "sharing_files",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("grant_id", sa.String(40), nullable=False),
    sa.Column("state", sa.String(160), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("stats", sa.JSON, nullable=False),
    sa.Column("path", sa.String(200), nullable=False),  # under <home>/share/files
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_sharing_files_state", "grant_id", "state", "kind"),
)


@dataclass(frozen=True)
class SharedFile:
    id: str  # stable: same grant, same materialisation state, same part → same id
    grant_id: str
    version: int
    part: int
    kind: str  # "data" or "cdf"
    rows: int
    size: int  # plaintext bytes: exactly what the file route serves
    sha256: str  # of the plaintext
    stats: dict  # {"numRecords": n, "minValues": {…}, "maxValues": {…}, "nullCount": {…}}
    recorded_at: dt.datetime

    @classmethod
    def from_row(cls, row: Any) -> SharedFile:
        m = row._mapping
        return cls(m["id"], m["grant_id"], int(m["version"]), int(m["part"]), m["kind"],
                   int(m["rows"]), int(m["size"]), m["sha256"], dict(m["stats"]),
                   aware(m["recorded_at"]))  # fmt: skip


def files_dir(service: Service) -> Path:
    return service.settings.home_abs / "share" / "files"


def file_id(grant_id: str, state: str, part: int, kind: str) -> str:
    """The id of a grant's file: a digest of (grant, state, kind, part) — stable."""
    digest = hashlib.sha256(f"{grant_id}|{state}|{kind}|{int(part)}".encode()).hexdigest()
    return f"f{digest[:32]}"


# -- encryption -------------------------------------------------------------------------------


def _file_key(service: Service, suite, version: int) -> bytes:
    """The share files' key of ring key ``version``: the suite's MAC of a label of their
    own under the ``landing`` data key."""
    base = service.keyring.get(KEY_PURPOSE, version).material
    return get_suite(suite).mac(base, _KEY_LABEL)


class _SealingSink(io.RawIOBase):
    """A write-only file that encrypts what is written to ``fh`` and counts and hashes the
    plaintext (Parquet and Arrow writers write straight into it: no copy of the file)."""

    def __init__(self, fh: BinaryIO, enc: StreamEncryptor) -> None:
        super().__init__()
        self._fh, self._enc = fh, enc
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.sha.update(data)
        self.size += len(data)
        self._fh.write(self._enc.update(data))
        return len(data)

    def tell(self) -> int:
        return self.size

    def seal(self) -> None:
        self._fh.write(self._enc.finalize())


class _PlainFile(SeekableDecryptor):
    """A decrypting view of an open encrypted file that closes the file with itself."""

    def __init__(self, fh: BinaryIO, size: int, key_for) -> None:
        self._raw_fh = fh
        super().__init__(fh, size, key_for)

    def close(self) -> None:
        super().close()
        self._raw_fh.close()


def open_plain(service: Service, file: SharedFile) -> BinaryIO:
    """The plaintext of ``file``, seekable and read-only (a ranged read decrypts only the
    64 KiB segments it covers). 404 when the file is no longer on disk."""
    path = _path_of(service, file.id)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed with the reader
    except FileNotFoundError:
        raise SharingError(404, "the file is no longer kept") from None
    try:
        header = read_header(fh)
        raw = _PlainFile(
            fh, os.fstat(fh.fileno()).st_size, lambda v: _file_key(service, header.suite, v)
        )
    except BaseException:
        fh.close()
        raise
    return io.BufferedReader(raw, buffer_size=64 * 1024)


def read_table(service: Service, file: SharedFile) -> pa.Table:
    """A file's rows (a data or cdf file read back whole)."""
    with open_plain(service, file) as fh:
        return pq.read_table(fh)


# -- the registry -----------------------------------------------------------------------------


def _path_of(service: Service, fid: str) -> Path:
    with service.engine.connect() as con:
        rel = con.execute(
            sa.select(sharing_files.c.path).where(sharing_files.c.id == fid)
        ).scalar_one_or_none()
    if rel is None:
        raise SharingError(404, "no such file")
    return files_dir(service) / rel


def lookup(service: Service, file_id: str) -> SharedFile | None:
    """The registered file ``file_id`` (None when it is not, or no longer, registered)."""
    with service.engine.connect() as con:
        row = con.execute(sharing_files.select().where(sharing_files.c.id == file_id)).first()
    return SharedFile.from_row(row) if row is not None else None


def registered(service: Service, grant_id: str, state: str, kind: str) -> list[SharedFile]:
    """The files registered for (grant, state, kind), by part (CHANGES finds its kept cdf
    files of a version pair with it)."""
    c = sharing_files.c
    query = (
        sharing_files.select()
        .where(c.grant_id == grant_id, c.state == state, c.kind == kind)
        .order_by(c.part)
    )
    with service.engine.connect() as con:
        return [SharedFile.from_row(r) for r in con.execute(query)]


def _present(service: Service, files: list[SharedFile]) -> bool:
    root = files_dir(service)
    if not files or [f.part for f in files] != list(range(len(files))):
        return False
    with service.engine.connect() as con:
        paths = con.execute(
            sa.select(sharing_files.c.path).where(sharing_files.c.id.in_([f.id for f in files]))
        ).scalars()
        return all((root / p).is_file() for p in paths)


# -- statistics -------------------------------------------------------------------------------


def _stat_value(value: Any, typ: pa.DataType, upper: bool) -> Any:
    """A min (``upper`` False) or max statistic as JSON, widened where it must be rounded
    (never narrower than the data: pruning by it stays right); None to leave it out."""
    if value is None:
        return None
    if pa.types.is_integer(typ):
        return int(value)
    if pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        number = float(value)
        if not math.isfinite(number):
            return None
        return math.nextafter(number, math.inf if upper else -math.inf)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
        if len(value) <= STRING_STATS:
            return value
        return None if upper else value[:STRING_STATS]
    if pa.types.is_date(typ):
        return value.isoformat()
    if pa.types.is_timestamp(typ):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        cut = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if upper and cut != value:
            cut += dt.timedelta(milliseconds=1)
        return cut.isoformat(timespec="milliseconds") + "Z"
    return None


def file_stats(table: pa.Table) -> dict:
    """Delta statistics of a table: row count, per column min, max (where the type has an
    order and a JSON form) and null count. One vectorised pass a column."""
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    for name in table.column_names:
        column = table[name]
        typ = column.type
        if pa.types.is_dictionary(typ):
            column, typ = column.cast(typ.value_type), typ.value_type
        if table.num_rows == column.null_count or not (
            pa.types.is_integer(typ)
            or pa.types.is_floating(typ)
            or pa.types.is_decimal(typ)
            or pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
            or pa.types.is_string_view(typ)
            or pa.types.is_date(typ)
            or pa.types.is_timestamp(typ)
        ):
            continue
        found = pc.min_max(column).as_py()
        lo, hi = _stat_value(found["min"], typ, False), _stat_value(found["max"], typ, True)
        if lo is not None and hi is not None:
            low[name], high[name] = lo, hi
    return {
        "numRecords": table.num_rows,
        "minValues": low,
        "maxValues": high,
        "nullCount": {name: table[name].null_count for name in table.column_names},
    }


# -- writing ----------------------------------------------------------------------------------


def write_file(
    service: Service,
    grant: Grant,
    version: TableVersion,
    part: int,
    table: pa.Table,
    kind: str,
    state: str,
) -> SharedFile:
    """``table`` as part ``part`` of ``grant``'s ``kind`` files of ``state``: Parquet,
    encrypted under the home, registered (its id: :func:`file_id`). Registered already and
    on disk: that file, unchanged. CHANGES writes its cdf files with it."""
    if kind not in KINDS:
        raise ValueError(f"kind is one of {', '.join(KINDS)}")
    fid = file_id(grant.id, state, part, kind)
    held = lookup(service, fid)
    if held is not None and (files_dir(service) / _rel(grant.id, fid)).is_file():
        return held
    table = table.replace_schema_metadata(None)
    folder = files_dir(service) / grant.id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ring = service.keyring
    key_version, _ = ring.current(KEY_PURPOSE)
    enc = StreamEncryptor(ring.suite.name, key_version, _file_key(service, ring.suite.name,
                                                                   key_version))  # fmt: skip
    final = files_dir(service) / _rel(grant.id, fid)
    temp = final.with_name(f".{fid}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temp, "wb") as fh:
            sink = _SealingSink(fh, enc)
            pq.write_table(table, sink, compression="snappy")
            sink.seal()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    row = {
        "id": fid,
        "grant_id": grant.id,
        "state": state,
        "kind": kind,
        "part": int(part),
        "version": version.version,
        "rows": table.num_rows,
        "size": sink.size,
        "sha256": sink.sha.hexdigest(),
        "stats": file_stats(table),
        "path": _rel(grant.id, fid),
        "recorded_at": utc_now(),
    }
    with service.engine.begin() as con:
        con.execute(sharing_files.delete().where(sharing_files.c.id == fid))
        con.execute(sharing_files.insert().values(**row))
    return SharedFile.from_row(_Row(row))


def _rel(grant_id: str, fid: str) -> str:
    return f"{grant_id}/{fid}.parquet.sealed"


@dataclass
class _Row:
    _mapping: dict


# -- a version's data files -------------------------------------------------------------------


def _gate(service: Service, key: tuple) -> threading.Lock:
    """One lock a key per service: one build a key even when threads ask at once."""
    gates = service.kept("sharing.files.gates", dict)
    guard = service.kept("sharing.files.guard", threading.Lock)
    with guard:
        return gates.setdefault(key, threading.Lock())


def files_of(
    service: Service, grant: Grant, version: TableVersion, recipient_kind: str
) -> list[SharedFile]:
    """``version``'s data files for a recipient of ``recipient_kind``, made now if they are
    not yet (once per materialisation state even when threads ask at once), by part. Each
    carries ``version`` as asked (a file made for another version with the same state — its
    snapshot, the grant's current terms and opt-outs — is the same file)."""
    state = materialisation_state(service, grant, version, recipient_kind)
    found = registered(service, grant.id, state, "data")
    if not _present(service, found):
        with _gate(service, (grant.id, state)):
            found = registered(service, grant.id, state, "data")
            if not _present(service, found):
                found = _materialise(service, grant, version, recipient_kind, state)
    return [dataclasses.replace(f, version=version.version) for f in found]


def _materialise(
    service: Service, grant: Grant, version: TableVersion, recipient_kind: str, state: str
) -> list[SharedFile]:
    from share_api.grants import GrantError
    from share_api.views import grant_view

    snapshot = read_snapshot(service, grant, version)
    try:
        view = grant_view(service, grant, snapshot=snapshot, recipient_kind=recipient_kind)
    except GrantError as exc:  # no such table or columns at that snapshot: deterministic
        raise SharingError(400, str(exc.detail)) from None
    table = view.table
    made = []
    for i in range(max(1, -(-table.num_rows // SHARE_PART_ROWS))):
        part = table.slice(i * SHARE_PART_ROWS, SHARE_PART_ROWS)
        made.append(write_file(service, grant, version, i, part, "data", state))
    return made


def schema_of(
    service: Service, grant: Grant, version: TableVersion, recipient_kind: str
) -> pa.Schema:
    """The schema of ``version``'s served data files (read from the first part's footer;
    kept per file)."""
    first = files_of(service, grant, version, recipient_kind)[0]
    kept = service.kept("sharing.files.schemas", dict)
    schema = kept.get(first.id)
    if schema is None:
        with open_plain(service, first) as fh:
            schema = pq.read_schema(fh)
        if len(kept) > 1_024:
            kept.clear()
        kept[first.id] = schema
    return schema


def start_preparer(service: Service) -> Callable[[], None]:
    """Start materialising live grants' files in the background; returns ``stop`` (not yet:
    nothing is started)."""
    return lambda: None


__all__ = [
    "KINDS",
    "SHARE_PART_ROWS",
    "SharedFile",
    "file_id",
    "file_stats",
    "files_dir",
    "files_of",
    "lookup",
    "open_plain",
    "read_table",
    "registered",
    "schema_of",
    "sharing_files",
    "start_preparer",
    "write_file",
]
