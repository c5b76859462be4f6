-- 数据质量评分卡 quality scorecard: six dimensions per dataset and department. The scores are
-- computed by quality/ (pipelines/quality_run.py reads staged, the quarantine and the delivery
-- accounts) and handed to this build as `quality_scores`; the mart publishes them as the
-- catalogue describes them. Read by departments' data stewards, the data office and the
-- quality report.
SELECT
    q.dept,
    q.dataset,
    q.dimension,
    q.score,
    q.numerator,
    q.denominator,
    q.detail,
    q.computed_at
FROM quality_scores AS q
