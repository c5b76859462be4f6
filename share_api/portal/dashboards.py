"""The street's dashboards (治理看板) as panels: each a chart's data and a table holding the
same figures, read from the marts through the service's lake reader (``views.lake_reader``)
— never computed anew here; the page only lays out what the marts publish.

- ``governance``: ``marts.governance_scorecard`` (the figures now, against their goals) and
  ``marts.governance_scorecard_history`` (one dated set a run: the trends);
- ``quality``: ``marts.quality_scorecard``, each department's score (dataset ``*``) per
  dimension;
- ``demand``: ``marts.demand_heatmap`` summed per grid cell and category over its weeks,
  laid out as tiles at the centres of ``marts.grid_layout`` grouped by community;
- ``sla``: ``marts.appeal_sla`` per handling department, every column as published.

A mart not built yet gives an empty panel saying so. :class:`Panel` is what the templates
and ``static/dashboards.js`` draw and the CSV download writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from catalog.marts import Mart
from catalog.model import FieldType
from share_api.catalogue import marts_of
from share_api.portal.dashboard_tiles import tile_layers
from share_api.portal.pages_catalogue import QUALITY_DIMENSION_ZH, departments
from share_api.service import Service
from share_api.views import lake_reader

TREND_DAYS = 90  # the trends show the newest run's day and the days before it, this many
NO_GRID = "（未定位到网格）"
UNLISTED = "未登记网格"


@dataclass
class Cell:
    """One table cell: what the page shows and the figure itself (``data-value``, CSV)."""

    text: str
    value: Any = None


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[Cell]]  # the first cell of a row heads it (th scope=row)


@dataclass
class Panel:
    key: str  # the panel's id in the page and its CSV's name
    title: str
    source: str  # the mart(s) it reads, shown under the table
    table: Table
    chart: dict | None = None  # for dashboards.js (ECharts), None: no chart
    tiles: dict | None = None  # the heat map's layers (plain SVG in the template)
    note: str | None = None


@dataclass
class Board:
    key: str
    title: str
    summary: str
    panels: list[Panel] = field(default_factory=list)
    marts: tuple[str, ...] = ()


TITLES = {
    "governance": "治理记分卡",
    "quality": "数据质量评分卡",
    "demand": "需求热力图",
    "sla": "诉求办理时效",
}
SUMMARIES = {
    "governance": "数据共享率、数据质量合格率、去标识化率、诉求按时响应率与跨部门数据获取时长：当前值与目标，及每日趋势。",
    "quality": "各部门六个质量维度的得分（完整性、有效性、唯一性、一致性、及时性、准确性），颜色越深得分越高。",
    "demand": "12345诉求、网格事件与城管案件按网格和类别计数；每个方块是一个网格，位于其中心点，按社区分组，颜色越深件数越多。",
    "sla": "12345诉求按承办单位：按时响应率（紧急诉求2小时内、其他24小时内派单）、派单与办结时长。",
}


# -- reading the marts -----------------------------------------------------------------------


def read_mart(service: Service, sql: str) -> pl.DataFrame | None:
    """The rows of a query over ``marts.*`` on the service's read-only lake connection (None:
    the mart is not built yet)."""
    cur = lake_reader(service).cursor()
    try:
        return cur.execute(sql).pl()
    except duckdb.CatalogException:
        return None
    finally:
        cur.close()


# -- formatting -------------------------------------------------------------------------------


def percent(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def hours(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.2f} 小时" if abs(v) < 1 else f"{v:.1f} 小时"  # minutes stay visible


def number(v: float | int | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def yes_no(v: bool | None) -> str:
    return "—" if v is None else ("达标" if v else "未达标")


def by_unit(unit: str) -> Callable[[float | None], str]:
    return percent if unit == "share" else hours


def chart_value(v: float | None, unit: str) -> float | None:
    """A figure as the chart plots it: shares in percent, one decimal; hours as hours."""
    if v is None:
        return None
    return round(v * 100, 1) if unit == "share" else round(v, 2)


def missing(mart: str) -> str:
    return f"marts.{mart} 尚未生成（数据管道运行后出现）。"


# -- governance -------------------------------------------------------------------------------


def governance(service: Service) -> Board:
    board = Board(
        "governance",
        TITLES["governance"],
        SUMMARIES["governance"],
        marts=("governance_scorecard", "governance_scorecard_history"),
    )
    now = read_mart(service, "SELECT * FROM marts.governance_scorecard")
    rows = [] if now is None else list(now.iter_rows(named=True))
    board.panels.append(
        Panel(
            "current",
            "当前指标与目标",
            "marts.governance_scorecard",
            Table(
                "当前治理指标（值、目标、是否达标）",
                ["指标", "值", "目标", "达标", "分子", "分母"],
                [
                    [
                        Cell(r["name_zh"], r["figure"]),
                        Cell(by_unit(r["unit"])(r["value"]), r["value"]),
                        Cell(by_unit(r["unit"])(r["goal"]), r["goal"]),
                        Cell(yes_no(r["meets_goal"]), r["meets_goal"]),
                        Cell(number(r["numerator"]), r["numerator"]),
                        Cell(number(r["denominator"]), r["denominator"]),
                    ]
                    for r in rows
                ],
            ),
            chart={
                "kind": "bar",
                "unit": "share",
                "categories": [r["name_zh"] for r in rows if r["unit"] == "share"],
                "series": [
                    {
                        "name": name,
                        "values": [
                            chart_value(r[col], "share") for r in rows if r["unit"] == "share"
                        ],
                    }
                    for name, col in (("当前值", "value"), ("目标", "goal"))
                ],
            },
            note=None if now is not None else missing("governance_scorecard"),
        )
    )
    history = read_mart(
        service,
        "SELECT run_date, figure, name_zh, value, unit FROM marts.governance_scorecard_history "
        "WHERE run_date > (SELECT max(run_date) FROM marts.governance_scorecard_history) "
        f"- INTERVAL {TREND_DAYS} DAY ORDER BY run_date",
    )
    for unit, title in (("share", "比率类指标趋势"), ("hours", "时长类指标趋势")):
        board.panels.append(trend(history, unit, title))
    return board


def trend(history: pl.DataFrame | None, unit: str, title: str) -> Panel:
    """The history's figures of one unit: a line a figure over the run dates, and the table
    of dates × figures."""
    frame = pl.DataFrame() if history is None else history.filter(pl.col("unit") == unit)
    dates = sorted({d for d in frame["run_date"]}) if frame.height else []
    figures = (
        frame.select("figure", "name_zh").unique(maintain_order=True).rows() if frame.height else []
    )
    value = {(r["run_date"], r["figure"]): r["value"] for r in frame.iter_rows(named=True)}
    fmt = by_unit(unit)
    return Panel(
        f"trend-{unit}",
        title,
        "marts.governance_scorecard_history",
        Table(
            f"{title}（近{TREND_DAYS}天，每日一行，单位：{'百分比' if unit == 'share' else '小时'}）",
            ["统计日期", *(name for _, name in figures)],
            [
                [Cell(d.isoformat(), d.isoformat())]
                + [Cell(fmt(value.get((d, f))), value.get((d, f))) for f, _ in figures]
                for d in dates
            ],
        ),
        chart={
            "kind": "line",
            "unit": unit,
            "categories": [d.isoformat() for d in dates],
            "series": [
                {"name": name, "values": [chart_value(value.get((d, f)), unit) for d in dates]}
                for f, name in figures
            ],
        },
        note=None if history is not None else missing("governance_scorecard_history"),
    )


# -- quality ----------------------------------------------------------------------------------


def quality(service: Service) -> Board:
    board = Board(
        "quality",
        TITLES["quality"],
        SUMMARIES["quality"],
        marts=("quality_scorecard",),
    )
    frame = read_mart(
        service,
        "SELECT dept, dimension, score FROM marts.quality_scorecard WHERE dataset = '*'",
    )
    names = dict(departments(service))
    scores = {} if frame is None else {(d, m): s for d, m, s in frame.iter_rows()}
    depts = sorted(
        {d for d, _ in scores},
        key=lambda d: (list(names).index(d) if d in names else len(names), d),
    )
    dims = [d for d in QUALITY_DIMENSION_ZH if any((x, d) in scores for x in depts)]
    label = {d: f"{names.get(d, d)}（{d}）" for d in depts}
    board.panels.append(
        Panel(
            "departments",
            "各部门 × 质量维度得分",
            "marts.quality_scorecard（部门汇总行）",
            Table(
                "各部门质量维度得分（百分比）",
                ["部门", *(QUALITY_DIMENSION_ZH[m] for m in dims)],
                [
                    [Cell(label[d], d)]
                    + [Cell(percent(scores.get((d, m))), scores.get((d, m))) for m in dims]
                    for d in depts
                ],
            ),
            chart={
                "kind": "heatmap",
                "unit": "share",
                "x": [QUALITY_DIMENSION_ZH[m] for m in dims],
                "y": [label[d] for d in depts],
                "cells": [
                    [i, j, chart_value(scores[(d, m)], "share")]
                    for j, d in enumerate(depts)
                    for i, m in enumerate(dims)
                    if scores.get((d, m)) is not None
                ],
            },
            note=None if frame is not None else missing("quality_scorecard"),
        )
    )
    return board


# -- appeal SLA -------------------------------------------------------------------------------


def sla(service: Service) -> Board:
    """The appeal SLA: a bar a handling department (its answered-in-time share) and the
    mart as published beside it, every column under its catalogue label."""
    board = Board("sla", TITLES["sla"], SUMMARIES["sla"], marts=("appeal_sla",))
    mart = marts_of(service)["appeal_sla"]
    frame = read_mart(service, "SELECT * FROM marts.appeal_sla ORDER BY handling_dept")
    rows = [] if frame is None else list(frame.iter_rows(named=True))
    board.panels.append(
        Panel(
            "sla",
            "各承办单位按时响应率",
            "marts.appeal_sla",
            mart_table(mart, rows, "各承办单位诉求办理时效（数据集市全部列）"),
            chart={
                "kind": "bar",
                "unit": "share",
                "horizontal": True,
                "categories": [r["handling_dept"] for r in rows],
                "series": [
                    {
                        "name": mart.column("answered_in_time_share").label_zh,
                        "values": [chart_value(r["answered_in_time_share"], "share") for r in rows],
                    },
                ],
            },
            note=None if frame is not None else missing("appeal_sla"),
        )
    )
    return board


def mart_table(mart: Mart, rows: list[dict], caption: str) -> Table:
    """A mart's rows as published: every column under its catalogue label (``label_zh``), a
    rate (a label ending in 率) as a percentage, numbers grouped, dates as days."""
    shown: list[Callable[[Any], str]] = [
        percent if c.label_zh.endswith("率") and c.type is FieldType.decimal
        else number if c.type in (FieldType.integer, FieldType.decimal)
        else (lambda v: "—" if v is None else str(v))
        for c in mart.columns
    ]  # fmt: skip
    names = mart.column_names
    return Table(
        caption,
        [c.label_zh for c in mart.columns],
        [[Cell(f(r[n]), r[n]) for f, n in zip(shown, names, strict=True)] for r in rows],
    )


# -- demand heat map --------------------------------------------------------------------------


def demand(service: Service) -> Board:
    board = Board(
        "demand",
        TITLES["demand"],
        SUMMARIES["demand"],
        marts=("demand_heatmap", "grid_layout"),
    )
    counts = read_mart(
        service,
        "SELECT grid_code, category, sum(events)::BIGINT AS events, min(week_start) AS first, "
        "max(week_start) AS last FROM marts.demand_heatmap GROUP BY ALL",
    )
    layout = read_mart(
        service, "SELECT * FROM marts.grid_layout ORDER BY community_code, grid_code"
    )
    counts = counts if counts is not None else pl.DataFrame()
    cells = [] if layout is None else list(layout.iter_rows(named=True))
    known = {c["grid_code"] for c in cells}
    categories = sorted(set(counts["category"])) if counts.height else []
    events = (
        {(g, c): n for g, c, n in counts.select("grid_code", "category", "events").rows()}
        if counts.height
        else {}
    )
    extra = sorted({g for g, _ in events if g not in known}, key=lambda g: (g is None, g or ""))
    rows = [
        (
            c["community_name"] or c["community_code"],
            c["grid_name"] or c["grid_code"],
            c["grid_code"],
        )
        for c in cells
    ] + [(UNLISTED, g if g is not None else NO_GRID, g) for g in extra]
    total = {g: sum(n for (gg, _), n in events.items() if gg == g) for *_, g in rows}
    period = (
        f"{counts['first'].min().isoformat()} 至 {counts['last'].max().isoformat()} 各周"
        if counts.height
        else "—"
    )
    board.panels.append(
        Panel(
            "heatmap",
            "网格 × 类别 事件数",
            "marts.demand_heatmap（按网格、类别汇总各周）、marts.grid_layout（网格中心点与所属社区）",
            Table(
                f"各网格各类别事件数（{period}）",
                ["网格", "所属社区", *categories, "合计"],
                [
                    [Cell(grid, code), Cell(community, community)]
                    + [
                        Cell(number(events.get((code, c), 0)), events.get((code, c), 0))
                        for c in categories
                    ]
                    + [Cell(number(total[code]), total[code])]
                    for community, grid, code in rows
                ],
            ),
            tiles=tile_layers(cells, events, categories) if cells else None,
            note=None
            if layout is not None and counts.height
            else missing("demand_heatmap / grid_layout"),
        )
    )
    return board


BOARDS: dict[str, Callable[[Service], Board]] = {
    "governance": governance,
    "quality": quality,
    "demand": demand,
    "sla": sla,
}
