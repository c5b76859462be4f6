"""The curated zone built from staged, in order, incrementally: what the ``curated/*``
assets run (``pipelines/defs/curated``) and what a manual merge or split refreshes.

One build, in this order (each part reads what the one before wrote):

1. houses and house mentions (addresses down to the room);
2. the master resident index (``curated.person_mentions``, review queue, link actions),
   whose fallback compares the unit a record's address names;
3. households (the registry's households, members by person id, their house);
4. golden records (``curated.person`` with history, conflicts) and the re-collection metric;
5. things (merchants, facilities, sensors, hazard points);
6. events (each event dataset's records, door access per person and day), then every event
   follows the index (a merge or split moves its person).

Incremental: ``curated.build_state`` keeps the lake snapshot each build started from and
a digest of the catalogue and build version. The next build re-links only the datasets
whose staged table a later snapshot changed (DuckLake's own record of changes, the same
reading as the scorecard's: :func:`pipelines.quality_state.touched_staged`); nothing
changed, nothing done; no usable state (first build, another catalogue or version, the
snapshot expired): a full build. Each part's incremental path equals its full rebuild
(their tests compare them).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import duckdb
import polars as pl

from catalog.authority import authority, fields_of_concept
from catalog.model import Catalogue
from catalog.street import Street
from curated.events import EVENT, EVENT_COLUMNS, build_events, follow_person_index
from curated.golden import MENTIONS, build_golden, golden_attributes, golden_tables
from curated.golden_refresh import affected_persons, refresh
from curated.households import HOUSEHOLD, HOUSEHOLD_COLUMNS, HOUSEHOLD_KEY, build_households
from curated.houses import HOUSE, HOUSE_COLUMNS, build_houses
from curated.houses import MENTION_COLUMNS as HOUSE_MENTION_COLUMNS
from curated.houses import MENTIONS as HOUSE_MENTIONS
from curated.persons import INDEX_TABLES, link_persons
from curated.recollection import COLUMNS as RECOLLECTION_COLUMNS
from curated.recollection import (
    RECOLLECTION,
    build_recollection,
    changed_groups,
    duplicate_entry_avoidable,
    recollection_by_department,
)
from curated.things import GRID, THING, THING_COLUMNS, build_things, thing_datasets
from lakehouse.lake import ensure_table, has_table, insert_frame, tables_in, transaction
from lakehouse.snapshots import changes, current_snapshot
from pipelines.memory import release
from pipelines.protection import Protection
from pipelines.quality_state import Key, digest, scoring_version, touched_staged

ZONE = "curated"
# growth of the process (bytes) after which a part's end collects and trims the heap: a
# big street's parts, not a small one's (a collection costs tenths of a second there)
PART_GROWTH = 64 * 2**20
STATE_TABLE = "build_state"
# bump when a part builds differently: the next build is a full one
BUILD_VERSION = "2026-12-02.1"
STATE_COLUMNS = [
    ("snapshot", "BIGINT"),
    ("version", "VARCHAR"),
    ("full_build", "BOOLEAN"),
    ("datasets", "BIGINT"),
    ("built_at", "TIMESTAMPTZ"),
    ("seconds", "DOUBLE"),
    ("ended", "BIGINT"),
]


@dataclass
class CuratedBuild:
    """What one build did: full or the datasets it re-linked, and the counts of each part."""

    full: bool
    changed: set[Key] = field(default_factory=set)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    avoidable: float | None = None  # share of collected attribute rows readable instead

    @property
    def skipped(self) -> bool:
        return not self.full and not self.changed

    def timed(self, name: str, fn, *args, **kw):
        """``fn(*args, **kw)``, its wall time kept as part ``name``; then what the part
        held goes back (:func:`pipelines.memory.release`, when the process grew by
        :data:`PART_GROWTH`) before the next part's peak stands on top of it."""
        t0 = time.perf_counter()
        result = fn(*args, **kw)
        release(PART_GROWTH)
        self.seconds[name] = time.perf_counter() - t0
        return result

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def version(cat: Catalogue) -> str:
    """The catalogue's digest with the scoring and build versions: a change rebuilds all."""
    return digest(f"{scoring_version(cat)}|{BUILD_VERSION}")


