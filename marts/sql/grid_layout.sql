-- grid_layout (网格布局): each cell of the street's grid with its community and centre point
-- (the grid register has centres, not boundaries). Which dataset of curated.thing is the grid
-- is the catalogue's `sources` (catalog/marts/grid_layout.yaml): the build shows this query
-- only its rows. Read by the portal's demand heat map, which lays the cells out as tiles at
-- their centres grouped by community, and by anyone drawing a map of the street's cells.
SELECT
    t.grid_code,
    json_extract_string(t.attributes, '$.grid_name') AS grid_name,
    t.community_code,
    json_extract_string(t.attributes, '$.community_name') AS community_name,
    t.lon AS center_lon,
    t.lat AS center_lat
FROM curated.thing AS t
WHERE t.grid_code IS NOT NULL
ORDER BY t.community_code, t.grid_code
