"""The dashboards (``/portal/dashboards``, 治理看板) for the street's leaders, data officers,
auditors and admins: the governance scorecard with its trends, the quality scorecard per
department and dimension, the demand heat map by grid cell and category, the appeal SLA by
department (:mod:`share_api.portal.dashboards` reads them from the marts).

Each chart is drawn by ``static/dashboards.js`` with the vendored ECharts' SVG renderer from
the data in a ``<script type="application/json">`` (the CSP runs no inline script); the heat
map's tiles are plain SVG. Beside each chart a table holds the same figures, downloadable as
CSV (:mod:`share_api.portal.csv`: byte-order mark, formula cells escaped). Viewing a board
and downloading a table are audited (``dashboard.view``, ``dashboard.csv``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from share_api.deps import Principal
from share_api.portal.csv import csv_response
from share_api.portal.dashboard_demand import demand
from share_api.portal.dashboards import SUMMARIES, TITLES, Board, Cell, governance, quality, sla
from share_api.portal.web import PREFIX, needs, render
from share_api.service import Service

router = APIRouter(prefix=PREFIX, include_in_schema=False)

ROLES = ("leader", "data_officer", "auditor", "admin")
Viewer = Annotated[Principal, Depends(needs(*ROLES))]
BOARDS: dict[str, Callable[[Service], Board]] = {
    "governance": governance,
    "quality": quality,
    "demand": demand,
    "sla": sla,
}


def _board(
    request: Request, principal: Principal, key: str, action: str, panel: str | None = None
) -> Board:
    make = BOARDS.get(key)
    if make is None:
        raise HTTPException(404, "没有这个看板")
    service: Service = request.app.state.service
    board = make(service)
    details = {"dashboard": key, "marts": ",".join(board.marts)}
    service.audit.record(action, principal.actor, **details, **({"panel": panel} if panel else {}))
    return board


def csv_cell(cell: Cell) -> str | int | float | None:
    """A number as the figure itself (empty when there is none), anything else as shown."""
    if cell.value is None and cell.text == "—":
        return None
    if isinstance(cell.value, int | float) and not isinstance(cell.value, bool):
        return cell.value
    return cell.text


@router.get("/dashboards")
def dashboards(request: Request, principal: Viewer) -> HTMLResponse:
    return render(request, "dashboards/index.html", principal, boards=TITLES, summaries=SUMMARIES)


@router.get("/dashboards/{key}")
async def board(key: str, request: Request, principal: Viewer) -> HTMLResponse:
    shown = await run_in_threadpool(_board, request, principal, key, "dashboard.view")
    return render(request, "dashboards/board.html", principal, board=shown, boards=TITLES)


@router.get("/dashboards/{key}/{panel}.csv")
async def board_csv(key: str, panel: str, request: Request, principal: Viewer) -> StreamingResponse:
    shown = await run_in_threadpool(_board, request, principal, key, "dashboard.csv", panel)
    found = next((p for p in shown.panels if p.key == panel), None)
    if found is None:
        raise HTTPException(404, "没有这个表格")
    return csv_response(
        rows=[[csv_cell(c) for c in r] for r in found.table.rows],
        header=found.table.header,
        filename=f"{shown.title}-{found.title}.csv",
    )
