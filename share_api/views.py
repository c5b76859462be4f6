"""A grant's view of its resource (授权视图): the only way share_api reads data.

:func:`grant_view` builds, for one grant and one lake snapshot, the table the grantee may
see — the granted columns, the rows of its row filter, without the residents who declined
the resource's consent category for the recipient's kind, each column under the grant's
masking profile — and keeps it per process (immutable: a snapshot never changes), so a
page is a slice of it and a download a serialisation of it.

How a view is made (vectorised: one DuckDB query, polars/Arrow columns, no Python per row):

1. one query of the lake table ``AT (VERSION => snapshot)``, read-only, on a connection kept
   per process: the columns needed (granted, read by the filter, naming a resident), the
   row filter compiled to a sqlglot AST (``share_api.rowfilter``) applied there when it
   reads no ciphertext;
2. opted-out residents removed (``share_api.consent.excluded_residents``, read at every
   read, so an opt-out applies to the next read);
3. ciphertext decrypted only where a profile needs the value (purpose
   ``share_grant:<id>``, checked by ``masking.crypto`` against the live grant) — a
   ``pseudonymise``d field with a hub pseudonym beside it (``_pid_<field>``) is re-keyed
   from that without decrypting; a ``suppress``ed one is never read;
4. the filter applied to decrypted fields when it reads any;
5. masks: ``pseudonymise`` → HMAC under the recipient's own key (``recipient:<org>``);
   display masks, generalisations and suppression through ``masking.masks.apply_masking``.

A mart is published masked: its columns pass as published unless the grant suppresses them
or re-keys them (its pseudonyms become the recipient's).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.days import beijing_day
from catalog.marts import MARTS_DIR, Mart, load_marts
from catalog.model import Catalogue, Dataset, Level, MaskingRule, PiiKind, dataset_table
from lakehouse.session import scratch
from masking.crypto import column_id, reveal_frame, staged_row_identity
from masking.masks import apply_masking
from masking.pseudonym import pseudonym_key
from masking.sql import satisfies
from share_api.db import aware
from share_api.grants import Grant, GrantError, decrypt_check, filter_reads
from share_api.rowfilter import compile_filter, to_sql

if TYPE_CHECKING:
    from share_api.service import Service

MART_PREFIX = "marts."
PID_PREFIX = "_pid_"  # catalog.authority.pid_column's prefix: a staged field's hub pseudonym
ROW_ID = "_key_pid"  # a staged row's key pseudonym: its identity in its ciphertexts' AAD
SNAPSHOT_TTL_S = 1.0  # how long a process takes the lake's current snapshot as current
CACHE_BYTES = 512 * 1024 * 1024  # views kept per process
BLOBS_PER_VIEW = 256  # serialised pages kept per view
FORMATS = ("json", "arrow", "parquet")
MEDIA_TYPES = {
    "json": "application/json",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}


# -- what a resource is ---------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    level: Level
    rule: MaskingRule  # the catalogue's: a field's masking rule, a mart column's published one
    pii: PiiKind | None
    encrypted: bool  # ciphertext in the lake (a dataset's L3/L4 field)
    pid: str | None  # the staged column holding its hub pseudonym, if any
    type: str = "string"  # the catalogue's type (``catalog.model.FieldType``)

    @property
    def default_rule(self) -> MaskingRule:
        if self.pii is None:  # a mart column: as published, its pseudonyms re-keyed
            return (
                MaskingRule.pseudonymise
                if self.rule is MaskingRule.pseudonymise
                else (MaskingRule.none)
            )
        if self.rule is MaskingRule.encrypt:  # readable with authority only: not by default
            return MaskingRule.suppress
        return self.rule


@dataclass(frozen=True)
class Resource:
    ref: str
    zone: str
    table: str
    columns: dict[str, Column]
    dataset: Dataset | None  # None for a mart

    @property
    def is_mart(self) -> bool:
        return self.dataset is None

    @property
    def types(self) -> dict[str, str]:
        """Column → catalogue type: what a row filter is checked against."""
        return {name: c.type for name, c in self.columns.items()}

    def column_id(self, name: str) -> str:
        """A column as ``masking.crypto`` names it in an AAD and a decrypt record."""
        return f"{self.ref}.{name}" if self.dataset is None else column_id(self.dataset, name)


_MARTS: dict[str, dict[str, Mart]] = {}


def _marts(catalogue: Catalogue) -> dict[str, Mart]:
    """The marts catalogued beside the catalogue's department files (read once)."""
    paths = list(catalogue.sources.values())
    folder = Path(paths[0]).parent.parent / "marts" if paths else MARTS_DIR
    key = str(folder)
    if key not in _MARTS:
        _MARTS[key] = load_marts(folder)
    return _MARTS[key]