def last_build(con: duckdb.DuckDBPyConnection) -> tuple[int, str, int | None] | None:
    """(snapshot, version, ended) of the last build: the snapshot it started from, the
    version it built, the snapshot its parts had written when it ended (None: a build
    state from before it was kept); or None."""
    if not has_table(con, ZONE, STATE_TABLE):
        return None
    frame = con.execute(f"SELECT * FROM {ZONE}.{STATE_TABLE} ORDER BY built_at DESC LIMIT 1").pl()
    if frame.height == 0:
        return None
    row = frame.row(0, named=True)
    ended = row.get("ended")
    return int(row["snapshot"]), str(row["version"]), None if ended is None else int(ended)


def to_build(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, last: tuple | None = None
) -> set[Key] | None:
    """The datasets whose staged rows changed since the last build (``last``: its
    :func:`last_build`, read when not given); None: build in full."""
    last = last or last_build(con)
    if last is None or last[1] != version(cat):
        return None
    return touched_staged(con, cat, last[0])


def build_curated(
    con: duckdb.DuckDBPyConnection,
    cat: Catalogue,
    protection: Protection,
    street: Street,
    *,
    full: bool = False,
) -> CuratedBuild:
    """Build the curated zone (in full when ``full`` or when no usable state says what
    changed); a build with nothing changed does nothing."""
    start = current_snapshot(con)
    last = None if full else last_build(con)
    changed = None if full else to_build(con, cat, last)
    out = CuratedBuild(full=changed is None, changed=set(changed or ()))
    if out.skipped:
        return out
    if out.full:
        _made_together(con, cat)

    # houses first: the index compares the unit a caller's address names (house_mentions)
    out.counts["houses"] = out.timed("houses", build_houses, con, cat, protection, street, changed)
    out.counts["persons"] = out.timed(
        "persons", link_persons, con, cat, protection, changed, before=start
    )
    since, ended = (last[0], last[2]) if last is not None and changed is not None else (None, None)
    _downstream(con, cat, protection, street, changed, out, (since, start, ended))
    _record(con, cat, start, out)
    return out


def _made_together(con: duckdb.DuckDBPyConnection, cat: Catalogue) -> None:
    """The tables a full build writes that are missing (a first build's: all of them),
    made in one commit before its parts run. Each part makes its own where it is missing
    (``ensure_table``), in its own commit: a new table is a new schema version of the lake,
    which the next statement reloads whole (~20-30 ms on a first run's lake of 116 tables,
    2026-12-07), nine times over on a first build. A full build writes every one of them
    before it ends: in a full build every part rebuilds its table, there or not."""
    tables = [
        (HOUSE, HOUSE_COLUMNS),
        (HOUSE_MENTIONS, HOUSE_MENTION_COLUMNS),
        *INDEX_TABLES,
        (HOUSEHOLD, HOUSEHOLD_COLUMNS),
        *golden_tables(con, cat),
        (RECOLLECTION, RECOLLECTION_COLUMNS),
        (THING, THING_COLUMNS),
        (EVENT, EVENT_COLUMNS),
        (STATE_TABLE, STATE_COLUMNS),
    ]
    have = {table for _, table in tables_in(con, ZONE)}
    missing = [(table, columns) for table, columns in tables if table not in have]
    if missing:
        with transaction(con):
            for table, columns in missing:
                ensure_table(con, ZONE, table, columns)


def follow_index(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, protection: Protection, street: Street
) -> CuratedBuild:
    """After a merge or split (the index changed, no staged row did): households, golden
    records, the re-collection figure and events follow the index; nothing is re-linked."""
    out = CuratedBuild(full=False)

    _downstream(con, cat, protection, street, set(), out)
    return out


