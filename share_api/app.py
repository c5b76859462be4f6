"""The share-request service (FastAPI): ``create_app(settings)``; ``streethub serve`` runs it
with uvicorn on 127.0.0.1.

Around every route (:class:`Guard`, a plain ASGI middleware):

- a grant's JSON page whose every input is in memory and current is served on the event
  loop before any routing (``share_api.routes.data.fast_read``: same checks, same durable
  audit record; anything else goes to the declared route, which the spec describes), and
  so is a Delta Sharing file URL's GET or HEAD whose token, file and bytes are kept
  (``share_api.sharing.urls.fast_file``);
- a request body larger than ``share_max_body_bytes`` is refused with 413 before any route
  reads it (by its declared length at once, else while it streams in);
- every 4xx answer is audited (``http.refused``: status, method, path, client, the caller
  when known) before the client sees it — unless the refusal's own record was written
  (``auth.failed``, ``auth.forbidden``);
- a validation error (422) names the fields and positions that are wrong, never the
  values sent (FastAPI's default echoes the input back).

The committed spec is ``share_api/openapi.json`` (``streethub openapi --write``); a test
checks it equals the app's.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog.settings import Settings, get_settings
from masking.errors import AuditError
from share_api.principals import ANONYMOUS, PrincipalError, client_of, sync_departments
from share_api.routes import ROUTERS
from share_api.routes.data import fast_read
from share_api.service import Service
from share_api.sharing.urls import fast_file

API_VERSION = "1.0.0"
SPEC_FILE = Path(__file__).with_name("openapi.json")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_PATH_AUDITED = 200  # characters of a refused request's path kept in its record

log = logging.getLogger("streethub.share")


class BodyTooLarge(Exception):
    pass


def _state(scope: Scope) -> dict[str, Any]:
    return scope.setdefault("state", {})


class Guard:
    """Body-size limit (413) and the audit of every 4xx, around the whole app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            try:
                if await fast_read(scope, receive, send) or await fast_file(scope, receive, send):
                    return
            except AuditError as exc:  # fail closed, as the app's handler answers
                await (await _audit_unwritable(Request(scope), exc))(scope, receive, send)
                return
        service: Service = scope["app"].state.service
        limit = int(getattr(service.settings, "share_max_body_bytes", 1024 * 1024))
        request = Request(scope)
        body = b""
        if scope["method"] in BODY_METHODS or "content-length" in request.headers:
            try:
                receive, body = await self._buffered(request, receive, limit)
            except BodyTooLarge:
                await self._refuse_too_large(scope, receive, send, limit)
                return

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if 400 <= status < 500 and not _state(scope).get("refusal_audited"):
                    await run_in_threadpool(self._record, service, scope, status)
            await send(message)

        where = _nul_in(scope, body)
        if where is not None:
            await _nul_refused(where)(scope, receive, audited_send)
            return
        await self.app(scope, receive, audited_send)

    @staticmethod
    async def _buffered(request: Request, receive: Receive, limit: int) -> tuple[Receive, bytes]:
        """The whole body read (at most ``limit`` bytes), handed on as one message."""
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise BodyTooLarge
            except ValueError:
                raise BodyTooLarge from None  # a length that is no number: refused too
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, body

    async def _refuse_too_large(self, scope: Scope, receive: Receive, send: Send, limit: int):
        service: Service = scope["app"].state.service
        await run_in_threadpool(self._record, service, scope, 413, limit=limit)
        _state(scope)["refusal_audited"] = True
        response = JSONResponse(
            {"detail": f"the request body is larger than {limit} bytes"},
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    @staticmethod
    def _record(service: Service, scope: Scope, status: int, **extra: Any) -> None:
        request = Request(scope)
        principal = _state(scope).get("principal")
        service.audit.record(
            "http.refused",
            principal.actor if principal is not None else ANONYMOUS,
            status=status,
            method=request.method,
            path=printable(request.url.path[:MAX_PATH_AUDITED]),
            client=client_of(request),
            **extra,
        )


# a JSON string's escaped NUL: \u0000 after none or an even number of backslashes (in
# \\u0000 the first escape is a backslash, then comes the text "u0000")
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def printable(text: str) -> str:
    """``text`` with every unprintable character written as its escape (a hostile path's
    NUL or control characters are recorded as what they are, not raw)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _nul_in(scope: Scope, body: bytes) -> str | None:
    """Where the request carries the NUL character (path, query or body), if it does:
    no text of the service may hold one (PostgreSQL refuses it in text; in a name or a
    filter it only ever hides something)."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query:
        return "query"
    if b"\x00" in body or _JSON_NUL.search(body):
        return "body"
    return None


def _nul_refused(where: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": [where], "msg": "text may not hold the NUL character", "type": "nul"}]},
        status_code=422,
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 naming where the request is wrong and why, without the values sent."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)


async def _audit_unwritable(_request: Request, _exc: Exception) -> JSONResponse:
    """The audit log cannot be written: the call is refused (fail closed) with 503, as
    a condition of the service, not a fault of the call."""
    log.error("a call refused: the audit log cannot be written")
    return JSONResponse(
        {"detail": "the service cannot record this call now; try again later"},
        status_code=503,
        headers={"Retry-After": "30"},
    )


def warm() -> None:
    """Load, once per process, what a first read would otherwise load on its caller's
    time: the name finder's dictionary (jieba) that scrubbing free text uses — seconds
    of a grant's first byte (BENCH's profile of the e2e)."""
    from masking.text_names import name_spans

    try:
        name_spans("居民到社区服务站办理业务")
    except Exception as exc:  # a first read loads it again and says why
        log.warning("warming the text scrubber failed: %s", type(exc).__name__)


async def _principal_error(_request: Request, exc: Exception) -> JSONResponse:
    status = exc.status if isinstance(exc, PrincipalError) else 400
    return JSONResponse({"detail": str(exc)}, status_code=status)


def build_app(lifespan=None) -> FastAPI:
    """The app's routes, handlers and guard, with no service yet (the spec is made from
    this)."""
    app = FastAPI(
        title="streethub share service (街道数据共享服务)",
        version=API_VERSION,
        description=(
            "Departments ask for data (request → review → grant → use → feedback) and read "
            "it through their grants; front ends read published marts with standing grants. "
            "Every call is authenticated and audited."
        ),
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: share_api.portal.pages_docs, vendored (no CDN)
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PrincipalError, _principal_error)
    app.add_exception_handler(AuditError, _audit_unwritable)
    app.add_middleware(Guard)
    for name in ROUTERS:
        module = importlib.import_module(f"share_api.routes.{name}")
        app.include_router(module.router)
    from share_api.sharing.app import mount

    mount(app)  # the Delta Sharing protocol at /delta-sharing: same process, auth, audit
    from share_api import portal

    portal.mount(app)  # the web portal at /portal and its static files at /static
    return app


def create_app(
    settings: Settings | None = None, *, service: Service | None = None, prepare: bool = False
) -> FastAPI:
    """The app on ``service`` (else one opened on ``settings``, closed at shutdown); every
    catalogue department is made an organisation. ``prepare``: materialise live grants'
    files in the background while it runs (``streethub serve``; tests make them on use)."""
    owned = service is None  # a service handed in is closed by whoever made it
    service = service or Service.open(settings or get_settings())
    sync_departments(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=warm, name="share-warm", daemon=True).start()
        stop = None
        if prepare and service.settings.share_prepare_seconds > 0:
            from share_api.sharing.files import start_preparer

            stop = start_preparer(service)
        yield
        if stop is not None:
            stop()
        if owned:
            service.close()

    app = build_app(lifespan)
    app.state.service = service
    return app


def openapi_spec() -> dict[str, Any]:
    """The app's OpenAPI document (no service, no home needed)."""
    return build_app().openapi()


def spec_text(spec: dict[str, Any] | None = None) -> str:
    """The spec as committed: indented JSON, Chinese as is, a final newline."""
    return json.dumps(spec or openapi_spec(), ensure_ascii=False, indent=2) + "\n"
