-- 街道数据治理记分卡 the street's governance scorecard: the seed's headline figures computed
-- from the records they measure (formulas: marts/README.md "Figures"); the sharing figures
-- from the share service's own records through marts.sharing_metrics. Read by the street's
-- leadership and the data office; printed at the end of `make run`.
WITH sharing AS (  -- department datasets: shareable ones shared with another department
    SELECT
        count(*) FILTER (WHERE s.shareable AND s.shared) AS shared,
        count(*) FILTER (WHERE s.shareable) AS shareable
    FROM marts.sharing_metrics AS s
    WHERE s.kind = 'dataset'
),
requests AS (  -- data requests → first byte, per requesting department and month
    SELECT
        sum(s.median_hours_to_first_byte * s.first_bytes_measured)
            / nullif(sum(s.first_bytes_measured), 0) AS hours,
        coalesce(sum(s.first_bytes_measured), 0) AS measured
    FROM marts.sharing_metrics AS s
    WHERE s.kind = 'department_month' AND s.first_bytes_measured > 0
),
delivered AS (  -- the newest account of each delivery
    SELECT delivery_id, rows_read
    FROM landing.delivery_accounts
    QUALIFY row_number() OVER (PARTITION BY delivery_id ORDER BY accounted_at DESC) = 1
),
gated AS (  -- the newest row-gate account of each delivery
    SELECT delivery_id, rows_out, rows_skipped, accounted_at
    FROM landing.stage_accounts
    WHERE stage = 'staged'
    QUALIFY row_number() OVER (PARTITION BY delivery_id ORDER BY accounted_at DESC) = 1
),
quality AS (
    SELECT
        (SELECT coalesce(sum(rows_out + coalesce(rows_skipped, 0)), 0) FROM gated) AS passing,
        (SELECT coalesce(sum(rows_read), 0) FROM delivered) AS delivered
),
deid AS (
    SELECT
        coalesce(sum(carrying_rule), 0) AS carrying,
        coalesce(sum(sensitive_values), 0) AS sensitive
    FROM marts.deidentification
),
appeals AS (
    SELECT
        coalesce(sum(answered_in_time), 0) AS in_time,
        coalesce(sum(appeals), 0) AS appeals,
        sum(median_resolve_hours * resolved) / nullif(sum(resolved), 0) AS resolve_hours
    FROM marts.appeal_sla
),
retrieval AS (  -- a delivery's arrival → its rows shareable in the hub (through the row gate)
    SELECT
        median(epoch(g.accounted_at - d.arrived_at) / 3600.0) AS hours,
        count(*) AS deliveries
    FROM gated AS g
    JOIN landing.deliveries AS d ON d.delivery_id = g.delivery_id
),
figures AS (
    SELECT 1 AS ord, 'sharing_rate' AS figure, '数据共享率' AS name_zh,
        shared / nullif(shareable, 0) AS value, shared::DOUBLE AS numerator,
        shareable::DOUBLE AS denominator, 0.90::DOUBLE AS goal, 'share' AS unit,
        'shareable department datasets (unconditional or conditional) granted to at least one other department by the share service / all shareable department datasets' AS basis
    FROM sharing
    UNION ALL
    SELECT 2, 'quality_compliance', '数据质量合格率',
        passing / nullif(delivered, 0), passing::DOUBLE, delivered::DOUBLE, 0.98::DOUBLE, 'share',
        'rows passing the row gate (staged or exact copies skipped) / rows delivered'
    FROM quality
    UNION ALL
    SELECT 3, 'deidentification_rate', '去标识化率',
        carrying / nullif(sensitive, 0), carrying::DOUBLE, sensitive::DOUBLE, 1.0::DOUBLE, 'share',
        'L3/L4 values in published marts carrying their masking rule / all such values'
    FROM deid
    UNION ALL
    SELECT 4, 'appeal_sla', '诉求按时响应率',
        in_time / nullif(appeals, 0), in_time::DOUBLE, appeals::DOUBLE, 1.0::DOUBLE, 'share',
        'appeals first answered within 2 h (emergency) or 24 h (other) / all appeals'
    FROM appeals
    UNION ALL
    SELECT 5, 'appeal_resolution_hours', '诉求办结时长', resolve_hours, NULL, NULL, NULL::DOUBLE,
        'hours', 'resolved appeals: mean of the departments'' median accept → resolve hours, weighted by resolved appeals'
    FROM appeals
    UNION ALL
    SELECT 6, 'cross_department_retrieval_hours', '跨部门数据获取时长', hours, NULL,
        measured::DOUBLE, 2.0::DOUBLE, 'hours',
        'data requests to the share service: hours from submission to the first byte read under the grant that answered it; the requesting departments'' monthly medians (marts.sharing_metrics), averaged weighted by requests measured'
    FROM requests
    UNION ALL
    SELECT 7, 'delivery_to_shareable_hours', '数据入湖可共享时长', hours, NULL,
        deliveries::DOUBLE, NULL::DOUBLE, 'hours',
        'median hours from a delivery''s arrival to its rows being shareable in the hub (row gate passed)'
    FROM retrieval
)
SELECT
    figure,
    name_zh,
    value,
    numerator,
    denominator,
    goal,
    CASE
        WHEN value IS NULL OR goal IS NULL THEN NULL
        WHEN unit = 'hours' THEN value <= goal
        ELSE value >= goal
    END AS meets_goal,
    unit,
    basis
FROM figures
ORDER BY ord
