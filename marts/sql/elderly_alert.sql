-- elderly_alert (独居老人异常预警名单): the elderly living alone (marts.elderly_care, read, not
-- recomputed) whose smart door-access passes in the recent window fell against their own
-- baseline — the seed's example of spotting a health risk before anyone asks. Per person,
-- the daily passes of the window (default the 30 days up to as_of) against the daily passes
-- of the baseline before it (default 90 days), each rate over the days of its span on which
-- the hub holds anyone's door records (a street whose door data begins inside the baseline,
-- or a feed that stopped for days, raises no false alarm). On the list: a drop of at least
-- elderly_alert_min_drop (default 0.5) where the baseline expects at least
-- elderly_alert_min_expected_passes passes in the window. The window and thresholds are
-- settings (catalog/settings.py), read here as getvariable(...) — set by the build.
-- Read by community workers (their own community's worklist, share_api/worklist.py: reveal
-- and visit outcomes) and the civil-affairs office. Advice to a worker, never a decision.
WITH
params AS (
    SELECT
        CAST(getvariable('elderly_alert_window_days') AS INTEGER) AS window_days,
        CAST(getvariable('elderly_alert_baseline_days') AS INTEGER) AS baseline_days,
        CAST(getvariable('elderly_alert_min_drop') AS DOUBLE) AS min_drop,
        CAST(getvariable('elderly_alert_min_expected_passes') AS DOUBLE) AS min_expected
),
spans AS (
    -- the window (recent_from, as_of] and the baseline (baseline_from, recent_from]
    SELECT
        d.as_of,
        d.as_of - p.window_days AS recent_from,
        d.as_of - p.window_days - p.baseline_days AS baseline_from
    FROM (
        -- elderly_care's date, or a past date a backtest asks for (marts.alert_quality)
        SELECT coalesce(CAST(getvariable('elderly_alert_as_of') AS DATE), max(c.as_of)) AS as_of
        FROM marts.elderly_care AS c
    ) AS d
    CROSS JOIN params AS p
),
covered AS (
    -- days of each span with anyone's door records in the hub
    SELECT
        count(DISTINCT CASE WHEN e.day > s.recent_from THEN e.day END) AS recent_days,
        count(DISTINCT CASE WHEN e.day <= s.recent_from THEN e.day END) AS baseline_days
    FROM curated.event AS e
    CROSS JOIN spans AS s
    WHERE e.granularity = 'person_day' AND e.day > s.baseline_from AND e.day <= s.as_of
),
door AS (
    -- each person's passes in the window (in_window) and in the baseline
    SELECT e.person_id, e.day > s.recent_from AS in_window, sum(e.occurrences) AS passes
    FROM curated.event AS e
    CROSS JOIN spans AS s
    WHERE e.granularity = 'person_day' AND e.day > s.baseline_from AND e.day <= s.as_of
    GROUP BY e.person_id, in_window
),
rates AS (
    SELECT
        c.person_id,
        s.as_of,
        c.community_code,
        c.grid_code,
        c.gender,
        c.age_band,
        p.window_days,
        p.min_drop,
        p.min_expected,
        CAST(coalesce(r.passes, 0) AS BIGINT) AS recent_passes,
        b.passes * v.recent_days / v.baseline_days AS expected_passes,
        1 - (coalesce(r.passes, 0) / v.recent_days) / (b.passes / v.baseline_days) AS dropped
    FROM marts.elderly_care AS c
    JOIN door AS b ON b.person_id = c.person_id AND NOT b.in_window
    LEFT JOIN door AS r ON r.person_id = c.person_id AND r.in_window
    CROSS JOIN covered AS v
    CROSS JOIN params AS p
    CROSS JOIN spans AS s
    WHERE v.recent_days > 0 AND v.baseline_days >= p.window_days AND b.passes > 0
)
SELECT
    t.person_id,
    t.as_of,
    t.community_code,
    t.grid_code,
    t.gender,
    t.age_band,
    t.recent_passes,
    CAST(round(t.expected_passes, 1) AS DOUBLE) AS expected_passes,
    CAST(round(100 * t.dropped) AS INTEGER) AS drop_pct,
    '近' || t.window_days || '天门禁出入次数下降' || CAST(round(100 * t.dropped) AS INTEGER)
    || '%；独居' AS explanation
FROM rates AS t
WHERE t.dropped >= t.min_drop AND t.expected_passes >= t.min_expected
ORDER BY t.community_code, t.grid_code, t.dropped DESC, t.person_id