_RESOLVED: dict[tuple[int, str], tuple[Catalogue, Resource]] = {}


def resolve(catalogue: Catalogue, resource: str) -> Resource:
    """``dept.dataset`` (its staged table) or ``marts.<name>``; KeyError when the catalogue
    has no such resource (so no name of the caller's ever reaches SQL unchecked). Kept per
    catalogue object (a loaded catalogue never changes)."""
    key = (id(catalogue), resource)
    held = _RESOLVED.get(key)
    if held is not None and held[0] is catalogue:  # the catalogue is held: its id is its own
        return held[1]
    found = _resolve(catalogue, resource)
    if len(_RESOLVED) > 4_096:
        _RESOLVED.clear()
    _RESOLVED[key] = (catalogue, found)
    return found


def _resolve(catalogue: Catalogue, resource: str) -> Resource:
    if resource.startswith(MART_PREFIX):
        mart = _marts(catalogue)[resource.removeprefix(MART_PREFIX)]
        cols = {
            c.name: Column(c.name, c.level, c.masking, None, False, None, c.type.value)
            for c in mart.columns
        }
        return Resource(resource, "marts", mart.name, cols, None)
    dept_code, _, code = resource.partition(".")
    dept = catalogue.departments.get(dept_code)
    ds = next((d for d in dept.datasets if d.code == code), None) if dept else None
    if ds is None:
        raise KeyError(resource)
    from catalog.authority import pid_column, pid_fields

    pids = {f.name: pid_column(f.name) for f in pid_fields(ds)}
    cols = {
        f.name: Column(
            f.name, f.level, f.masking, f.pii, f.level.sensitive, pids.get(f.name), f.type.value
        )
        for f in ds.fields
    }
    return Resource(resource, "staged", dataset_table(dept_code, code), cols, ds)


def allowed_rules(res: Resource, column: Column) -> set[MaskingRule]:
    """The profiles a grant may give ``column``: for a dataset's field, its catalogue rule or
    any stricter one, or ``none`` (a field in clear, as reviewers may approve); for a mart's,
    as published, suppressed or re-keyed. Never ``encrypt`` (a recipient has no key)."""
    if res.is_mart:
        return {MaskingRule.none, MaskingRule.suppress, MaskingRule.pseudonymise}
    return {
        r
        for r in MaskingRule
        if r is not MaskingRule.encrypt
        and (r is MaskingRule.none or r is column.rule or satisfies(r, column.rule))
    }


# -- the lake, read-only, per process ---------------------------------------------------------


class LakeReader:
    """One read-only lake connection per process (cursors per read) and the snapshots."""

    def __init__(self, service: Service) -> None:
        from lakehouse.lake import connect

        self.settings = service.settings
        self.con = connect(service.settings, read_only=True)
        self._lock = threading.Lock()
        self._current: tuple[float, int] | None = None
        self._times: dict[int, dt.datetime] = {}

    def cursor(self) -> duckdb.DuckDBPyConnection:
        from lakehouse.lake import ALIAS

        cur = self.con.cursor()
        cur.execute(f"USE {ALIAS}")  # unqualified names are the lake's, as in open_lake
        return cur

    def current(self) -> int:
        """The lake's current snapshot (re-read at most every :data:`SNAPSHOT_TTL_S`)."""
        from lakehouse.snapshots import current_snapshot

        now = time.monotonic()
        held = self._current
        if held is not None and now - held[0] < SNAPSHOT_TTL_S:
            return held[1]
        cur = self.cursor()
        try:
            snap = current_snapshot(cur)
        finally:
            cur.close()
        self._current = (now, snap)
        return snap

    def snapshot_time(self, snapshot: int) -> dt.datetime | None:
        if snapshot not in self._times:
            from lakehouse.snapshots import list_snapshots

            cur = self.cursor()
            try:
                found = {s.snapshot_id: s.time for s in list_snapshots(cur)}
            finally:
                cur.close()
            with self._lock:
                self._times.update(found)
        return self._times.get(snapshot)

    def close(self) -> None:
        self.con.close()


