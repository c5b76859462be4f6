"""What lies in ``inbox/<dept>/``: one listing for landing and for the inbox sensors.

The listing only ever ``lstat``s (nothing is opened, no link is followed), so it
is cheap enough for a sensor and safe against what a hostile or careless
exporter leaves behind. Each entry is sorted into:

- a **candidate** of the dataset whose pattern matches its name (patterns match
  case-insensitively: ``violation_cases_*.csv`` takes ``VIOLATION_CASES_1.CSV``);
  a candidate is either landable (a regular file, settled or still young) or
  **refused** with a reason (symbolic link, not a regular file, outside the
  inbox, too large) — refused entries are never opened for reading;
- **unmatched**: a name no dataset of the department expects (listed and warned
  about by landing, never silently ignored).

A refused entry gets one failed account (:func:`account_refusal`) per name, size
and mtime, so re-runs add none.

**New** has one meaning, for the main job and the inbox sensors alike
(:func:`new_entries`): an entry is new unless the ledger already knows its
signature — a file landing landed or skipped as a copy of a landed delivery
(:func:`remember`, recorded in ``landing.inbox_files``), or a refused entry
already accounted. A file that changes (size, mtime or inode) is new again;
landing then decides by its hash whether it is a new delivery.

A file is **settled** when its size and modification time have been stable for
``settings.settle_seconds``: its mtime is at least that old, or it was observed
unchanged for that long (which also settles a file whose mtime lies in the future).
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import duckdb

from catalog.errors import shown
from catalog.model import Dataset
from catalog.settings import Settings
from lakehouse.lake import has_table
from pipelines.connectors.compressed import COMPRESSED_SUFFIXES, COMPRESSIBLE
from pipelines.ingest.ledger import id_token, now, of_dataset, record_failure


@dataclass(frozen=True)
class Signature:
    """What an entry looked like at ``lstat``: a change to any of these is a change."""

    size: int
    mtime_ns: int
    ino: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> Signature:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


@dataclass(frozen=True)
class Entry:
    """One name in ``inbox/<dept>/`` that a dataset's pattern matches."""

    name: str  # as given by the file system (undecodable bytes as surrogates)
    dataset: str
    sig: Signature
    refused: str | None = None  # why it will not be landed (reason after "refused: ")

    def age_s(self, at_ns: int | None = None) -> float:
        return ((at_ns if at_ns is not None else time.time_ns()) - self.sig.mtime_ns) / 1e9


@dataclass
class InboxScan:
    """The listing of one department's inbox folder, taken once."""

    dept: str
    folder: Path
    entries: list[Entry] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # names as given, sorted
    taken_ns: int = 0

    def for_dataset(self, dataset: str) -> list[Entry]:
        return [e for e in self.entries if e.dataset == dataset]

    def settled(self, entry: Entry, settings: Settings) -> bool:
        return entry.refused is not None or entry.age_s(self.taken_ns) >= settings.settle_seconds


@lru_cache(maxsize=256)
def pattern_matcher(pattern: str) -> re.Pattern[str]:
    """A delivery pattern (shell glob) matching names case-insensitively."""
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE)


def matches(pattern: str, name: str, compressed: bool = False) -> bool:
    """As a glob would, hidden names (leading dot) match only a pattern that starts with one.
    ``compressed``: a name with a compression suffix matches where it does without
    (``cases_1.csv.gz`` and ``cases_1.csv.zip`` are ``cases_*.csv`` sent compressed)."""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    if pattern_matcher(pattern).match(name) is not None:
        return True
    if compressed and name.lower().endswith(COMPRESSED_SUFFIXES):
        return pattern_matcher(pattern).match(name.rsplit(".", 1)[0]) is not None
    return False


def _kind(mode: int) -> str:
    for test, label in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return label
    return "of an unknown kind"


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def refusal(
    folder: Path, name: str, st: os.stat_result, settings: Settings, *, folder_ok: bool = True
) -> str | None:
    """Why an entry (as ``lstat`` saw it) is not landed, or None. Never opens the entry."""
    if stat.S_ISLNK(st.st_mode):
        # resolving a link reads link names only, never the target's content
        target = os.path.realpath(folder / name)
        where = "inside" if _inside(target, os.path.realpath(folder)) else "outside"
        return f"symbolic link (to {where} the inbox; only regular files are landed)"
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({_kind(st.st_mode)})"
    if not folder_ok:
        return "outside the inbox (the department's folder resolves elsewhere)"
    if st.st_size > settings.max_file_bytes:
        return (
            f"too large: {st.st_size:,} bytes, over the limit of "
            f"{settings.max_file_bytes:,} (max_file_bytes)"
        )
    return None


def folder_inside_inbox(settings: Settings, folder: Path) -> bool:
    """Whether ``inbox/<dept>`` resolves to a folder inside the (resolved) inbox."""
    return _inside(os.path.realpath(folder), os.path.realpath(settings.inbox_dir))


