"""HTTP routes: the analysts' SQL endpoint (分析人员 SQL 查询) — ``POST /analyst/sql``.

For analysts who do not take the database file: a person of an analysts' organisation
sends one SELECT and gets its rows from that organisation's analyst database (built by
``streethub analyst``: the published marts through each grant's view, masked). The text
is judged by :mod:`share_api.analysts.guard` and run by :mod:`share_api.analysts.worker`
in a separate process on the database opened read-only, external access off, its
configuration locked — never on the service's event loop or in its process. Every query,
refused ones too, is one durable ``analyst.sql`` audit record: who, the SHA-256 and
length of the query's text, the outcome and its reason (a name only the analyst knows
written ``…``; of a failure in DuckDB, its kind only), rows, truncated, the result's
SHA-256, the time it took (neither the text nor DuckDB's message is kept: either may hold
a value the analyst typed).

Answers: 200 the result; 400 refused by the guard (the reason), or failed in DuckDB;
403 not an analysts' organisation; 404 no database built for it yet; 422 interrupted at
the time limit (``analyst_sql_time_limit_seconds``); 429 every worker busy; 503 no worker
process could be started.
"""

from __future__ import annotations

import hashlib
from typing import Any, NoReturn

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from share_api.analysts.build import analyst_db_path
from share_api.analysts.guard import MAX_SQL_CHARS
from share_api.analysts.worker import (
    Job,
    PoolBusy,
    WorkerLost,
    WorkerPool,
    address_space_for,
    database_path,
)
from share_api.deps import Principal, PrincipalDep, ServiceDep
from share_api.service import Service

router = APIRouter(tags=["analysts"])

POOL_KEY = "analysts.sql_pool"
STATUS = {"refused": 400, "failed": 400, "interrupted": 422}
BUSY_RETRY_S = 5


class SqlQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(
        min_length=1,
        max_length=MAX_SQL_CHARS,
        description="one read-only SELECT (DuckDB dialect) over the analyst database's tables",
    )
    max_rows: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="rows wanted at most (default and ceiling: the service's analyst_sql_max_rows)",
    )


class SqlResult(BaseModel):
    columns: list[str]
    types: list[str] = Field(description="DuckDB's type of each column")
    rows: list[list[Any]] = Field(description="the rows, values as JSON (decimals, times as text)")
    truncated: bool = Field(description="true: the query had more rows than max_rows")
    max_rows: int
    elapsed_ms: float = Field(description="time in the worker: open, judge, run, fetch")
    result_sha256: str = Field(description="SHA-256 of the canonical JSON {columns, rows}")
    audit_seq: int = Field(description="the query's audit record")


@router.post(
    "/analyst/sql",
    response_model=SqlResult,
    responses={
        400: {"description": "refused (the reason), or the query failed in DuckDB"},
        403: {"description": "the caller is not of an analysts' organisation"},
        404: {"description": "no analyst database has been built for the organisation"},
        422: {"description": "interrupted at the time limit, or a malformed request"},
        429: {"description": "every query worker is busy: try again shortly"},
        503: {"description": "no query worker process could be started"},
    },
)
async def analyst_sql(
    body: SqlQuery, request: Request, principal: PrincipalDep, service: ServiceDep
) -> Response:
    """Run one read-only SELECT on the caller's organisation's analyst database (masked
    copies of its grants' marts), in a separate worker process with a memory limit, a
    time limit and a row cap; audited (``analyst.sql``) whatever the outcome."""
    settings = service.settings
    query = {
        "query_sha256": hashlib.sha256(body.sql.encode("utf-8")).hexdigest(),
        "query_chars": len(body.sql),
    }
    if principal.org_kind != "analyst":
        await _refuse(service, request, principal, query, 403,
                      "only a person of an analysts' organisation may run SQL here")  # fmt: skip
    path = analyst_db_path(settings, principal.org)
    if not path.is_file():
        await _refuse(service, request, principal, query, 404,
                      f"no analyst database has been built for {principal.org} "
                      f"(streethub analyst {principal.org})")  # fmt: skip
    max_rows = min(body.max_rows or settings.analyst_sql_max_rows, settings.analyst_sql_max_rows)
    job = Job(
        db=database_path(path),
        sql=body.sql,
        max_rows=max_rows,
        time_limit_s=settings.analyst_sql_time_limit_seconds,
        memory_limit=settings.analyst_sql_memory_limit,
        threads=settings.analyst_sql_threads,
    )
    pool = service.kept(POOL_KEY, lambda: _pool(service))
    try:
        answer = await run_in_threadpool(pool.run, job)
    except PoolBusy as exc:
        await _refuse(service, request, principal, query, 429, str(exc), outcome="busy",
                      headers={"Retry-After": str(BUSY_RETRY_S)})  # fmt: skip
    except WorkerLost:  # a condition of the service (no process could start), not the query's
        await _refuse(service, request, principal, query, 503,
                      "no query worker could be started; try again later", outcome="unavailable",
                      headers={"Retry-After": str(BUSY_RETRY_S)})  # fmt: skip
    kind = answer.get("kind", "failed")
    if kind != "ok":
        reason = str(answer.get("reason") or "the query ran past the time limit "
                     f"({settings.analyst_sql_time_limit_seconds:g} s) and was stopped")  # fmt: skip
        await _refuse(service, request, principal, query, STATUS.get(kind, 400), reason,
                      outcome=kind, audited=answer.get("summary"),
                      elapsed_ms=float(answer.get("elapsed_ms", 0.0)))  # fmt: skip
    record = await service.audit.record_async(
        "analyst.sql",
        principal.actor,
        {
            **query,
            "outcome": "ok",
            "rows": len(answer["rows"]),
            "truncated": answer["truncated"],
            "result_sha256": answer["result_sha256"],
            "elapsed_ms": answer["elapsed_ms"],
        },
    )
    body = await run_in_threadpool(_body, answer, max_rows, record["seq"])
    return Response(body, media_type="application/json",
                    headers={"X-Audit-Seq": str(record["seq"]), "Cache-Control": "no-store"})  # fmt: skip


def _pool(service: Service) -> WorkerPool:
    """The service's query workers, as many and as large as its settings say."""
    settings = service.settings
    space = address_space_for(settings.analyst_sql_memory_limit, settings.analyst_sql_threads)
    return WorkerPool(settings.analyst_sql_workers, space)


def _body(answer: dict[str, Any], max_rows: int, seq: int) -> bytes:
    """The answer's JSON (:class:`SqlResult`), made in a worker thread: a result of 10,000
    rows takes tens of milliseconds to write, which the event loop does not wait for."""
    result = SqlResult(**{k: answer[k] for k in SqlResult.model_fields if k in answer},
                       max_rows=max_rows, audit_seq=seq)  # fmt: skip
    return result.model_dump_json().encode("utf-8")


async def _refuse(
    service: Service,
    request: Request,
    principal: Principal,
    query: dict[str, Any],
    status: int,
    reason: str,
    *,
    outcome: str = "refused",
    headers: dict[str, str] | None = None,
    audited: str | None = None,
    **details: Any,
) -> NoReturn:
    """Audit a query that gets no rows (``analyst.sql`` with its outcome and reason — or
    ``audited``, the reason without DuckDB's message, which may quote a value), then answer
    ``status`` with the reason."""
    await service.audit.record_async(
        "analyst.sql",
        principal.actor,
        {**query, "outcome": outcome, "status": status, "reason": audited or reason, **details},
    )
    request.state.refusal_audited = True  # the app's 4xx audit need not add another
    raise HTTPException(status, reason, headers=headers)
