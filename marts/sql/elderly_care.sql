-- elderly_care (独居老人关爱清单): the elderly living alone, one row each, with what a
-- community worker checks on a visit round — health check in the past 12 months, chronic
-- disease and family doctor, subsidies (old-age allowance, minimum living allowance,
-- disability allowance) and door activity (smart door-access records in the past 7 and 3
-- days: a resident living alone not seen at a door for days is visited first).
-- Who is on it: every resident of resident_profile on the civil-affairs register of the
-- elderly living alone (独居老人台账, 65 and older), and every elderly resident (60 or older,
-- 老年人权益保障法) who is the only member of a household of the household register — the
-- register's candidates (on_elderly_alone_register false), found by reusing collected data.
-- The person attributes are resident_profile's (read, not recomputed), so a resident it
-- withholds for k-anonymity (a few, mostly people whose flat is in no register) is not here.
-- Read by community workers and grid workers (visit rounds, 关爱巡访), the civil-affairs
-- office (the register's gaps) and community health stations (health checks due).
WITH
cared AS (
    SELECT *
    FROM marts.resident_profile
    WHERE on_elderly_alone_register OR (elderly AND living_alone)
),
health AS (
    -- a health check on record within the 12 months up to as_of
    SELECT
        p.person_id,
        generalise_flag(
            CASE
                WHEN p.health_check_conclusion_as_of > c.as_of - INTERVAL 12 MONTH
                    THEN p.health_check_conclusion
            END
        ) AS health_checked_12m
    FROM curated.person AS p
    JOIN cared AS c ON c.person_id = p.person_id
),
doors AS (
    -- whereabouts kept as one row per person and day (granularity person_day)
    SELECT
        e.person_id,
        count(DISTINCT CASE WHEN e.day > c.as_of - INTERVAL 7 DAY THEN e.day END) AS door_days_7d,
        count(DISTINCT CASE WHEN e.day > c.as_of - INTERVAL 3 DAY THEN e.day END) AS door_days_3d
    FROM curated.event AS e
    JOIN cared AS c ON c.person_id = e.person_id
    WHERE e.granularity = 'person_day' AND e.day <= c.as_of
    GROUP BY e.person_id
)
SELECT
    c.person_id,
    c.as_of,
    c.community_code,
    c.grid_code,
    c.house_id,
    c.gender,
    c.age_band,
    c.on_elderly_alone_register,
    c.living_alone,
    coalesce(h.health_checked_12m, false) AS health_checked_12m,
    c.chronic_disease,
    c.family_doctor,
    c.old_age_allowance,
    c.low_income,
    c.disability,
    coalesce(d.door_days_7d, 0) AS door_days_7d,
    coalesce(d.door_days_3d, 0) AS door_days_3d
FROM cared AS c
LEFT JOIN health AS h ON h.person_id = c.person_id
LEFT JOIN doors AS d ON d.person_id = c.person_id
ORDER BY c.community_code, c.grid_code, c.person_id
