"""A grant's table versions (表版本): 0, 1, 2 … — what Delta Sharing's ``version`` and
``timestamp`` time travel, ``Delta-Table-Version`` and the change feed count in.

A version is a *state* of what the grant shows, recorded in ``sharing_versions``:

- the lake snapshot it reads: the newest snapshot at which the resource's lake table
  changed (rows inserted or deleted, its columns altered, the table made again), so a lake
  commit to another table makes no new version;
- the digest of the grant's terms (columns, row filter, masking profile);
- the digest of the opt-outs that apply to it (the consent registry's residents who
  declined the resource's category for the recipient's kind);
- the recipient's kind.

:func:`current_version` works the state out now and records a new version (number one
more, ``recorded_at`` now, tz-aware UTC and strictly increasing per grant) whenever it
differs from the latest recorded one. The other look-ups read the recorded history: call
:func:`current_version` first to bring it up to date.

**Privacy first.** A version names a lake snapshot; what a recipient gets of it is made
under the grant's *current* terms and the *current* opt-outs
(:func:`materialisation_state`): a later opt-out, or narrowed terms, apply to time travel
too. An old version's files are made again when either changes, with new file ids
(``share_api.sharing.files``).

A version whose snapshot left the lake's retention window cannot be read: 400 saying so
(:func:`read_snapshot`) — unless nothing changed the table since, when the current
snapshot reads the same rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
import sqlalchemy as sa

from share_api.db import aware, metadata, utc_now
from share_api.kept import content_revision, kept_under
from share_api.sharing.errors import SharingError

if TYPE_CHECKING:
    from share_api.grants import Grant
    from share_api.service import Service

sharing_versions = sa.Table(
    "sharing_versions",
    metadata,
    sa.Column("grant_id", sa.String(40), primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("snapshot", sa.BigInteger, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(64), nullable=False),
    sa.Column("terms", sa.String(64), nullable=False),
    sa.Column("optouts", sa.String(64), nullable=False),
    sa.Column("recipient_kind", sa.String(20), nullable=False),
)

# what changes a table's rows or columns in a DuckLake snapshot's ``changes`` (by table id);
# ``tables_created`` names ``schema.table``; compaction (``merge_adjacent``) changes no row
_TABLE_CHANGES = (
    "tables_inserted_into",
    "tables_deleted_from",
    "tables_altered",
    "inlined_insert",
    "inlined_delete",
)
STEP = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class TableVersion:
    grant_id: str
    version: int
    snapshot: int  # the lake snapshot it reads (the table's newest change at or before)
    recorded_at: dt.datetime  # tz-aware UTC, strictly increasing per grant
    state: str  # SHA-256 hex of (snapshot, terms, opt-outs, recipient kind) when recorded

    @classmethod
    def from_row(cls, row) -> TableVersion:
        m = row._mapping
        return cls(m["grant_id"], int(m["version"]), int(m["snapshot"]),
                   aware(m["recorded_at"]), m["state"])  # fmt: skip


@dataclass(frozen=True)
class State:
    """What a grant shows now: the digests a version is recorded under."""

    snapshot: int
    terms: str
    optouts: str
    recipient_kind: str

    @property
    def digest(self) -> str:
        return _digest([self.snapshot, self.terms, self.optouts, self.recipient_kind])


def _digest(value) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def terms_digest(grant: Grant) -> str:
    """The grant's terms (columns in order, row filter, masking profile) as a digest."""
    return _digest([list(grant.columns), grant.row_filter, grant.masking])


def optouts_digest(service: Service, grant: Grant, recipient_kind: str, at: int) -> str:
    """The opt-outs that apply to the grant's reads as of lake snapshot ``at``, as a digest:
    the residents who declined and, for a dataset when there are any, the last change of
    the master index's mentions at ``at`` (the view also leaves out the records it links to
    them: a new link makes a new state). Kept per set: the consent registry hands back the
    same set while nothing changed."""
    from share_api.consent import MART_PREFIX, MENTIONS, excluded_residents

    people = excluded_residents(service, grant.resource, recipient_kind).pseudonyms
    links = -1
    if people and not grant.resource.startswith(MART_PREFIX):
        try:
            links = lake_table_changed_at(service, "curated", MENTIONS, at)
        except SharingError:  # no master index in this lake: nothing is linked
            links = -1
    kept = service.kept("sharing.versions.optouts", dict)
    held = kept.get((id(people), links))
    if held is not None and held[0] is people:
        return held[1]
    listed = "\n".join(sorted(people))
    digest = hashlib.sha256(f"{links}\n{listed}".encode()).hexdigest()
    if len(kept) > 1_024:
        kept.clear()
    kept[(id(people), links)] = (people, digest)
    return digest


