"""An analyst's database (分析库): what an analyst organisation's grants show, in one file.

:func:`ensure_analyst_db` writes, for an organisation of kind ``analyst``, a DuckDB file
holding a copy of each of its live grants on a published mart — the grant's view
(``share_api.views.grant_view``, the same code the data endpoints read through: the
grant's columns and rows, masking, the analyst's own pseudonym key, the residents who
declined the mart's consent category for analysts left out) as of the lake's latest
snapshot or a chosen one — one table a grant named after its mart, with the catalogue's
table and column comments (``COMMENT ON``), and a one-row table :data:`BUILD_TABLE` saying
what it is (analyst, snapshot, grants, when, fingerprint). Nothing else: no attached lake,
no view over a file, no macro. A grant on a department's dataset is not copied (an
analyst reads published marts only).

The file is written beside its destination and renamed over it (``os.replace``): a
notebook holding the old file keeps reading it whole, the next open sees the new one.

It is made again only when what it shows changed: its :func:`fingerprint` — per grant,
the sharing versions' own state (``share_api.sharing.versions.State``: the snapshot at
which the mart's lake table last changed, the digests of the grant's terms and of the
opt-outs that apply to it) — differs from the one stored in the file. A new grant, a
revoked or changed one, an opt-out or its withdrawal, a new build of a granted mart: a
new fingerprint. Every build is audited (``analyst.build``: who, which grants, which
snapshot, rows per table, the file's SHA-256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import orjson

from catalog.errors import StreethubError
from catalog.marts import Mart
from catalog.settings import Settings
from lakehouse.session import in_utc
from lakehouse.sqltext import sql_literal

if TYPE_CHECKING:
    from share_api.grants import Grant
    from share_api.service import Service

ANALYST_KIND = "analyst"  # the principals' organisation kind (share_api.principals)
BUILD_TABLE = "build_info"
SUFFIX = ".duckdb"
ACTOR = "streethub analyst"


class AnalystError(StreethubError):
    """An analyst database that cannot be built (no such analyst organisation, a bad
    snapshot); the message names the organisation, never a value of the data."""


@dataclass(frozen=True)
class AnalystBuild:
    """What :func:`ensure_analyst_db` did: the file, whether it was written now (False:
    the one there already showed the same), its fingerprint, snapshot and rows."""

    path: Path
    rebuilt: bool
    fingerprint: str
    snapshot: int
    rows: dict[str, int]


def analyst_db_path(settings: Settings, analyst_code: str) -> Path:
    """Where an analyst's database is written by default (``analyst_dir``)."""
    return settings.analyst_dir_abs / f"{analyst_code}{SUFFIX}"


def mart_grants(service: Service, analyst_code: str) -> list[Grant]:
    """The analyst organisation's live grants on published marts, oldest first (the
    first grant of a mart gives its table the mart's name). AnalystError when the
    organisation is not an analysts' team."""
    from share_api.grants import list_grants
    from share_api.principals import get_org
    from share_api.views import MART_PREFIX

    org = get_org(service, analyst_code)
    if org is None or org["kind"] != ANALYST_KIND:
        raise AnalystError(f"{analyst_code}: no analysts' organisation of that code")
    held = [
        g
        for g in list_grants(service, analyst_code)
        if g.status() == "live" and g.resource.startswith(MART_PREFIX)
    ]
    return sorted(held, key=lambda g: (g.created_at, g.id))


def table_names(grants: list[Grant]) -> dict[str, str]:
    """grant id → its table in the file: the mart's name; a second grant of the same mart
    ``<mart>__<grant id's tail>``."""
    out: dict[str, str] = {}
    for g in grants:
        name = g.resource.partition(".")[2]
        out[g.id] = name if name not in out.values() else f"{name}__{g.id.rpartition('-')[2]}"
    return out


def fingerprint(service: Service, analyst_code: str, grants: list[Grant], snapshot: int) -> str:
    """What the database shows, as one digest: the analyst, and per grant the sharing
    versions' state of it as of lake snapshot ``snapshot`` (the mart table's last change,
    the grant's terms, the opt-outs for analysts)."""
    from share_api.sharing.versions import State, optouts_digest, table_changed_at, terms_digest

    states = [
        [
            g.id,
            State(
                snapshot=table_changed_at(service, g.resource, snapshot),
                terms=terms_digest(g),
                optouts=optouts_digest(service, g, ANALYST_KIND, snapshot),
                recipient_kind=ANALYST_KIND,
            ).digest,
        ]
        for g in grants
    ]
    return hashlib.sha256(orjson.dumps([analyst_code, states])).hexdigest()


def stored_fingerprint(path: Path) -> str | None:
    """The fingerprint a built file records (None: no file, or not one of ours)."""
    from share_api.analysts.lock import open_locked

    if not path.is_file():
        return None
    try:
        con = open_locked(path)
    except duckdb.Error:
        return None
    try:
        row = con.execute(f'SELECT fingerprint FROM "{BUILD_TABLE}"').fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return row[0] if row else None


