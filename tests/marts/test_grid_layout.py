"""marts.grid_layout: every staged cell of the simulator's grid with its community and centre, and
the demand heat map's cells are the grid's (the heat map's tiles)."""

from __future__ import annotations

import pytest


def test_every_grid_cell_with_its_community_and_centre(mart_street) -> None:
    layout = mart_street.table("grid_layout")
    truth = mart_street.truth("wg", "grid_cells")
    # a dirty cell the row gate quarantined is no cell of the hub's grid
    assert truth.height * 0.9 <= layout.height == layout["grid_code"].n_unique() <= truth.height
    assert layout.null_count().sum_horizontal()[0] == 0
    by_truth = {t["网格编码"]: t for t in truth.iter_rows(named=True)}
    for row in layout.iter_rows(named=True):
        t = by_truth[row["grid_code"]]
        assert row["community_code"] == t["社区代码"]
        assert row["community_name"] == t["社区名称"]
        assert row["center_lon"] == pytest.approx(float(t["中心经度"]), abs=1e-6)
        assert row["center_lat"] == pytest.approx(float(t["中心纬度"]), abs=1e-6)


def test_the_heat_maps_cells_missing_from_the_layout_are_quarantined_cells(mart_street) -> None:
    """Events may name a cell whose register row the gate quarantined: the heat map shows
    those apart (no centre known), never a cell the grid does not have."""
    cells = set(mart_street.table("demand_heatmap")["grid_code"].drop_nulls())
    layout = set(mart_street.table("grid_layout")["grid_code"])
    grid = set(mart_street.truth("wg", "grid_cells")["网格编码"])
    assert cells & layout
    assert cells - layout <= grid - layout
