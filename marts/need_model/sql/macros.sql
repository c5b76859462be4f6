-- macros (need model): the table macros the feature and label queries read staged records
-- through, created on the connection before either runs (features.register_macros) — the one
-- home of how a staged record is tied to its resident and of when it was known.
--
-- linked_records(dept, dataset): the dataset's staged rows whose subject the master index
--   linked to a resident, with that resident's person_id (curated.person_mentions, or
--   need_linked_mentions when the variable need_mentions_copied lists 'dept.dataset': a
--   temporary copy of the mentions the need model's SQL reads, which
--   features.known_relations makes for a block of queries when they are few; each query
--   otherwise reads the index once per dataset, and DuckLake prunes its files with a
--   catalogue query of its own each time). A dataset not copied is read from the index.
--   Its staged rows likewise: a temporary copy (need_staged_<dept>__<dataset>) when the
--   variable need_staged_copied lists 'dept.dataset' (features.staged_copies, for a block of
--   several queries when they are few), the lake's table otherwise.
-- first_load(dept, dataset): one row, ``loaded_until``: when the dataset's first delivery
--   finished loading (the latest ``_loaded_at`` of its rows: a large delivery is read and
--   stamped a batch at a time, so its rows carry several; null: nothing staged); the first
--   delivery is the one whose earliest stamp is the earliest. One scan of the dataset.
-- known_records(dept, dataset, known_by): those of them the hub knew by known_by — loaded by
--   then, or in the dataset's first load (a department's history handed over when it joined
--   the hub counts as known from the dates it records: the backfill). The first load is
--   read from the temporary table ``first_loads`` (source_dept, source_dataset,
--   loaded_until), which features.py fills with first_load for every staged dataset once
--   for all the cut-offs of a step (computed inside every call, first_load scanned each
--   dataset twice per call: half a feature query's time). A dataset missing from it is an
--   error, unless known_by is infinity (the labels: every record counts).
-- need_outcomes(known_by): every recorded outcome of a need the hub knew by known_by, one row
--   per (person_id, need, day) — the four outcome datasets the departments deliver:
--     home_care            居家养老服务与助餐登记 (civil affairs), the enrolment date
--     health_event         健康事件记录 (health), the event date
--     financial_assistance 临时救助 (civil affairs), the approval date
--     emergency_help       紧急求助记录 (emergency management), the call time
--   The labels read them all (known_by infinity: labels look ahead by design); the features
--   read those known by the cut-off and dated on or before it.
-- the table known_records reads (DuckDB binds a macro's tables when it is created), empty
-- until features.register_first_loads fills it
CREATE TEMP TABLE IF NOT EXISTS first_loads (
    source_dept VARCHAR, source_dataset VARCHAR, loaded_until TIMESTAMPTZ
);
SET VARIABLE need_mentions_copied = CAST([] AS VARCHAR[]);
SET VARIABLE need_staged_copied = CAST([] AS VARCHAR[]);
CREATE OR REPLACE TEMP MACRO linked_records(_dept, _dataset) AS TABLE
    SELECT m.person_id, s.*
    FROM query_table(
        CASE WHEN list_contains(getvariable('need_staged_copied'), _dept || '.' || _dataset)
            THEN 'temp.main.need_staged_' || _dept || '__' || _dataset
            ELSE 'staged.' || _dept || '__' || _dataset END
    ) AS s
    JOIN query_table(
        CASE WHEN list_contains(getvariable('need_mentions_copied'), _dept || '.' || _dataset)
            THEN 'temp.main.need_linked_mentions' ELSE 'curated.person_mentions' END
    ) AS m
        ON m.dept = _dept AND m.dataset = _dataset AND m.key_pid = s._key_pid
    WHERE m.person_id IS NOT NULL;
CREATE OR REPLACE TEMP MACRO first_load(_dept, _dataset) AS TABLE
    SELECT arg_min(d.last_at, d.first_at) AS loaded_until
    FROM (
        SELECT min(s._loaded_at) AS first_at, max(s._loaded_at) AS last_at
        FROM query_table('staged.' || _dept || '__' || _dataset) AS s
        GROUP BY s._delivery_id
    ) AS d;
CREATE OR REPLACE TEMP MACRO known_records(_dept, _dataset, _known_by) AS TABLE
    SELECT *
    FROM linked_records(_dept, _dataset)
    WHERE _loaded_at <= greatest(_known_by, (
        SELECT CASE
            WHEN f.n = 1 THEN f.loaded_until
            WHEN _known_by = CAST('infinity' AS TIMESTAMPTZ) THEN NULL
            ELSE error('first_loads has no row for ' || _dept || '.' || _dataset)
        END
        FROM (
            SELECT count(*) AS n, any_value(fl.loaded_until) AS loaded_until
            FROM first_loads AS fl
            WHERE fl.source_dept = _dept AND fl.source_dataset = _dataset
        ) AS f
    ));
CREATE OR REPLACE TEMP MACRO need_outcomes(_known_by) AS TABLE
    SELECT s.person_id, 'home_care' AS need, CAST(s.enrolled_on AS DATE) AS day
    FROM known_records('mzj', 'home_care_enrolments', _known_by) AS s
    WHERE s.enrolled_on IS NOT NULL
    UNION ALL
    SELECT s.person_id, 'health_event' AS need, CAST(s.event_date AS DATE) AS day
    FROM known_records('wjw', 'health_events', _known_by) AS s
    WHERE s.event_date IS NOT NULL
    UNION ALL
    SELECT s.person_id, 'financial_assistance' AS need, CAST(s.approved_on AS DATE) AS day
    FROM known_records('mzj', 'temporary_assistance', _known_by) AS s
    WHERE s.approved_on IS NOT NULL
    UNION ALL
    SELECT s.person_id, 'emergency_help' AS need, CAST(s.call_time AS DATE) AS day
    FROM known_records('yjj', 'emergency_calls', _known_by) AS s
    WHERE s.call_time IS NOT NULL;
