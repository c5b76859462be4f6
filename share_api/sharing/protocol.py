"""What the Delta Sharing REST routes answer, without HTTP: listings, a table's grant, the
versions asked for, and the NDJSON lines (../shared/DELTA_SHARING.md §1-§2).

Names (case-insensitive, no dots, as the protocol asks):

- **share** = the recipient organisation's code (a profile sees its own share only);
- **schema** = the owner of the granted resource: the department code of
  ``<dept>.<dataset>``; for a mart, its catalogued owner's team (``team:streethub`` →
  ``streethub``), every character but ``[a-z0-9_-]`` written ``_``;
- **table** = the grant's id (``grant-<16 hex>``): stable for the grant's life, listed
  only while the grant is live (not revoked, not expired).

A table's lines are built from :mod:`.versions` (the version served), :mod:`.files` (its
materialised, masked Parquet files and their schema), :mod:`.hints` (pruning) and
:mod:`.changes` (the change feed); file URLs are signed by :mod:`.urls`.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import re
import uuid
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from share_api import grants
from share_api.deps import Principal
from share_api.sharing.errors import MALFORMED, NOT_FOUND, UNSUPPORTED, SharingError

if TYPE_CHECKING:
    from share_api.grants import Grant
    from share_api.service import Service
    from share_api.sharing.files import SharedFile
    from share_api.sharing.tokens import Recipient
    from share_api.sharing.versions import TableVersion

PAGE_SIZE = 100  # items of a listing page when the client names no maxResults
MAX_PAGE_SIZE = 1_000
MAX_NAME = 255
_NAME_CHARS = re.compile(r"[^a-z0-9_-]")
_ID_NAMESPACE = uuid.UUID("1b671a64-40d5-491e-99b0-da01ff1f3341")  # the tables' metaData ids


# -- who and what -------------------------------------------------------------------------


def principal_of(recipient: Recipient) -> Principal:
    """The recipient as the share API's grant checks and read records know a caller: its
    person and organisation, no role, signed in with the profile token."""
    return Principal(
        user_id=recipient.user_id,
        org=recipient.org,
        org_kind=recipient.org_kind,  # type: ignore[arg-type]
        roles=frozenset(),
        token_id=recipient.token_id,
    )


def schema_name(service: Service, resource: str) -> str:
    """The schema a grant of ``resource`` is listed under: its owner (see the module)."""
    from share_api.catalogue import lookup, marts_of
    from share_api.views import MART_PREFIX

    if resource.startswith(MART_PREFIX):
        mart = marts_of(service).get(resource.removeprefix(MART_PREFIX))
        owner = mart.owner.removeprefix("team:").split("@")[0] if mart is not None else "hub"
        return _NAME_CHARS.sub("_", owner.lower()) or "hub"
    try:
        owner_org = lookup(service, resource).owner_org
    except KeyError:  # a resource the catalogue dropped since the grant: its prefix
        owner_org = None
    return owner_org or resource.partition(".")[0]


def live_grants(service: Service, recipient: Recipient) -> list[Grant]:
    """The recipient organisation's live grants (its tables), by id."""
    held = grants.list_grants(service, recipient.org)
    return sorted((g for g in held if g.status() == "live"), key=lambda g: g.id)


def _check_name(value: str, what: str) -> str:
    if not value or len(value) > MAX_NAME or "." in value:
        raise SharingError(400, f"{what}: 1-{MAX_NAME} characters, no dot", MALFORMED)
    return value.lower()


def _check_share(recipient: Recipient, share: str) -> None:
    if _check_name(share, "share") != recipient.org.lower():
        raise SharingError(404, "no such share", NOT_FOUND)


