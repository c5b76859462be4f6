"""Signed, expiring file URLs bound to recipient and file, and the route serving them.

The Delta Sharing client sends no ``Authorization`` header to a file URL, so the URL is
its own credential::

    <endpoint>/files/<file id>?g=<grant>&r=<recipient org>&t=<profile token id>
                              &e=<expiry, unix s>&k=<key version>&s=<MAC>

``s`` is the suite's MAC (HMAC-SHA256, or HMAC-SM3 under the 国密 suite) over every other
part, base64url; it is compared in constant time. The MAC key is derived (the suite's MAC
over :data:`KEY_LABEL`, the way ``masking.stream`` derives a file key) from a version of
the keyring's ``at_rest`` data key, named by ``k``: a key rotation leaves URLs already
handed out valid until they expire, and the key never leaves the keyring's custody.

:func:`verify` checks the form, the MAC and the expiry; :func:`authorised` then checks, on
every request, what can change after a URL is made: the profile token ``t`` still signs in
(not revoked, not expired, its person not disabled), the grant ``g`` is live and held by
``r``, and the file belongs to ``g``. Any failure is a 403 (:data:`FORBIDDEN`).
:func:`serve` answers the file route: the plaintext file (kept in memory per process,
``files.plain_bytes``; a file too large to keep decrypted as it streams), HEAD, one byte
range (206, or 416 past the end), the exact ``Content-Length``; a file's first range on a
profile token audited before a byte leaves, HEADs and further ranges queued into the
audit's group commit (:func:`first_disclosure`). :func:`fast_file` answers the same on the
event loop before any routing when the token's row, the file's row and its plaintext are
kept under the current revision counters (the 1.4.2 client asks a file 11 times a load:
four HEADs, three whole GETs it drops after the headers, three footer reads, one body).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import hmac
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from masking.errors import KeyRingError
from share_api import grants
from share_api.db import fixed_revisions, revision_reader, utc_now
from share_api.kept import NotKept
from share_api.principals import AuthFailure, client_of
from share_api.sharing import tokens
from share_api.sharing.errors import FORBIDDEN, NOT_FOUND, SharingError

if TYPE_CHECKING:
    from share_api.service import Service
    from share_api.sharing.tokens import Recipient

KEY_PURPOSE = "at_rest"  # the keyring's data key the URL key is derived from
KEY_LABEL = b"streethub-delta-sharing-url-key|"
FORMAT = "v1"
FILE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_FIELDS = ("g", "r", "t", "e", "k", "s")
CHUNK_BYTES = 256 * 1024  # a file response's pieces (four segments of the stream cipher)
OCTETS = "application/octet-stream"

log = logging.getLogger("streethub.share.sharing")


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires_at: dt.datetime

    @property
    def expiration_ms(self) -> int:
        return int(self.expires_at.timestamp() * 1000)


@dataclass(frozen=True)
class UrlClaims:
    """What a verified URL says: its file, grant, recipient, profile token and expiry."""

    file_id: str
    grant_id: str
    org: str
    token_id: str
    expires_at: dt.datetime


def _key(service: Service, version: int) -> bytes:
    def derive() -> bytes:
        data_key = service.keyring.get(KEY_PURPOSE, version)
        return service.keyring.suite.mac(data_key.material, KEY_LABEL + str(version).encode())

    return service.kept(f"sharing.urls.key.{version}", derive)


def _message(file_id: str, grant_id: str, org: str, token_id: str, exp: int, version: int):
    return "\n".join((FORMAT, file_id, grant_id, org, token_id, str(exp), str(version))).encode()


def _mac(service: Service, version: int, message: bytes) -> str:
    tag = service.keyring.suite.mac(_key(service, version), message)
    return base64.urlsafe_b64encode(tag).rstrip(b"=").decode("ascii")


def url_ttl(service: Service) -> dt.timedelta:
    return dt.timedelta(seconds=int(service.settings.share_url_ttl_seconds))


def sign(
    service: Service,
    endpoint: str,
    file_id: str,
    grant_id: str,
    recipient: Recipient,
    *,
    now: dt.datetime | None = None,
    ttl: dt.timedelta | None = None,
) -> SignedUrl:
    """A URL of ``file_id`` under ``endpoint`` for ``recipient`` through ``grant_id``,
    valid ``share_url_ttl_seconds`` (and never past the recipient's profile token)."""
    now = now or utc_now()
    expires = min(now + (ttl or url_ttl(service)), recipient.expires_at)
    exp = int(expires.timestamp())
    version = service.keyring.current(KEY_PURPOSE).version
    message = _message(file_id, grant_id, recipient.org, recipient.token_id, exp, version)
    query = {
        "g": grant_id,
        "r": recipient.org,
        "t": recipient.token_id,
        "e": exp,
        "k": version,
        "s": _mac(service, version, message),
    }
    url = f"{endpoint.rstrip('/')}/files/{file_id}?{urlencode(query)}"
    return SignedUrl(url, dt.datetime.fromtimestamp(exp, dt.UTC))


def forbidden(reason: str) -> SharingError:
    return SharingError(403, f"this file URL is not valid: {reason}", FORBIDDEN)


def verify(
    service: Service, file_id: str, params: dict[str, str], *, now: dt.datetime | None = None
) -> UrlClaims:
    """The claims of a file URL whose form, MAC and expiry check out; else a 403
    :class:`SharingError` naming which part failed (never a value of it)."""
    if not FILE_ID_RE.fullmatch(file_id or ""):
        raise forbidden("file id")
    missing = [f for f in _FIELDS if not params.get(f)]
    if missing:
        raise forbidden(f"missing {', '.join(missing)}")
    grant_id, org, token_id = params["g"], params["r"], params["t"]
    if not all(_NAME_RE.fullmatch(v) for v in (grant_id, org, token_id)):
        raise forbidden("malformed")
    try:
        exp, version = int(params["e"]), int(params["k"])
    except ValueError:
        raise forbidden("malformed") from None
    if not (0 < exp < 2**40 and 0 < version < 2**31):
        raise forbidden("malformed")
    try:
        expected = _mac(service, version, _message(file_id, grant_id, org, token_id, exp, version))
    except KeyRingError:  # a key version this keyring does not hold: no valid URL names it
        raise forbidden("signature") from None
    if not hmac.compare_digest(expected.encode(), params["s"].encode("ascii", "replace")):
        raise forbidden("signature")
    expires_at = dt.datetime.fromtimestamp(exp, dt.UTC)
    if expires_at <= (now or utc_now()):
        raise forbidden("expired")
    return UrlClaims(file_id, grant_id, org, token_id, expires_at)


# -- serving a URL's file ------------------------------------------------------------


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``bytes=`` range (None: the whole file; several
    ranges are answered whole, as RFC 9110 allows); 416 when it lies past the end."""
    if not header or not header.strip().lower().startswith("bytes=") or "," in header:
        return None
    spec = header.strip()[6:].strip()
    first_text, dash, last_text = spec.partition("-")
    try:
        if not dash:
            return None
        if first_text == "":  # the last N bytes
            count = int(last_text)
            if count <= 0:
                raise ValueError
            return max(0, size - count), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size:
        raise SharingError(416, "the range lies past the end of the file")
    if first < 0 or last < first:
        return None
    return first, min(last, size - 1)


def _chunks(fh: BinaryIO, first: int, length: int) -> Iterator[bytes]:
    try:
        fh.seek(first)
        left = length
        while left > 0:
            block = fh.read(min(CHUNK_BYTES, left))
            if not block:
                log.error("a shared file ended %d bytes before its recorded size", left)
                return
            left -= len(block)
            yield block
    finally:
        fh.close()


FIRST_DISCLOSURES_KEPT = 4096  # (token, file) pairs remembered by a service process


class _Disclosed:
    """The (profile token, file) pairs whose first byte range this process has sent after
    a durable record: bounded, oldest forgotten first (a forgotten pair is simply made
    durable again)."""

    def __init__(self) -> None:
        self.pairs: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.lock = threading.Lock()

    def first(self, token_id: str, file: str) -> bool:
        with self.lock:
            if (token_id, file) in self.pairs:
                self.pairs.move_to_end((token_id, file))
                return False
            self.pairs[(token_id, file)] = None
            if len(self.pairs) > FIRST_DISCLOSURES_KEPT:
                self.pairs.popitem(last=False)
            return True

    def forget(self, token_id: str, file: str) -> None:
        with self.lock:
            self.pairs.pop((token_id, file), None)


def first_disclosure(service: Service, token_id: str, file: str) -> bool:
    """Whether this is the first byte range of ``file`` sent on this profile token by
    this service process: its record is then durable before a byte leaves; further ranges
    (a client reads a file's footer, then its columns — seven GETs and four HEADs for one
    ``load_as_pandas`` of the official client) are recorded all the same, queued into the
    group commit without holding the response. The trade: a crash in the milliseconds
    before the batch's fsync may lose the record of a further range of a download whose
    first range is durable on record; never a first disclosure."""
    return service.kept("sharing.disclosed", _Disclosed).first(token_id, file)


def _refuse(service: Service, request: Request, file_id: str, error: SharingError) -> None:
    """A refused file request's own record (``sharing.denied``: why, never a value), naming
    the URL's recipient when the URL is genuine and its profile token still signs in."""
    actor = "anonymous"
    with contextlib.suppress(SharingError, AuthFailure):
        claims = verify(service, file_id, dict(request.query_params))
        actor = tokens.still_valid(service, claims.token_id).actor
    service.audit.record(
        "sharing.denied",
        actor,
        reason=error.message[:120],
        status=error.status,
        file=file_id[:64],
        client=client_of(request),
        method=request.method,
    )
    request.state.refusal_audited = True


def authorised(service: Service, file_id: str, params: dict[str, str], *, kept_only=False):
    """``(recipient, grant, file)`` of a file URL that is good now: its MAC and expiry
    (:func:`verify`), then what can change after it was made — its profile token still
    signs in, the grant is live and held by the URL's recipient, the file is the grant's.
    403 otherwise (404 when a live grant's file was swept: the client asks again).
    ``kept_only``: the token's and the file's rows from memory only (:class:`NotKept`
    when either is not kept: the fast path leaves the request to the route)."""
    from share_api.sharing import files

    claims = verify(service, file_id, params)
    try:
        recipient = tokens.still_valid(service, claims.token_id, kept_only=kept_only)
    except AuthFailure as failure:
        raise forbidden(f"the profile token is {failure.reason}") from None
    if recipient.org != claims.org:
        raise forbidden("recipient")
    grant = grants.get_grant(service, claims.grant_id)
    if grant is None or grant.grantee_org != claims.org:
        raise forbidden("grant")
    if grant.status() != "live":
        raise forbidden(f"the grant is {grant.status()}")
    shared = files.lookup(service, file_id, kept_only=kept_only)
    if shared is not None and shared.grant_id != grant.id:
        raise forbidden("the file is not the grant's")
    if shared is None:
        raise SharingError(404, "the file is gone: ask for the table again", NOT_FOUND)
    return recipient, grant, shared


@dataclass(frozen=True)
class _Answer:
    """What a good file request is answered: status, headers, the bytes' first and
    length, and its audit record's action and details."""

    status: int
    headers: dict[str, str]
    first: int
    length: int
    head: bool
    action: str
    details: dict[str, object]

    @property
    def empty(self) -> bool:
        return self.head or self.length == 0


def _answer(recipient: Recipient, grant, shared, span, method: str, client: str | None):
    """The answer to ``method`` of ``shared`` for the byte ``span`` asked (None: whole)."""
    first, last = span if span is not None else (0, shared.size - 1)
    length = max(0, last - first + 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(length),
        "ETag": f'"{shared.sha256}"',
        "Cache-Control": "private, no-store",
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{shared.size}"
    head = method == "HEAD"
    details = {
        "token": recipient.token_id,
        "client": client,
        "grant": grant.id,
        "file": shared.id,
        "version": shared.version,
        "kind": shared.kind,
        "method": method,
        "first": first,
        "bytes": 0 if head else length,
    }
    action = "sharing.file_head" if head else "sharing.file"
    status = 206 if span is not None else 200
    return _Answer(status, headers, first, length, head, action, details)


def _durable(service: Service, recipient: Recipient, answer: _Answer) -> bool:
    """Whether ``answer``'s record must be durable before it is sent: a file's first byte
    range on a profile token (:func:`first_disclosure`); a HEAD (no byte of the file
    leaves) and a further range are queued into the group commit."""
    return not answer.head and first_disclosure(service, recipient.token_id, answer.details["file"])


def forget_disclosure(service: Service, token_id: str, what: str) -> None:
    """A first disclosure whose record failed: the next one is a first one again."""
    service.kept("sharing.disclosed", _Disclosed).forget(token_id, what)


def _unmark(service: Service, recipient: Recipient, answer: _Answer) -> None:
    forget_disclosure(service, recipient.token_id, str(answer.details["file"]))


def serve(service: Service, request: Request, file_id: str) -> Response:
    """The file route's answer: the plaintext Parquet file or the one byte range asked
    (206), with its exact ``Content-Length`` — from the file's kept plaintext
    (``files.plain_bytes``, read now if it is not kept), or decrypted as it streams for a
    file too large to keep; audited before a byte leaves (``sharing.file`` with its first
    byte and length, ``sharing.file_head`` for a HEAD); a refusal audited
    ``sharing.denied`` (why, never a value)."""
    from share_api.sharing import files

    shared = None
    try:
        recipient, grant, shared = authorised(service, file_id, dict(request.query_params))
        span = _byte_range(request.headers.get("range"), shared.size)
    except SharingError as error:
        _refuse(service, request, file_id, error)
        unsatisfiable = {"Content-Range": f"bytes */{shared.size}"} if shared else None
        return JSONResponse(error.body(), error.status, headers=unsatisfiable)
    answer = _answer(recipient, grant, shared, span, request.method, client_of(request))
    if _durable(service, recipient, answer):
        try:
            service.audit.record(answer.action, recipient.actor, **answer.details)
        except BaseException:
            _unmark(service, recipient, answer)
            raise
    else:
        service.audit.record_queued(answer.action, recipient.actor, **answer.details)
    if answer.empty:
        return Response(b"", answer.status, headers=answer.headers, media_type=OCTETS)
    plain = files.plain_bytes(service, shared)
    if plain is not None:
        body = plain[answer.first : answer.first + answer.length]
        return Response(body, answer.status, headers=answer.headers, media_type=OCTETS)
    fh = files.open_plain(service, shared)
    return StreamingResponse(
        _chunks(fh, answer.first, answer.length),
        status_code=answer.status,
        headers=answer.headers,
        media_type=OCTETS,
    )


# -- the fast path ------------------------------------------------------------------------


@functools.cache
def _file_path() -> re.Pattern[str]:
    from share_api.sharing.app import PREFIX

    return re.compile(re.escape(PREFIX) + r"/files/([A-Za-z0-9_-]{1,128})")


def _plain_query(raw: bytes) -> dict[str, str] | None:
    """A file URL's query as the route reads it, when each name comes once; else None."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name in params:
            return None
        params[name] = value
    return params


async def fast_file(scope: Scope, receive: Receive, send: Send) -> bool:
    """Serve a file URL's ``GET`` or ``HEAD`` on the event loop, before any routing, when all
    it needs is in memory and current (the share service's guard tries it, as it tries
    ``share_api.routes.data.fast_read``): the revision counters read (one query), then the
    route's own checks (:func:`authorised`) over the kept token and file rows, the kept
    plaintext, the same records — a first disclosure awaited durable from the group
    commit's writer thread, the rest queued. True when it answered; it answers only 200
    and 206: anything else (a refusal, a 416, something not kept) goes to the route, which
    decides, audits and keeps what the next request needs."""
    from share_api.sharing import files

    method = scope["method"]
    match = _file_path().fullmatch(scope["path"]) if method in ("GET", "HEAD") else None
    if match is None:
        return False
    ranges: list[str] = []
    for name, value in scope["headers"]:
        if name == b"range":
            ranges.append(value.decode("latin-1"))
        elif name in (b"content-length", b"transfer-encoding"):
            return False
    params = _plain_query(scope.get("query_string", b""))
    if params is None or len(ranges) > 1:
        return False
    service: Service = scope["app"].state.service
    file_id = match.group(1)
    with fixed_revisions(service, revision_reader(service).read()):
        try:
            recipient, grant, shared = authorised(service, file_id, params, kept_only=True)
            span = _byte_range(ranges[0] if ranges else None, shared.size)
        except (SharingError, NotKept):
            return False
        plain = None if method == "HEAD" else files.plain_bytes(service, shared, kept_only=True)
        if method != "HEAD" and plain is None:
            return False
    answer = _answer(recipient, grant, shared, span, method, client_of(Request(scope)))
    if _durable(service, recipient, answer):
        try:
            await service.audit.record_async(answer.action, recipient.actor, answer.details)
        except BaseException:
            _unmark(service, recipient, answer)
            raise
    else:
        service.audit.record_queued(answer.action, recipient.actor, **answer.details)
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
    ]
    headers.append((b"content-type", OCTETS.encode()))
    body = b"" if answer.empty else plain[answer.first : answer.first + answer.length]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return True
