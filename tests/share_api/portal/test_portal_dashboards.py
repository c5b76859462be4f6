"""The dashboards in a real browser: a street leader opens each one; its figures — the table
cells beside each chart and the chart's own SVG (ECharts' SVG renderer; the heat map's
tiles) — are the marts' as read directly from the lake here; a table's CSV download starts
with the byte-order mark and escapes a cell that begins with '='; a requester is refused.
Before the service starts, the lake copy gets scorecard history on three earlier days (a
trend; one day outside the trends' window) and a handling department whose name begins
with '=' (a formula a spreadsheet would run)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from lakehouse.lake import open_lake
from marts.build import build_mart, run_day
from share_api.portal.csv import BOM
from share_api.portal.dashboard_demand import UNLISTED, demand
from share_api.portal.dashboards import TREND_DAYS, chart_value, governance, hours, percent
from tests.share_api.portal.conftest import assert_accessible, guarded_context, shot

FORMULA = "=1+2"
DIMENSIONS_ZH = ["完整性", "有效性", "唯一性", "一致性", "及时性", "准确性"]


@pytest.fixture
def lake(share_settings, mart_street):
    """The copy's lake with history on three earlier days (shares 10 % lower then) and one
    handling department renamed to begin with a formula."""
    today = mart_street.built_on  # the day of the session's history rows (Beijing)
    with open_lake(share_settings) as con:
        for days in (TREND_DAYS + 30, 2, 1):  # the first one outside the trends' window
            build_mart(con, mart_street.catalogue, mart_street.marts,
                       "governance_scorecard_history", None,
                       run_date=today - dt.timedelta(days=days))  # fmt: skip
        build_mart(con, mart_street.catalogue, mart_street.marts, "quality_scorecard_history",
                   None, run_date=today - dt.timedelta(days=1))  # fmt: skip
        con.execute(
            "UPDATE marts.governance_scorecard_history SET value = value * 0.9 "
            "WHERE run_date < ? AND unit = 'share'",
            [today],
        )
        con.execute(
            "UPDATE marts.quality_scorecard_history SET score = score * 0.95 WHERE run_date < ?",
            [today],
        )
        con.execute(
            "UPDATE marts.appeal_sla SET handling_dept = ? || handling_dept "
            "WHERE handling_dept = (SELECT min(handling_dept) FROM marts.appeal_sla)",
            [FORMULA],
        )
    return share_settings


def read(settings, sql: str) -> pl.DataFrame:
    with open_lake(settings, read_only=True) as con:
        return con.execute(sql).pl()


def table_cells(page, panel: str) -> list[list[tuple[str, str]]]:
    """(text, data-value) of each cell of a panel's table body, row by row."""
    return page.locator(f"#table-{panel} tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.children].map(c => [c.textContent.trim(),"
        " c.getAttribute('data-value')]))"
    )


def svg_texts(page, panel: str) -> list[str]:
    return page.locator(f"#chart-{panel} svg text").all_text_contents()


def open_board(page, portal, key: str) -> None:
    page.goto(f"{portal.url}/dashboards/{key}")
    for el in page.locator("[data-rendered]").all():
        el.page.wait_for_function(
            "el => el.getAttribute('data-rendered') === '1'", arg=el.element_handle()
        )
    assert_accessible(page)
    shot(page, f"portal-dashboard-{key}")


def js_number(v: float) -> str:
    """A number as JavaScript prints it in a chart's label (100.0 → '100')."""
    return str(int(v)) if float(v).is_integer() else str(v)


def as_float(v: str | None) -> float | None:
    return None if v in (None, "", "None") else float(v)


