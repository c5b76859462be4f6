-- labels (需求结果): every recorded outcome of a need, one row per (person_id, need, day) — the
-- four outcome datasets (need_outcomes, sql/macros.sql), linked to the resident through the
-- master index, whenever they were loaded. labels.py turns them into one boolean per need and
-- (person_id, cutoff): recorded in the HORIZON_DAYS after the cut-off. Labels look ahead of the
-- cut-off by design; as labels they are never a feature (the features read the outcomes
-- recorded by the cut-off: sql/features.sql, days_since_*).
-- Read by labels.py (the model's training and backtest labels).
SELECT person_id, need, day
FROM need_outcomes(CAST('infinity' AS TIMESTAMPTZ))
