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
(``masking.stream``, 1 MiB segments) under a key of its own, derived from the key ring's
``landing`` key with a label of the share files (so a share file never decrypts as a landed
delivery, nor the reverse); it is registered in ``sharing_files`` with its plaintext size,
SHA-256 and column statistics (``numRecords``, ``minValues``, ``maxValues``,
``nullCount``: what ``hints.prune`` reads) and the id its header carries (random, and
authenticated by every segment: a file swapped for another is refused on opening, with no
hash of it to compute). :func:`open_plain` reads one back seekably (``SeekableDecryptor``:
a ranged read decrypts only the segments it covers).

The file route's hot path keeps, per process, what it would otherwise read on every byte
range a client asks (the 1.4.2 client asks 11 of one file a load): a file's registry row
(:func:`lookup`) and its decrypted bytes (:func:`plain_bytes`, files of at most
:data:`PLAIN_KEPT_FILE_BYTES`, :data:`PLAIN_KEPT_BYTES` in all, each at most
:data:`PLAIN_KEPT_S`), both under the ``grants`` and ``consent`` revision counters they were
read under: a grant revoked or changed, or an opt-out, by any process drops them all at the
next request; a sweep or a dropped grant drops its files' here at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import io
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from masking.stream import (
    Header,
    SeekableDecryptor,
    StreamEncryptor,
    StreamError,
    decrypt_chunks,
    read_header,
)
from masking.suite import get_suite
from share_api.db import aware, metadata, utc_now
from share_api.kept import content_revision, forget, kept_under
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
ARROW = "arrow"  # the kind of the Arrow IPC stream kept beside a one-part view's data file
SEGMENT_BYTES = 1 << 20  # plaintext a sealed segment: a prepared download's pieces
POLL_S = 1.0  # how often the preparer looks for new grants
STOP_WAIT_S = 60.0
LEFTOVER_S = 3_600  # an unregistered file this old is a crashed writer's: removed
_HEX64 = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger("streethub.share.sharing")

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
    sa.Column("seal", sa.String(32), nullable=False),  # the encrypted file's id (its header)
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_sharing_files_state", "grant_id", "state", "kind"),
)


@dataclass(frozen=True)
class SharedFile:
    id: str  # stable: same grant, same materialisation state, same part → same id
    grant_id: str
    version: int
    part: int
    kind: str  # "data" or "cdf" (and "arrow": the stream kept beside a data file)
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
    return service.kept("sharing.files.dir", lambda: service.settings.home_abs / "share" / "files")


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


def _open_sealed(service: Service, file: SharedFile) -> tuple[BinaryIO, Header]:
    """``file`` open at its first segment and its header — the one it was registered with
    (its random file id, authenticated by every segment: a file swapped for another fails
    here, without hashing it). 404 when it is no longer registered or on disk."""
    with service.engine.connect() as con:
        found = con.execute(
            sa.select(sharing_files.c.path, sharing_files.c.seal).where(
                sharing_files.c.id == file.id
            )
        ).first()
    try:
        if found is None:
            raise FileNotFoundError(file.id)
        fh = open(files_dir(service) / found.path, "rb")  # noqa: SIM115 - the caller's
    except FileNotFoundError:
        forget_kept(service, [file.id])  # the next query finds it gone and makes it again
        raise SharingError(404, "the file is no longer kept") from None
    try:
        header = read_header(fh)
        if not hmac.compare_digest(header.file_id.hex(), found.seal):
            raise StreamError("a share file is not the one registered (swapped or replaced)")
    except BaseException:
        fh.close()
        raise
    return fh, header


def open_plain(service: Service, file: SharedFile) -> BinaryIO:
    """The plaintext of ``file``, seekable and read-only (a ranged read decrypts only the
    segments it covers). 404 when the file is no longer kept."""
    fh, header = _open_sealed(service, file)
    try:
        size = os.fstat(fh.fileno()).st_size
        raw = _PlainFile(fh, size, lambda v: _file_key(service, header.suite, v))
    except BaseException:
        fh.close()
        raise
    return io.BufferedReader(raw, buffer_size=SEGMENT_BYTES)