def test_leader_sees_each_dashboard_with_the_marts_figures(lake, portal, page, browser, outside):
    leader = portal.person("street", "leader", kind="street")
    portal.sign_in(page, leader, "/dashboards")
    assert page.get_by_role("heading", level=1).inner_text() == "治理看板"
    assert_accessible(page)

    # governance: the figures now, and three days of history
    open_board(page, portal, "governance")
    now = read(lake, "SELECT * FROM marts.governance_scorecard")
    rows = table_cells(page, "current")
    assert [r[0][1] for r in rows] == now["figure"].to_list()
    for cells, fig in zip(rows, now.iter_rows(named=True), strict=True):
        shown = percent if fig["unit"] == "share" else hours
        assert cells[1][0] == shown(fig["value"])
        assert as_float(cells[1][1]) == pytest.approx(fig["value"])
        assert cells[2][0] == shown(fig["goal"])
    shares = now.filter(pl.col("unit") == "share")
    bars = svg_texts(page, "current")
    for name, value in zip(shares["name_zh"], shares["value"], strict=True):
        assert name in bars  # the axis names each figure …
        if value is not None:
            assert js_number(chart_value(value, "share")) in bars  # … and labels its bar
    history = read(
        lake,
        "SELECT run_date, figure, value FROM marts.governance_scorecard_history "
        "WHERE unit = 'share' ORDER BY run_date, figure",
    )
    assert history["run_date"].n_unique() == 4
    history = history.filter(pl.col("run_date") > run_day() - dt.timedelta(days=TREND_DAYS))
    dates = sorted({d.isoformat() for d in history["run_date"]})
    assert len(dates) == 3
    trend = table_cells(page, "trend-share")
    assert [r[0][0] for r in trend] == dates
    header = page.locator("#table-trend-share thead th").all_text_contents()[1:]
    names = dict(now.select("name_zh", "figure").rows())
    by_day = {(d.isoformat(), f): v for d, f, v in history.rows()}
    for cells in trend:
        for name, (text, value) in zip(header, cells[1:], strict=True):
            expected = by_day[(cells[0][0], names[name])]
            assert text == percent(expected)
            assert (as_float(value) is None) == (expected is None)
    lines = svg_texts(page, "trend-share")
    assert all(d in lines for d in dates)  # the x axis: one label a run date
    assert page.locator("#chart-trend-share svg path").count() >= len(header)  # a line each

    # quality: department x dimension, the table and the heat map's labels
    open_board(page, portal, "quality")
    scores = read(
        lake,
        "SELECT dept, dimension, score FROM marts.quality_scorecard WHERE dataset = '*'",
    )
    want = {(d, m): s for d, m, s in scores.rows()}
    rows = table_cells(page, "departments")
    header = page.locator("#table-departments thead th").all_text_contents()[1:]
    codes = dict(zip(DIMENSIONS_ZH, ["completeness", "validity", "uniqueness", "consistency",
                                     "timeliness", "accuracy"], strict=True))  # fmt: skip
    assert {r[0][1] for r in rows} == set(scores["dept"])
    checked = 0
    for cells in rows:
        for dim, (text, _) in zip(header, cells[1:], strict=True):
            expected = want.get((cells[0][1], codes[dim]))
            assert text == percent(expected)
            checked += expected is not None
    assert checked == scores["score"].is_not_null().sum() > 0
    labels = svg_texts(page, "departments")
    for s in scores["score"].drop_nulls():
        assert js_number(chart_value(s, "share")) in labels
    assert set(header) <= set(labels)
    history = read(
        lake,
        "SELECT run_date, dept, dimension, score FROM marts.quality_scorecard_history "
        "WHERE dataset = '*'",
    )
    assert history["run_date"].n_unique() == 2
    want = {(d.isoformat(), dept, m): v for d, dept, m, v in history.rows()}
    for dim in header:  # a trend a dimension: dates x departments
        trend = table_cells(page, f"trend-{codes[dim]}")
        assert [r[0][0] for r in trend] == sorted({d.isoformat() for d in history["run_date"]})
        depts = page.locator(f"#table-trend-{codes[dim]} thead th").all_text_contents()[1:]
        code_of = {r[0][0]: r[0][1] for r in rows}  # department label -> code
        for cells in trend:
            for dept, (text, _) in zip(depts, cells[1:], strict=True):
                assert text == percent(want.get((cells[0][0], code_of[dept], codes[dim])))

    # demand: tiles at the grid's centres, one layer a category
    open_board(page, portal, "demand")
    counts = read(
        lake,
        "SELECT grid_code, category, sum(events)::BIGINT AS n FROM marts.demand_heatmap "
        "GROUP BY ALL",
    )
    layout = read(lake, "SELECT grid_code, community_name FROM marts.grid_layout")
    totals = dict(counts.group_by("grid_code").agg(pl.col("n").sum()).rows())
    tiles = page.locator("svg.layer[data-layer='0'] g.tile")
    assert tiles.count() == layout.height > 0
    shown = dict(
        tiles.evaluate_all(
            "gs => gs.map(g => [g.dataset.grid, Number(g.querySelector('text').textContent)])"
        )
    )
    assert shown == {g: totals.get(g, 0) for g in layout["grid_code"]}
    communities = page.locator("svg.layer[data-layer='0'] text.community").all_text_contents()
    assert sorted(communities) == sorted(set(layout["community_name"]))
    rows = table_cells(page, "heatmap")
    assert sum(int(r[-1][1]) for r in rows) == counts["n"].sum()
    category = counts.sort("n", descending=True)["category"][0]
    page.get_by_label("显示的类别").select_option(label=category)
    layer = page.locator(f"svg.layer[data-category='{category}']")
    assert layer.is_visible() and not page.locator("svg.layer[data-layer='0']").is_visible()
    per_cell = dict(counts.filter(pl.col("category") == category).select("grid_code", "n").rows())
    shown = dict(
        layer.locator("g.tile").evaluate_all(
            "gs => gs.map(g => [g.dataset.grid, +g.dataset.count])"
        )
    )
    assert shown == {g: per_cell.get(g, 0) for g in layout["grid_code"]}

    # appeal SLA: per handling department, with a name beginning with a formula
    open_board(page, portal, "sla")
    sla = read(lake, "SELECT * FROM marts.appeal_sla ORDER BY handling_dept")
    rows = table_cells(page, "sla")
    # appeals not yet dispatched have no handling department: their row reads "—"
    assert [r[0][0] for r in rows] == [d or "—" for d in sla["handling_dept"]]
    assert rows[0][0][0].startswith(FORMULA)  # shown as text, never run
    header = page.locator("#table-sla thead th").all_text_contents()
    assert len(header) == sla.width  # every column of the mart, under its label
    share = header.index("按时响应率")
    for cells, r in zip(rows, sla.iter_rows(named=True), strict=True):
        assert int(cells[1][1]) == r["appeals"]
        assert cells[share][0] == percent(r["answered_in_time_share"])
        assert as_float(cells[share][1]) == pytest.approx(r["answered_in_time_share"])
    bars = svg_texts(page, "sla")
    for r in sla.iter_rows(named=True):
        assert js_number(chart_value(r["answered_in_time_share"], "share")) in bars

    with page.expect_download() as info:
        page.get_by_role("link", name="下载此表（CSV）").click()
    body = info.value.path().read_bytes()
    assert body.startswith(BOM.encode("utf-8"))
    lines = body.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("承办单位,诉求数")
    assert lines[1].startswith("'" + FORMULA)  # escaped: a spreadsheet shows it as text
    assert len(lines) == sla.height + 1
    views = [r for r in portal.service.audit.log.records() if r["action"] == "dashboard.view"]
    assert [r["dashboard"] for r in views] == ["governance", "quality", "demand", "sla"]
    [download] = [r for r in portal.service.audit.log.records() if r["action"] == "dashboard.csv"]
    assert (download["dashboard"], download["panel"]) == ("sla", "sla")

    # a requester may not open them
    requester = portal.person("wjw", "requester")
    other = guarded_context(browser, outside)
    try:
        p2 = other.new_page()
        portal.sign_in(p2, requester, "/dashboards/governance")
        assert p2.get_by_role("heading", level=1).inner_text() != "治理记分卡"
        assert "街道领导" in p2.content()
    finally:
        other.close()


@pytest.fixture
def without_history(share_settings):
    """The copy's lake before its first run with history marts and the grid layout."""
    with open_lake(share_settings) as con:
        for mart in ("governance_scorecard_history", "quality_scorecard_history", "grid_layout"):
            con.execute(f"DROP TABLE marts.{mart}")
    return share_settings


def test_a_board_whose_mart_is_not_built_yet_says_so(without_history, service):
    """A hub that has not run since the history marts came: the boards still answer, the
    panels that need them say which mart is missing, the others show their figures."""
    board = governance(service)
    notes = {p.key: p.note for p in board.panels}
    assert notes["current"] is None and board.panels[0].table.rows
    assert "governance_scorecard_history" in notes["trend-share"]
    assert not board.panels[1].table.rows
    heat = demand(service).panels[0]
    assert "grid_layout" in heat.note and heat.tiles is None
    assert heat.table.rows  # the counts, all under cells without a known centre
    assert all(r[1].text == UNLISTED for r in heat.table.rows)
