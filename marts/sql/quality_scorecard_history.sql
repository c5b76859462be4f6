-- 数据质量评分卡（历史） the quality scorecard's history: each build of marts.quality_scorecard
-- adds its scores here under the run's date (run_date, a day in Beijing, set by the build:
-- marts/build.py); a re-run the same day replaces that day's rows. Read by the portal's
-- dashboards (quality per department and dimension over time) and the data office.
SELECT
    CAST(getvariable('run_date') AS DATE) AS run_date,
    q.dept,
    q.dataset,
    q.dimension,
    q.score,
    q.numerator,
    q.denominator,
    q.computed_at
FROM marts.quality_scorecard AS q
