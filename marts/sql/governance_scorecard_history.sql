-- 街道数据治理记分卡（历史） the governance scorecard's history: each build of
-- marts.governance_scorecard adds its figures here under the run's date (run_date, a day in
-- Beijing, set by the build: marts/build.py); a re-run the same day replaces that day's rows.
-- Read by the portal's dashboards (the trends) and the street's leadership.
SELECT
    CAST(getvariable('run_date') AS DATE) AS run_date,
    g.figure,
    g.name_zh,
    g.value,
    g.numerator,
    g.denominator,
    g.goal,
    g.meets_goal,
    g.unit
FROM marts.governance_scorecard AS g
