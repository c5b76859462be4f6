-- 数据共享指标 sharing metrics: one row per catalogued resource (a department's dataset or a
-- mart) with its share type and the consumers the catalogue plans for it; a dataset's are the
-- consumers of the marts that read it (collect once, reuse many times). Read by the data
-- office and by the governance scorecard (sharing rate). The share service's request figures
-- (requests, time from request to data) join it when that service records requests.
WITH reads AS (
    SELECT DISTINCT
        s.source_dept || '.' || s.source_dataset AS resource,
        s.mart
    FROM marts.catalogue_mart_sources AS s
    WHERE s.source_dataset IS NOT NULL
),
mart_consumers AS (
    SELECT
        r.resource AS mart_resource,
        unnest(r.consumers) AS consumer
    FROM marts.catalogue_resources AS r
    WHERE r.kind = 'mart'
),
planned AS (
    SELECT reads.resource, mc.consumer
    FROM reads
    JOIN mart_consumers AS mc ON mc.mart_resource = 'marts.' || reads.mart
    UNION
    SELECT mc.mart_resource AS resource, mc.consumer
    FROM mart_consumers AS mc
)
SELECT
    r.kind,
    r.resource,
    r.provider,
    r.name_zh,
    r.level,
    r.share_type,
    r.share_type IN ('unconditional', 'conditional') AS shareable,
    r.update_cycle,
    count(DISTINCT reads.mart) AS marts_reading,
    count(DISTINCT planned.consumer) AS planned_consumers,
    coalesce(string_agg(DISTINCT planned.consumer, ',' ORDER BY planned.consumer), '') AS consumers
FROM marts.catalogue_resources AS r
LEFT JOIN reads ON reads.resource = r.resource
LEFT JOIN planned ON planned.resource = r.resource
GROUP BY r.kind, r.resource, r.provider, r.name_zh, r.level, r.share_type, r.update_cycle
ORDER BY r.kind, r.resource
