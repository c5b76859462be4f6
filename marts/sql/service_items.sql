-- service_items (政务服务事项办理情况): per government-service item (事项), how long handling
-- takes and how often applicants had to come in person. Handling time runs from receipt
-- (受理) to finishing (办结) for the applications finished (a refusal, 不予受理, is counted
-- apart); finished in time = finished within the promised limit (承诺时限) in working days,
-- Monday to Friday after the day of receipt (public holidays are not known here); visits
-- (跑动次数) count every application: 0 = wholly online (全程网办), at most one = the
-- "最多跑一次" goal. Service records: the centre's handling records (rx.service_records) in
-- curated.event, the one dataset the catalogue's `sources` (catalog/marts/service_items.yaml)
-- lets this query see.
-- Read by the street's government-service centre (便民服务中心) and the departments that
-- handle the items, to find the items that keep residents waiting or coming back.
WITH application AS (
    SELECT
        e.item_code,
        e.category AS item_name,
        e.handler AS handling_dept,
        e.time_limit_days,
        e.person_id,
        e.visits,
        e.status = '不予受理' AS refused,
        e.closed_at IS NOT NULL AND e.status IS DISTINCT FROM '不予受理' AS finished,
        epoch(e.closed_at - e."at") / 86400.0 AS handling_days,
        -- working days (Mon–Fri) after the day of receipt up to the day of finishing: weekdays
        -- counted from a Monday (1970-01-05) to the day after each date
        (5 * (date_diff('day', DATE '1970-01-05', CAST(e.closed_at AS DATE) + 1) // 7)
            + least(date_diff('day', DATE '1970-01-05', CAST(e.closed_at AS DATE) + 1) % 7, 5))
        - (5 * (date_diff('day', DATE '1970-01-05', CAST(e."at" AS DATE) + 1) // 7)
            + least(date_diff('day', DATE '1970-01-05', CAST(e."at" AS DATE) + 1) % 7, 5))
            AS working_days
    FROM curated.event AS e
)
SELECT
    item_code,
    item_name,
    handling_dept,
    time_limit_days,
    count(*) AS applications,
    count(DISTINCT person_id) AS applicants,
    count(*) FILTER (WHERE finished) AS finished,
    count(*) FILTER (WHERE refused) AS refused,
    count(*) FILTER (WHERE NOT finished AND NOT refused) AS in_progress,
    round(median(handling_days) FILTER (WHERE finished), 2) AS median_handling_days,
    round(quantile_cont(handling_days, 0.9) FILTER (WHERE finished), 2) AS p90_handling_days,
    count(*) FILTER (WHERE finished AND working_days <= time_limit_days) AS finished_in_time,
    round(
        count(*) FILTER (WHERE finished AND working_days <= time_limit_days)
            / nullif(count(*) FILTER (WHERE finished), 0),
        4
    ) AS finished_in_time_share,
    round(avg(visits), 2) AS mean_visits,
    count(*) FILTER (WHERE visits = 0) AS zero_visits,
    count(*) FILTER (WHERE visits <= 1) AS at_most_one_visit,
    round(count(*) FILTER (WHERE visits <= 1) / count(*), 4) AS at_most_one_visit_share,
    max(visits) AS max_visits
FROM application
GROUP BY item_code, item_name, handling_dept, time_limit_days
ORDER BY item_code, item_name, handling_dept, time_limit_days
