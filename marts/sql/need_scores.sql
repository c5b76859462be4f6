-- need_scores (居民需求预测评分): the need model's probability of each need in the 90 days
-- after the cut-off, per resident pseudonym, with the model version, the cut-off and the top
-- contributing factors in Chinese. Made by the model, not by SQL: the scoring step hands the
-- scores to marts.publish.publish_frame as `need_scores_frame` (without the residents who
-- refused automated assessment); this query only publishes them as the catalogue describes.
-- Read by the residents' front ends, community workers and the civil-affairs office, through
-- the share service (advice to a worker, never an automatic decision).
SELECT
    s.person_id,
    s.need,
    s.need_zh,
    s.probability,
    s.model_version,
    s.cutoff,
    s.explanation
FROM need_scores_frame AS s
