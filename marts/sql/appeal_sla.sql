-- appeal_sla (12345诉求办理时效): per handling department (承办单位), how fast 12345 appeals
-- are answered and resolved. An appeal is answered in time when it is first answered
-- (dispatched: 派单) within 2 hours of being accepted (受理) if it is an emergency and within
-- 24 hours otherwise; answered_in_time_share = answered in time ÷ all appeals (one not yet
-- answered counts against it). Resolution (办结) time is reported apart and is no part of the
-- share. Appeals: the hotline's work orders (rx.appeals) in curated.event, the one dataset
-- the catalogue's `sources` (catalog/marts/appeal_sla.yaml) lets this query see.
-- Read by the hotline centre and the street's supervision office (督办), and by
-- governance_scorecard for the street's appeal SLA (sum of answered_in_time ÷ sum of appeals).
WITH appeal AS (
    SELECT
        e.handler,
        e.urgency = 'emergency' AS emergency,
        e."at" AS accepted_at,
        e.dispatched_at,
        e.closed_at AS resolved_at,
        e.dispatched_at IS NOT NULL
            AND e.dispatched_at - e."at"
                <= CASE WHEN e.urgency = 'emergency' THEN INTERVAL 2 HOUR ELSE INTERVAL 24 HOUR END
            AS in_time,
        epoch(e.dispatched_at - e."at") / 60.0 AS dispatch_minutes,
        epoch(e.closed_at - e."at") / 3600.0 AS resolve_hours,
        epoch(e.closed_at - e.dispatched_at) / 3600.0 AS dispatch_to_resolve_hours
    FROM curated.event AS e
    WHERE e."at" IS NOT NULL
)
SELECT
    handler AS handling_dept,
    count(*) AS appeals,
    count(*) FILTER (WHERE emergency) AS emergency_appeals,
    count(dispatched_at) AS dispatched,
    count(*) FILTER (WHERE in_time) AS answered_in_time,
    round(count(*) FILTER (WHERE in_time) / count(*), 4) AS answered_in_time_share,
    count(*) FILTER (WHERE emergency AND in_time) AS emergency_answered_in_time,
    round(
        count(*) FILTER (WHERE emergency AND in_time)
            / nullif(count(*) FILTER (WHERE emergency), 0),
        4
    ) AS emergency_answered_in_time_share,
    count(*) FILTER (WHERE NOT emergency AND in_time) AS ordinary_answered_in_time,
    round(
        count(*) FILTER (WHERE NOT emergency AND in_time)
            / nullif(count(*) FILTER (WHERE NOT emergency), 0),
        4
    ) AS ordinary_answered_in_time_share,
    round(median(dispatch_minutes), 1) AS median_dispatch_minutes,
    round(quantile_cont(dispatch_minutes, 0.9), 1) AS p90_dispatch_minutes,
    count(resolved_at) AS resolved,
    round(median(resolve_hours), 2) AS median_resolve_hours,
    round(quantile_cont(resolve_hours, 0.9), 2) AS p90_resolve_hours,
    round(median(dispatch_to_resolve_hours), 2) AS median_dispatch_to_resolve_hours,
    min(accepted_at)::DATE AS first_accepted,
    max(accepted_at)::DATE AS last_accepted
FROM appeal
GROUP BY handler
ORDER BY handler
