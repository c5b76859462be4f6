"""The share service's records copied into the lake (共享运行记录入湖), for the metrics marts.

``marts.sharing_metrics`` and ``marts.governance_scorecard`` compute the sharing rate and the
time from request to first byte from what the share service (``share_api``) recorded —
requests, reviews, grants, reads, feedback — never from a setting. :func:`copy_share_records`
reads the service's state (its SQLite file under the home, or ``STREETHUB_SHARE_DB_URL``)
and replaces six ``landing.share_*`` tables with it in one lake transaction (their history
stays in time travel; a mart reading them is stale after a copy that changed them):

=========================  ===================================================================
``landing.share_requests``  a request: kind, requester, resource, owner, path (share type as
                            applied), status, submitted / decided times, its grant, the Beijing
                            month it was submitted in
``landing.share_reviews``   a review: request, reviewer's organisation, capacity, decision, time
``landing.share_grants``    a grant: grantee, resource, request (none for a standing grant),
                            created / expires / revoked
``landing.share_reads``     a read of a grant: organisation, lake snapshot, format, rows, time
``landing.share_corrections`` a correction request (校核纠错): grant, resource, owner, field,
                            the record as the grantee named it (a pseudonym or an L1/L2 value),
                            problem, status, decision, times
``landing.share_ratings``   a rating: grant, resource, organisation, score, time
=========================  ===================================================================

The leak scanner's sampled reads (user :data:`SCANNER`) are left out: they are no use of
the data, and would pass for a grant's first byte. Only codes, ids, counts and times are copied: no purpose, reason, remark or answer text,
no token, no person's name (organisations only). A home whose service never ran gets the
tables empty (the marts then report no sharing). ``streethub share records`` runs it; the
main job runs it before the marts step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import duckdb
import polars as pl
import sqlalchemy as sa

from catalog.days import beijing_day
from catalog.settings import Settings
from lakehouse.lake import has_table, open_lake, replace_with_frame, transaction
from share_api.db import aware

ZONE = "landing"
SCANNER = "leak-scan"  # the user the leak scanner reads grants as: its reads are no use
UTC_TIME = pl.Datetime("us", "UTC")

# lake table → (service table, {lake column: (service column, type)})
COPIES: dict[str, tuple[str, dict[str, tuple[str, pl.DataType]]]] = {
    "share_requests": ("share_requests", {
        "request_id": ("id", pl.String),
        "kind": ("kind", pl.String),
        "requester_org": ("requester_org", pl.String),
        "resource": ("resource", pl.String),
        "owner_org": ("owner_org", pl.String),
        "path": ("path", pl.String),
        "status": ("status", pl.String),
        "submitted_at": ("submitted_at", UTC_TIME),
        "decided_at": ("decided_at", UTC_TIME),
        "grant_id": ("grant_id", pl.String),
    }),
    "share_reviews": ("share_reviews", {
        "request_id": ("request_id", pl.String),
        "reviewer_org": ("reviewer_org", pl.String),
        "capacity": ("capacity", pl.String),
        "decision": ("decision", pl.String),
        "decided_at": ("decided_at", UTC_TIME),
    }),
    "share_grants": ("grants", {
        "grant_id": ("id", pl.String),
        "grantee_org": ("grantee_org", pl.String),
        "resource": ("resource", pl.String),
        "request_id": ("request_id", pl.String),
        "standing": ("standing", pl.Boolean),
        "created_at": ("created_at", UTC_TIME),
        "expires_at": ("expires_at", UTC_TIME),
        "revoked_at": ("revoked_at", UTC_TIME),
    }),
    "share_reads": ("grant_reads", {
        "grant_id": ("grant_id", pl.String),
        "org": ("org", pl.String),
        "snapshot": ("snapshot", pl.Int64),
        "format": ("format", pl.String),
        "rows": ("rows", pl.Int64),
        "read_at": ("time", UTC_TIME),
    }),
    "share_corrections": ("feedback_corrections", {
        "correction_id": ("id", pl.String),
        "grant_id": ("grant_id", pl.String),
        "resource": ("resource", pl.String),
        "owner_org": ("owner_org", pl.String),
        "requester_org": ("requester_org", pl.String),
        "record_column": ("record_column", pl.String),
        "record": ("record", pl.String),
        "field": ("field", pl.String),
        "problem": ("problem", pl.String),
        "status": ("status", pl.String),
        "decision": ("decision", pl.String),
        "filed_at": ("filed_at", UTC_TIME),
        "due_at": ("due_at", UTC_TIME),
        "answered_at": ("answered_at", UTC_TIME),
    }),
    "share_ratings": ("feedback_ratings", {
        "grant_id": ("grant_id", pl.String),
        "resource": ("resource", pl.String),
        "org": ("org", pl.String),
        "score": ("score", pl.Int64),
        "rated_at": ("rated_at", UTC_TIME),
    }),
}  # fmt: skip

MONTH = ("share_requests", "submitted_month")  # the Beijing month a request came in


def schema_of(table: str) -> dict[str, pl.DataType]:
    """The lake table's columns and types."""
    cols = {name: dtype for name, (_, dtype) in COPIES[table][1].items()}
    if table == MONTH[0]:
        cols[MONTH[1]] = pl.String
    return cols