def table_grant(
    service: Service, recipient: Recipient, share: str, schema: str, table: str
) -> Grant:
    """The live grant a table names (404 unknown share, schema or table; 403 a grant of
    the recipient's that is revoked or expired, audited ``data.denied`` as on the data
    route)."""
    _check_share(recipient, share)
    schema = _check_name(schema, "schema")
    table = _check_name(table, "table")
    try:
        grant = grants.live_grant(service, table, principal_of(recipient))
    except grants.GrantError as exc:
        status = exc.status_code if exc.status_code in (403, 404) else 400
        if status == 404 or (exc.status_code == 403 and "not_grantee" in str(exc.detail)):
            raise SharingError(404, "no such table in this share", NOT_FOUND) from None
        raise SharingError(status, f"table: {exc.detail}") from None
    if schema_name(service, grant.resource).lower() != schema:
        raise SharingError(404, "no such table in this schema", NOT_FOUND)
    return grant


# -- listings -----------------------------------------------------------------------------


def _token(listing: str, last: str) -> str:
    raw = orjson.dumps({"l": listing, "a": last})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _after(listing: str, page_token: str | None) -> str | None:
    if not page_token:
        return None
    try:
        raw = base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4))
        held = orjson.loads(raw)
        if held["l"] == listing and isinstance(held["a"], str):
            return held["a"]
    except (ValueError, TypeError, KeyError):
        pass
    raise SharingError(400, "pageToken: not a token of this listing")


def page(
    items: list[dict[str, Any]],
    listing: str,
    max_results: int | None,
    page_token: str | None,
) -> dict[str, Any]:
    """One page of ``items`` (sorted by ``name``) after ``page_token``: ``{"items": …,
    "nextPageToken": …}`` (no token on the last page). The token is the last name sent,
    bound to ``listing`` (a token of another listing is a 400)."""
    if max_results is None:
        size = PAGE_SIZE
    elif not 0 <= max_results <= MAX_PAGE_SIZE:
        raise SharingError(400, f"maxResults: 0 to {MAX_PAGE_SIZE}")
    else:
        size = max_results or PAGE_SIZE
    after = _after(listing, page_token)
    ordered = sorted(items, key=lambda i: i["name"])
    rest = [i for i in ordered if after is None or i["name"] > after]
    body: dict[str, Any] = {"items": rest[:size]}
    if len(rest) > size:
        body["nextPageToken"] = _token(listing, rest[size - 1]["name"])
    return body


def _table_item(service: Service, recipient: Recipient, grant: Grant) -> dict[str, str]:
    return {
        "name": grant.id,
        "schema": schema_name(service, grant.resource),
        "share": recipient.org,
        "shareId": recipient.org,
        "id": table_id(grant),
    }


def shares(recipient: Recipient) -> list[dict[str, str]]:
    return [{"name": recipient.org, "id": recipient.org}]


def share(recipient: Recipient, name: str) -> dict[str, Any]:
    _check_share(recipient, name)
    return {"share": shares(recipient)[0]}


def schemas(service: Service, recipient: Recipient, share: str) -> list[dict[str, str]]:
    _check_share(recipient, share)
    names = {schema_name(service, g.resource) for g in live_grants(service, recipient)}
    return [{"name": n, "share": recipient.org} for n in sorted(names)]


def tables(
    service: Service, recipient: Recipient, share: str, schema: str | None
) -> list[dict[str, str]]:
    """The live grants' tables of the share (of one schema when named: 404 if it holds
    none)."""
    _check_share(recipient, share)
    items = [_table_item(service, recipient, g) for g in live_grants(service, recipient)]
    if schema is None:
        return items
    wanted = _check_name(schema, "schema")
    found = [i for i in items if i["schema"].lower() == wanted]
    if not found:
        raise SharingError(404, "no such schema in this share", NOT_FOUND)
    return found


# -- versions asked for ---------------------------------------------------------------------


