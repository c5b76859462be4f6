"""Landing: each delivery copied, encrypted, with its SHA-256, source and arrival time.

File deliveries are picked up from ``inbox/<dept>/`` by the dataset's pattern
(the listing and the refusals are in :mod:`pipelines.ingest.inbox`); databases
and HTTP APIs are pulled from the cursor the last landed delivery ended at.

A file is read **once**: settle → one pass → commit.

1. *settle*: only a file whose size and mtime have been stable for
   ``settle_seconds`` is landed; a younger one waits for a later run (or, with
   ``wait_for_settle``, for at most the settle period).
2. *one pass* (:func:`one_pass`): from one descriptor opened with ``O_NOFOLLOW |
   O_NONBLOCK``, every chunk is hashed and written to a ``.part`` copy, through the
   streaming AEAD of :mod:`masking.stream` (:func:`encryptor`: the ring's suite, the
   ``landing`` data key; the SHA-256 is the delivered bytes', for dedup and evidence).
   ``fstat`` on that same descriptor before and after, and the bytes hashed
   against the final size: a file that changed while it was copied is discarded
   and left for a later run ("still being written"); a hash that does not match
   the landed copy is never recorded.
3. *commit*: the ``.part`` copy is renamed into place (named by its hash), then
   the ledger row is inserted, in one lake transaction with the inbox file's record
   (:func:`remember`; one commit a file). A re-run lands nothing twice (same dataset,
   same hash); a copy left without a ledger row by a killed run is replaced by the
   fresh, verified copy, never trusted as it lies; ``.part`` leftovers of a
   killed run are removed when landing starts (the writer holds the lake lock).
4. *inbox*: once the file is recorded, it is removed from the inbox
   (:func:`remove_from_inbox`, only if it is still the file that was landed); with
   ``keep_inbox_originals`` the encrypted copy is first linked into the archive
   (:func:`archive`, before the commit). A file a stopped run left behind is removed by
   the next one.

Landed files are read through :func:`open_landed` only. :func:`apply_retention`
expires landed copies of loaded deliveries; :func:`reencrypt_landed` moves every copy to
the ring's suite and current key (after a re-key, or for files landed in the clear).
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import duckdb

from catalog.errors import DeliveryError, shown
from catalog.loader import get_catalogue
from catalog.model import FILE_CONNECTORS, ConnectorKind, Dataset
from catalog.settings import Settings
from lakehouse.lake import ensure_table, has_table, transaction
from masking.errors import DecryptionError
from masking.stream import HEADER_BYTES, Header, is_encrypted
from pipelines.connectors import LANDED_SUFFIX
from pipelines.connectors.base import catalogue_names, guard_error
from pipelines.connectors.http_api import pull_http
from pipelines.connectors.landed import PURPOSE, encryptor, open_landed
from pipelines.connectors.sql_db import Pulled, pull_sql
from pipelines.ingest.inbox import (
    Entry,
    Signature,
    account_refusal,
    new_entries,
    remember,
    scan_inbox,
    settle,
)
from pipelines.ingest.ledger import (
    Landed,
    id_token,
    is_landed,
    landed_file,
    last_cursor,
    now,
    record_failure,
    record_pull,
)
from pipelines.ingest.prefetch import landing_state_of
from pipelines.killpoints import kill_point, register

__all__ = ["LandingResult", "apply_retention", "land", "open_landed", "reencrypt_landed"]

KP_COPY_STARTED = register("landing.copy_started", "landing: half of a delivery copied to landing")
KP_COPIED = register("landing.copied", "landing: copy renamed into place, no ledger row yet")
KP_RECORDED = register("landing.recorded", "landing: ledger row of the delivery inserted")

CHUNK_BYTES = 1 << 20
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
UNMATCHED_LISTED = 50  # names of unmatched files a result lists (all are counted)


@dataclass
class LandingResult:
    landed: list[Landed]
    skipped: int  # deliveries seen before (same hash)
    failed: list[str]  # reasons of pulls that failed, or of files refused, in this run
    waiting: list[str] = field(default_factory=list)  # files not settled yet (shown escaped)
    refused: int = 0  # files refused (symlink, not regular, outside, too large): new accounts
    unmatched: list[str] = field(default_factory=list)  # unexpected names (shown, at most 50)
    unmatched_total: int = 0  # how many names of the department's folder no pattern matches
    deliveries_total: int | None = None  # the dataset's deliveries after it (None: not read)


class Transform(Protocol):
    """A per-chunk transform of the one pass (``cryptography``'s cipher contexts fit)."""

    def update(self, data: bytes) -> bytes: ...

    def finalize(self) -> bytes: ...


class Identity:
    def update(self, data: bytes) -> bytes:
        return data

    def finalize(self) -> bytes:
        return b""


@dataclass(frozen=True)
class Copied:
    sha256: str  # of the delivered bytes (before any transform)
    size: int  # delivered bytes


class StillBeingWritten(Exception):
    """The file changed while it was copied: the copy is discarded, the file waits."""


class Unreadable(Exception):
    """The system would not let the file be read (permission, I/O error): it is refused."""

    @classmethod
    def of(cls, exc: OSError) -> Unreadable:
        return cls(f"not readable ({os.strerror(exc.errno)})" if exc.errno else "not readable")


def one_pass(chunks: Iterable[bytes], part: Path, transform: Transform | None = None) -> Copied:
    """The one pass over a delivery: hash each chunk and write it (transformed) to ``part``.

    ``part`` is created exclusively and fsync'd; on any exception it is removed.
    """
    t = transform or Identity()
    h = hashlib.sha256()
    size = 0
    try:
        with open(part, "xb") as out:
            for i, chunk in enumerate(chunks):
                h.update(chunk)
                size += len(chunk)
                out.write(t.update(chunk))
                if i == 0:
                    kill_point(KP_COPY_STARTED)
            out.write(t.finalize())
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return Copied(h.hexdigest(), size)


def _landed_name(dataset: Dataset, sha256: str) -> str:
    return f"{sha256}{LANDED_SUFFIX[dataset.delivery.kind]}"


def archive(
    settings: Settings, dept: str, dataset: Dataset, sha256: str, source: Path | None = None
) -> Path | None:
    """Keep the inbox original, encrypted, in ``settings.archive_dir`` (``keep_inbox_originals``):
    the landed copy *is* the original encrypted, so the archive links it (copies it across
    file systems). Where the landed copy is gone (retention), ``source`` is encrypted
    afresh, if its bytes still hash to ``sha256``. Idempotent; None if nothing was kept."""
    name = _landed_name(dataset, sha256)
    target = settings.archive_dir / dept / dataset.code / name
    if target.exists():
        return target
    landed = _landing_folder(settings, dept, dataset) / name
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f"{os.urandom(8).hex()}.part")
    if landed.is_file():
        try:
            os.link(landed, tmp)
        except OSError:
            shutil.copyfile(landed, tmp)
    elif source is not None:
        with open(source, "rb") as fh:
            chunks = iter(lambda: fh.read(CHUNK_BYTES), b"")
            if one_pass(chunks, tmp, encryptor(settings)).sha256 != sha256:
                tmp.unlink()  # changed since it was landed: the next run sees it anew
                return None
    else:
        return None
    tmp.replace(target)
    _fsync_dir(target.parent)
    return target