def scan_inbox(settings: Settings, dept: str, datasets: Iterable[Dataset]) -> InboxScan:
    """List ``inbox/<dept>/`` once (lstat only) against the department's file datasets."""
    folder = settings.inbox_dir / dept
    scan = InboxScan(dept, folder, taken_ns=time.time_ns())
    patterns = [
        (ds.code, ds.delivery.pattern, ds.delivery.kind in COMPRESSIBLE)
        for ds in datasets
        if ds.delivery.pattern
    ]
    try:
        with os.scandir(folder) as it:
            listing = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return scan
    folder_ok = folder_inside_inbox(settings, folder)
    for item in sorted(listing, key=lambda d: d.name):
        hits = [code for code, pattern, gz in patterns if matches(pattern, item.name, gz)]
        if not hits:
            scan.unmatched.append(item.name)
            continue
        try:
            st = item.stat(follow_symlinks=False)
        except FileNotFoundError:  # gone since the listing
            continue
        why = refusal(folder, item.name, st, settings, folder_ok=folder_ok)
        for code in hits:
            scan.entries.append(Entry(item.name, code, Signature.of(st), why))
    return scan


def settle(
    scan: InboxScan, entries: list[Entry], settings: Settings, *, wait: bool = False
) -> tuple[list[Entry], list[Entry]]:
    """(settled, young): with ``wait``, young files are watched for at most the settle period."""
    young = [e for e in entries if not scan.settled(e, settings)]
    settled = [e for e in entries if scan.settled(e, settings)]
    if not young or not wait:
        return settled, young
    period = settings.settle_seconds
    time.sleep(min(period, max(period - e.age_s(scan.taken_ns) for e in young)) + 0.01)
    still = []
    watched_s = (time.time_ns() - scan.taken_ns) / 1e9
    for e in young:
        try:
            sig = Signature.of(os.lstat(scan.folder / e.name))
        except FileNotFoundError:
            continue
        unchanged = sig == e.sig
        if unchanged and (e.age_s() >= period or watched_s >= period):
            settled.append(e)
        else:
            still.append(e)
    return settled, still


def refused_id(dept: str, dataset: str, entry: Entry) -> str:
    """One account per refused (file name, size, mtime): re-runs add none."""
    key = os.fsencode(entry.name) + f"|{entry.sig.size}|{entry.sig.mtime_ns}".encode()
    return f"{dept}.{dataset}.refused-{id_token(key)}"


def account_refusal(
    con: duckdb.DuckDBPyConnection, dept: str, dataset: str, entry: Entry, why: str
) -> str | None:
    """Record a refused file once; returns the reason if this run recorded it."""
    delivery_id = refused_id(dept, dataset, entry)
    seen = con.execute(
        "SELECT count(*) FROM landing.delivery_accounts WHERE delivery_id = ?", [delivery_id]
    ).fetchone()[0]
    if seen:
        return None
    reason = f"refused: {why} — file {shown(entry.name)}"
    record_failure(con, delivery_id=delivery_id, dept=dept, dataset=dataset, reason=reason)
    return reason


def file_key(dept: str, dataset: str, entry: Entry) -> str:
    """The ledger's key for a regular file as ``lstat`` saw it (name, size, mtime, inode)."""
    sig = entry.sig
    key = os.fsencode(entry.name) + f"|{sig.size}|{sig.mtime_ns}|{sig.ino}".encode()
    return f"{dept}.{dataset}.file-{id_token(key)}"


def entry_key(dept: str, entry: Entry) -> str:
    """What the ledger records once it has dealt with the entry."""
    if entry.refused is not None:
        return refused_id(dept, entry.dataset, entry)
    return file_key(dept, entry.dataset, entry)


def known_keys(
    con: duckdb.DuckDBPyConnection | None, dept: str, dataset: str | None = None
) -> set[str]:
    """The keys of the department's inbox entries (``dataset``: of that dataset's only) the
    ledger has dealt with (none for a lake without a ledger yet, or no lake: ``con`` None)."""
    return known_keys_by_dept(con, dept, dataset).get(dept, set())


KNOWN_SOURCES = (  # (table, what each row of the department's it keys)
    ("inbox_files", "file_key", "true"),
    (
        # a refused entry's only account is a failed one (account_refusal): by the status,
        # DuckLake's file statistics leave out the files of loaded accounts, and a table
        # none of whose files is read costs the statement ~10 ms less (a first run's
        # ledger, a file an insert until it is merged, often has no failed account)
        "delivery_accounts",
        "delivery_id",
        "status = 'failed' AND starts_with(delivery_id, dept || '.') "
        "AND contains(delivery_id, '.refused-')",
    ),
)
LANDED_SOURCE = ("deliveries", "sha256", "true")  # a dataset's deliveries, by content


