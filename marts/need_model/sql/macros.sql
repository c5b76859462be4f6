-- macros (need model): the table macros the feature and label queries read staged records
-- through, created on the connection before either runs (features.register_macros) — the one
-- home of how a staged record is tied to its resident and of when it was known.
--
-- linked_records(dept, dataset): the dataset's staged rows whose subject the master index
--   linked to a resident, with that resident's person_id (curated.person_mentions).
-- known_records(dept, dataset, known_by): those of them the hub knew by known_by — loaded by
--   then, or in the dataset's first load (a department's history handed over when it joined
--   the hub counts as known from the dates it records: the backfill).
CREATE OR REPLACE TEMP MACRO linked_records(_dept, _dataset) AS TABLE
    SELECT m.person_id, s.*
    FROM query_table('staged.' || _dept || '__' || _dataset) AS s
    JOIN curated.person_mentions AS m
        ON m.dept = _dept AND m.dataset = _dataset AND m.key_pid = s._key_pid
    WHERE m.person_id IS NOT NULL;
CREATE OR REPLACE TEMP MACRO known_records(_dept, _dataset, _known_by) AS TABLE
    SELECT *
    FROM linked_records(_dept, _dataset)
    WHERE _loaded_at <= greatest(
        _known_by,
        (SELECT min(_loaded_at) FROM query_table('staged.' || _dept || '__' || _dataset))
    );
