"""The street's dashboards (治理看板) as panels: each a chart's data and a table holding the
same figures, read from the marts through the service's lake reader (``views.lake_reader``)
— never computed anew here; the page only lays out what the marts publish.

- ``governance``: ``marts.governance_scorecard`` (the figures now, against their goals) and
  ``marts.governance_scorecard_history`` (one dated set a run: the trends);
- ``quality``: ``marts.quality_scorecard``, each department's score (dataset ``*``) per
  dimension, and ``marts.quality_scorecard_history``: a trend a dimension;
- ``demand``: the heat map (:mod:`share_api.portal.dashboard_demand`);
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
from share_api.portal.pages_catalogue import QUALITY_DIMENSION_ZH, departments
from share_api.service import Service
from share_api.views import lake_reader

TREND_DAYS = 90  # the trends show the newest run's day and the days before it, this many


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
    key: str  # its title and summary: TITLES[key], SUMMARIES[key]
    marts: tuple[str, ...] = ()
    panels: list[Panel] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TITLES[self.key]

    @property
    def summary(self) -> str:
        return SUMMARIES[self.key]


TITLES = {
    "governance": "治理记分卡",
    "quality": "数据质量评分卡",
    "demand": "需求热力图",
    "sla": "诉求办理时效",
}
SUMMARIES = {
    "governance": "数据共享率、数据质量合格率、去标识化率、诉求按时响应率与跨部门数据获取时长：当前值与目标，及每日趋势。",
    "quality": "各部门六个质量维度的得分（完整性、有效性、唯一性、一致性、及时性、准确性），颜色越深得分越高；及每个维度各部门得分的每日趋势。",
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
    source = "governance_scorecard_history"
    history = read_mart(
        service,
        recent(source, "run_date, figure AS series, name_zh AS label, value, unit"),
    )
    for unit, title in (("share", "比率类指标趋势"), ("hours", "时长类指标趋势")):
        shown = None if history is None else history.filter(pl.col("unit") == unit)
        board.panels.append(
            trend(shown, key=f"trend-{unit}", title=title, source=f"marts.{source}", unit=unit)
        )
    return board


def trend(frame: pl.DataFrame | None, *, key: str, title: str, source: str, unit: str) -> Panel:
    """A line a series over the run dates, and the table of dates × series, from ``frame``'s
    ``run_date``, ``series`` (its code), ``label`` and ``value`` (None: the mart is not built
    yet)."""
    rows = [] if frame is None else list(frame.iter_rows(named=True))
    dates = sorted({r["run_date"] for r in rows})
    series = list(dict.fromkeys((r["series"], r["label"]) for r in rows))
    value = {(r["run_date"], r["series"]): r["value"] for r in rows}
    fmt = by_unit(unit)
    return Panel(
        key,
        title,
        source,
        Table(
            f"{title}（近{TREND_DAYS}天，每日一行，单位：{'百分比' if unit == 'share' else '小时'}）",
            ["统计日期", *(label for _, label in series)],
            [
                [Cell(d.isoformat(), d.isoformat())]
                + [Cell(fmt(value.get((d, s))), value.get((d, s))) for s, _ in series]
                for d in dates
            ],
        ),
        chart={
            "kind": "line",
            "unit": unit,
            "categories": [d.isoformat() for d in dates],
            "series": [
                {"name": label, "values": [chart_value(value.get((d, s)), unit) for d in dates]}
                for s, label in series
            ],
        },
        note=None if frame is not None else missing(source.removeprefix("marts.")),
    )


def recent(history: str, columns: str, where: str = "TRUE") -> str:
    """The query of a history mart's rows of the last :data:`TREND_DAYS` days it holds."""
    return (
        f"SELECT {columns} FROM marts.{history} WHERE {where} AND run_date > "
        f"(SELECT max(run_date) FROM marts.{history}) - INTERVAL {TREND_DAYS} DAY "
        "ORDER BY run_date"
    )


# -- quality ----------------------------------------------------------------------------------


def quality(service: Service) -> Board:
    board = Board(
        "quality",
        marts=("quality_scorecard", "quality_scorecard_history"),
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
    source = "quality_scorecard_history"
    history = read_mart(
        service,
        recent(source, "run_date, dept AS series, dimension, score AS value", "dataset = '*'"),
    )
    for m in dims:
        shown = None
        if history is not None:
            shown = history.filter(pl.col("dimension") == m).sort("run_date", "series")
            shown = shown.with_columns(label=pl.col("series").replace(label))
        board.panels.append(
            trend(
                shown,
                key=f"trend-{m}",
                title=f"{QUALITY_DIMENSION_ZH[m]}得分趋势（各部门）",
                source=f"marts.{source}",
                unit="share",
            )
        )
    return board


# -- appeal SLA -------------------------------------------------------------------------------


def sla(service: Service) -> Board:
    """The appeal SLA: a bar a handling department (its answered-in-time share) and the
    mart as published beside it, every column under its catalogue label."""
    board = Board("sla", marts=("appeal_sla",))
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
                # an appeal not yet dispatched has no handling department: "—" as the table
                "categories": [r["handling_dept"] or "—" for r in rows],
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