@dataclass(frozen=True)
class LandingState:
    """What the ledger holds of one dataset for its landing step (:func:`landing_state`)."""

    keys: set[str]  # its inbox entries the ledger has dealt with (:func:`known_keys`)
    hashes: set[str]  # the SHA-256 of its deliveries: a file of one of them is a copy
    deliveries: int  # its deliveries


def landing_state(con: duckdb.DuckDBPyConnection, dept: str, dataset: str) -> LandingState:
    """The dataset's known entry keys, its deliveries' hashes and their count, in the one
    statement :func:`known_keys` reads (each statement on the ledger costs DuckLake's
    catalogue reads: a landing step read the keys, then each file's hash, then the count).
    Exact for the step's whole landing: a writer holds the lake, so only the step itself
    adds deliveries meanwhile (``pipelines.ingest.landing`` adds each hash it lands)."""
    rows = _read_known(con, of_dataset(), [dept, dataset], (*KNOWN_SOURCES, LANDED_SOURCE))
    return _landing_state(rows)


def landing_states(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], LandingState]:
    """:func:`landing_state` of every dataset the ledger knows, (dept, dataset) → its
    LandingState, in one statement (a run's steps start from it:
    ``pipelines.ingest.prefetch``); a dataset it does not know has no entry (nothing known,
    no delivery)."""
    by: dict[tuple[str, str], list[tuple[int, str, str, str]]] = {}
    for row in _read_known(con, "true", [], (*KNOWN_SOURCES, LANDED_SOURCE)):
        by.setdefault((row[1], row[2]), []).append(row)
    return {key: _landing_state(rows) for key, rows in by.items()}


def _landing_state(rows: list[tuple[int, str, str, str]]) -> LandingState:
    landed = [k for tag, _, _, k in rows if tag == len(KNOWN_SOURCES)]
    keys = {k for tag, _, _, k in rows if tag < len(KNOWN_SOURCES)}
    return LandingState(keys, set(landed), len(landed))


def known_keys_by_dept(
    con: duckdb.DuckDBPyConnection | None, dept: str | None = None, dataset: str | None = None
) -> dict[str, set[str]]:
    """Department → the keys of its inbox entries the ledger has dealt with, for one
    department or (``dept`` None) all of them in one read (the main job's selection);
    ``dataset`` (with ``dept``): that dataset's only (a landing step's: an entry's key names
    its dataset; a first run's step whose dataset has no row yet reads no ledger file).
    One statement over both ledger tables (each landing step asks; a probe of each table
    first cost as much again), the tables probed only when one is missing (a new lake)."""
    keys: dict[str, set[str]] = {}
    if con is None:
        return keys
    if dept is None:
        where, args = "true", []
    elif dataset is None:
        where, args = "dept = ?", [dept]
    else:
        where, args = of_dataset(), [dept, dataset]
    for _, d, _, k in _read_known(con, where, args, KNOWN_SOURCES):
        keys.setdefault(d, set()).add(k)
    return keys


def _read_known(
    con: duckdb.DuckDBPyConnection,
    where: str,
    args: list[str],
    sources: tuple[tuple[str, str, str], ...],
) -> list[tuple[int, str, str, str]]:
    """(source's position in ``sources``, dept, dataset, key) of every row of the ledger's
    ``sources`` that ``where`` picks, in one statement; a source whose table is not made yet
    (a new lake) reads nothing (the tables probed only then)."""

    def read(picked: list[tuple[int, tuple[str, str, str]]]) -> list[tuple[int, str, str, str]]:
        if not picked:
            return []
        sql = " UNION ALL ".join(
            f"SELECT {i}, dept, dataset, {column} FROM landing.{table} WHERE {where} AND {which}"
            for i, (table, column, which) in picked
        )
        return con.execute(sql, args * len(picked)).fetchall()

    try:
        return read(list(enumerate(sources)))
    except duckdb.CatalogException:  # a ledger table not made yet
        return read([(i, s) for i, s in enumerate(sources) if has_table(con, "landing", s[0])])


def new_entries(scan: InboxScan, known: set[str], dataset: str | None = None) -> list[Entry]:
    """The scan's entries (of one dataset, or all) the ledger does not know: what a run
    has to land or account. The one notion of "new": landing, the main job's selection
    and the inbox sensors use it."""
    entries = scan.entries if dataset is None else scan.for_dataset(dataset)
    return [e for e in entries if entry_key(scan.dept, e) not in known]


def remember(con: duckdb.DuckDBPyConnection, dept: str, dataset: str, entry: Entry) -> None:
    """Record that landing dealt with this file as listed (landed, or seen before)."""
    con.execute(
        "INSERT INTO landing.inbox_files VALUES (?,?,?,?,?,?,?)",
        [
            file_key(dept, dataset, entry),
            dept,
            dataset,
            os.fsencode(entry.name).decode("utf-8", "backslashreplace"),
            entry.sig.size,
            entry.sig.mtime_ns,
            now(),
        ],
    )
