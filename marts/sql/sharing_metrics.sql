-- 数据共享指标 sharing metrics, from the catalogue and the share service's own records
-- (pipelines/share_records.py copies them into landing.share_*). Read by the data office and
-- by the governance scorecard (sharing rate, time from request to data). Two kinds of rows:
-- - one per catalogued resource (kind dataset or mart): its share type, the consumers the
--   catalogue plans (a dataset's are the consumers of the marts that read it: collect once,
--   reuse many times), and what the service recorded for it: requests, grants, the other
--   departments granted it (shared: at least one), reads, time to first byte, corrections,
--   ratings;
-- - one per requesting department and Beijing month (kind department_month): its data
--   requests and the time from each request to the first byte read under its grant.
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
),
catalogued AS (
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
),
departments AS (  -- the catalogue's departments (a grantee that is one counts as sharing)
    SELECT DISTINCT r.provider AS dept
    FROM marts.catalogue_resources AS r
    WHERE r.kind = 'dataset'
),
data_requests AS (
    SELECT q.request_id, q.requester_org, q.resource, q.path, q.submitted_at, q.submitted_month
    FROM landing.share_requests AS q
    WHERE q.kind = 'data'
),
first_bytes AS (  -- each grant's first read
    SELECT g.grant_id, g.request_id, g.resource, min(x.read_at) AS first_read_at
    FROM landing.share_grants AS g
    JOIN landing.share_reads AS x ON x.grant_id = g.grant_id
    GROUP BY g.grant_id, g.request_id, g.resource
),
waits AS (  -- a data request → the first byte read under the grant that answered it
    SELECT
        q.request_id,
        q.requester_org,
        q.resource,
        q.path,
        q.submitted_month,
        epoch(min(f.first_read_at) - q.submitted_at) AS seconds
    FROM data_requests AS q
    JOIN first_bytes AS f ON f.request_id = q.request_id
    GROUP BY q.request_id, q.requester_org, q.resource, q.path, q.submitted_month, q.submitted_at
),
requested AS (
    SELECT q.resource, count(*) AS requests
    FROM data_requests AS q
    GROUP BY q.resource
),
granted AS (
    SELECT
        g.resource,
        count(*) AS grants,
        count(DISTINCT g.grantee_org) FILTER (
            WHERE d.dept IS NOT NULL AND g.grantee_org <> c.provider
        ) AS departments_granted
    FROM landing.share_grants AS g
    JOIN catalogued AS c ON c.resource = g.resource
    LEFT JOIN departments AS d ON d.dept = g.grantee_org
    GROUP BY g.resource
),
used AS (
    SELECT g.resource, count(*) AS reads, sum(x.rows) AS rows_read
    FROM landing.share_reads AS x
    JOIN landing.share_grants AS g ON g.grant_id = x.grant_id
    GROUP BY g.resource
),
waited AS (
    SELECT
        w.resource,
        count(*) AS measured,
        median(w.seconds) / 3600.0 AS median_hours,
        median(w.seconds) FILTER (WHERE w.path = 'unconditional') AS median_seconds_unconditional
    FROM waits AS w
    GROUP BY w.resource
),
corrected AS (
    SELECT
        k.resource,
        count(*) AS corrections,
        count(*) FILTER (WHERE k.status = 'open') AS open_corrections
    FROM landing.share_corrections AS k
    GROUP BY k.resource
),
rated AS (
    SELECT t.resource, avg(t.score) AS mean_rating
    FROM landing.share_ratings AS t
    GROUP BY t.resource
),
monthly AS (
    SELECT
        q.requester_org,
        q.submitted_month,
        count(*) AS requests,
        count(w.request_id) AS measured,
        median(w.seconds) / 3600.0 AS median_hours,
        median(w.seconds) FILTER (WHERE w.path = 'unconditional') AS median_seconds_unconditional
    FROM data_requests AS q
    LEFT JOIN waits AS w ON w.request_id = q.request_id
    GROUP BY q.requester_org, q.submitted_month
)
SELECT
    c.kind,
    c.resource,
    c.provider,
    c.name_zh,
    c.level,
    c.share_type,
    c.shareable,
    c.update_cycle,
    c.marts_reading,
    c.planned_consumers,
    c.consumers,
    NULL::VARCHAR AS month,
    coalesce(rq.requests, 0) AS requests,
    coalesce(gr.grants, 0) AS grants,
    coalesce(gr.departments_granted, 0) AS departments_granted,
    coalesce(gr.departments_granted, 0) > 0 AS shared,
    coalesce(u.reads, 0) AS reads,
    coalesce(u.rows_read, 0)::BIGINT AS rows_read,
    coalesce(wd.measured, 0) AS first_bytes_measured,
    wd.median_hours AS median_hours_to_first_byte,
    wd.median_seconds_unconditional,
    coalesce(k.corrections, 0) AS corrections,
    coalesce(k.open_corrections, 0) AS open_corrections,
    rt.mean_rating
FROM catalogued AS c
LEFT JOIN requested AS rq ON rq.resource = c.resource
LEFT JOIN granted AS gr ON gr.resource = c.resource
LEFT JOIN used AS u ON u.resource = c.resource
LEFT JOIN waited AS wd ON wd.resource = c.resource
LEFT JOIN corrected AS k ON k.resource = c.resource
LEFT JOIN rated AS rt ON rt.resource = c.resource
UNION ALL
SELECT
    'department_month',
    m.requester_org,
    m.requester_org,
    NULL::VARCHAR,
    'L1',
    NULL::VARCHAR,
    NULL::BOOLEAN,
    NULL::VARCHAR,
    NULL::BIGINT,
    NULL::BIGINT,
    NULL::VARCHAR,
    m.submitted_month,
    m.requests,
    NULL::BIGINT,
    NULL::BIGINT,
    NULL::BOOLEAN,
    NULL::BIGINT,
    NULL::BIGINT,
    m.measured,
    m.median_hours,
    m.median_seconds_unconditional,
    NULL::BIGINT,
    NULL::BIGINT,
    NULL::DOUBLE
FROM monthly AS m
ORDER BY 1, 2, 12
