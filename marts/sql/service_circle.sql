-- service_circle (15分钟便民生活服务圈): what a resident finds within a short walk, counted per
-- grid cell × kind × category — merchants of the market register that are in business, and
-- the service-circle points (便民网点: shops, canteens, elderly-care stations, health
-- stations …), each with how many of them are registered merchants, are open round the clock,
-- and how long the walk to them is. Every cell of the grid is listed with every category of
-- its kind found on the street, so a cell with no place of a category shows 0 (a gap).
-- Which things count: those of a dataset whose things refer to a keyed register (the merchant
-- register itself, and the points that name a merchant by its credit code) — not hazard
-- points, devices or the grid cells themselves. A merchant is a thing that is its register's
-- own entity; a closed one (注销, 吊销) is left out.
-- Read by the street's planning office and community committees (where to add a canteen or
-- a vegetable market), the market-regulation office, and resident-facing service maps.
WITH
service_sets AS (
    SELECT DISTINCT dept, dataset
    FROM curated.thing
    WHERE entity_id IS NOT NULL
),
places AS (
    SELECT
        t.grid_code,
        CASE WHEN t.thing_id = t.entity_id THEN 'merchant' ELSE 'service_point' END AS kind,
        json_extract_string(t.attributes, '$.category') AS category,
        json_extract_string(t.attributes, '$.status') AS status,
        t.entity_id IS NOT NULL AS registered,
        json_extract_string(t.attributes, '$.open_hours') = '00:00-24:00' AS round_the_clock,
        try_cast(json_extract_string(t.attributes, '$.walk_minutes') AS INTEGER) AS walk_minutes
    FROM curated.thing AS t
    JOIN service_sets AS s ON s.dept = t.dept AND s.dataset = t.dataset
),
open_places AS (
    SELECT *
    FROM places
    WHERE category IS NOT NULL AND coalesce(status, '存续') = '存续'
),
cells AS (
    SELECT grid_code, mode(community_code) AS community_code
    FROM curated.thing
    WHERE grid_code IS NOT NULL
    GROUP BY grid_code
),
kinds AS (
    SELECT DISTINCT kind, category FROM open_places
)
SELECT
    c.grid_code,
    c.community_code,
    k.kind,
    k.category,
    count(p.kind) AS places,
    count(p.kind) FILTER (WHERE p.registered) AS registered_merchants,
    count(p.kind) FILTER (WHERE p.round_the_clock) AS round_the_clock,
    min(p.walk_minutes) AS walk_minutes_min,
    round(avg(p.walk_minutes), 1) AS walk_minutes_avg,
    count(p.kind) FILTER (WHERE p.walk_minutes <= 15) AS within_15_minutes
FROM cells AS c
CROSS JOIN kinds AS k
LEFT JOIN open_places AS p
    ON p.grid_code = c.grid_code AND p.kind = k.kind AND p.category = k.category
GROUP BY c.grid_code, c.community_code, k.kind, k.category
ORDER BY c.grid_code, k.kind, k.category