def lake_reader(service: Service) -> LakeReader:
    return service.kept("views.lake", lambda: LakeReader(service))


def pick_snapshot(service: Service, snapshot: int | None) -> int:
    """The snapshot a read is as of: the one asked for (404 when the lake has no such
    snapshot, 410 when it is older than the retention window) or the current one."""
    reader = lake_reader(service)
    current = reader.current()
    if snapshot is None:
        return current
    when = reader.snapshot_time(snapshot) if snapshot >= 0 else None
    if when is None:
        raise GrantError(404, "no such lake snapshot")
    days = service.settings.snapshot_retention_days
    if days is not None and aware(when) < dt.datetime.now(dt.UTC) - dt.timedelta(days=days):
        raise GrantError(410, "that lake snapshot is older than the retention window")
    return snapshot


def data_day(service: Service, snapshot: int) -> dt.date:
    """The day (Beijing) of the data as of ``snapshot``: the day its lake snapshot was
    made, the day a row filter counts ages on. A view is then the same whenever it is read
    (its cache and a Delta Sharing version's files stay true): someone who turns 60 joins
    an "aged 60 and over" grant with the first snapshot made on or after the birthday."""
    when = lake_reader(service).snapshot_time(snapshot)
    return beijing_day(aware(when) if when is not None else None)


# -- a view and its cache ---------------------------------------------------------------------


@dataclass
class View:
    grant_id: str
    snapshot: int
    table: pa.Table
    blobs: OrderedDict = field(default_factory=OrderedDict)  # (fmt, offset, limit) → blob
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_grow: Callable[[], None] | None = None  # the cache's trim, after a page is kept

    @property
    def total(self) -> int:
        return self.table.num_rows

    @property
    def nbytes(self) -> int:
        """Memory it holds: the table and the pages kept serialised."""
        with self.lock:
            return self.table.nbytes + sum(len(blob[0]) for blob in self.blobs.values())

    def page(self, offset: int = 0, limit: int | None = None) -> pa.Table:
        offset = max(0, int(offset))
        part = self.table.slice(offset, limit) if limit is not None else self.table.slice(offset)
        meta = {b"streethub.snapshot": str(self.snapshot), b"streethub.total": str(self.total)}
        return part.replace_schema_metadata({**(part.schema.metadata or {}), **meta})

    def serialised(self, fmt: str, offset: int, limit: int | None) -> tuple[bytes, int, str]:
        """(bytes, rows, SHA-256 hex) of a page in ``fmt``, kept for the next same read."""
        key = (fmt, offset, limit)
        with self.lock:
            hit = self.blobs.get(key)
            if hit is not None:
                self.blobs.move_to_end(key)
                return hit
        page = self.page(offset, limit)
        end = offset + page.num_rows
        body = serialise(page, fmt, grant=self.grant_id, snapshot=self.snapshot, offset=offset,
                         limit=limit, total=self.total,
                         next_offset=end if end < self.total else None)  # fmt: skip
        blob = (body, page.num_rows, hashlib.sha256(body).hexdigest())
        with self.lock:
            self.blobs[key] = blob
            while len(self.blobs) > BLOBS_PER_VIEW:
                self.blobs.popitem(last=False)
        if self.on_grow is not None:
            self.on_grow()
        return blob


def serialise(page: pa.Table, fmt: str, **head: Any) -> bytes:
    """A page as JSON (``{grant, snapshot, offset, limit, total, next_offset, rows: [{…}]}``;
    ``next_offset`` null on the last page: pass ``snapshot`` on to page one snapshot), an Arrow
    IPC stream or a Parquet file (the latter two carry the snapshot in their metadata)."""
    if fmt == "json":
        return orjson.dumps({**head, "rows": page.to_pylist()}, default=str)
    sink = pa.BufferOutputStream()
    if fmt == "arrow":
        with pa.ipc.new_stream(sink, page.schema) as writer:
            writer.write_table(page)
    elif fmt == "parquet":
        pq.write_table(page, sink, compression="snappy")
    else:
        raise GrantError(400, f"format is one of {', '.join(FORMATS)}")
    return sink.getvalue().to_pybytes()