def remove_from_inbox(settings: Settings, dept: str, entry: Entry) -> bool:
    """Remove an inbox file whose landing is committed — only if it is still the file
    that was landed (same ``lstat`` signature); a file changed since stays for the next
    run. True when removed."""
    path = settings.inbox_dir / dept / entry.name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or Signature.of(st) != entry.sig:
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, CHUNK_BYTES)
    except OSError as exc:
        raise Unreadable.of(exc) from None


def _file_chunks(fd: int, before: os.stat_result) -> Iterator[bytes]:
    """Chunks read from ``fd``; raises :class:`StillBeingWritten` on any sign of a writer."""
    read = 0
    while chunk := _read(fd):
        read += len(chunk)
        if read > before.st_size:  # grew past what fstat said: stop at once
            raise StillBeingWritten
        yield chunk
    after = os.fstat(fd)
    if (
        read != after.st_size
        or after.st_size != before.st_size
        or after.st_mtime_ns != before.st_mtime_ns
        or after.st_ctime_ns != before.st_ctime_ns  # also a writer that restores the mtime
    ):
        raise StillBeingWritten


def _landing_folder(settings: Settings, dept: str, dataset: Dataset) -> Path:
    return settings.landing_dir / dept / dataset.code


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_leftovers(settings: Settings, dept: str, dataset: Dataset) -> int:
    """Delete ``.part`` copies a killed landing left (call with the lake's writer lock held)."""
    folder = _landing_folder(settings, dept, dataset)
    gone = 0
    for part in folder.glob("*.part") if folder.is_dir() else ():
        part.unlink(missing_ok=True)
        gone += 1
    return gone


