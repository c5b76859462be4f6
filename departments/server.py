"""The departments' HTTP APIs (rsj social insurance, employment; rx 12345 appeals and
government-service handling records: every dataset whose spec's form is ``http_api``), in
two dialects, as a street's systems speak more than one:

the hub's reference protocol (the social security bureau's)

    GET /api/<dept>/<dataset>?updated_since=<ISO datetime>&page=<1-based>&page_size=<n>
    Authorization: Bearer <token>
    → {"items": [...], "page": n, "page_size": k, "total": T, "has_more": bool}

and a data-sharing platform's query interface (the 12345 hotline's: PageHelper paging, the
token in a header of its own, the parameters in a JSON body, the answer in an envelope)

    POST /open/<dept>/<dataset>/query
    X-Access-Token: <token>
    {"pageNum": <1-based>, "pageSize": <n>, "updatedSince": <ISO datetime>}
    → {"code": 200, "msg": "success", "data": {"pageNum": n, "pageSize": k, "total": T,
       "list": [...]}}

(an error: its HTTP status, and that status and a message as ``code`` and ``msg``). Every
dataset is served in both; the catalogue says which the hub pulls (``catalog/departments``:
rsj's the reference, rx's the platform's). Items with cursor > the since parameter, ordered
by (cursor, record id) so paging is stable. Faults are drawn per request from a seeded
generator: a retried request eventually succeeds (except with ``down=True``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from departments.connect import api_token, free_port
from departments.dialects import endpoints
from departments.folder import SYSTEMS_DIR
from departments.specs import SPECS

# dataset → (cursor field, record id field); the data lives in sim/systems/<dept>/<ds>.parquet
API_DATASETS = {
    (s.dept, s.code): (s.cursor, s.key[0]) for s in SPECS if s.form == "http_api" and s.cursor
}
MAX_PAGE_SIZE = 5_000


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _normalise_since(value: str) -> str:
    """ISO date or datetime (with or without offset, T or space) → 'YYYY-MM-DD HH:MM:SS'."""
    t = dt.datetime.fromisoformat(value.strip().replace(" ", "T", 1) if "T" not in value else value)
    if t.tzinfo is not None:  # the departments keep Beijing time
        t = t.astimezone(dt.timezone(dt.timedelta(hours=8))).replace(tzinfo=None)
    return t.strftime("%Y-%m-%d %H:%M:%S")


class _Store:
    """Every API dataset as an Arrow table sorted once by (cursor, record id), loaded
    lazily; a page is turned into Python rows only when it is served (whole datasets as
    Python dicts held ~380 MB at 200,000 residents, and each request filtered all of
    them)."""

    def __init__(self, sim_dir: Path) -> None:
        self.sim_dir = sim_dir
        self.tables: dict[tuple[str, str], tuple[pa.Table, pa.Array]] = {}
        self.lock = threading.Lock()

    def get(self, dept: str, dataset: str) -> tuple[pa.Table, pa.Array] | None:
        """The sorted table and its cursor column (nulls as ""), or None."""
        key = (dept, dataset)
        if key not in API_DATASETS:
            return None
        with self.lock:
            if key not in self.tables:
                path = self.sim_dir / SYSTEMS_DIR / dept / f"{dataset}.parquet"
                if not path.exists():
                    return None
                cursor, rid = API_DATASETS[key]
                table = pq.read_table(path)
                cursors = pc.fill_null(table[cursor], "")
                ids = pc.fill_null(table[rid], "")
                order = pc.sort_indices(  # stable: ties keep the file's order
                    pa.table({"c": cursors, "r": ids}), [("c", "ascending"), ("r", "ascending")]
                )
                self.tables[key] = (table.take(order), cursors.take(order).combine_chunks())
            return self.tables[key]


def _after(cursors: pa.Array, since: str) -> int:
    """Where the rows with a cursor after ``since`` start (the cursors are sorted)."""
    return pc.sum(pc.less_equal(cursors, since)).as_py() or 0


def create_app(
    sim_dir: Path,
    token: str,
    fault_rate: float = 0.05,
    slow_rate: float = 0.02,
    slow_seconds: float = 0.5,
    down: bool = False,
    seed: int = 0,
) -> FastAPI:
    app = FastAPI(title="streethub simulated department APIs", docs_url=None, redoc_url=None)
    store = _Store(Path(sim_dir))
    rng = random.Random(seed)
    rng_lock = threading.Lock()
    app.state.stats = {"requests": 0, "faults": 0, "slow": 0}

    def draw() -> tuple[float, float, bool]:
        with rng_lock:
            return rng.random(), rng.random(), rng.random() < 0.5

    @app.get("/health")
    def health() -> Response:
        if down:
            return _error(503, "service unavailable")
        return JSONResponse({"status": "ok", "pid": os.getpid()})

    def page_of(
        authorised: bool, dept: str, dataset: str, since: str | None, page: int, size: int
    ) -> tuple[list[dict], int] | _Failure:
        """One page of a dataset's records after ``since`` and the count of them all, or
        why not (the same in either dialect: the faults, the checks, the records)."""
        stats = app.state.stats
        stats["requests"] += 1
        if not authorised:
            return _Failure(401, "missing or invalid token")
        if down:
            stats["faults"] += 1
            return _Failure(503, "service unavailable", {"Retry-After": "0"})
        fault, slow, is_429 = draw()
        if slow < slow_rate:
            stats["slow"] += 1
            time.sleep(slow_seconds)
        if fault < fault_rate:
            stats["faults"] += 1
            if is_429:
                return _Failure(429, "too many requests", {"Retry-After": "0"})
            return _Failure(503, "service temporarily unavailable", {"Retry-After": "0"})
        held = store.get(dept, dataset)
        if held is None:
            return _Failure(404, f"unknown dataset {dept}/{dataset}")
        table, cursors = held
        if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            return _Failure(400, f"the page must be ≥ 1 and its size in 1..{MAX_PAGE_SIZE}")
        if since:
            try:
                table = table.slice(_after(cursors, _normalise_since(since)))
            except ValueError:
                return _Failure(400, "the since parameter must be an ISO date or datetime")
        lo = (page - 1) * size
        return (table.slice(lo, size).to_pylist() if lo < table.num_rows else []), table.num_rows

    @app.get(endpoints("{dept}", "{dataset}")["reference"])
    def records(
        request: Request,
        dept: str,
        dataset: str,
        updated_since: str | None = None,
        page: int = 1,
        page_size: int = 500,
    ) -> Response:
        authorised = request.headers.get("authorization", "") == f"Bearer {token}"
        got = page_of(authorised, dept, dataset, updated_since, page, page_size)
        if isinstance(got, _Failure):  # a bearer token is what this dialect asks for
            bearer = {"WWW-Authenticate": "Bearer"} if got.status == 401 else {}
            return _error(got.status, got.message, **got.headers, **bearer)
        items, total = got
        return JSONResponse({"items": items, "page": page, "page_size": page_size,
                             "total": total, "has_more": (page - 1) * page_size + len(items) < total})  # fmt: skip

    @app.post(endpoints("{dept}", "{dataset}")["platform"])
    def platform_records(
        request: Request, dept: str, dataset: str, query: PlatformQuery | None = None
    ) -> Response:
        query = query or PlatformQuery()
        authorised = request.headers.get("x-access-token", "") == token
        got = page_of(authorised, dept, dataset, query.updatedSince, query.pageNum, query.pageSize)
        if isinstance(got, _Failure):
            return JSONResponse(
                {"code": got.status, "msg": got.message},
                status_code=got.status,
                headers=got.headers,
            )
        items, total = got
        data = {"pageNum": query.pageNum, "pageSize": query.pageSize, "total": total, "list": items}
        return JSONResponse({"code": 200, "msg": "success", "data": data})

    return app


class PlatformQuery(BaseModel):
    """The platform dialect's JSON body (its names are the platform's)."""

    pageNum: int = 1
    pageSize: int = 100
    updatedSince: str | None = None


@dataclass(frozen=True)
class _Failure:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def serve(
    sim_dir: Path, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, **faults
) -> None:
    """Run the APIs of the simulator's folder ``sim_dir`` until interrupted (blocking)."""
    app = create_app(Path(sim_dir), token or api_token(Path(sim_dir)), **faults)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@contextlib.contextmanager
def running_server(sim_dir: Path, token: str | None = None, **faults) -> Iterator[str]:
    """Serve the APIs of the simulator's folder ``sim_dir`` in a background thread on a
    free port; yield the base URL; stop on exit."""
    host, port = "127.0.0.1", free_port()
    app = create_app(Path(sim_dir), token or api_token(Path(sim_dir)), **faults)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, name="dept-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("department API server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _outlive_not(parent: int) -> None:
    """End this process once ``parent`` is gone (killed without stopping us: the orphan
    is re-parented), so a killed hub leaves no server behind."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """``python -m departments.server SIM_DIR --port N --faults JSON``: what
    ``departments.connect.server_process`` starts."""
    parser = argparse.ArgumentParser(description="the simulated departments' HTTP APIs")
    parser.add_argument("sim_dir", type=Path)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--faults", default="{}", help="create_app's fault options, as JSON")
    parser.add_argument("--parent", type=int, help="stop when this process is gone")
    args = parser.parse_args(argv)
    if args.parent:
        threading.Thread(target=_outlive_not, args=(args.parent,), daemon=True).start()
    serve(args.sim_dir, host="127.0.0.1", port=args.port, **json.loads(args.faults))


if __name__ == "__main__":
    main()