class ViewCache:
    """Views by (grant, snapshot, who is excluded), least recently used dropped first."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._views: OrderedDict[tuple, View] = OrderedDict()
        self._building: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()
        self.builds = 0

    def get(self, key: tuple, build) -> View:
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
                return view
            gate = self._building.setdefault(key, threading.Lock())
        with gate:  # one build a key; the others wait for it
            with self._lock:
                view = self._views.get(key)
            if view is None:
                view = build()
                view.on_grow = self.trim
                with self._lock:
                    self.builds += 1
                    self._views[key] = view
                    self._building.pop(key, None)
                    self._trim()
        return view

    def trim(self) -> None:
        with self._lock:
            self._trim()

    def _trim(self) -> None:
        size = sum(v.nbytes for v in self._views.values())
        while size > self.max_bytes and len(self._views) > 1:
            _, old = self._views.popitem(last=False)
            size -= old.nbytes

    def forget(self, grant_id: str) -> None:
        with self._lock:
            for key in [k for k in self._views if k[0] == grant_id]:
                del self._views[key]


def view_cache(service: Service) -> ViewCache:
    return service.kept("views.cache", ViewCache)


def forget_grant(service: Service, grant_id: str) -> None:
    """Drop a grant's kept views (after a revocation: nothing of it stays in memory)."""
    cache = service.extra.get("views.cache")
    if cache is not None:
        cache.forget(grant_id)


def grant_view(
    service: Service,
    grant: Grant,
    *,
    snapshot: int | None = None,
    recipient_kind: str = "department",
) -> View:
    """The grant's view as of ``snapshot`` (current when None), kept per process."""
    from share_api.consent import excluded_residents

    res = resolve(service.catalogue, grant.resource)
    snap = pick_snapshot(service, snapshot)
    exclusion = excluded_residents(service, grant.resource, recipient_kind)
    who = tuple(sorted((c, hash(v), len(v)) for c, v in exclusion.by_column.items()))
    key = (grant.id, snap, recipient_kind, who)
    return view_cache(service).get(
        key, lambda: View(grant.id, snap, _build(service, grant, res, snap, exclusion))
    )


# -- building a view --------------------------------------------------------------------------