def read_table(service: Service, file: SharedFile) -> pa.Table:
    """A file's rows (a data or cdf file read back whole)."""
    with open_plain(service, file) as fh:
        return pq.read_table(fh)


# -- the registry -----------------------------------------------------------------------------


KEPT_FILE_ROWS = 4_096  # registry rows kept per process
ROWS_KEPT = "sharing.files.rows"  # where (share_api.kept)
LISTS_KEPT = "sharing.files.lists"  # a materialisation state's files, found present
PLAIN_KEPT_BYTES = 128 << 20  # decrypted bytes kept per process, in all
PLAIN_KEPT_FILE_BYTES = 32 << 20  # a larger file is decrypted as it streams, every time
PLAIN_KEPT_S = 300.0  # a kept plaintext is read again after this long


def lookup(service: Service, file_id: str, *, kept_only: bool = False) -> SharedFile | None:
    """The registered file ``file_id`` (None when it is not, or no longer, registered);
    kept per process (see the module). ``kept_only``: from memory only (:class:`NotKept`
    when it is not kept under the current counters)."""

    def read() -> SharedFile | None:
        with service.engine.connect() as con:
            row = con.execute(sharing_files.select().where(sharing_files.c.id == file_id)).first()
        return SharedFile.from_row(row) if row is not None else None

    revision = content_revision(service)
    return kept_under(service, ROWS_KEPT, file_id, revision, read, kept_only=kept_only,
                      most=KEPT_FILE_ROWS)  # fmt: skip


class _Plaintexts:
    """Decrypted files by id, least recently used dropped first past
    :data:`PLAIN_KEPT_BYTES`; each with the counters it was read under and when."""

    def __init__(self) -> None:
        self.held: OrderedDict[str, tuple[tuple[int, int], str, float, bytes]] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def get(self, revision: tuple[int, int], file: SharedFile) -> bytes | None:
        with self.lock:
            held = self.held.get(file.id)
            if held is None:
                return None
            fresh = time.monotonic() - held[2] < PLAIN_KEPT_S
            if held[0] != revision or held[1] != file.sha256 or not fresh:
                self._drop(file.id)
                return None
            self.held.move_to_end(file.id)
            return held[3]

    def put(self, revision: tuple[int, int], file: SharedFile, data: bytes) -> None:
        with self.lock:
            self._drop(file.id)
            self.held[file.id] = (revision, file.sha256, time.monotonic(), data)
            self.size += len(data)
            while self.size > PLAIN_KEPT_BYTES and self.held:
                self._drop(next(iter(self.held)))

    def forget(self, file_ids: Collection[str]) -> None:
        with self.lock:
            for fid in file_ids:
                self._drop(fid)

    def _drop(self, file_id: str) -> None:
        held = self.held.pop(file_id, None)
        if held is not None:
            self.size -= len(held[3])


def plain_bytes(service: Service, file: SharedFile, *, kept_only: bool = False) -> bytes | None:
    """``file``'s whole plaintext, kept per process (see the module) — decrypted now when it
    is not kept (``kept_only``: None instead); None for a file larger than
    :data:`PLAIN_KEPT_FILE_BYTES` (the caller streams it). 404 when it is no longer kept."""
    if file.size > PLAIN_KEPT_FILE_BYTES:
        return None
    revision = content_revision(service)
    kept = service.kept("sharing.files.plain", _Plaintexts)
    data = kept.get(revision, file)
    if data is not None or kept_only:
        return data
    with open_plain(service, file) as fh:
        data = fh.read()
    if len(data) != file.size:
        log.error("a shared file holds %d bytes, not its recorded %d", len(data), file.size)
        return None
    kept.put(revision, file, data)
    return data


def forget_kept(service: Service, file_ids: Collection[str]) -> None:
    """Drop this process's kept rows and plaintexts of ``file_ids`` (removed files), and
    every kept list of a version's files (:func:`files_of`)."""
    forget(service, ROWS_KEPT, list(file_ids))
    service.kept("sharing.files.plain", _Plaintexts).forget(file_ids)
    service.kept(LISTS_KEPT, dict).clear()


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


