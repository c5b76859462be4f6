-- labels (需求结果): every recorded outcome of a need, one row per (person_id, need, day) —
-- the four outcome datasets the departments deliver, linked to the resident through the master
-- index (linked_records, sql/macros.sql). labels.py turns them into one boolean per need and
-- (person_id, cutoff): recorded in the HORIZON_DAYS after the cut-off. Labels look ahead of the
-- cut-off by design; they are never a feature.
--   home_care            居家养老服务与助餐登记 (civil affairs), the enrolment date
--   health_event         健康事件记录 (health), the event date
--   financial_assistance 临时救助 (civil affairs), the approval date
--   emergency_help       紧急求助记录 (emergency management), the call time
-- Read by labels.py (the model's training and backtest labels).
SELECT s.person_id, 'home_care' AS need, CAST(s.enrolled_on AS DATE) AS day
FROM linked_records('mzj', 'home_care_enrolments') AS s
WHERE s.enrolled_on IS NOT NULL
UNION ALL
SELECT s.person_id, 'health_event' AS need, CAST(s.event_date AS DATE) AS day
FROM linked_records('wjw', 'health_events') AS s
WHERE s.event_date IS NOT NULL
UNION ALL
SELECT s.person_id, 'financial_assistance' AS need, CAST(s.approved_on AS DATE) AS day
FROM linked_records('mzj', 'temporary_assistance') AS s
WHERE s.approved_on IS NOT NULL
UNION ALL
SELECT s.person_id, 'emergency_help' AS need, CAST(s.call_time AS DATE) AS day
FROM linked_records('yjj', 'emergency_calls') AS s
WHERE s.call_time IS NOT NULL
