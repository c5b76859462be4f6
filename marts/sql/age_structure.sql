-- age_structure (人口年龄结构): the household register's residents per ten-year age band and
-- gender on the build's date (the street's day, run_date) — the smallest mart that reads a sensitive value (birth dates
-- leave only as age bands, generalise_age). Read by the street's community offices planning
-- services by age, and by the marts' own tests (tests/marts/).
WITH residents AS (
    SELECT DISTINCT u.m.person_id
    FROM curated.household AS h, unnest(h.members) AS u(m)
)
SELECT
    generalise_age(p.birth_date, CAST(getvariable('run_date') AS DATE)) AS age_band,
    p.gender,
    count(*) AS residents
FROM residents AS r
JOIN curated.person AS p ON p.person_id = r.person_id
GROUP BY ALL
ORDER BY ALL