# -- the lake: when did the resource's table last change -----------------------------------


def table_changed_at(service: Service, resource: str, at: int) -> int:
    """The newest lake snapshot ≤ ``at`` at which ``resource``'s lake table changed. 404
    when the lake holds no such table."""
    from share_api.views import resolve

    res = resolve(service.catalogue, resource)
    return lake_table_changed_at(service, res.zone, res.table, at)


def lake_table_changed_at(service: Service, zone: str, table: str, at: int) -> int:
    """The newest lake snapshot ≤ ``at`` at which the lake table ``zone.table`` changed
    (kept per (table, snapshot): a snapshot never changes); 404 when there is no such
    table. ``zone`` and ``table`` are bound, never pasted."""
    from lakehouse.lake import ALIAS
    from share_api.views import lake_reader

    kept = service.kept("sharing.versions.changed", dict)
    key = (zone, table, at)
    if key in kept:
        return kept[key]
    meta = f"__ducklake_metadata_{ALIAS}"
    found = [f"list_contains(coalesce(changes['{k}'], []), t.id)" for k in _TABLE_CHANGES]
    found.append("list_contains(coalesce(changes['tables_created'], []), $name)")
    live = "{0}.begin_snapshot <= $at AND ({0}.end_snapshot IS NULL OR {0}.end_snapshot > $at)"
    cur = lake_reader(service).cursor()
    try:  # one statement: each loads the lake's snapshot (~5 ms)
        tables, changed = cur.execute(
            f"WITH t AS (SELECT CAST(t.table_id AS VARCHAR) AS id "
            f"FROM {meta}.ducklake_table t JOIN {meta}.ducklake_schema s USING (schema_id) "
            f"WHERE s.schema_name = $zone AND t.table_name = $table "
            f"AND {live.format('t')} AND {live.format('s')}) "
            f"SELECT (SELECT count(*) FROM t), (SELECT max(snapshot_id) FROM "
            f"{ALIAS}.snapshots(), t WHERE snapshot_id <= $at AND ({' OR '.join(found)}))",
            {"zone": zone, "table": table, "at": at, "name": f"{zone}.{table}"},
        ).fetchone()
    finally:
        cur.close()
    if not tables:
        raise SharingError(404, "the lake holds no such table")
    changed = int(changed) if changed is not None else at
    if len(kept) > 4_096:
        kept.clear()
    kept[key] = changed
    return changed


def current_state(service: Service, grant: Grant, recipient_kind: str) -> State:
    """What ``grant`` shows a recipient of ``recipient_kind`` now: as of the lake's current
    snapshot from the process's lake clock (``share_api.routes.data.lake_clock``: read by a
    thread of its own, so a call does not wait ~10 ms for the lake once a second), else
    read now under the same rule."""
    from share_api.routes.data import lake_clock
    from share_api.views import lake_reader

    at = lake_clock(service).current()
    if at is None:
        at = lake_reader(service).current()
    return State(
        snapshot=table_changed_at(service, grant.resource, at),
        terms=terms_digest(grant),
        optouts=optouts_digest(service, grant, recipient_kind, at),
        recipient_kind=recipient_kind,
    )


def materialisation_state(
    service: Service, grant: Grant, version: TableVersion, recipient_kind: str
) -> str:
    """What ``version``'s files are made from: its lake snapshot under the grant's *current*
    terms and opt-outs (privacy first), as a digest. Same state, same files (and ids)."""
    now = current_state(service, grant, recipient_kind)
    return State(version.snapshot, now.terms, now.optouts, recipient_kind).digest


# -- the recorded history ------------------------------------------------------------------


def _latest(con, grant_id: str):
    v = sharing_versions.c
    return con.execute(
        sa.select(sharing_versions)
        .where(v.grant_id == grant_id)
        .order_by(v.version.desc())
        .limit(1)
    ).first()


def current_version(service: Service, grant: Grant, recipient_kind: str) -> TableVersion:
    """The grant's version now: the latest recorded one if the state is unchanged, else a
    new one recorded (two processes recording at once: one wins, the other reads it).
    Kept per process by state under the ``grants`` and ``consent`` counters: a state comes
    back only through a change of the grant's terms or of the opt-outs, which moves them."""
    state = current_state(service, grant, recipient_kind)
    key = f"{grant.id}|{recipient_kind}|{state.digest}"
    return kept_under(service, "sharing.versions.current", key, content_revision(service),
                      lambda: _recorded(service, grant, recipient_kind, state))  # fmt: skip