def _new_part(settings: Settings, dept: str, dataset: Dataset) -> Path:
    folder = _landing_folder(settings, dept, dataset)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{os.urandom(8).hex()}.part"


class DeliveryLoad(Protocol):
    """What reads a new delivery in landing's own transaction (``pipelines.ingest.staged``'s
    ``Loader``): called with it inside the transaction, told after the commit, or told the
    delivery was landed alone when the call (or the commit) raised."""

    def __call__(self, d: Landed) -> None: ...

    def committed(self) -> None: ...

    def fell_back(self) -> None: ...


def _commit(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    dept: str,
    dataset: Dataset,
    part: Path,
    copied: Copied,
    *,
    file_name: str,
    source: str,
    cursor_end: str | None,
    then: Callable[[Landed | None], None] | None = None,
    hashes: set[str] | None = None,
    load: DeliveryLoad | None = None,
) -> Landed | None:
    """Rename the verified copy into place (over any unrecorded copy), then record it; what
    the caller records with it (``then``, given the delivery or None: an inbox file's
    archive and record, a pull's record) goes in the same lake transaction: one commit a
    delivery. ``load``: the new delivery is read and gated in that transaction too; should
    that raise, the transaction is rolled back and the delivery landed alone as without it
    (``load.fell_back``), for the two-transaction read to meet the same failure.

    None (and the copy discarded) when the dataset already has a delivery of that hash:
    ``hashes`` when the caller holds them (:func:`pipelines.ingest.inbox.landing_state`,
    the hash landed added once committed), else asked of the ledger.
    """
    landed: Landed | None = None

    def record() -> None:  # inside the transaction: the delivery's row, what goes with it
        if landed is not None:
            con.execute(
                "INSERT INTO landing.deliveries VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    landed.delivery_id,
                    dept,
                    dataset.code,
                    dataset.delivery.kind.value,
                    source,
                    file_name,
                    landed.landed_path,
                    copied.sha256,
                    copied.size,
                    cursor_end,
                    landed.arrived_at,
                ],
            )
        if then is not None:
            then(landed)

    reading = loaded = False  # the new delivery's read in this transaction: begun, committed
    try:
        with transaction(con):
            seen = (
                copied.sha256 in hashes
                if hashes is not None
                else is_landed(con, dept, dataset.code, copied.sha256)
            )
            if seen:
                part.unlink(missing_ok=True)
            else:
                target = part.with_name(_landed_name(dataset, copied.sha256))
                part.replace(target)  # a copy a killed run left unrecorded is replaced
                _fsync_dir(target.parent)
                kill_point(KP_COPIED)
                landed = Landed(
                    f"{dept}.{dataset.code}.{id_token(copied.sha256)}",
                    dept,
                    dataset.code,
                    file_name,
                    str(target),
                    copied.sha256,
                    copied.size,
                    now(),
                )
            record()
            if load is not None and landed is not None:
                reading = True
                load(landed)
        loaded = reading
    except Exception:
        if not reading or load is None:  # landing's own failure: as without a load
            raise
        load.fell_back()  # its read rolled back: landed alone, read the two-transaction way
        with transaction(con):
            record()
    if landed is not None:
        if hashes is not None:
            hashes.add(landed.sha256)
        kill_point(KP_RECORDED)
        if loaded and load is not None:
            load.committed()
    return landed