class CryptoAudit:
    """``masking.crypto``'s audit sink, writing through the service's group-committed log."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def append(self, action: str, actor: str, **details: Any) -> dict:
        return self.service.audit.record(action, actor, **details)

    def append_many(self, entries: list[tuple[str, str, dict[str, Any]]]) -> list[dict]:
        """The records in order, each durable before the next (the service's group commit
        batches them with its concurrent requests' records)."""
        return [self.append(action, actor, **details) for action, actor, details in entries]


def _build(service: Service, grant: Grant, res: Resource, snap: int, exclusion) -> pa.Table:
    from lakehouse.snapshots import read_at

    profile = {c: MaskingRule(grant.masking[c]) for c in grant.columns}
    condition = compile_filter(grant.row_filter, res.types, today=lambda: data_day(service, snap))
    filtered = filter_reads(res, grant)
    cipher_filter = any(res.columns[c].encrypted for c in filtered)
    # what each granted column is made from
    rekeyed = {
        c: res.columns[c].pid
        for c, rule in profile.items()
        if rule is MaskingRule.pseudonymise and res.columns[c].encrypted and res.columns[c].pid
    }
    dropped = {
        c for c, rule in profile.items() if rule is MaskingRule.suppress and c not in filtered
    }
    cur = lake_reader(service).cursor()
    try:
        if exclusion and not res.is_mart:
            from share_api.consent import widen_by_mentions

            exclusion = widen_by_mentions(exclusion, cur)
        needed = [c for c in grant.columns if c not in rekeyed and c not in dropped]
        needed += [c for c in sorted(filtered) if c not in needed]
        needed += [p for p in rekeyed.values() if p not in needed]
        needed += [c for c in exclusion.columns if c not in needed]
        # ciphertext read: decrypted for a mask or for the filter
        reveal = [c for c in needed if c in res.columns and res.columns[c].encrypted]
        if reveal and ROW_ID not in needed:
            needed.append(ROW_ID)
        try:
            rel = read_at(cur, res.zone, res.table, snapshot=snap)
            if condition is not None and not cipher_filter:
                rel = rel.filter(to_sql(condition))
            table = rel.project(", ".join(f'"{c}"' for c in needed)).to_arrow_table()
        except (duckdb.CatalogException, duckdb.BinderException):
            raise GrantError(
                404, "the lake holds no such table, or not every granted column, at that snapshot"
            ) from None
    finally:
        cur.close()
    table = exclusion.filter_arrow(table) if exclusion else table
    if not reveal and all(rule is MaskingRule.none for rule in profile.values()):
        return table.select(list(grant.columns)).combine_chunks()  # nothing to compute
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table gives a frame
        frame = frame.to_frame()
    if reveal:
        rows = frame.select(staged_row_identity(pl.col(ROW_ID))).to_series()
        # typed values where they leave in clear or the filter compares them; text where a
        # mask reads them (the masks read text; parsing a million datetimes costs ~1 s)
        typed = [c for c in reveal if profile.get(c, MaskingRule.none) is MaskingRule.none]
        typed += [c for c in reveal if c in filtered and c not in typed]
        for columns, restore in ((typed, True), ([c for c in reveal if c not in typed], False)):
            if columns:
                plain = reveal_frame(
                    frame.select(columns),
                    res.dataset,
                    service.keyring,
                    f"share_grant:{grant.id}",
                    f"share_api/{grant.grantee_org}",
                    CryptoAudit(service),
                    rows=rows,
                    restore_types=restore,
                    grant_check=decrypt_check(service),
                )
                frame = frame.with_columns(plain)
    if condition is not None and cipher_filter:
        frame = _filter_frame(frame, to_sql(condition))
    return _mask(service, grant, res, frame, profile, rekeyed).to_arrow().combine_chunks()


def _filter_frame(frame: pl.DataFrame, condition: str) -> pl.DataFrame:
    """Rows of ``frame`` meeting a compiled condition (DuckDB over the Arrow columns)."""
    con = scratch()  # a condition's time is UTC, as the frame's
    try:
        con.register("v", frame.to_arrow())
        return pl.from_arrow(con.execute(f"SELECT * FROM v WHERE {condition}").to_arrow_table())
    finally:
        con.close()


def _mask(
    service: Service,
    grant: Grant,
    res: Resource,
    frame: pl.DataFrame,
    profile: dict[str, MaskingRule],
    rekeyed: dict[str, str],
) -> pl.DataFrame:
    """The granted columns, in the grant's order, each under its profile."""
    key = None
    if any(r is MaskingRule.pseudonymise for r in profile.values()):
        key = pseudonym_key(service.keyring, recipient=grant.grantee_org)
    exprs: list[pl.Expr] = []
    for name, source in rekeyed.items():
        exprs.append(key.expr(pl.col(source).cast(pl.String)).alias(name))
    for name, rule in profile.items():
        if name in rekeyed:
            continue
        if name not in frame.columns:  # suppressed, never read
            exprs.append(pl.lit(None, dtype=pl.String).alias(name))
        elif res.is_mart and rule is MaskingRule.pseudonymise:
            exprs.append(key.expr(pl.col(name).cast(pl.String)).alias(name))
        elif res.is_mart and rule is MaskingRule.suppress:
            exprs.append(pl.lit(None, dtype=frame.schema[name]).alias(name))
    if exprs:
        frame = frame.with_columns(exprs)
    if not res.is_mart:
        overrides = {
            name: (MaskingRule.none if name in rekeyed or name not in frame.columns else rule)
            for name, rule in profile.items()
            if name in frame.columns or name in rekeyed
        }
        frame = apply_masking(
            frame,
            res.dataset,
            overrides={k: v for k, v in overrides.items() if k in res.columns},
            recipient=grant.grantee_org,
            keyring=service.keyring,
        )
    return frame.select(list(grant.columns))


__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "Column",
    "LakeReader",
    "Resource",
    "View",
    "allowed_rules",
    "forget_grant",
    "grant_view",
    "lake_reader",
    "pick_snapshot",
    "resolve",
    "serialise",
]