def parse_time(text: str, what: str) -> dt.datetime:
    """An ISO-8601 time (``2025-06-01T00:00:00Z``; without a zone: UTC); 400 otherwise,
    saying the form (users pass epoch numbers here)."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise SharingError(
            400, f"{what}: an ISO-8601 time such as 2025-06-01T00:00:00Z, not a number"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def parse_version(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SharingError(400, f"{what}: a whole number")
    try:
        number = int(value)
    except ValueError:
        raise SharingError(400, f"{what}: a whole number") from None
    if not 0 <= number < 2**62:
        raise SharingError(400, f"{what}: 0 or more")
    return number


def table_version(
    service: Service,
    grant: Grant,
    recipient_kind: str,
    *,
    version: int | None = None,
    timestamp: str | None = None,
    what: str = "",
) -> TableVersion:
    """The version ``version`` names, else the newest at ``timestamp``, else the current
    one (recorded now if the grant's state changed). 400 when both are given."""
    from share_api.sharing import versions

    if version is not None and timestamp is not None:
        raise SharingError(400, f"{what}version and {what}timestamp: give one, not both")
    current = versions.current_version(service, grant, recipient_kind)  # the newest recorded
    if version is not None:
        return versions.get_version(service, grant, version)
    if timestamp is not None:
        return versions.version_at(service, grant, parse_time(timestamp, f"{what}timestamp"))
    return current


def starting_version(
    service: Service, grant: Grant, recipient_kind: str, starting_timestamp: str
) -> TableVersion:
    """The earliest version recorded at or after ``starting_timestamp`` (``/version``)."""
    from share_api.sharing import versions

    versions.current_version(service, grant, recipient_kind)  # the newest state recorded
    when = parse_time(starting_timestamp, "startingTimestamp")
    return versions.version_from(service, grant, when)


def change_bounds(
    service: Service, grant: Grant, recipient_kind: str, params: dict[str, str | None]
) -> tuple[TableVersion, TableVersion]:
    """The inclusive version range of a ``/changes`` call: a start is required (a version
    or a timestamp: the earliest version at or after it), the end defaults to the current
    version (a timestamp: the newest version at or before it)."""
    from share_api.sharing import versions

    current = versions.current_version(service, grant, recipient_kind)
    start_v, start_t = params.get("startingVersion"), params.get("startingTimestamp")
    end_v, end_t = params.get("endingVersion"), params.get("endingTimestamp")
    if start_v is None and start_t is None:
        raise SharingError(400, "startingVersion or startingTimestamp is required")
    for first, second, what in ((start_v, start_t, "starting"), (end_v, end_t, "ending")):
        if first is not None and second is not None:
            raise SharingError(400, f"{what}Version and {what}Timestamp: give one, not both")
    if start_v is not None:
        start = versions.get_version(service, grant, parse_version(start_v, "startingVersion"))
    else:
        start = versions.version_from(service, grant, parse_time(str(start_t), "startingTimestamp"))
    if end_v is not None:
        end = versions.get_version(service, grant, parse_version(end_v, "endingVersion"))
    elif end_t is not None:
        end = versions.version_at(service, grant, parse_time(end_t, "endingTimestamp"))
    else:
        end = current
    if end.version < start.version:
        raise SharingError(400, "the ending version is before the starting version")
    return start, end


# -- lines --------------------------------------------------------------------------------


def table_id(grant: Grant) -> str:
    """The table's stable id (metaData ``id``): a UUID named by the grant's id."""
    return str(uuid.uuid5(_ID_NAMESPACE, grant.id))


def delta_type(kind: pa.DataType) -> str | dict[str, Any]:
    """A served column's Arrow type as a Delta schema type the 1.4.2 client parses (never
    ``timestamp_ntz``: a time without a zone is a ``timestamp``)."""
    if pa.types.is_dictionary(kind):
        return delta_type(kind.value_type)
    simple = [
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_int8, "byte"),
        (pa.types.is_int16, "short"),
        (pa.types.is_uint8, "short"),
        (pa.types.is_int32, "integer"),
        (pa.types.is_uint16, "integer"),
        (pa.types.is_integer, "long"),
        (pa.types.is_float16, "float"),
        (pa.types.is_float32, "float"),
        (pa.types.is_floating, "double"),
        (pa.types.is_date, "date"),
        (pa.types.is_timestamp, "timestamp"),
        (pa.types.is_binary, "binary"),
        (pa.types.is_large_binary, "binary"),
        (pa.types.is_fixed_size_binary, "binary"),
    ]
    for test, name in simple:
        if test(kind):
            return name
    if pa.types.is_decimal(kind):
        return f"decimal({kind.precision},{kind.scale})"
    if pa.types.is_struct(kind):
        return {"type": "struct", "fields": [_field(kind.field(i)) for i in range(kind.num_fields)]}
    if pa.types.is_map(kind):
        return {
            "type": "map",
            "keyType": delta_type(kind.key_type),
            "valueType": delta_type(kind.item_type),
            "valueContainsNull": kind.item_field.nullable,
        }
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return {
            "type": "array",
            "elementType": delta_type(kind.value_type),
            "containsNull": kind.value_field.nullable,
        }
    return "string"  # text, times of day, nulls: read from the file as they are