def _recorded(service: Service, grant: Grant, recipient_kind: str, state: State) -> TableVersion:
    """:func:`current_version` of ``state``, read or recorded."""
    digest = state.digest
    for _ in range(8):
        try:
            with service.engine.begin() as con:
                last = _latest(con, grant.id)
                if last is not None and last._mapping["state"] == digest:
                    return TableVersion.from_row(last)
                now, number = utc_now(), 0
                if last is not None:
                    number = int(last._mapping["version"]) + 1
                    now = max(now, aware(last._mapping["recorded_at"]) + STEP)
                con.execute(
                    sharing_versions.insert().values(
                        grant_id=grant.id,
                        version=number,
                        snapshot=state.snapshot,
                        recorded_at=now,
                        state=digest,
                        terms=state.terms,
                        optouts=state.optouts,
                        recipient_kind=recipient_kind,
                    )
                )
        except sa.exc.IntegrityError:
            continue  # another recorded this number first: look again
        return TableVersion(grant.id, number, state.snapshot, now, digest)
    raise SharingError(503, "the table's version could not be recorded; try again")


def _versions(service: Service, grant: Grant, *where) -> list[TableVersion]:
    v = sharing_versions.c
    query = sa.select(sharing_versions).where(v.grant_id == grant.id, *where).order_by(v.version)
    with service.engine.connect() as con:
        return [TableVersion.from_row(r) for r in con.execute(query)]


def get_version(service: Service, grant: Grant, version: int) -> TableVersion:
    """Version ``version`` of the grant's table; 400 when it was never recorded."""
    found = _versions(service, grant, sharing_versions.c.version == int(version))
    if not found:
        raise SharingError(400, f"the table has no version {int(version)}")
    return found[0]


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise SharingError(400, "a timestamp needs a time zone (e.g. 2025-06-01T00:00:00Z)")
    return when.astimezone(dt.UTC)


def version_at(service: Service, grant: Grant, when: dt.datetime) -> TableVersion:
    """The version the table was at ``when``: the newest recorded at or before it; 400
    before the first."""
    v = sharing_versions.c
    found = _versions(service, grant, v.recorded_at <= _utc(when))
    if not found:
        raise SharingError(400, "the timestamp is before the table's first version")
    return found[-1]


def version_from(service: Service, grant: Grant, when: dt.datetime) -> TableVersion:
    """The earliest version recorded at or after ``when`` (``startingTimestamp``); 400 when
    none is (the timestamp is after the latest version)."""
    v = sharing_versions.c
    found = _versions(service, grant, v.recorded_at >= _utc(when))
    if not found:
        raise SharingError(400, "the timestamp is after the table's latest version")
    return found[0]


def versions_between(service: Service, grant: Grant, start: int, end: int) -> list[TableVersion]:
    """Versions ``start`` … ``end`` (inclusive), oldest first; 400 when the range is empty,
    reversed or names a version never recorded."""
    if start < 0 or end < start:
        raise SharingError(400, "the version range is empty or reversed")
    v = sharing_versions.c
    found = _versions(service, grant, v.version >= int(start), v.version <= int(end))
    if len(found) != end - start + 1:
        raise SharingError(400, "the version range names a version the table does not have")
    return found


def history(service: Service, grant: Grant) -> list[TableVersion]:
    """Every recorded version of the grant's table, oldest first."""
    return _versions(service, grant)


# -- reading a version's snapshot -----------------------------------------------------------


def read_snapshot(service: Service, grant: Grant, version: TableVersion) -> int:
    """The lake snapshot to read ``version`` at: its own while the lake keeps it; when it
    left the retention window but the table has not changed since, the current one (the
    same rows); else 400 saying the version left the retention window."""
    from share_api.views import lake_reader

    reader = lake_reader(service)
    days = service.settings.snapshot_retention_days
    when = reader.snapshot_time(version.snapshot)
    cutoff = None if days is None else utc_now() - dt.timedelta(days=days)
    if when is not None and (cutoff is None or aware(when) >= cutoff):
        return version.snapshot
    current = reader.current()
    if table_changed_at(service, grant.resource, current) == version.snapshot:
        return current
    raise SharingError(
        400, f"version {version.version} of the table left the lake's retention window"
    )


__all__ = [
    "State",
    "TableVersion",
    "current_state",
    "current_version",
    "get_version",
    "history",
    "lake_table_changed_at",
    "materialisation_state",
    "optouts_digest",
    "read_snapshot",
    "sharing_versions",
    "table_changed_at",
    "terms_digest",
    "version_at",
    "version_from",
    "versions_between",
]
