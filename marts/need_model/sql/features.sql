-- features (需求预测特征): one row per resident as of a cut-off date — what the hub had
-- recorded about them by then, for the need model (marts/need_model/, issue 16).
-- Parameters: $cutoff (DATE: the day the features are as of) and $known_by (TIMESTAMPTZ: the
-- end of that day). Relation `attributes` (features.py registers it): the golden attributes
-- as they stood on $cutoff (curated.golden.person_as_of), the birth date decrypted; table
-- `first_loads` (features.py, once for a step's cut-offs): per staged dataset, when its first
-- delivery finished loading (sql/macros.sql's first_load).
-- Nothing after the cut-off: every record is dated on or before $cutoff (its event, check,
-- approval, payment, signing or update date) AND was known to the hub by then — staged records
-- through known_records(dept, dataset, $known_by) (sql/macros.sql: loaded by $known_by, or in
-- the dataset's first delivery, the backfill), attribute runs by their known_at the same way.
-- Kept known gaps: the home (community, grid cell, housing, floor) is the present one from
-- marts.resident_profile and the house register, which keeps no history; a disability
-- allowance recipient is one on a roster the hub knew by the cut-off, its first (backfilled)
-- roster included — the monthly roster carries no start date, and a certified disability
-- seldom begins within a model's months (the golden attribute's valid-from is the roster's
-- load day, after every training cut-off: read that way no cut-off but the newest saw one).
-- Read by features.py (the feature table, curated.need_features), which orders its rows (no
-- ORDER BY here: DuckDB's sort held every result row beside the joins), and the leakage test.
WITH
attr AS (
    SELECT a.person_id, a.concept, a.value
    FROM attributes AS a
    LEFT JOIN first_loads AS fl
        ON fl.source_dept = a.source_dept AND fl.source_dataset = a.source_dataset
    WHERE a.valid_from <= $cutoff AND a.known_at <= greatest($known_by, fl.loaded_until)
),
residents AS (
    -- the street's residents then: a household registration or a residence permit
    SELECT
        person_id,
        bool_or(concept = 'person.registered_address') AS registered,
        max(CASE WHEN concept = 'person.gender' THEN value END) AS gender,
        max(CASE WHEN concept = 'person.birth_date' THEN try_cast(value AS DATE) END) AS birth_date,
        bool_or(concept = 'person.chronic_disease') AS chronic_attr,
        bool_or(concept = 'person.employment_status' AND value = '失业登记') AS unemployed
    FROM attr
    GROUP BY person_id
    HAVING bool_or(concept IN ('person.registered_address', 'person.residence_address'))
),
aged AS (
    SELECT
        r.*,
        CAST(date_part('year', age(CAST($cutoff AS TIMESTAMP), CAST(r.birth_date AS TIMESTAMP))) AS INTEGER)
            AS age
    FROM residents AS r
),
registered AS (
    -- household register rows dated (updated) by the cut-off
    SELECT s.person_id, s.household_id
    FROM known_records('gaj', 'registered_residents', $known_by) AS s
    WHERE CAST(s.updated_at AS DATE) <= $cutoff
        AND s.household_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY s.person_id ORDER BY s.updated_at DESC) = 1
),
households AS (
    SELECT person_id, household_id, count(*) OVER (PARTITION BY household_id) AS household_size
    FROM registered
),
alone_register AS (
    SELECT DISTINCT s.person_id
    FROM known_records('mzj', 'elderly_alone', $known_by) AS s
    WHERE s.registered_on <= $cutoff
),
checks AS (
    -- elderly health checks (老年人健康体检), by their check date
    SELECT
        s.person_id,
        max(s.check_date) AS last_check,
        count(*) FILTER (WHERE s.check_date > $cutoff - INTERVAL 365 DAY) AS checks_12m,
        count(*) FILTER (
            WHERE s.check_date <= $cutoff - INTERVAL 365 DAY
                AND s.check_date > $cutoff - INTERVAL 730 DAY
        ) AS checks_prev_12m
    FROM known_records('wjw', 'elderly_health_checks', $known_by) AS s
    WHERE s.check_date <= $cutoff
    GROUP BY s.person_id
),
followups AS (
    -- chronic disease follow-ups (慢病随访): the last one and when the next was due
    SELECT
        s.person_id,
        count(*) FILTER (WHERE s.followup_date > $cutoff - INTERVAL 365 DAY) AS followups_12m,
        arg_max(s.next_followup_date, s.followup_date) AS next_due
    FROM known_records('wjw', 'chronic_followups', $known_by) AS s
    WHERE s.followup_date <= $cutoff
    GROUP BY s.person_id
),
doctors AS (
    SELECT DISTINCT s.person_id
    FROM known_records('wjw', 'family_doctor_contracts', $known_by) AS s
    WHERE s.signed_on <= $cutoff
        AND (s.expires_on IS NULL OR s.expires_on > $cutoff)
),
allowance AS (
    -- old-age allowance (高龄津贴) paid for a month starting in the 3 months up to the cut-off
    SELECT DISTINCT s.person_id
    FROM known_records('mzj', 'old_age_allowance', $known_by) AS s
    WHERE CAST(try_strptime(s.pay_month || '-01', '%Y-%m-%d') AS DATE)
            BETWEEN $cutoff - INTERVAL 92 DAY AND $cutoff
),
disability AS (
    -- disability allowance recipients (残疾人两项补贴): see the known gaps above
    SELECT DISTINCT s.person_id
    FROM known_records('mzj', 'disability_allowance', $known_by) AS s
),
minimum_living AS (
    -- minimum living allowance (低保) approved by the cut-off: the head's whole household
    SELECT DISTINCT coalesce(hh.person_id, s.person_id) AS person_id
    FROM known_records('mzj', 'minimum_living', $known_by) AS s
    LEFT JOIN households AS head ON head.person_id = s.person_id
    LEFT JOIN households AS hh ON hh.household_id = head.household_id
    WHERE s.approved_on <= $cutoff
),
door_days AS (
    -- door-access activity (门禁), kept per person and day, up to the cut-off
    SELECT e.person_id, e.day, e.occurrences
    FROM curated.event AS e
    WHERE e.dept = 'iot' AND e.dataset = 'door_access_events'
        AND e.granularity = 'person_day'
        AND e.day <= $cutoff
),
baseline AS (
    -- the days of the 180 before the last 30 that door records cover (the records begin on
    -- their first day): a rate over fewer than 30 of them is no baseline
    SELECT
        CAST(least(180, greatest(0, date_diff(
            'day', greatest(min(day) - INTERVAL 1 DAY, $cutoff - INTERVAL 210 DAY),
            $cutoff - INTERVAL 30 DAY
        ))) AS INTEGER) AS days
    FROM door_days
),
doors AS (
    -- the last 30 days against the person's own daily rate over the baseline days
    SELECT
        e.person_id,
        sum(e.occurrences) FILTER (WHERE e.day > $cutoff - INTERVAL 30 DAY) AS events_30d,
        sum(e.occurrences) FILTER (WHERE e.day <= $cutoff - INTERVAL 30 DAY) AS events_prev_180d
    FROM door_days AS e
    WHERE e.day > $cutoff - INTERVAL 210 DAY
    GROUP BY e.person_id
),
declines AS (
    -- the decline (%) of the last 30 days' passes against the person's own baseline rate
    SELECT
        d.person_id,
        coalesce(d.events_30d, 0) AS events_30d,
        d.events_prev_180d,
        100 * (1 - (coalesce(d.events_30d, 0) / 30.0) / (d.events_prev_180d / bl.days)) AS pct
    FROM doors AS d
    CROSS JOIN baseline AS bl
    WHERE bl.days >= 30 AND d.events_prev_180d > 0 AND d.person_id IS NOT NULL
),
street_decline AS (
    -- the same decline of the street's passes together (the residents with a baseline): the
    -- season (winter passes ~10 % fewer) and the street's own changes, which a person's
    -- decline less the street's cancels
    SELECT 100 * (1 - (sum(events_30d) / 30.0) / (sum(events_prev_180d) / any_value(bl.days))) AS pct
    FROM declines
    CROSS JOIN baseline AS bl
),
past_needs AS (
    -- the needs recorded in the year up to the cut-off (need_outcomes, sql/macros.sql): days
    -- since the latest of each — a person's own propensity shows again (frailty, a hardship
    -- under way), which the registers' flags alone do not carry
    SELECT
        o.person_id,
        date_diff('day', max(o.day) FILTER (WHERE o.need = 'home_care'), CAST($cutoff AS DATE))
            AS home_care,
        date_diff('day', max(o.day) FILTER (WHERE o.need = 'health_event'), CAST($cutoff AS DATE))
            AS health_event,
        date_diff('day', max(o.day) FILTER (WHERE o.need = 'financial_assistance'), CAST($cutoff AS DATE))
            AS financial_assistance,
        date_diff('day', max(o.day) FILTER (WHERE o.need = 'emergency_help'), CAST($cutoff AS DATE))
            AS emergency_help
    FROM need_outcomes($known_by) AS o
    WHERE o.day <= $cutoff AND o.day > $cutoff - INTERVAL 365 DAY
    GROUP BY o.person_id
),
appeals AS (
    -- 12345 appeals the resident made
    SELECT
        e.person_id,
        count(*) FILTER (WHERE CAST(e."at" AS DATE) > $cutoff - INTERVAL 90 DAY) AS appeals_90d,
        count(*) AS appeals_365d
    FROM curated.event AS e
    WHERE e.dept = 'rx' AND e.dataset = 'appeals'
        AND e.granularity = 'record'
        AND CAST(e."at" AS DATE) <= $cutoff
        AND CAST(e."at" AS DATE) > $cutoff - INTERVAL 365 DAY
    GROUP BY e.person_id
),
placed AS (
    -- the residents with their appeals and their home (marts.resident_profile), and the
    -- 90 days' appeals per adult of their grid cell: a window over these few columns, not
    -- over the result's (at 200,000 residents that window held every result row, ~100 MB,
    -- beside the joins' hash tables: the need model's peak)
    SELECT
        a.*,
        ap.appeals_90d,
        ap.appeals_365d,
        rp.property_type,
        rp.occupancy,
        rp.community_code,
        rp.grid_code,
        rp.house_id,
        avg(CASE WHEN a.age >= 18 THEN coalesce(ap.appeals_90d, 0) END)
            OVER (PARTITION BY rp.grid_code) AS grid_appeals_90d
    FROM aged AS a
    LEFT JOIN appeals AS ap ON ap.person_id = a.person_id
    LEFT JOIN marts.resident_profile AS rp ON rp.person_id = a.person_id
)
SELECT
    a.person_id,
    CAST($cutoff AS DATE) AS cutoff,
    a.age,
    coalesce(h.household_size = 1, false) OR ar.person_id IS NOT NULL AS living_alone,
    h.household_size,
    ar.person_id IS NOT NULL AS on_elderly_alone_register,
    a.chronic_attr OR f.person_id IS NOT NULL AS chronic_disease,
    coalesce(f.followups_12m, 0) AS chronic_followups_12m,
    CASE WHEN f.next_due < $cutoff THEN date_diff('day', f.next_due, CAST($cutoff AS DATE)) ELSE 0 END
        AS followup_overdue_days,
    date_diff('day', c.last_check, CAST($cutoff AS DATE)) AS days_since_health_check,
    CASE
        WHEN a.age >= 65 THEN
            CAST(coalesce(c.checks_12m, 0) = 0 AS INTEGER)
            + CAST(a.age >= 66 AND coalesce(c.checks_prev_12m, 0) = 0 AS INTEGER)
        ELSE 0
    END AS health_checks_missed,
    dr.person_id IS NOT NULL AS family_doctor,
    al.person_id IS NOT NULL AS old_age_allowance,
    ml.person_id IS NOT NULL AS minimum_living,
    ds.person_id IS NOT NULL AS disability_allowance,
    coalesce(a.unemployed, false) AS unemployed,
    coalesce(d.events_30d, 0) AS door_events_30d,
    CASE WHEN bl.days >= 30 THEN coalesce(d.events_prev_180d, 0) / bl.days END
        AS door_baseline_per_day,
    round(dc.pct, 1) AS door_decline_pct,
    round(dc.pct - sd.pct, 1) AS door_decline_vs_street,
    coalesce(a.appeals_90d, 0) AS appeals_90d,
    coalesce(a.appeals_365d, 0) AS appeals_365d,
    -- against the adults of the person's grid cell (%): a cell's appeal rate is its own (its
    -- size, its taste for each category), a person calling more than the cell's adults is
    -- what the cell's rate does not explain (frailty, a hardship or decline under way)
    round(100 * coalesce(a.appeals_90d, 0) / nullif(a.grid_appeals_90d, 0), 1)
        AS appeals_90d_vs_grid,
    pn.home_care AS days_since_home_care,
    pn.health_event AS days_since_health_event,
    pn.financial_assistance AS days_since_financial_assistance,
    pn.emergency_help AS days_since_emergency_help,
    a.property_type,
    a.occupancy,
    TRY_CAST(json_extract_string(ho.attributes, '$.floor') AS INTEGER) AS floor,
    -- a flat on the 4th floor or higher of a building of at most 6 (no lift required)
    coalesce(
        b.floors <= 6 AND TRY_CAST(json_extract_string(ho.attributes, '$.floor') AS INTEGER) >= 4,
        false
    ) AS walkup,
    a.community_code,
    a.grid_code,
    a.gender,
    CASE
        WHEN a.age IS NULL THEN NULL
        WHEN a.age < 60 THEN '0-59'
        WHEN a.age < 70 THEN '60-69'
        WHEN a.age < 80 THEN '70-79'
        ELSE '80+'
    END AS age_band,
    CASE WHEN a.registered THEN 'registered' ELSE 'migrant' END AS resident_type
FROM placed AS a
LEFT JOIN households AS h ON h.person_id = a.person_id
LEFT JOIN alone_register AS ar ON ar.person_id = a.person_id
LEFT JOIN checks AS c ON c.person_id = a.person_id
LEFT JOIN followups AS f ON f.person_id = a.person_id
LEFT JOIN doctors AS dr ON dr.person_id = a.person_id
LEFT JOIN allowance AS al ON al.person_id = a.person_id
LEFT JOIN disability AS ds ON ds.person_id = a.person_id
LEFT JOIN minimum_living AS ml ON ml.person_id = a.person_id
LEFT JOIN doors AS d ON d.person_id = a.person_id
CROSS JOIN baseline AS bl
LEFT JOIN declines AS dc ON dc.person_id = a.person_id
CROSS JOIN street_decline AS sd
LEFT JOIN past_needs AS pn ON pn.person_id = a.person_id
LEFT JOIN curated.house AS ho ON ho.house_id = a.house_id
LEFT JOIN staged.zjj__buildings AS b ON b.building_id = ho.building_id