def _comments(con: duckdb.DuckDBPyConnection, table: str, mart: Mart, columns: list[str]) -> None:
    """The catalogue's words on the table and its columns (``COMMENT ON``)."""
    about = f"{mart.name_zh}：{' '.join(mart.summary.split())}"
    con.execute(f'COMMENT ON TABLE "{table}" IS {sql_literal(about)}')
    for name in columns:
        col = mart.column(name)
        words = " — ".join(w for w in (col.label_zh, col.description) if w)
        if words:
            con.execute(f'COMMENT ON COLUMN "{table}"."{name}" IS {sql_literal(words)}')


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _replacing(out: Path) -> Iterator[Path]:
    """A temporary path beside ``out``, renamed over it when the block ends well (the
    folder synced), removed when it does not."""
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, out)
        _fsync(out.parent)  # the rename itself durable
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)


def _write(
    service: Service,
    grants: list[Grant],
    names: dict[str, str],
    snapshot: int,
    info: dict,
    out: Path,
) -> dict[str, int]:
    """Each grant's view copied into a new file at ``out`` (atomically); rows a table."""
    from share_api.catalogue import marts_of
    from share_api.views import grant_view

    marts = marts_of(service)
    rows: dict[str, int] = {}
    with _replacing(out) as tmp:
        con = in_utc(duckdb.connect(str(tmp)))
        try:
            for g in grants:
                table = names[g.id]
                view = grant_view(service, g, snapshot=snapshot, recipient_kind=ANALYST_KIND)
                con.register("granted_view", view.table)
                con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM granted_view')
                con.unregister("granted_view")
                _comments(con, table, marts[g.resource.partition(".")[2]], list(g.columns))
                rows[table] = view.total
            con.execute(
                f'CREATE TABLE "{BUILD_TABLE}" (analyst VARCHAR, snapshot BIGINT, '
                "snapshot_time TIMESTAMPTZ, built_at TIMESTAMPTZ, fingerprint VARCHAR, "
                "grants VARCHAR[], tables VARCHAR[])"
            )
            con.execute(
                f'INSERT INTO "{BUILD_TABLE}" VALUES ($analyst, $snapshot, $snapshot_time, '
                "$built_at, $fingerprint, $grants, $tables)",
                info,
            )
            con.execute(
                f'COMMENT ON TABLE "{BUILD_TABLE}" IS '
                + sql_literal("本库说明：分析人员、湖快照、授权与生成时间（what this database is)")
            )
            con.execute("CHECKPOINT")
        finally:
            con.close()
    return rows


def _digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure_analyst_db(
    settings: Settings,
    analyst_code: str,
    *,
    snapshot: int | None = None,
    out: Path | None = None,
    service: Service | None = None,
    actor: str = ACTOR,
    force: bool = False,
) -> AnalystBuild:
    """The analyst's database at ``out`` (default :func:`analyst_db_path`) as of
    ``snapshot`` (the lake's latest when None), built when its fingerprint differs from
    the file's (or ``force``). ``service``: an open share service on ``settings``' home
    (one is opened and closed here when None)."""
    from share_api.grants import GrantError
    from share_api.service import Service
    from share_api.views import lake_reader, pick_snapshot

    own = service is None
    svc = Service.open(settings) if own else service
    try:
        grants = mart_grants(svc, analyst_code)
        try:
            snap = pick_snapshot(svc, snapshot)
        except GrantError as exc:  # the share service's rule: 404 none, 410 too old
            raise AnalystError(f"snapshot {snapshot}: {exc.detail}") from None
        path = (out or analyst_db_path(settings, analyst_code)).expanduser().resolve()
        found = fingerprint(svc, analyst_code, grants, snap)
        if not force and stored_fingerprint(path) == found:
            return AnalystBuild(path, False, found, snap, {})
        names = table_names(grants)
        when = lake_reader(svc).snapshot_time(snap)
        info = {
            "analyst": analyst_code,
            "snapshot": snap,
            "snapshot_time": when,
            "built_at": dt.datetime.now(dt.UTC),
            "fingerprint": found,
            "grants": [g.id for g in grants],
            "tables": [names[g.id] for g in grants],
        }
        rows = _write(svc, grants, names, snap, info, path)
        svc.audit.record(
            "analyst.build",
            actor,
            analyst=analyst_code,
            grants=",".join(g.id for g in grants),
            snapshot=snap,
            rows=",".join(f"{t}={n}" for t, n in rows.items()),
            digest=_digest_file(path),
            fingerprint=found,
        )
        return AnalystBuild(path, True, found, snap, rows)
    finally:
        if own:
            svc.close()


def build_analyst_db(
    settings: Settings,
    analyst_code: str,
    *,
    snapshot: int | None = None,
    out: Path | None = None,
    service: Service | None = None,
) -> Path:
    """The analyst's database, built or refreshed (:func:`ensure_analyst_db`): its path."""
    return ensure_analyst_db(
        settings, analyst_code, snapshot=snapshot, out=out, service=service
    ).path


__all__ = [
    "ANALYST_KIND",
    "BUILD_TABLE",
    "AnalystBuild",
    "AnalystError",
    "analyst_db_path",
    "build_analyst_db",
    "ensure_analyst_db",
    "fingerprint",
    "mart_grants",
    "stored_fingerprint",
    "table_names",
]