def _field(field: pa.Field) -> dict[str, Any]:
    return {"name": field.name, "type": delta_type(field.type), "nullable": True, "metadata": {}}


@functools.lru_cache(maxsize=256)
def schema_string(schema: pa.Schema) -> str:
    """The Delta schema string of a served schema (kept: one per table version)."""
    fields = [_field(f) for f in schema]
    return orjson.dumps({"type": "struct", "fields": fields}).decode()


def protocol_line() -> dict[str, Any]:
    return {"protocol": {"minReaderVersion": 1}}


def metadata_line(
    grant: Grant, schema: pa.Schema, version: TableVersion, files: list[SharedFile] | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": table_id(grant),
        "name": grant.id,
        "description": grant.resource,
        "format": {"provider": "parquet"},
        "schemaString": schema_string(schema),
        "partitionColumns": [],
        "configuration": {"enableChangeDataFeed": "true"},
        "version": version.version,
    }
    if files is not None:
        meta["numFiles"] = len(files)
        meta["size"] = sum(f.size for f in files)
    return {"metaData": meta}


def file_line(
    kind: str, file: SharedFile, url: str, expiration_ms: int, version: TableVersion
) -> dict[str, Any]:
    """A ``file`` (query) or ``add``/``cdf``/``remove`` (changes) line."""
    body: dict[str, Any] = {
        "url": url,
        "id": file.id,
        "partitionValues": {},
        "size": file.size,
        "version": version.version,
        "timestamp": int(version.recorded_at.timestamp() * 1000),
        "expirationTimestamp": expiration_ms,
    }
    if kind in ("file", "add"):
        body["stats"] = orjson.dumps(file.stats, default=str).decode()
    return {kind: body}


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line, default=str) + b"\n" for line in lines)


def query_body(raw: bytes) -> dict[str, Any]:
    """The ``/query`` body: a JSON object (``{}`` when empty); 400 when it is not one or a
    field has the wrong type. Streaming bounds (``startingVersion``) are not served."""
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise SharingError(400, "the body is not JSON", MALFORMED) from None
    if not isinstance(body, dict):
        raise SharingError(400, "the body is a JSON object", MALFORMED)
    if body.get("startingVersion") is not None or body.get("endingVersion") is not None:
        raise SharingError(
            400,
            "startingVersion/endingVersion (streaming) is not served: use /changes",
            UNSUPPORTED,
        )
    if body.get("version") is not None:
        body["version"] = parse_version(body["version"], "version")
    if body.get("timestamp") is not None and not isinstance(body["timestamp"], str):
        raise SharingError(400, "timestamp: an ISO-8601 string")
    hints = body.get("jsonPredicateHints")
    if hints is not None and not isinstance(hints, str):
        body["jsonPredicateHints"] = None  # best effort: a hint of the wrong form is ignored
    limit = body.get("limitHint")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        body["limitHint"] = None
    return body
