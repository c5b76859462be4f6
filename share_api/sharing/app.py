"""The Delta Sharing REST surface: a sub-app mounted at ``/delta-sharing`` on the share
service (same process, same audit log, the share API's grant checks and rate limits).

Protocol routes (a profile's bearer token, :mod:`.tokens`; answers as the 1.4.2 client
needs them, ../shared/DELTA_SHARING.md):

- ``GET /shares``, ``/shares/{share}``, ``/shares/{share}/schemas``,
  ``/shares/{share}/schemas/{schema}/tables``, ``/shares/{share}/all-tables`` — paged
  (``maxResults``, ``pageToken``), the recipient's live grants only;
- ``GET …/tables/{table}/version`` (``startingTimestamp``), ``GET …/metadata``,
  ``POST …/query`` (``version``/``timestamp`` time travel, ``limitHint``,
  ``jsonPredicateHints``), ``GET …/changes`` — each with ``Delta-Table-Version``;
- ``GET``/``HEAD /files/{file id}`` — a signed URL's file (:mod:`.urls`): Range (206),
  exact ``Content-Length``, ``application/octet-stream``.

Profile routes (the share API's own token: a person signed in to the service):

- ``POST /profile`` — a new profile file for the caller (``ttl_days``, ``label``);
- ``GET /profiles`` — the caller's profile tokens; ``POST /profiles/{id}/revoke``.

Errors are ``{"errorCode", "message"}`` with the protocol's codes, 4xx for anything a
retry cannot mend (the client retries a 5xx for ~100 s). Audit: every call
(``sharing.shares``, ``sharing.schemas``, ``sharing.tables``, ``sharing.version``,
``sharing.metadata``, ``sharing.query`` and a ``data.read`` with its ``grant_reads`` row,
``sharing.changes``, ``sharing.file`` per file download with its byte range and bytes,
``sharing.file_head`` per size probe), a refused
file URL (``sharing.denied``), a failed sign-in (``auth.failed``), profile issue and
revocation — naming grants, files, versions and byte counts, never data. Other 4xx answers
are recorded by the service's guard (``http.refused``) naming the recipient. Durable before
the answer: every disclosure of rows — a query's ``data.read`` (its files, rows, digest),
a file's first byte range on a profile token — and every listing, version and change feed;
queued into the audit's group commit (written within ``GroupCommit.linger``, or with the
next durable record, and at a clean shutdown): ``sharing.metadata`` (the schema the
grant's terms name), a query's ``sharing.query`` detail, HEADs and further byte ranges.

The sub-app serves its own OpenAPI document at ``/delta-sharing/openapi.json``; the share
API's committed spec (``share_api/openapi.json``) stays the API's own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from masking.errors import AuditError
from share_api import grants
from share_api.principals import (
    AuthFailure,
    PrincipalError,
    bearer,
    client_of,
    record_failed_sign_in,
)
from share_api.service import Service
from share_api.sharing import protocol, tokens, urls
from share_api.sharing.errors import INTERNAL, NOT_FOUND, SharingError
from share_api.sharing.tokens import Recipient

if TYPE_CHECKING:
    from share_api.deps import Principal

PREFIX = "/delta-sharing"
NDJSON = "application/x-ndjson; charset=utf-8"
CAPABILITIES = {"delta-sharing-capabilities": "responseformat=parquet"}
TABLE = "/shares/{share}/schemas/{schema}/tables/{table}"

log = logging.getLogger("streethub.share.sharing")

profile_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="profile",
    description="a Delta Sharing profile's bearer token `dsp-<id>.<secret>` (POST /profile)",
)
api_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="the share API's token `<token id>.<secret>`: a person signed in",
)
ProfileAuth = Annotated[HTTPAuthorizationCredentials | None, Depends(profile_scheme)]
ApiAuth = Annotated[HTTPAuthorizationCredentials | None, Depends(api_scheme)]
MaxResults = Annotated[int | None, Query(alias="maxResults", ge=0, le=protocol.MAX_PAGE_SIZE)]
PageToken = Annotated[str | None, Query(alias="pageToken", max_length=1024)]


def service_of(request: Request) -> Service:
    app = request.app
    parent = getattr(app.state, "parent", None)
    return (parent or app).state.service


def sign_in(service: Service, request: Request) -> Recipient:
    """The recipient of the request's profile token; else ``auth.failed`` audited and a
    401. The recipient is kept as the request's principal (the guard's records name it)."""
    try:
        recipient = tokens.authenticate(service, bearer(request))
    except AuthFailure as failure:
        record_failed_sign_in(service, request, failure)
        raise SharingError(401, f"not signed in: {failure.reason} profile token") from None
    request.state.principal = protocol.principal_of(recipient)
    return recipient


def audit(service: Service, request: Request, recipient: Recipient, action: str, **details):
    return service.audit.record(
        action, recipient.actor, token=recipient.token_id, client=client_of(request), **details
    )


def audit_queued(
    service: Service, request: Request, recipient: Recipient, action: str, **details
) -> None:
    """:func:`audit` queued into the group commit, the answer not waiting for it: for a
    call that discloses no row (``/metadata``: the schema the grant's terms name), or
    whose disclosure is durable on record already (``/query``: its ``data.read``). Written
    within milliseconds, and at a clean shutdown (``Auditor.close``)."""
    service.audit.record_queued(
        action, recipient.actor, token=recipient.token_id, client=client_of(request), **details
    )


def endpoint_of(request: Request) -> str:
    """The protocol's base URL as the caller reached it: the service's base URL (behind a
    proxy's root path too) and the mount's prefix."""
    return str(request.base_url).rstrip("/") + PREFIX


def ndjson_response(lines: list[dict[str, Any]], version: int) -> Response:
    headers = {"Delta-Table-Version": str(version), **CAPABILITIES}
    return Response(protocol.ndjson(lines), media_type=NDJSON, headers=headers)


# -- listings -------------------------------------------------------------------------------


def _listed(
    request: Request, action: str, listing: str, items, max_results: int | None, token: str | None
) -> dict[str, Any]:
    """One page of a listing for the signed-in recipient (``items(service, recipient)``),
    audited ``action`` with the number of items sent."""
    service = service_of(request)
    recipient = sign_in(service, request)
    body = protocol.page(items(service, recipient), listing, max_results, token)
    audit(service, request, recipient, action, items=len(body["items"]))
    return body


def list_shares(
    request: Request, _auth: ProfileAuth, maxResults: MaxResults = None, pageToken: PageToken = None
) -> dict[str, Any]:
    """The recipient's share (one: its organisation)."""
    return _listed(
        request, "sharing.shares", "shares", lambda _s, r: protocol.shares(r), maxResults, pageToken
    )


def get_share(request: Request, share: str, _auth: ProfileAuth) -> dict[str, Any]:
    service = service_of(request)
    recipient = sign_in(service, request)
    body = protocol.share(recipient, share)
    audit(service, request, recipient, "sharing.shares", items=1)
    return body


def list_schemas(
    request: Request,
    share: str,
    _auth: ProfileAuth,
    maxResults: MaxResults = None,
    pageToken: PageToken = None,
) -> dict[str, Any]:
    """The owners of the recipient's live grants."""
    return _listed(
        request,
        "sharing.schemas",
        f"schemas/{share.lower()}",
        lambda s, r: protocol.schemas(s, r, share),
        maxResults,
        pageToken,
    )


def list_tables(
    request: Request,
    share: str,
    schema: str,
    _auth: ProfileAuth,
    maxResults: MaxResults = None,
    pageToken: PageToken = None,
) -> dict[str, Any]:
    """The live grants of one owner (a table = a grant, named by its id)."""
    return _listed(
        request,
        "sharing.tables",
        f"tables/{share.lower()}/{schema.lower()}",
        lambda s, r: protocol.tables(s, r, share, schema),
        maxResults,
        pageToken,
    )


def list_all_tables(
    request: Request,
    share: str,
    _auth: ProfileAuth,
    maxResults: MaxResults = None,
    pageToken: PageToken = None,
) -> dict[str, Any]:
    """Every live grant of the share."""
    return _listed(
        request,
        "sharing.tables",
        f"all-tables/{share.lower()}",
        lambda s, r: protocol.tables(s, r, share, None),
        maxResults,
        pageToken,
    )


# -- a table --------------------------------------------------------------------------------


def _table(request: Request, share: str, schema: str, table: str):
    service = service_of(request)
    recipient = sign_in(service, request)
    grant = protocol.table_grant(service, recipient, share, schema, table)
    grants.check_rate(service, grant, protocol.principal_of(recipient))
    return service, recipient, grant


def table_version(
    request: Request,
    share: str,
    schema: str,
    table: str,
    _auth: ProfileAuth,
    startingTimestamp: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The table's current version (with ``startingTimestamp``: the earliest version
    recorded at or after it) in ``Delta-Table-Version``; no body."""
    service, recipient, grant = _table(request, share, schema, table)
    kind = recipient.org_kind
    if startingTimestamp is None:
        from share_api.sharing.versions import current_version

        version = current_version(service, grant, kind)
    else:
        version = protocol.starting_version(service, grant, kind, startingTimestamp)
    audit(service, request, recipient, "sharing.version", grant=grant.id, version=version.version)
    return Response(status_code=200, headers={"Delta-Table-Version": str(version.version)})


def table_metadata(
    request: Request,
    share: str,
    schema: str,
    table: str,
    _auth: ProfileAuth,
    version: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    timestamp: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The protocol and metaData lines (schema of the served files, parquet format)."""
    from share_api.sharing.files import schema_of

    service, recipient, grant = _table(request, share, schema, table)
    kind = recipient.org_kind
    served = protocol.table_version(service, grant, kind, version=version, timestamp=timestamp)
    arrow_schema = schema_of(service, grant, served, kind)
    lines = [protocol.protocol_line(), protocol.metadata_line(grant, arrow_schema, served, None)]
    audit_queued(
        service, request, recipient, "sharing.metadata", grant=grant.id, version=served.version
    )
    return ndjson_response(lines, served.version)


async def query_table(
    request: Request, share: str, schema: str, table: str, _auth: ProfileAuth
) -> Response:
    """The version's files (time travel with ``version`` or ``timestamp``; ``limitHint``
    and ``jsonPredicateHints`` prune files by their stats, best effort): protocol,
    metaData, then one ``file`` line a Parquet file with its signed URL."""
    from starlette.concurrency import run_in_threadpool

    raw = await request.body()
    return await run_in_threadpool(_query, request, share, schema, table, raw)


def _query(request: Request, share: str, schema: str, table: str, raw: bytes) -> Response:
    from share_api.sharing import files, hints

    service, recipient, grant = _table(request, share, schema, table)
    body = protocol.query_body(raw)
    kind = recipient.org_kind
    served = protocol.table_version(
        service, grant, kind, version=body.get("version"), timestamp=body.get("timestamp")
    )
    every = files.files_of(service, grant, served, kind)
    arrow_schema = files.schema_of(service, grant, served, kind)
    chosen = hints.prune(every, body.get("jsonPredicateHints"), body.get("limitHint"), arrow_schema)
    endpoint = endpoint_of(request)
    lines = [
        protocol.protocol_line(),
        protocol.metadata_line(grant, arrow_schema, served, chosen),
    ]
    for shared in chosen:
        signed = urls.sign(service, endpoint, shared.id, grant.id, recipient)
        lines.append(protocol.file_line("file", shared, signed.url, signed.expiration_ms, served))
    rows, nbytes = sum(f.rows for f in chosen), sum(f.size for f in chosen)
    digest = hashlib.sha256("".join(f.sha256 for f in chosen).encode()).hexdigest()
    _record_query_read(service, request, recipient, grant, served.snapshot, rows, nbytes, digest)
    audit_queued(  # the protocol's detail of that read
        service,
        request,
        recipient,
        "sharing.query",
        grant=grant.id,
        version=served.version,
        snapshot=served.snapshot,
        files=len(chosen),
        files_pruned=len(every) - len(chosen),
        rows=rows,
        bytes=nbytes,
    )
    return ndjson_response(lines, served.version)


def _record_query_read(
    service: Service,
    request: Request,
    recipient: Recipient,
    grant: grants.Grant,
    snapshot: int,
    rows: int,
    nbytes: int,
    digest: str,
) -> None:
    """A query's ``data.read`` (with its ``grant_reads`` row): durable before the answer
    the first time this process answers the profile these files (their digest) — the
    stats and URLs of a version not yet on record for it — and queued into the group
    commit when it answers them again (a repeated load: its disclosure is on record, as a
    file's further ranges are, ``urls.first_disclosure``)."""
    read = grants.Read(grant, protocol.principal_of(recipient), snapshot, "delta_sharing", 0,
                       rows, nbytes, digest, client_of(request))  # fmt: skip
    what = f"query|{grant.id}|{digest}"
    if not urls.first_disclosure(service, recipient.token_id, what):
        grants.record_read_queued(service, read)
        return
    try:
        grants.record_read(service, grant, read.principal, snapshot=snapshot, fmt=read.fmt,
                           offset=0, rows=rows, nbytes=nbytes, digest=digest,
                           client=read.client)  # fmt: skip
    except BaseException:
        urls.forget_disclosure(service, recipient.token_id, what)
        raise


def table_changes(
    request: Request,
    share: str,
    schema: str,
    table: str,
    _auth: ProfileAuth,
    startingVersion: Annotated[str | None, Query(max_length=32)] = None,
    startingTimestamp: Annotated[str | None, Query(max_length=64)] = None,
    endingVersion: Annotated[str | None, Query(max_length=32)] = None,
    endingTimestamp: Annotated[str | None, Query(max_length=64)] = None,
    includeHistoricalMetadata: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """The change feed between two versions, inclusive: ``add`` lines of the starting
    version's files, then a ``cdf`` file (with ``_change_type``) per later version whose
    rows differ; each line with its ``version`` and ``timestamp``."""
    from share_api.sharing import files

    service, recipient, grant = _table(request, share, schema, table)
    if includeHistoricalMetadata is not None and includeHistoricalMetadata.lower() not in (
        "true",
        "false",
    ):
        raise SharingError(400, "includeHistoricalMetadata: true or false")
    kind = recipient.org_kind
    params = {
        "startingVersion": startingVersion,
        "startingTimestamp": startingTimestamp,
        "endingVersion": endingVersion,
        "endingTimestamp": endingTimestamp,
    }
    start, end = protocol.change_bounds(service, grant, kind, params)
    from share_api.sharing import changes

    found = changes.change_lines(service, grant, start, end, kind)
    arrow_schema = files.schema_of(service, grant, end, kind)
    endpoint = endpoint_of(request)
    lines = [protocol.protocol_line(), protocol.metadata_line(grant, arrow_schema, end, None)]
    for line_kind, shared, version in found:
        signed = urls.sign(service, endpoint, shared.id, grant.id, recipient)
        lines.append(
            protocol.file_line(line_kind, shared, signed.url, signed.expiration_ms, version)
        )
    audit(
        service,
        request,
        recipient,
        "sharing.changes",
        grant=grant.id,
        start=start.version,
        end=end.version,
        files=len(found),
        bytes=sum(f.size for _k, f, _v in found),
    )
    return ndjson_response(lines, start.version)


# -- files --------------------------------------------------------------------------------


def get_file(
    request: Request,
    file_id: str,
    range: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """A signed URL's file: the whole plaintext Parquet file, or one byte range (206); a
    URL that is not (or no longer) good is 403 (:func:`share_api.sharing.urls.serve`)."""
    return urls.serve(service_of(request), request, file_id)


# -- profiles -------------------------------------------------------------------------------


def _person(service: Service, request: Request):
    from share_api.principals import authenticate_request

    return authenticate_request(service, request)


def new_profile(
    request: Request,
    _auth: ApiAuth,
    ttl_days: Annotated[float | None, Query(gt=0, le=366)] = None,
    label: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """A new profile file for the signed-in person (share = their organisation): a
    ``shareCredentialsVersion`` 1 profile whose bearer token is good for this protocol
    only, valid ``ttl_days`` (at most ``share_profile_ttl_days``, never past the API token
    it was asked with). Shown once; only its hash is kept."""
    service = service_of(request)
    principal = _person(service, request)
    return profile_download(service, request, principal, ttl_days=ttl_days, label=label)


def profile_download(
    service: Service,
    request: Request,
    principal: Principal,
    *,
    ttl_days: float | None = None,
    label: str = "",
) -> Response:
    """A new profile file for a signed-in ``principal`` (the route's, and the portal's
    download: a session's token bounds it as an API token does)."""
    from share_api.principals import get_token

    made_with = get_token(service, principal.token_id) if principal.token_id else None
    issued = tokens.issue_profile(
        service,
        principal.user_id,
        endpoint_of(request),
        ttl=dt.timedelta(days=ttl_days) if ttl_days is not None else None,
        not_after=made_with["expires_at"] if made_with else None,
        label=label,
        actor=principal.actor,
    )
    disposition = f'attachment; filename="{principal.org}.share"'
    return JSONResponse(
        issued.profile,
        headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
    )


def _token_info(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()}


def my_profiles(request: Request, _auth: ApiAuth) -> list[dict[str, Any]]:
    """The caller's profile tokens (never a secret), newest first."""
    service = service_of(request)
    principal = _person(service, request)
    return [_token_info(t) for t in tokens.list_profile_tokens(service, principal.user_id)]


def revoke_profile(request: Request, token_id: str, _auth: ApiAuth) -> dict[str, Any]:
    """Revoke one of the caller's profile tokens (an administrator: anyone's) at once: its
    next call and its file URLs fail."""
    service = service_of(request)
    principal = _person(service, request)
    held = tokens.get_profile_token(service, token_id)
    if held is None or (held["user_id"] != principal.user_id and not principal.has("admin")):
        raise SharingError(404, "no such profile token of yours", NOT_FOUND)
    tokens.revoke_profile(service, token_id, actor=principal.actor)
    return _token_info(tokens.get_profile_token(service, token_id) or {})


# -- errors and the app ----------------------------------------------------------------------


async def _sharing_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SharingError)
    headers = {"WWW-Authenticate": 'Bearer realm="delta-sharing"'} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    status = int(getattr(exc, "status_code", 500))
    detail = getattr(exc, "detail", None) or "refused"
    headers = getattr(exc, "headers", None)
    return JSONResponse(SharingError(status, str(detail)).body(), status, headers=headers)


async def _principal_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PrincipalError)
    return await _http_error(request, HTTPException(exc.status, exc.message))


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    """400 naming the parameters that are wrong, never the values sent."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    wrong = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in errors) or "request"
    return JSONResponse(
        {"errorCode": "INVALID_PARAMETER_VALUE", "message": f"invalid: {wrong}"}, 400
    )


async def _audit_unwritable(_request: Request, _exc: Exception) -> JSONResponse:
    log.error("a Delta Sharing call refused: the audit log cannot be written")
    return JSONResponse(
        {"errorCode": INTERNAL, "message": "the service cannot record this call now"},
        503,
        headers={"Retry-After": "30"},
    )


def build_sharing_app() -> FastAPI:
    """The protocol's routes, handlers and OpenAPI document (no service: the parent's)."""
    sub = FastAPI(
        title="streethub Delta Sharing (共享数据开放协议)",
        version="1.0.0",
        description=(
            "Every live grant readable by pandas, Spark and BI tools over the Delta Sharing "
            "protocol: share = the recipient organisation, schema = the resource's owner, "
            "table = a grant. Sign in with a profile (POST /profile)."
        ),
    )
    sub.add_exception_handler(SharingError, _sharing_error)
    sub.add_exception_handler(HTTPException, _http_error)
    sub.add_exception_handler(PrincipalError, _principal_error)
    sub.add_exception_handler(RequestValidationError, _invalid)
    sub.add_exception_handler(AuditError, _audit_unwritable)
    listing = {"tags": ["delta-sharing"]}
    sub.get("/shares", **listing)(list_shares)
    sub.get("/shares/{share}", **listing)(get_share)
    sub.get("/shares/{share}/schemas", **listing)(list_schemas)
    sub.get("/shares/{share}/schemas/{schema}/tables", **listing)(list_tables)
    sub.get("/shares/{share}/all-tables", **listing)(list_all_tables)
    ndjson = {"tags": ["delta-sharing"], "responses": {200: {"content": {NDJSON: {}}}}}
    sub.get(TABLE + "/version", tags=["delta-sharing"])(table_version)
    sub.get(TABLE + "/metadata", **ndjson)(table_metadata)
    sub.post(TABLE + "/query", **ndjson)(query_table)
    sub.get(TABLE + "/changes", **ndjson)(table_changes)
    octet = {200: {"content": {"application/octet-stream": {}}}, 206: {"description": "a range"}}
    sub.api_route("/files/{file_id}", methods=["GET", "HEAD"], tags=["files"], responses=octet)(
        get_file
    )
    sub.post("/profile", tags=["profiles"])(new_profile)
    sub.get("/profiles", tags=["profiles"])(my_profiles)
    sub.post("/profiles/{token_id}/revoke", tags=["profiles"])(revoke_profile)
    return sub


def mount(app: FastAPI) -> None:
    """Mount the protocol at :data:`PREFIX` on the share service's ``app`` (its service,
    set on ``app.state`` later by ``create_app``, is found through ``state.parent``)."""
    sub = build_sharing_app()
    sub.state.parent = app
    app.mount(PREFIX, sub)