def beijing_month(t: dt.datetime | None) -> str | None:
    return None if t is None else beijing_day(t).strftime("%Y-%m")


def _utc(value: object) -> object:
    return aware(value) if isinstance(value, dt.datetime) else value


def _frame(table: str, rows: list[Mapping]) -> pl.DataFrame:
    source_cols = COPIES[table][1]
    data = {
        name: pl.Series(name, [_utc(r[col]) for r in rows], dtype=dtype, strict=False)
        for name, (col, dtype) in source_cols.items()
    }
    frame = pl.DataFrame(data, schema={n: t for n, (_, t) in source_cols.items()})
    if table == MONTH[0]:
        months = [beijing_month(t) for t in frame["submitted_at"].to_list()]
        frame = frame.with_columns(pl.Series(MONTH[1], months, dtype=pl.String))
    frame = frame.select(list(schema_of(table)))
    return frame.sort(frame.columns, nulls_last=True)  # the same records, the same frame


def service_engine(settings: Settings) -> sa.engine.Engine | None:
    """The share service's database, or None when the service never ran on this home
    (its default SQLite file is absent: nothing is created here)."""
    from share_api.db import default_url, engine_for

    url = settings.share_db_url or default_url(settings)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if not path or not Path(path).exists():
            return None
    return engine_for(settings, url)


def read_records(settings: Settings) -> dict[str, pl.DataFrame]:
    """Lake table → the service's records for it (empty frames without a service)."""
    engine = service_engine(settings)
    frames = {t: pl.DataFrame(schema=schema_of(t)) for t in COPIES}
    if engine is None:
        return frames
    try:
        have = set(sa.inspect(engine).get_table_names())
        with engine.connect() as con:
            for table, (source, cols) in COPIES.items():
                if source not in have:
                    continue
                wanted = ", ".join(f'"{c}"' for c, _ in cols.values())
                query = f'SELECT {wanted} FROM "{source}"'
                if source == "grant_reads":  # the leak scanner's samples are not reads
                    query += ' WHERE "principal" NOT LIKE :scan'
                rows = con.execute(sa.text(query), {"scan": f"%/{SCANNER}"}).mappings()
                frames[table] = _frame(table, list(rows))
    finally:
        engine.dispose()
    return frames


def _held(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame | None:
    if not has_table(con, ZONE, table):
        return None
    return con.execute(f'SELECT * FROM {ZONE}."{table}"').pl()


def write_records(con: duckdb.DuckDBPyConnection, frames: Mapping[str, pl.DataFrame]) -> bool:
    """Replace ``landing.<table>`` with each frame, in one lake transaction — unless the
    lake holds these very records already (no new snapshot: the marts reading them stay
    fresh). Whether anything was written."""
    changed = {}
    for table, frame in frames.items():
        held = _held(con, table)
        same = held is not None and held.columns == frame.columns
        if not same or not held.equals(frame.cast(held.schema, strict=False)):
            changed[table] = frame
    if not changed:
        return False
    with transaction(con):
        for table, frame in changed.items():
            replace_with_frame(con, ZONE, table, frame)
    return True


def copy_share_records(
    settings: Settings, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, int]:
    """Copy the service's records into the lake (see the module doc) and take the
    correction requests into the quality loop (``pipelines.correction_intake``); rows per
    table, and ``disputes_opened``."""
    frames = read_records(settings)
    if con is not None:
        opened = _write(settings, con, frames)
    else:
        with open_lake(settings) as lake:
            opened = _write(settings, lake, frames)
    return {table: frame.height for table, frame in frames.items()} | {"disputes_opened": opened}


def _write(settings: Settings, con: duckdb.DuckDBPyConnection, frames) -> int:
    from catalog.loader import get_catalogue
    from masking.keys import KeyRing
    from pipelines.correction_intake import take_in_corrections

    write_records(con, frames)
    corrections = frames["share_corrections"]
    if corrections.is_empty():
        return 0
    cat = get_catalogue(settings.catalog_dir)
    return take_in_corrections(con, cat, KeyRing.from_settings(settings), corrections)
