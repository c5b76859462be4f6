"""HTTP routes: data — a grantee reads its grant: ``GET /grants/{id}/data`` as paged JSON,
an Arrow IPC stream or Parquet, always through the grant's view, as of a lake snapshot.

Two ways in, one set of rules:

- :func:`read_data`, the declared route (what the OpenAPI spec says), runs the whole read
  in one worker thread: sign-in, live grant, rate, view, the durable records. A whole-view
  Arrow or Parquet download (offset 0, no limit) is served from the grant's prepared file
  (``share_api.sharing.files.prepared_download``) when there is one, else from the view.
- :func:`fast_read`, tried by the app's guard before any routing, serves the common JSON
  page on the event loop when everything it needs is already in memory and still current:
  the token's sign-in, the grant, the consent exclusion (each kept per process under the
  revision counters of ``share_api.db``, read with ONE query a request, so a revocation by
  any process refuses the very next request) and the grant's view, which the route has
  built before. Its ``data.read`` audit record and ``grant_reads`` row are awaited from
  the group commits' writer threads: durable before a byte leaves, with no worker thread
  held. Anything else — a failed sign-in, a refused grant, a spent rate, a view not built
  yet, a query it does not parse exactly as the route would — goes to the route, which
  decides (and audits) as always: the fast path only ever answers 200.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
import weakref
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from share_api import grants
from share_api.db import Revisions, current_revisions, fixed_revisions, revision_reader
from share_api.deps import Principal, ServiceDep, bearer_scheme, current_principal
from share_api.principals import (
    AuthFailure,
    authenticate_request,
    authenticate_token,
    bearer,
    bearer_of,
    client_of,
)
from share_api.service import Service
from share_api.views import (
    MEDIA_TYPES,
    SNAPSHOT_TTL_S,
    View,
    grant_view,
    lake_reader,
    pick_snapshot,
)

router = APIRouter(tags=["data"])
log = logging.getLogger("streethub.share.data")

MAX_JSON_PAGE = 10_000
DEFAULT_JSON_PAGE = 100
FAST_MAX_PAGE = 1_000  # the largest JSON page the event loop serves itself
KEPT_VIEWS = 4_096  # views remembered for the fast path per process (weakly)

# exactly what the fast path takes; anything else goes to the route
_PATH = re.compile(r"/grants/([A-Za-z0-9_-]{1,40})/data")
_BOUNDS = {b"offset": (0, 10**12), b"limit": (1, 10**9), b"snapshot": (0, 2**62)}


@router.get(
    "/grants/{grant_id}/data",
    responses={
        200: {
            "content": {t: {} for t in MEDIA_TYPES.values()},
            "description": "rows of the grant's view (JSON page, Arrow IPC stream or Parquet)",
        }
    },
)
async def read_data(
    request: Request,
    grant_id: str,
    service: ServiceDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    format: Literal["json", "arrow", "parquet"] = "json",
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=10**9)] = None,
    snapshot: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Response:
    """Rows ``offset`` … ``offset + limit`` of the grant's view as of ``snapshot`` (default:
    the lake's current one; the response says which in ``X-Lake-Snapshot``). JSON pages hold
    at most 10,000 rows (default 100); Arrow and Parquet default to every row. Each read is
    audited (``data.read``; ``X-Audit-Seq`` names its receipt) and recorded for the metrics."""
    # One hop to a worker thread for the whole read — signing in, the grant, the view and
    # the durable records — instead of one for the principal dependency and another for a
    # sync route: a hand-off costs more than a cached page.
    return await run_in_threadpool(
        _read, service, request, grant_id, format, offset, limit, snapshot
    )


def _read(
    service: Service,
    request: Request,
    grant_id: str,
    format: str,
    offset: int,
    limit: int | None,
    snapshot: int | None,
) -> Response:
    with fixed_revisions(service):  # one query of the counters for the whole read
        principal = _sign_in(service, request)
        return read_as(
            service, principal, grant_id, format, offset, limit, snapshot, client_of(request)
        )


def read_as(
    service: Service,
    principal: Principal,
    grant_id: str,
    format: str = "parquet",
    offset: int = 0,
    limit: int | None = None,
    snapshot: int | None = None,
    client: str | None = None,
) -> Response:
    """A read of ``grant_id`` by a signed-in ``principal`` — the data route's, after its
    sign-in, and the portal's downloads (the same rules: live grant, rate, view or prepared
    file, the durable records). The revision counters are read once (the route's already)."""
    with fixed_revisions(service, current_revisions(service)) as revs:
        grant = grants.live_grant(service, grant_id, principal)
        grants.check_rate(service, grant, principal)
        if format == "json":
            limit = min(limit or DEFAULT_JSON_PAGE, MAX_JSON_PAGE)
        elif offset == 0 and limit is None:
            prepared = _prepared(service, client, grant, principal, format, snapshot)
            if prepared is not None:
                return prepared
        view = grant_view(service, grant, snapshot=snapshot, recipient_kind=principal.org_kind)
        if format == "json":
            _remember(service, revs, (grant.id, view.snapshot, principal.org_kind), view)
            lake_clock(service)
        body, rows, digest = view.serialised(format, offset, limit)
        record = grants.record_read(
            service,
            grant,
            principal,
            snapshot=view.snapshot,
            fmt=format,
            offset=offset,
            rows=rows,
            nbytes=len(body),
            digest=digest,
            client=client,
        )
    headers = _headers(view.snapshot, view.total, digest, record)
    if format != "json":
        headers["Content-Disposition"] = _attachment(grant, view.snapshot, format)
    return Response(body, media_type=MEDIA_TYPES[format], headers=headers)


def _prepared(
    service: Service,
    client: str | None,
    grant: grants.Grant,
    principal: Principal,
    fmt: str,
    snapshot: int | None,
) -> Response | None:
    """The whole view as Arrow or Parquet from the grant's prepared file (issue 14's
    1 M-row downloads: decrypted as it streams, no view built), its read recorded and
    durable before the first byte; None when there is no such file (the caller serves
    the view)."""
    from share_api.sharing.files import prepared_download

    snap = pick_snapshot(service, snapshot)  # 404 / 410 as for the view
    download = prepared_download(service, grant, snap, principal.org_kind, fmt)
    if download is None:
        return None
    record = grants.record_read(
        service,
        grant,
        principal,
        snapshot=download.snapshot,
        fmt=fmt,
        offset=0,
        rows=download.rows,
        nbytes=download.nbytes,
        digest=download.digest,
        client=client,
    )
    headers = _headers(download.snapshot, download.total, download.digest, record)
    headers["Content-Disposition"] = _attachment(grant, download.snapshot, fmt)
    headers["Content-Length"] = str(download.nbytes)
    return StreamingResponse(download.chunks, media_type=download.media_type, headers=headers)


def _headers(snapshot: int, total: int, digest: str, record: dict) -> dict[str, str]:
    return {
        "X-Lake-Snapshot": str(snapshot),
        "X-Total-Rows": str(total),
        "X-Content-SHA256": digest,
        "X-Audit-Seq": str(record.get("seq", "")),
        "Cache-Control": "no-store",
    }


def _attachment(grant: grants.Grant, snapshot: int, fmt: str) -> str:
    ext = "arrows" if fmt == "arrow" else "parquet"
    return f'attachment; filename="{grant.id}-{snapshot}.{ext}"'


def _sign_in(service: Service, request: Request) -> Principal:
    """The caller, signed in by its bearer token. A read's sign-in is audited in the read's
    own record — ``data.read``, ``data.denied`` or ``data.rate_limited`` each name the token
    — so a read waits for one durable audit record, not two in turn (the audit log's write
    and fsync per batch is what bounds reads a second: 355 → 539 reads/s at 50 clients). A
    sign-in that fails goes the usual way: ``auth.failed`` audited, 401.

    An override of ``deps.current_principal`` in the app (how an in-process caller such as
    the leak scanner reads as a principal it names) is honoured, as it is on every route
    that takes ``PrincipalDep``."""
    override = request.app.dependency_overrides.get(current_principal)
    if override is not None:
        return override()
    try:
        principal = authenticate_token(service, bearer(request))
    except AuthFailure:
        return authenticate_request(service, request)  # records auth.failed, raises 401
    request.state.principal = principal  # the app's 4xx audit names the caller
    return principal


# -- the fast path ------------------------------------------------------------------------------


class _Views:
    """Views the route served, by (grant, snapshot, recipient kind), remembered weakly for
    the fast path under the revision counters they were served under: a moved counter
    forgets them all; a view the view cache dropped is gone here too."""

    def __init__(self) -> None:
        self.held: tuple[Revisions | None, dict] = (None, {})

    def get(self, revs: Revisions, key: tuple) -> View | None:
        held_revs, views = self.held
        ref = views.get(key) if held_revs == revs else None
        return ref() if ref is not None else None

    def put(self, revs: Revisions, key: tuple, view: View) -> None:
        held_revs, views = self.held
        if held_revs != revs or len(views) >= KEPT_VIEWS:
            views = {}
            self.held = (revs, views)
        views[key] = weakref.ref(view)


CLOCK_THREAD = "share-lake-clock"  # the name of each lake clock's thread


class _LakeClock:
    """The lake's current snapshot for the fast path, read by a thread of its own every
    half :data:`~share_api.views.SNAPSHOT_TTL_S` — a lake query takes ~10 ms, too long for
    the event loop, where it stalled every request in flight once a second — and taken
    while younger than ``SNAPSHOT_TTL_S`` (the rule of the views' own reader); older, the
    read is left to the route. Made by the route (off the loop: its first read is made
    at once).

    It reads only while it is asked: after :data:`IDLE_AFTER_S` with no :meth:`current`,
    the thread sleeps until the next one wakes it (that request finds the snapshot stale and
    reads the lake itself, as any request did before the clock's first read). A service
    nobody reads from polls nothing: a street's share service idles most of the night, and
    each read costs DuckDB a cursor and a catalogue query (~10 ms of CPU, twice a second)."""

    IDLE_AFTER_S = 10.0

    def __init__(self, service: Service) -> None:
        self.service = service
        self.held: tuple[float, int] | None = None  # (monotonic time asked, snapshot)
        self.asked = time.monotonic()  # when current() was last called
        self._stop = threading.Event()
        self._wanted = threading.Event()  # set: the thread reads; clear: it sleeps
        self._wanted.set()
        self._tick()
        self._thread = threading.Thread(target=self._run, name=CLOCK_THREAD, daemon=True)
        self._thread.start()
        _CLOCKS.add(self)

    def current(self) -> int | None:
        self.asked = time.monotonic()
        if not self._wanted.is_set():  # asleep: this request wakes it
            self._wanted.set()
        held = self.held
        if held is None or self.asked - held[0] >= SNAPSHOT_TTL_S:
            return None
        return held[1]

    @property
    def reading(self) -> bool:
        """Whether the thread is reading the lake (False: asleep, nobody asked lately)."""
        return self._wanted.is_set()

    def _idle(self) -> bool:
        return time.monotonic() - self.asked >= self.IDLE_AFTER_S

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._idle():
                self._wanted.clear()
                if self._idle():  # not asked between the test and the clear: sleep
                    self._wanted.wait()
                    if self._stop.is_set():
                        return
                    self._tick()  # woken by a request: read at once
                    continue
                self._wanted.set()
            if self._stop.wait(SNAPSHOT_TTL_S / 2):
                return
            self._tick()

    def _tick(self) -> None:
        from lakehouse.snapshots import current_snapshot

        asked = time.monotonic()
        try:
            cur = lake_reader(self.service).cursor()
            try:
                self.held = (asked, current_snapshot(cur))
            finally:
                cur.close()
        except Exception as exc:  # the route reads it meanwhile
            if not self._stop.is_set():
                log.warning("reading the lake's current snapshot failed: %s", type(exc).__name__)

    def close(self) -> None:
        self._stop.set()
        self._wanted.set()  # a sleeping thread wakes to stop
        self._thread.join(timeout=5)


# every clock still running, stopped before the interpreter finalises: a service nobody
# closed (an app made and dropped) would leave its daemon thread inside DuckDB while the
# lake connection is destroyed, and the process aborts ("terminate called without an
# active exception", exit 134) after its work is done
_CLOCKS: weakref.WeakSet[_LakeClock] = weakref.WeakSet()


@atexit.register
def _stop_clocks() -> None:
    for clock in list(_CLOCKS):
        clock.close()


def lake_clock(service: Service) -> _LakeClock:
    """The process's lake clock, made on first use (off the event loop: its first read is
    made at once); the Delta Sharing routes read the lake's current snapshot from it too."""
    return service.kept("data.lake_clock", lambda: _LakeClock(service))


def _remember(service: Service, revs: Revisions, key: tuple, view: View) -> None:
    service.kept("data.views", _Views).put(revs, key, view)


def _query(raw: bytes) -> tuple[int, int, int | None] | None:
    """(offset, limit, snapshot) of a JSON page's query string, when it says exactly
    that: known names once each, plain digits within the route's bounds; else None."""
    found: dict[bytes, int | None] = {}
    if raw:
        for part in raw.split(b"&"):
            name, eq, value = part.partition(b"=")
            if not eq or name in found:
                return None
            if name == b"format":
                if value != b"json":
                    return None
                found[name] = None
                continue
            bounds = _BOUNDS.get(name)
            if bounds is None or not (0 < len(value) <= 19 and value.isdigit()):
                return None
            number = int(value)
            if not bounds[0] <= number <= bounds[1]:
                return None
            found[name] = number
    limit = found.get(b"limit") or DEFAULT_JSON_PAGE
    if limit > FAST_MAX_PAGE:
        return None
    return found.get(b"offset") or 0, limit, found.get(b"snapshot")


async def fast_read(scope: Scope, receive: Receive, send: Send) -> bool:
    """Serve ``GET /grants/{id}/data`` (a JSON page) on the event loop when all it needs
    is in memory and current (see the module's docstring); True when it answered. It
    answers only 200 with a durable ``data.read`` record; every other case is left to the
    route (False), which decides and audits it."""
    match = _PATH.fullmatch(scope["path"])
    if match is None or scope["method"] != "GET":
        return False
    query = _query(scope.get("query_string", b""))
    if query is None:
        return False
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            return False
    app = scope["app"]
    if current_principal in app.dependency_overrides:
        return False
    service: Service = app.state.service
    offset, limit, snapshot = query
    revs = revision_reader(service).read()  # the one query of the request
    with fixed_revisions(service, revs):
        try:
            principal = authenticate_token(service, bearer_of(authorization))
        except AuthFailure:
            return False
        grant = grants.get_grant(service, match.group(1))
        if grant is None or grant.grantee_org != principal.org or grant.status() != "live":
            return False
        if snapshot is None:
            clock: _LakeClock | None = service.extra.get("data.lake_clock")
            snap = clock.current() if clock is not None else None
            if snap is None:
                return False
        else:  # 404 / 410 left to the route; the lake may be asked: not on the loop
            try:
                snap = await run_in_threadpool(pick_snapshot, service, snapshot)
            except grants.GrantError:
                return False
        view = service.kept("data.views", _Views).get(revs, (grant.id, snap, principal.org_kind))
        if view is None or grants.rate_wait(service, grant):
            return False
        body, rows, digest = view.serialised("json", offset, limit)
        client = client_of(Request(scope))
        read = grants.Read(grant, principal, view.snapshot, "json", offset, rows, len(body),
                           digest, client)  # fmt: skip
        record = await grants.record_read_async(service, read)
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", MEDIA_TYPES["json"].encode()),
        *((k.lower().encode(), v.encode())
          for k, v in _headers(view.snapshot, view.total, digest, record).items()),
    ]  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return True