def file_stats(table: pa.Table, columns: Collection[str] | None = None) -> dict:
    """Delta statistics of a table: row count, null count per column, and the min and max
    of ``columns`` (default: all) where the type has an order and a JSON form. One
    vectorised pass a column."""
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    for name in table.column_names:
        if columns is not None and name not in columns:
            continue
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
    held = lookup(service, file_id(grant.id, state, part, kind))
    if held is not None and path_of(service, held) is not None:
        return held
    made = _parquet(service, grant, version.version, part, kind, state, table)
    return _register(service, [made])[0]


def stat_columns(service: Service, grant: Grant) -> frozenset[str]:
    """The columns whose min and max a file's statistics may carry: granted in clear
    (masking ``none``), of a level that is not sensitive and naming no person. The others'
    values, masked or pseudonymised as they are, are personal data: they stay in the
    encrypted files, never in the registry's plaintext statistics (nor in a hint's reply)."""
    from catalog.model import MaskingRule, PiiKind
    from share_api.views import resolve

    columns = resolve(service.catalogue, grant.resource).columns
    return frozenset(
        name
        for name in grant.columns
        if name in columns
        and grant.masking.get(name) == MaskingRule.none.value
        and not columns[name].level.sensitive
        and (columns[name].pii or PiiKind.none) is PiiKind.none
    )


def _parquet(
    service: Service, grant: Grant, version: int, part: int, kind: str, state: str, table
) -> tuple[SharedFile, dict]:
    table = table.replace_schema_metadata(None)
    stats = file_stats(table, stat_columns(service, grant))
    return _seal(service, grant.id, version, part, kind, state, table.num_rows, stats,
                 lambda sink: pq.write_table(table, sink, compression="snappy"))  # fmt: skip


def _seal(
    service: Service,
    grant_id: str,
    version: int,
    part: int,
    kind: str,
    state: str,
    rows: int,
    stats: dict,
    write: Callable[[BinaryIO], None],
) -> tuple[SharedFile, dict]:
    """What ``write`` writes (``rows`` rows, serialised) encrypted to a place of its own (the
    file's id and its header's random id: two writers of one file never write one path):
    the file and its registry row, not registered yet."""
    fid = file_id(grant_id, state, part, kind)
    folder = files_dir(service) / grant_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ring = service.keyring
    key_version, _ = ring.current(KEY_PURPOSE)
    key = _file_key(service, ring.suite.name, key_version)
    enc = StreamEncryptor(ring.suite.name, key_version, key, segment_bytes=SEGMENT_BYTES)
    seal = enc.header.file_id.hex()
    rel = f"{grant_id}/{fid}-{seal}.sealed"
    temp = folder / f".{fid}-{seal}.tmp"
    try:
        with open(temp, "wb") as fh:
            sink = _SealingSink(fh, enc)
            write(sink)
            sink.seal()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, files_dir(service) / rel)
    finally:
        temp.unlink(missing_ok=True)
    made = SharedFile(fid, grant_id, int(version), int(part), kind, rows, sink.size,
                      sink.sha.hexdigest(), stats, utc_now())  # fmt: skip
    return made, {**dataclasses.asdict(made), "state": state, "path": rel, "seal": seal}


def _register(service: Service, sealed: list[tuple[SharedFile, dict]]) -> list[SharedFile]:
    """Register sealed files in one transaction (all of a version's parts or none), each
    replacing a registration of the same id whose file is gone. Another process
    registering the same files at once wins: its files are the ones kept."""
    ids = [made.id for made, _ in sealed]
    try:
        with service.engine.begin() as con:
            con.execute(sharing_files.delete().where(sharing_files.c.id.in_(ids)))
            con.execute(sharing_files.insert(), [row for _, row in sealed])
    except sa.exc.IntegrityError:
        for _, row in sealed:
            (files_dir(service) / row["path"]).unlink(missing_ok=True)
        return [lookup(service, fid) for fid in ids]
    forget_kept(service, ids)  # a registration replaced: its kept row and bytes go
    return [made for made, _ in sealed]


