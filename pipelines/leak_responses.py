"""The leak scanner's ``responses`` area: what the share service's data endpoints return.

For every live grant of the share service (``share_api``; none when the service never ran
on this home) the data endpoint ``GET /grants/{id}/data`` is called in process, through the
service's own app and route (grant checks, the grant's view, masking, serialisation, the
audit record) as the grantee, in each format (JSON page, Arrow IPC stream, Parquet), for a
sample of its rows: the first page and the last. Each response is decoded and scanned with
the lake's rules (``masking.leaks.scan_frame``, with the structured and card columns of the
table the grant reads: ``pipelines.leaks``), so a response holds no more than its grant's
masking lets out: 0 unmasked values.

The scanner signs in as nobody: it stands in for the grantee's principal as the user
:data:`SCANNER` (its reads are audited like any ``data.read``; the sharing metrics leave
them out, ``pipelines.share_records``). A response that is not a 200 is a problem of the
scan (its status, never a body).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.model import Catalogue
from catalog.settings import Settings
from masking.leaks import LeakCounts, scan_frame
from masking.names import KnownNames
from pipelines.ingest.raw import raw_table
from pipelines.leaks import Finding, card_columns, structured_columns
from pipelines.share_records import SCANNER

AREA = "responses"
SAMPLE_ROWS = 500  # rows a page: the first page and the last of each grant, each format
FORMATS = ("json", "arrow", "parquet")


def decode(fmt: str, body: bytes) -> pl.DataFrame:
    """A data endpoint's response as a frame (JSON: its ``rows``)."""
    if fmt == "json":
        rows = orjson.loads(body)["rows"]
        return pl.from_dicts(rows, infer_schema_length=None) if rows else pl.DataFrame()
    if fmt == "arrow":
        table = pa.ipc.open_stream(body).read_all()
    else:
        table = pq.read_table(io.BytesIO(body))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def lake_table(cat: Catalogue, resource: str) -> tuple[str, str]:
    """The lake table a grant on ``resource`` reads (for the columns' scanning rules)."""
    zone, _, name = resource.partition(".")
    if zone == "marts":
        return "marts", name
    dept, ds = cat.dataset(resource)
    return "staged", raw_table(dept.code, ds)


@contextmanager
def _service_app(settings: Settings) -> Iterator[tuple[object, object] | None]:
    """The share service's app on this home, in process (None: the service never ran)."""
    from fastapi.testclient import TestClient

    from pipelines.share_records import service_engine
    from share_api.app import create_app
    from share_api.service import Service

    engine = service_engine(settings)
    if engine is None:
        yield None
        return
    engine.dispose()
    service = Service.open(settings)
    try:  # an app handed its service leaves closing it to its maker: this function
        with TestClient(create_app(service=service), client=("127.0.0.1", 0)) as client:
            yield service, client
    finally:  # its lake clock's thread and lake reader with it, not left for the process
        service.close()


def _pages(client, grant_id: str, fmt: str) -> Iterator[tuple[int, object]]:
    """(offset, response) of the first page and, when there are more rows, the last."""
    first = client.get(f"/grants/{grant_id}/data", params={"format": fmt, "limit": SAMPLE_ROWS})
    yield 0, first
    total = int(first.headers.get("X-Total-Rows", 0) or 0) if first.status_code == 200 else 0
    last = max(total - SAMPLE_ROWS, 0)
    if last >= SAMPLE_ROWS:
        params = {"format": fmt, "offset": last, "limit": SAMPLE_ROWS}
        yield last, client.get(f"/grants/{grant_id}/data", params=params)


def scan_responses(settings: Settings, cat: Catalogue, names: KnownNames) -> list[Finding]:
    """One finding per grant, format and page sampled (see the module doc)."""
    from share_api.deps import Principal, current_principal
    from share_api.grants import list_grants
    from share_api.principals import get_org

    structured, cards = structured_columns(cat), card_columns(cat)
    findings: list[Finding] = []
    with _service_app(settings) as found:
        if found is None:
            return findings
        service, client = found
        for grant in list_grants(service):
            if grant.status() != "live":
                continue
            org = get_org(service, grant.grantee_org) or {}
            who = Principal(SCANNER, grant.grantee_org, org.get("kind", "department"),
                            frozenset(), SCANNER)  # fmt: skip
            client.app.dependency_overrides[current_principal] = lambda who=who: who
            table = lake_table(cat, grant.resource)
            for fmt in FORMATS:
                for offset, response in _pages(client, grant.id, fmt):
                    place = f"GET /grants/{grant.id}/data?format={fmt}&offset={offset}"
                    findings.append(_scanned(place, response, fmt, offset, names,
                                             structured.get(table, frozenset()),
                                             cards.get(table, frozenset())))  # fmt: skip
    return findings


def _scanned(place, response, fmt, offset, names, whole, cards) -> Finding:
    if response.status_code != 200:
        problem = f"HTTP {response.status_code}"
        return Finding(place, 0, LeakCounts(), area=AREA, problem=problem)
    frame = decode(fmt, response.content)
    counts = scan_frame(frame, known_names=names, row_offset=offset,
                        whole_name_columns=whole, card_columns=cards)  # fmt: skip
    return Finding(place, counts.cells_scanned, counts, area=AREA, size=len(response.content))