def stored_name(name: str) -> str:
    """The name as given, storable as text (bytes that are not UTF-8 kept as ``\\xNN``)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _land_entry(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    dept: str,
    dataset: Dataset,
    entry: Entry,
    hashes: set[str],
    load: DeliveryLoad | None = None,
) -> Landed | None:
    """Land one settled file (encrypted), archive and remember it: the delivery (None if its
    content was landed before: its hash is in ``hashes``, the dataset's, kept up to date).

    Raises StillBeingWritten (the file changed since the listing, or while copied)
    or Unreadable.
    """
    source = os.path.join(settings.inbox_dir, dept, entry.name)
    try:
        fd = os.open(source, OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):  # moved away, or now a link: next run
            raise StillBeingWritten from None
        raise Unreadable.of(exc) from None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or Signature.of(before) != entry.sig:
            raise StillBeingWritten  # replaced or changed since the listing: next run decides
        part = _new_part(settings, dept, dataset)
        copied = one_pass(_file_chunks(fd, before), part, encryptor(settings))
    finally:
        os.close(fd)

    def keep(_: Landed | None) -> None:
        if settings.keep_inbox_originals:  # before the commit: a kill leaves the file unknown
            archive(settings, dept, dataset, copied.sha256, settings.inbox_dir / dept / entry.name)
        remember(con, dept, dataset.code, entry)

    return _commit(
        con,
        settings,
        dept,
        dataset,
        part,
        copied,
        file_name=stored_name(entry.name),
        source=stored_name(source),
        cursor_end=None,
        then=keep,
        hashes=hashes,
        load=load,
    )


def _file_datasets(settings: Settings, dept: str, dataset: Dataset) -> list[Dataset]:
    """The department's file datasets (all patterns decide what is unmatched)."""
    cat = get_catalogue(settings.catalog_dir)
    department = cat.departments.get(dept)
    if department is None:
        return [dataset]
    found = [d for d in department.datasets if d.delivery.kind in FILE_CONNECTORS]
    return found if any(d.code == dataset.code for d in found) else [*found, dataset]


def land_files(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    dept: str,
    dataset: Dataset,
    *,
    wait_for_settle: bool = False,
    load: DeliveryLoad | None = None,
) -> LandingResult:
    """Land the settled files of ``inbox/<dept>/`` this dataset's pattern matches (each new
    delivery read and gated in its landing's transaction by ``load``, when given).

    Young files wait for a later run (``wait_for_settle``: for at most the settle
    period in this one); refused files get one failed account each; the names no
    dataset of the department expects are listed on the result of the
    department's first file dataset (so a department run warns once).
    """
    siblings = _file_datasets(settings, dept, dataset)
    scan = scan_inbox(settings, dept, siblings)
    mine = scan.for_dataset(dataset.code)
    # the ledger knows the rest (its rows of this dataset: each entry's key names it)
    state = landing_state_of(con, dept, dataset.code)
    fresh = new_entries(scan, state.keys, dataset.code)
    known = [e for e in mine if e.refused is None and e not in fresh]
    result = LandingResult([], len(known), [])
    for entry in known:  # landed by a run stopped before it removed the file
        remove_from_inbox(settings, dept, entry)
    if siblings[0].code == dataset.code:
        result.unmatched = [shown(n) for n in scan.unmatched[:UNMATCHED_LISTED]]
        result.unmatched_total = len(scan.unmatched)
    remove_leftovers(settings, dept, dataset)
    settled, young = settle(scan, fresh, settings, wait=wait_for_settle)
    result.waiting = [shown(e.name) for e in young]
    for entry in settled:
        why = entry.refused
        if why is None:
            try:
                landed = _land_entry(con, settings, dept, dataset, entry, state.hashes, load)
            except StillBeingWritten:
                result.waiting.append(shown(entry.name))
                continue
            except Unreadable as exc:
                why = str(exc)
            else:
                if landed is None:
                    result.skipped += 1
                else:
                    result.landed.append(landed)
                remove_from_inbox(settings, dept, entry)  # archived and remembered
                continue
        reason = account_refusal(con, dept, dataset.code, entry, why)
        if reason is not None:
            result.refused += 1
            result.failed.append(reason)
    result.deliveries_total = state.deliveries + len(result.landed)
    return result


def pull_failure_reason(exc: Exception, dataset: Dataset) -> str:
    """A failed pull in the officer's words: our own errors as written, others by kind only.

    A library's message may quote the data it choked on, so it is never copied.
    """
    if isinstance(exc, DeliveryError):
        return str(guard_error(exc, catalogue_names(dataset)))
    kind = dataset.delivery.kind
    source = "database" if kind is ConnectorKind.sql_db else "HTTP API"
    return (
        f"pull from the {source} failed: unexpected {type(exc).__name__} "
        "(its message is withheld: it may quote source data)"
    )


def land_pull(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    dept: str,
    dataset: Dataset,
    *,
    record: bool = False,
    load: DeliveryLoad | None = None,
    **pull_kw,
) -> LandingResult:
    """Pull a database table or HTTP API from the last cursor and land what came.

    Any exception of the pull becomes a failed account; the run goes on. ``record``: the
    pull is recorded (:func:`record_pull`, the next is due a cycle later) in the lake
    transaction of what it landed or of its failure, not in one of its own. ``load``: what
    came is read and gated in that transaction too (:func:`_commit`).
    """

    def recorded(landed: int, failed: int) -> None:
        if record:
            record_pull(con, dept, dataset.code, landed=landed, failed=failed)

    remove_leftovers(settings, dept, dataset)
    cursor, deliveries = last_cursor(con, dept, dataset.code)
    kind = dataset.delivery.kind
    try:
        pulled: Pulled = (
            pull_sql(settings, dept, dataset, cursor)
            if kind is ConnectorKind.sql_db
            else pull_http(settings, dept, dataset, cursor, **pull_kw)
        )
    except Exception as exc:  # every failed pull is an account, not a crash
        reason = pull_failure_reason(exc, dataset)
        stamp = now().strftime("%Y%m%dT%H%M%S%f")
        with transaction(con):
            record_failure(
                con,
                delivery_id=f"{dept}.{dataset.code}.pull-{stamp}",
                dept=dept,
                dataset=dataset.code,
                reason=reason,
            )
            recorded(0, 1)
        return LandingResult([], 0, [reason], deliveries_total=deliveries)
    if pulled.rows == 0:
        recorded(0, 0)
        return LandingResult([], 0, [], deliveries_total=deliveries)
    part = _new_part(settings, dept, dataset)
    copied = one_pass([pulled.data], part, encryptor(settings))
    source, cursor_end = pulled.source, pulled.cursor_end
    # the pulled bytes are landed: let go before the delivery is read and gated in the
    # commit (a whole table's pull, 46 MB at 200,000 residents, stood under that peak)
    del pulled
    stamp = now().strftime("%Y%m%dT%H%M%S")
    landed = _commit(
        con,
        settings,
        dept,
        dataset,
        part,
        copied,
        file_name=f"{dataset.code}_pull_{stamp}.jsonl",
        source=source,
        cursor_end=cursor_end,
        then=lambda landed: recorded(int(landed is not None), 0),
        load=load,
    )
    if landed is None:
        return LandingResult([], 1, [], deliveries_total=deliveries)
    return LandingResult([landed], 0, [], deliveries_total=deliveries + 1)


def land(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    dept: str,
    dataset: Dataset,
    *,
    wait_for_settle: bool = False,
    record: bool = False,
    load: DeliveryLoad | None = None,
    **pull_kw,
) -> LandingResult:
    """Land whatever is new for one dataset, with the connector its delivery declares
    (``load``: each new delivery read and gated in its landing's transaction).

    ``wait_for_settle``: wait (at most ``settle_seconds``) for files still young
    instead of leaving them to a later run — for runs that follow a delivery at once.
    ``record``: a pull is recorded as attempted (:func:`land_pull`).
    """
    if dataset.delivery.kind in FILE_CONNECTORS:
        return land_files(con, settings, dept, dataset, wait_for_settle=wait_for_settle, load=load)
    return land_pull(con, settings, dept, dataset, record=record, load=load, **pull_kw)


REMOVED_TABLE = "landed_files_removed"
REMOVED_COLUMNS = [
    ("delivery_id", "VARCHAR"),
    ("landed_path", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("removed_at", "TIMESTAMPTZ"),
]


def apply_retention(
    con: duckdb.DuckDBPyConnection, settings: Settings, *, at: dt.datetime | None = None
) -> int:
    """Delete the landed files of deliveries loaded into raw that arrived more than
    ``settings.landing_retention_days`` ago (None: keep them forever). The ledger keeps
    each delivery's row; ``landing.landed_files_removed`` marks which copies are gone and
    when. Failed deliveries keep their copy (``streethub deliveries retry`` reads it), and
    an archived original (``keep_inbox_originals``) is another link, kept. Call with the
    lake's writer lock held; returns how many files were removed."""
    days = settings.landing_retention_days
    if days is None or not has_table(con, "landing", "deliveries"):
        return 0
    ensure_table(con, "landing", REMOVED_TABLE, REMOVED_COLUMNS)
    cutoff = (at or now()) - dt.timedelta(days=days)
    rows = con.execute(
        f"""SELECT d.delivery_id, d.dept, d.dataset, d.landed_path FROM landing.deliveries d
            WHERE d.arrived_at < ?
              AND EXISTS (SELECT 1 FROM landing.delivery_accounts a
                          WHERE a.delivery_id = d.delivery_id AND a.status = 'loaded')
              AND NOT EXISTS (SELECT 1 FROM landing.{REMOVED_TABLE} r
                              WHERE r.delivery_id = d.delivery_id)
            ORDER BY d.arrived_at""",
        [cutoff],
    ).fetchall()
    if not rows:
        return 0
    landing_root = os.path.realpath(settings.landing_dir)
    removed = []
    for delivery_id, dept, dataset, landed_path in rows:
        path = landed_file(settings.landing_dir, dept, dataset, landed_path)
        if os.path.commonpath([os.path.realpath(path.parent), landing_root]) != landing_root:
            continue  # never delete outside the landing zone, whatever the ledger says
        path.unlink(missing_ok=True)
        removed.append(delivery_id)
    if removed:
        _fsync_dir(settings.landing_dir)
    at_, gone = now(), set(removed)
    reason = f"retention: landed over {days} day(s) ago and loaded"
    with transaction(con):
        con.executemany(
            f"INSERT INTO landing.{REMOVED_TABLE} VALUES (?,?,?,?)",
            [[d, p, reason, at_] for d, _, _, p in rows if d in gone],
        )
    return len(removed)


@dataclass
class Reencrypted:
    files: int = 0  # files written again under the ring's suite and current landing key
    current: int = 0  # files already under them
    failed: list[str] = field(default_factory=list)  # files that did not decrypt (shown)


def reencrypt_landed(settings: Settings) -> Reencrypted:
    """Write every landed and archived file again under the ring's suite and current
    ``landing`` key: after ``streethub keys rekey --suite …`` (landed files keep the suite
    they were written under until then, and stay readable), after a rotation, and to
    encrypt files landed in the clear before encryption existed. Each file is decrypted
    through :func:`open_landed` (its SHA-256 checked) and replaced atomically; a file
    that does not decrypt is left as it is and named. Call with the lake's writer lock."""
    from masking.keys import KeyRing

    ring = KeyRing.from_settings(settings)
    version, suite = ring.current(PURPOSE).version, ring.suite.name
    out = Reencrypted()
    for root in (settings.landing_dir, settings.archive_dir):
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            if not path.is_file() or path.name.endswith(".part"):
                continue
            with open(path, "rb") as fh:
                head = fh.read(HEADER_BYTES)
            if is_encrypted(head):
                header = Header.parse(head)
                if header.suite == suite and header.key_version == version:
                    out.current += 1
                    continue
            part = path.with_name(f"{os.urandom(8).hex()}.part")
            try:
                with open_landed(settings, path) as src:
                    one_pass(
                        iter(lambda src=src: src.read(CHUNK_BYTES), b""), part, encryptor(settings)
                    )
            except DecryptionError:
                out.failed.append(shown(str(path.relative_to(settings.home_abs))))
                continue
            part.replace(path)  # an archive link to it keeps the old copy until its own turn
            _fsync_dir(path.parent)
            out.files += 1
    return out
