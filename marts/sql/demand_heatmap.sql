-- demand_heatmap (需求热力图): where and when residents' demands arise — 12345 appeals
-- (rx.appeals), grid events (随手拍, wg.grid_events) and urban-management violation cases
-- (cgj.violation_cases) — counted per grid cell × category × ISO week, one row per source
-- dataset. An event no grid cell could be found for is kept with grid_code NULL, so every
-- event is counted once. Which datasets of curated.event are read is the catalogue's
-- `sources` (catalog/marts/demand_heatmap.yaml): the build shows this query only their rows.
-- Read by the street's command centre (the heat map), community and grid workers planning
-- their rounds, and the departments that own the categories.
WITH demand AS (
    SELECT
        e.dept,
        e.dataset,
        e.grid_code,
        e.category,
        CAST(date_trunc('week', e."at") AS DATE) AS week_start,
        e.closed_at
    FROM curated.event AS e
    WHERE e.granularity = 'record'
      AND e.category IS NOT NULL
      AND e."at" IS NOT NULL
)
SELECT
    week_start,
    strftime(week_start, '%G-W%V') AS iso_week,
    grid_code,
    category,
    dept,
    dataset,
    count(*) AS events,
    count(closed_at) AS closed
FROM demand
GROUP BY week_start, grid_code, category, dept, dataset
ORDER BY week_start, grid_code, category, dept, dataset
