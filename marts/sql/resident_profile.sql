-- resident_profile (居民画像): one row per resident pseudonym, the "collect once, reuse many
-- times" record (一次采集、多方复用) — age band, gender, household, housing and the flags the
-- street's services select on (living alone, elderly, disability, low income, chronic
-- disease, old-age allowance, family doctor), each attribute collected once by the
-- department that owns it and read here instead of being asked for again.
-- A resident is a person of the street: a member of a household of the household register,
-- or a person a record of residence places in a house of the street (a residence permit, the
-- register of the elderly living alone; not an event's address). The home is the unit of
-- the house register a record of residence names (the record behind the golden residence
-- address first), else the household's house, else a flat only mentioned (no unit of the
-- register: no community or grid cell). Sensitive attributes leave only as bands or yes/no flags
-- (generalise_age, generalise_flag); ages and flags stand on as_of (the build's date).
-- Read by community workers and the street's service offices selecting whom a service is
-- for (elderly care, subsidies, visits), and by the other marts (elderly_care).
WITH
members AS (
    -- household register: each member once (the largest household if listed twice)
    SELECT
        m.person_id,
        h.household_id,
        h.house_id,
        h.member_count
    FROM curated.household AS h, unnest(h.members) AS u(m)
    WHERE m.person_id IS NOT NULL
    QUALIFY row_number() OVER (
        PARTITION BY m.person_id ORDER BY h.member_count DESC, h.household_id
    ) = 1
),
residence AS (
    -- the house a person's records of residence resolve to: a unit of the house register
    -- before a flat only mentioned, then the record behind the golden residence address,
    -- then the latest; an event's address says where something happened (a 12345 appeal),
    -- not where its person lives
    SELECT
        pm.person_id,
        hm.house_id,
        coalesce(h.in_register, false) AS in_register
    FROM curated.house_mentions AS hm
    JOIN curated.person_mentions AS pm
        ON pm.dept = hm.dept AND pm.dataset = hm.dataset AND pm.key_pid = hm.key_pid
    JOIN curated.house AS h ON h.house_id = hm.house_id
    LEFT JOIN curated.person AS p ON p.person_id = pm.person_id
    WHERE hm.house_id IS NOT NULL
        AND (hm.dept, hm.dataset) NOT IN (SELECT DISTINCT dept, dataset FROM curated.event)
    QUALIFY row_number() OVER (
        PARTITION BY pm.person_id
        ORDER BY
            coalesce(h.in_register, false) DESC,
            coalesce(pm.dept || '.' || pm.dataset = p.residence_address_source, false) DESC,
            hm.linked_at DESC,
            hm.house_id
    ) = 1
),
residents AS (
    SELECT
        p.person_id,
        p.gender,
        p.birth_date,
        p.relation_to_head,
        p.care_level,
        p.disability_category,
        p.minimum_living,
        p.chronic_disease,
        p.old_age_allowance,
        p.family_doctor_package,
        m.household_id,
        m.member_count,
        -- a unit of the register first (the residence's, else the household's)
        coalesce(if(r.in_register, r.house_id, NULL), m.house_id, r.house_id) AS home_id,
        -- the street's day (Beijing), as every mart's run_date: not the session's date
        CAST(getvariable('run_date') AS DATE) AS as_of
    FROM curated.person AS p
    LEFT JOIN members AS m ON m.person_id = p.person_id
    LEFT JOIN residence AS r ON r.person_id = p.person_id
    WHERE m.person_id IS NOT NULL OR r.person_id IS NOT NULL
),
banded AS (
    SELECT
        r.*,
        generalise_age(r.birth_date, r.as_of) AS band,
        CAST(split_part(band, '-', 1) AS INTEGER) AS band_from
    FROM residents AS r
)
SELECT
    b.person_id,
    b.as_of,
    b.gender,
    -- the few oldest top-coded and the teens and twenties (few on a street) in one band,
    -- so that each stays among k others of their community and gender
    CASE
        WHEN b.band_from >= 80 THEN '80+'
        WHEN b.band_from IN (10, 20) THEN '10-29'
        ELSE b.band
    END AS age_band,
    b.band_from >= 60 AS elderly,
    h.community_code,
    h.grid_code,
    b.home_id AS house_id,
    json_extract_string(h.attributes, '$.property_type') AS property_type,
    json_extract_string(h.attributes, '$.occupancy') AS occupancy,
    b.household_id,
    b.member_count AS household_size,
    b.relation_to_head,
    b.member_count = 1 AS living_alone,
    generalise_flag(b.care_level) AS on_elderly_alone_register,
    generalise_flag(b.disability_category) AS disability,
    bool_or(generalise_flag(b.minimum_living)) OVER (
        PARTITION BY coalesce(b.household_id, b.person_id)
    ) AS low_income,
    generalise_flag(b.chronic_disease) AS chronic_disease,
    generalise_flag(b.old_age_allowance) AS old_age_allowance,
    generalise_flag(b.family_doctor_package) AS family_doctor
FROM banded AS b
LEFT JOIN curated.house AS h ON h.house_id = b.home_id
ORDER BY b.person_id