def path_of(service: Service, file: SharedFile) -> Path | None:
    """Where ``file`` is kept (encrypted); None when it is no longer registered or on disk."""
    with service.engine.connect() as con:
        rel = con.execute(
            sa.select(sharing_files.c.path).where(sharing_files.c.id == file.id)
        ).scalar_one_or_none()
    path = files_dir(service) / rel if rel else None
    return path if path is not None and path.is_file() else None


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
    snapshot, the grant's current terms and opt-outs — is the same file). 400 for a version
    whose snapshot left the lake's retention window, made already or not."""
    snapshot = read_snapshot(service, grant, version)
    state = materialisation_state(service, grant, version, recipient_kind)

    def present() -> list[SharedFile]:
        found = registered(service, grant.id, state, "data")
        if not _present(service, found):
            with _gate(service, (grant.id, state)):
                found = registered(service, grant.id, state, "data")
                if not _present(service, found):
                    found = _materialise(service, grant, version, recipient_kind, state, snapshot)
        return found

    # kept once found present (a file of it found gone since drops them: open_plain)
    found = kept_under(service, LISTS_KEPT, f"{grant.id}|{state}", content_revision(service),
                       present, most=KEPT_FILE_ROWS)  # fmt: skip
    return [dataclasses.replace(f, version=version.version) for f in found or []]


