"""The demand heat map (需求热力图): ``marts.demand_heatmap`` summed per grid cell and
category over its weeks, each cell a tile at its centre (``marts.grid_layout``: the grid
register has centres, not boundaries), grouped by community, one SVG layer a category; drawn
by ``templates/dashboards/tiles.html``, with the table of cells × categories beside it."""

from __future__ import annotations

import itertools

import polars as pl

from share_api.portal.dashboards import (
    Board,
    Cell,
    Panel,
    Table,
    missing,
    number,
    read_mart,
)
from share_api.service import Service

TILE_CLASSES = 5  # colour steps of the heat map
TILE_PX = 56  # a tile's pitch in the heat map's SVG
GROUP_GAP_PX = 28  # room between communities (their names above them)
ALL = "全部类别"
NO_GRID = "（未定位到网格）"
UNLISTED = "未登记网格"


# -- the board --------------------------------------------------------------------------


def demand(service: Service) -> Board:
    board = Board(
        "demand",
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
    built = counts is not None and layout is not None
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
            note=None if built else missing("demand_heatmap / grid_layout"),
        )
    )
    return board


# -- the tiles ----------------------------------------------------------------------


def tile_layers(cells: list[dict], events: dict, categories: list[str]) -> dict:
    """The heat map's SVG: each cell a tile at its centre (in grid steps: the smallest gap
    between two centres), each community its own block with its name above it, blocks kept
    in their places on the street and pulled apart by a gap; one layer a category (and one
    for all), each tile coloured by its count in ``TILE_CLASSES`` steps of that layer."""
    lons = sorted({c["center_lon"] for c in cells})
    lats = sorted({c["center_lat"] for c in cells})
    step_x, step_y = least_gap(lons), least_gap(lats)
    col = {c["grid_code"]: round((c["center_lon"] - lons[0]) / step_x) for c in cells}
    row = {c["grid_code"]: round((lats[-1] - c["center_lat"]) / step_y) for c in cells}
    groups: dict[str, list[dict]] = {}
    for c in cells:
        groups.setdefault(c["community_code"], []).append(c)
    # a community's block: where its first column / row is among all blocks' first ones
    first_col = {k: min(col[c["grid_code"]] for c in v) for k, v in groups.items()}
    first_row = {k: min(row[c["grid_code"]] for c in v) for k, v in groups.items()}
    col_rank = {x: i for i, x in enumerate(sorted(set(first_col.values())))}
    row_rank = {y: i for i, y in enumerate(sorted(set(first_row.values())))}
    pitch, gap = TILE_PX, GROUP_GAP_PX
    placed, labels = {}, []
    for k, members in groups.items():
        dx, dy = col_rank[first_col[k]] * gap, (row_rank[first_row[k]] + 1) * gap
        for c in members:
            placed[c["grid_code"]] = (
                col[c["grid_code"]] * pitch + dx,
                row[c["grid_code"]] * pitch + dy,
            )
        labels.append(
            {
                "name": members[0]["community_name"] or k,
                "x": first_col[k] * pitch + dx,
                "y": first_row[k] * pitch + dy - 8,
            }
        )
    width = max(x for x, _ in placed.values()) + pitch
    height = max(y for _, y in placed.values()) + pitch
    layers = []
    for category in [ALL, *categories]:
        count = {
            g: (
                sum(n for (gg, _), n in events.items() if gg == g)
                if category == ALL
                else events.get((g, category), 0)
            )
            for g in placed
        }
        top = max(count.values(), default=0)
        layers.append(
            {
                "category": category,
                "top": top,
                "tiles": [
                    {
                        "code": c["grid_code"],
                        "name": c["grid_name"] or c["grid_code"],
                        "x": placed[c["grid_code"]][0],
                        "y": placed[c["grid_code"]][1],
                        "count": count[c["grid_code"]],
                        "step": tile_class(count[c["grid_code"]], top),
                    }
                    for c in cells
                ],
            }
        )
    return {
        "width": width,
        "height": height,
        "size": pitch - 6,
        "labels": labels,
        "layers": layers,
        "classes": TILE_CLASSES,
    }


def least_gap(values: list[float]) -> float:
    """The smallest gap between two of the sorted distinct ``values`` (1 with one value)."""
    return min((b - a for a, b in itertools.pairwise(values) if b - a > 1e-9), default=1.0)


def tile_class(count: int, top: int) -> int:
    """The colour step (0: none, 1 … TILE_CLASSES) of ``count`` on a layer whose largest is
    ``top``."""
    if count <= 0 or top <= 0:
        return 0
    return max(1, min(TILE_CLASSES, -(-count * TILE_CLASSES // top)))