def _moved_mentions(con, start: int | None) -> tuple[set[Key], dict[str, set[Key]]] | None:
    """The datasets of the ``curated.person_mentions`` rows written or removed after
    snapshot ``start`` and each person's (before and after) datasets among them: the rows
    DuckLake records as inserted or deleted since, which the index writes only when a
    mention's link changed; None when unknown (no start, the table is new)."""
    if start is None:
        return None
    now = current_snapshot(con)
    if now <= start:
        return set(), {}
    try:
        rows = con.execute(
            "SELECT DISTINCT dept, dataset, person_id FROM "
            + changes(ZONE, MENTIONS, int(start) + 1, now)
        ).fetchall()
    except duckdb.Error:
        return None
    persons: dict[str, set[Key]] = {}
    for d, s, p in rows:
        if p is not None:
            persons.setdefault(str(p), set()).add((str(d), str(s)))
    return {(str(d), str(s)) for d, s, _ in rows}, persons


def _thing_sources(cat: Catalogue) -> set[Key]:
    """The datasets ``curated.thing`` reads: every thing dataset and the grid register."""
    out = {(dept, ds.code) for dept, ds in thing_datasets(cat)}
    grid = authority(cat, GRID)
    return out | ({(grid.dept, grid.dataset.code)} if grid is not None else set())


def _household_sources(cat: Catalogue) -> set[Key]:
    a = authority(cat, HOUSEHOLD_KEY)
    return {(a.dept, a.dataset.code)} if a is not None else set()


def _collecting(cat: Catalogue) -> set[Key]:
    """The datasets holding a field of a golden attribute's concept (re-collection)."""
    attrs = golden_attributes(cat)
    return {
        (dept.code, ds.code)
        for dept, ds in cat.datasets()
        if any(fields_of_concept(ds, a.concept) for a in attrs)
    }


def _downstream(
    con,
    cat,
    protection,
    street,
    changed,
    out: CuratedBuild,
    snapshots: tuple[int | None, int | None, int | None] = (None, None, None),
) -> None:
    """Parts 3–6 (see the module's docstring) for ``changed`` (None: in full).

    ``snapshots``: the one the last build started from (staged as it stood then), the one
    this build started from (the index before it re-linked) and the one the last build
    ended at (the index it left: every mention moved since, by this build, a merge or
    split, or a build that did not finish, is read from DuckLake's changes; unknown: since
    this build started, and persons left without mentions are looked for); with the first
    two, each part runs
    only when what it reads changed: golden records digest only the persons a changed row
    or a moved mention can touch, households and things are rebuilt only when one of their
    source datasets changed (or the index moved a household member), the re-collection
    figure only when a collecting dataset, the index or a golden record changed."""
    since, start, ended = snapshots
    moved = None
    if changed is not None:
        moved = out.timed("index_moved", _moved_mentions, con, start if ended is None else ended)
    touched = None if changed is None or moved is None else changed | moved[0]

    def needed(table: str, sources: set[Key]) -> bool:
        return touched is None or not has_table(con, ZONE, table) or bool(touched & sources)

    if needed(HOUSEHOLD, _household_sources(cat)):
        out.counts["households"] = out.timed("households", build_households, con, cat, protection)
    if changed is None:
        golden = out.timed("golden", build_golden, con, cat, protection)
        out.counts["golden"] = _counts(golden)
        rebuilt = None
    else:
        candidates = None
        if since is not None and moved is not None:
            candidates = out.timed(
                "golden_scope", affected_persons, con, cat, changed, since, moved[1],
                orphans=ended is None,
            )  # fmt: skip
        refreshed = out.timed("golden", refresh, con, cat, protection, candidates)
        rebuilt = refreshed.rebuilt
        out.counts["golden"] = {
            "persons_rebuilt": len(rebuilt), "persons_rechecked": len(refreshed.rechecked)
        }  # fmt: skip
    if rebuilt or needed("recollection", _collecting(cat)):
        groups = None
        if touched is not None and rebuilt is not None and start is not None:
            # a person only rechecked keeps its golden values: no concept flipped there
            groups = changed_groups(con, cat, touched, rebuilt, start)
        rows = out.timed("recollection", build_recollection, con, cat, groups)
        out.counts["recollection"] = {"rows": rows}
    out.avoidable = duplicate_entry_avoidable(con)
    if needed(THING, _thing_sources(cat)):
        out.counts["things"] = out.timed("things", build_things, con, cat, protection, street)
    out.counts["events"] = out.timed("events", build_events, con, cat, protection, street, changed)
    # events of the changed datasets were built from the index as it now is: the others
    # follow it only when it moved one of their mentions
    follow = changed is None or moved is None or bool(moved[0] - changed)
    moved_events = out.timed("follow", follow_person_index, con) if follow else 0
    out.counts["events"]["moved_by_index"] = moved_events