def _materialise(
    service: Service,
    grant: Grant,
    version: TableVersion,
    recipient_kind: str,
    state: str,
    snapshot: int,
) -> list[SharedFile]:
    from share_api.grants import GrantError
    from share_api.views import grant_view

    try:
        view = grant_view(service, grant, snapshot=snapshot, recipient_kind=recipient_kind)
    except GrantError as exc:  # no such table or columns at that snapshot: deterministic
        raise SharingError(400, str(exc.detail)) from None
    table = view.table
    parts = range(max(1, -(-table.num_rows // SHARE_PART_ROWS)))
    slices = [table.slice(i * SHARE_PART_ROWS, SHARE_PART_ROWS) for i in parts]
    sealed = [_parquet(service, grant, version.version, i, "data", state, t)
              for i, t in enumerate(slices)]  # fmt: skip
    return _register(service, sealed)


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


# -- issue 14: prepared whole-view downloads ---------------------------------------------------


@dataclass(frozen=True)
class Download:
    """A whole-view download served from a materialised file, decrypted as it streams."""

    chunks: Iterator[bytes]  # the plaintext, a sealed segment (1 MiB) a chunk
    nbytes: int
    rows: int
    total: int
    digest: str  # SHA-256 hex of exactly the bytes of ``chunks``
    snapshot: int
    media_type: str


def _plain_chunks(service: Service, file: SharedFile) -> Iterator[bytes]:
    """``file``'s plaintext a segment (:data:`SEGMENT_BYTES`) at a time, each segment
    authenticated, the file the one registered (its header's id)."""
    fh, header = _open_sealed(service, file)
    try:
        yield from decrypt_chunks(fh, lambda v: _file_key(service, header.suite, v), header)
    finally:
        fh.close()


def prepared_download(
    service: Service, grant: Grant, snapshot: int, recipient_kind: str, fmt: str
) -> Download | None:
    """The whole view of ``grant`` as of lake ``snapshot`` as Parquet (its data file) or an
    Arrow IPC stream (a file kept beside it), served from disk: the share API's download
    without building the view (issue 14). Made now when missing and the snapshot reads the
    grant's current version (what the preparer makes anyway); None — the caller builds the
    view — for another format, an older state not materialised, or a view of more than one
    part."""
    from share_api.sharing.versions import current_version, table_changed_at
    from share_api.views import MEDIA_TYPES

    if fmt not in ("parquet", ARROW):
        return None
    changed = table_changed_at(service, grant.resource, snapshot)
    current = current_version(service, grant, recipient_kind)
    wanted = TableVersion(grant.id, current.version, changed, current.recorded_at, "")
    state = materialisation_state(service, grant, wanted, recipient_kind)
    data = registered(service, grant.id, state, "data")
    if not _present(service, data):
        if changed != current.snapshot:
            return None
        data = files_of(service, grant, current, recipient_kind)
    if len(data) != 1:
        return None
    file = data[0] if fmt == "parquet" else _arrow_file(service, data[0], state)
    chunks = _plain_chunks(service, file)
    return Download(chunks, file.size, file.rows, file.rows, file.sha256, snapshot,
                    MEDIA_TYPES[fmt])  # fmt: skip


def _arrow_file(service: Service, data: SharedFile, state: str) -> SharedFile:
    """The Arrow IPC stream kept beside a data file (made from it the first time)."""
    held = registered(service, data.grant_id, state, ARROW)
    if _present(service, held):
        return held[0]
    with _gate(service, (data.grant_id, state, ARROW)):
        table = read_table(service, data)

        def write(sink: BinaryIO) -> None:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)

        made = _seal(service, data.grant_id, data.version, 0, ARROW, state, table.num_rows,
                     data.stats, write)  # fmt: skip
        return _register(service, [made])[0]


# -- sweeping ----------------------------------------------------------------------------------


def _needed_states(service: Service, grant: Grant) -> set[str]:
    """The materialisation states, now, of every version of a live grant still readable
    (its snapshot within the lake's retention window, or the table unchanged since)."""
    from share_api.sharing.versions import history

    needed = set()
    kind = _recipient_kind(service, grant)
    for version in history(service, grant):
        try:
            read_snapshot(service, grant, version)
        except SharingError:
            continue
        needed.add(materialisation_state(service, grant, version, kind))
    return needed


def sweep(service: Service) -> int:
    """Remove what no live grant's version needs: every file of a revoked, expired or
    unknown grant; a live grant's files of superseded states (made under terms or opt-outs
    that have changed since, for a version out of the lake's retention window, or for a
    state no version has); a cdf file whose states are
    not all needed; unregistered leftovers older than :data:`LEFTOVER_S`. The number of
    files removed. Run by the preparer, and when it starts."""
    from share_api.grants import get_grant

    c = sharing_files.c
    with service.engine.connect() as con:
        rows = con.execute(sa.select(c.id, c.grant_id, c.state, c.kind, c.path)).all()
    gone: list[tuple[str, str]] = []
    by_grant: dict[str, list] = {}
    for row in rows:
        by_grant.setdefault(row.grant_id, []).append(row)
    for grant_id, held in by_grant.items():
        grant = get_grant(service, grant_id)
        if grant is None or grant.status() != "live":
            gone += [(r.id, r.path) for r in held]
            continue
        needed = _needed_states(service, grant)
        for r in held:
            states = set(_HEX64.findall(r.state)) if r.kind == "cdf" else {r.state}
            if states and not states <= needed:
                gone.append((r.id, r.path))
    root = files_dir(service)
    for fid, rel in gone:
        with service.engine.begin() as con:
            con.execute(sharing_files.delete().where(c.id == fid))
        (root / rel).unlink(missing_ok=True)
    forget_kept(service, [fid for fid, _ in gone])
    return len(gone) + _sweep_leftovers(service, by_grant, {fid for fid, _ in gone})


def drop_grant(service: Service, grant_id: str) -> int:
    """Remove every file of a grant that is no longer live (called when it is revoked, so
    its masked copies do not wait for the preparer's next pass, or for a preparer at all);
    the number removed. A live grant's files are left alone."""
    from share_api.grants import get_grant

    grant = get_grant(service, grant_id)
    if grant is not None and grant.status() == "live":
        return 0
    c = sharing_files.c
    with service.engine.begin() as con:
        rows = con.execute(sa.select(c.id, c.path).where(c.grant_id == grant_id)).all()
        con.execute(sharing_files.delete().where(c.grant_id == grant_id))
    forget_kept(service, [row.id for row in rows])
    root = files_dir(service)
    for row in rows:
        (root / row.path).unlink(missing_ok=True)
    folder = root / grant_id
    if folder.is_dir():
        for path in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
    return len(rows)


def _sweep_leftovers(service: Service, by_grant: dict[str, list], gone: set[str]) -> int:
    """Unregistered files: any in the folder of a grant no longer live (and the folder),
    those of a live grant once older than :data:`LEFTOVER_S` (a crashed writer's; a writer
    at work registers its file within seconds)."""
    from share_api.grants import get_grant

    root = files_dir(service)
    if not root.is_dir():
        return 0
    kept = {r.path for held in by_grant.values() for r in held if r.id not in gone}
    old = time.time() - LEFTOVER_S
    removed = 0
    for folder in (f for f in root.iterdir() if f.is_dir()):
        grant = get_grant(service, folder.name)
        live = grant is not None and grant.status() == "live"
        for path in folder.iterdir():
            if f"{folder.name}/{path.name}" in kept:
                continue
            with contextlib.suppress(FileNotFoundError):
                if not live or path.stat().st_mtime < old:
                    path.unlink()
                    removed += 1
        if not live:
            with contextlib.suppress(OSError):  # a file written into it since: next time
                folder.rmdir()
    return removed


# -- the preparer --------------------------------------------------------------------------------


def _recipient_kind(service: Service, grant: Grant) -> str:
    from share_api.principals import get_org

    org = get_org(service, grant.grantee_org)
    return org["kind"] if org else "department"


def prepare(service: Service) -> int:
    """Make the current version's files of every live grant where they are missing (and
    the Arrow stream beside a one-part view, for prepared downloads); the number of grants
    whose files were made. A grant that fails is logged (its id and the error's kind) and
    skipped."""
    from share_api.grants import list_grants
    from share_api.sharing.versions import current_version

    made = 0
    for grant in list_grants(service):
        if grant.status() != "live":
            continue
        try:
            kind = _recipient_kind(service, grant)
            version = current_version(service, grant, kind)
            state = materialisation_state(service, grant, version, kind)
            if _present(service, registered(service, grant.id, state, ARROW)):
                continue
            data = files_of(service, grant, version, kind)
            if len(data) == 1:
                _arrow_file(service, data[0], state)
            made += 1
        except Exception as exc:  # one grant's failure must not stop the others'
            log.warning("preparing grant %s failed: %s", grant.id, type(exc).__name__)
    return made


def _marker(service: Service) -> tuple:
    """What moves when a pass has work: the grants' and the consent registry's revision
    counters (``share_api.db``: bumped with every grant made, changed or revoked and every
    choice recorded, by any process) and the lake's current snapshot."""
    from share_api.db import revision_reader
    from share_api.views import lake_reader

    revs = revision_reader(service).read()
    return revs.grants, revs.consent, lake_reader(service).current()


def start_preparer(service: Service) -> Callable[[], None]:
    """Start the preparer, a daemon thread: at once and then every
    ``share_prepare_seconds``, :func:`sweep` and :func:`prepare`; in between, every
    :data:`POLL_S`, a look at :func:`_marker` (two cheap reads) — a grant made, changed or
    revoked, an opt-out recorded or a new lake snapshot since the last pass has its files
    made or swept at once. Returns ``stop`` (waits for the pass under way, at most
    :data:`STOP_WAIT_S`)."""
    interval = float(service.settings.share_prepare_seconds)
    stopping = threading.Event()

    def run() -> None:
        seen, due = None, 0.0
        while not stopping.is_set():
            try:
                now, mark = time.monotonic(), _marker(service)
                if now >= due or mark != seen:
                    sweep(service)
                    prepare(service)
                    seen, due = mark, (now + interval if now >= due else due)
            except Exception as exc:  # the next pass tries again
                log.warning("the file preparer's pass failed: %s", type(exc).__name__)
            stopping.wait(min(POLL_S, interval) or POLL_S)

    thread = threading.Thread(target=run, name="share-prepare", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=STOP_WAIT_S)

    return stop


__all__ = [
    "ARROW",
    "KINDS",
    "SHARE_PART_ROWS",
    "Download",
    "SharedFile",
    "file_id",
    "file_stats",
    "files_dir",
    "files_of",
    "lookup",
    "open_plain",
    "path_of",
    "prepare",
    "prepared_download",
    "read_table",
    "registered",
    "schema_of",
    "sharing_files",
    "start_preparer",
    "stat_columns",
    "sweep",
    "write_file",
]
