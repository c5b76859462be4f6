-- grid_counts (网格周诉求数): 12345 appeals per grid cell × category × week (week_start a
-- Monday), read from marts.demand_heatmap — the one home of how demand is counted per cell and
-- week — for the appeals dataset only; cells no appeal could be placed in (grid_code NULL) are
-- left out. grid.py fills the weeks without an appeal with 0 (a forecast must see them).
-- Read by grid.py (the grid forecast's training counts).
SELECT
    h.grid_code,
    h.category,
    h.week_start,
    CAST(sum(h.events) AS BIGINT) AS appeal_count
FROM marts.demand_heatmap AS h
WHERE h.dept = 'rx' AND h.dataset = 'appeals' AND h.grid_code IS NOT NULL
GROUP BY h.grid_code, h.category, h.week_start
ORDER BY h.grid_code, h.category, h.week_start