def _counts(result) -> dict[str, int]:
    """The integer fields of a part's result object (for metadata)."""
    if isinstance(result, dict):
        return {k: int(v) for k, v in result.items() if isinstance(v, int | float)}
    fields = getattr(result, "__dataclass_fields__", {})
    return {k: int(getattr(result, k)) for k in fields if isinstance(getattr(result, k), int)}


def _record(con: duckdb.DuckDBPyConnection, cat: Catalogue, start: int, out: CuratedBuild):
    row = {
        "snapshot": start,
        "ended": current_snapshot(con),
        "version": version(cat),
        "full_build": out.full,
        "datasets": len(out.changed),
        "built_at": dt.datetime.now(dt.UTC),
        "seconds": out.total_seconds,
    }
    with transaction(con):
        ensure_table(con, ZONE, STATE_TABLE, STATE_COLUMNS)
        con.execute(f"DELETE FROM {ZONE}.{STATE_TABLE}")
        insert_frame(con, ZONE, STATE_TABLE, pl.DataFrame([row]))


def _count(con: duckdb.DuckDBPyConnection, table: str, what: str = "count(*)") -> int:
    if not has_table(con, ZONE, table):
        return 0
    return int(con.execute(f'SELECT {what} FROM {ZONE}."{table}"').fetchone()[0])


def curated_summary(con: duckdb.DuckDBPyConnection) -> dict | None:
    """What the curated zone holds now (counts only), or None before its first build."""
    if not has_table(con, ZONE, STATE_TABLE):
        return None
    full, seconds = con.execute(
        f"SELECT full_build, seconds FROM {ZONE}.{STATE_TABLE} ORDER BY built_at DESC LIMIT 1"
    ).fetchone()
    methods = (
        dict(
            con.execute(
                f"SELECT method, count(*) FROM {ZONE}.person_mentions GROUP BY method"
            ).fetchall()
        )
        if has_table(con, ZONE, "person_mentions")
        else {}
    )
    by_dept = recollection_by_department(con) if has_table(con, ZONE, "recollection") else None
    return {
        "persons": _count(con, "person_mentions", "count(DISTINCT person_id)"),
        "mentions": sum(methods.values()),
        "methods": methods,
        "review": _count(con, "person_review"),
        "households": _count(con, "household"),
        "houses": _count(con, "house"),
        "house_mentions": _count(con, "house_mentions"),
        "house_mentions_linked": _count(con, "house_mentions", "count(house_id)"),
        "things": _count(con, "thing"),
        "events": _count(con, "event"),
        "avoidable": duplicate_entry_avoidable(con) if by_dept is not None else None,
        "recollection": by_dept,
        "last_build": "full" if full else "incremental",
        "last_build_seconds": float(seconds or 0.0),
    }
