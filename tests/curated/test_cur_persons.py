"""The master resident index: every staged record with a subject is one mention of one
person — exact on the citizen-ID pseudonym, Splink for the rest (threshold, review band,
never merged below it) — no plain identifier in a curated table, an incremental update
equal to a full rebuild, and a wrong merge undone by a split."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from catalog.loader import load_catalogue
from catalog.model import Catalogue
from catalog.settings import Settings
from catalog.street import load_street
from curated import linkage, persons
from curated.houses import build_houses
from curated.mentions import subject_fields
from curated.persons import link_persons, merge, review_queue, split
from curated.review import record_action
from lakehouse.lake import close_idle, open_lake, tables_in, transaction
from lakehouse.snapshots import current_snapshot
from masking.leaks import KnownNames
from pipelines.leaks import registry_names, scan_tables
from pipelines.protection import Protection
from pipelines.rekey import rekey
from quality.evaluation import evaluate_links
from tests.streets import copy_home

KEY = ["dept", "dataset", "key_pid"]
LINK = [*KEY, "person_id", "method", "match_probability"]
# a plain ID or mobile standing alone (digit runs inside a hex pseudonym are not one)
ID_OR_MOBILE = re.compile(r"(?<![0-9a-fA-F])(\d{17}[0-9X]|1[3-9]\d{9})(?![0-9a-fA-F])")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def street(
    staged_street: Settings, tmp_path_factory: pytest.TempPathFactory, cat: Catalogue
) -> Path:
    """The session street with its houses and person index (on a copy, its simulator's
    truth beside it)."""
    dest = tmp_path_factory.mktemp("persons")
    settings = copy_home(staged_street.home, dest, departments=True)
    with open_lake(settings) as con:
        protection = Protection.from_settings(settings, "test:persons")
        # as in the run: houses first (the unit a record's address names), then persons
        build_houses(con, cat, protection, load_street(settings.street_file))
        link_persons(con, cat, protection)
    close_idle()
    return settings.home


def _links(con) -> pl.DataFrame:
    return con.execute("SELECT * FROM curated.person_mentions").pl().select(LINK).sort(KEY)


def test_every_subject_record_is_one_mention(street: Path, cat: Catalogue) -> None:
    with open_lake(Settings(home=street), read_only=True) as con:
        links = _links(con)
        staged = {}
        for sf in subject_fields(cat):
            cid = f"_pid_{sf.citizen_id}" if sf.citizen_id else "CAST(NULL AS VARCHAR)"
            present = " OR ".join(f'"{c}" IS NOT NULL' for c in sf.identifying)
            staged[(sf.dept, sf.dataset.code)] = con.execute(
                f'SELECT _key_pid AS key_pid, {cid} AS cid FROM staged."{sf.table}" WHERE {present}'
            ).pl()
    assert links.select(KEY).is_unique().all()
    for (dept, ds), rows in staged.items():
        mine = links.filter((pl.col("dept") == dept) & (pl.col("dataset") == ds))
        assert sorted(mine["key_pid"]) == sorted(rows["key_pid"]), (dept, ds)
        exact = rows.filter(pl.col("cid").is_not_null()).join(mine, on="key_pid")
        # a record with a citizen ID is that person, exactly
        assert (exact["person_id"] == exact["cid"]).all()
        assert (exact["method"] == "exact").all()
    assert links["person_id"].str.contains(r"^[0-9a-f]{20}$").all()
    assert set(links["method"]) <= {"exact", "probabilistic", "new"}
    prob = links.filter(pl.col("method") == "probabilistic")
    # the fallback ran and linked callers to persons known by their ID
    assert prob.height > 0
    assert (prob["match_probability"] >= linkage.MATCH_THRESHOLD).all()
    known = set(links.filter(pl.col("method") == "exact")["person_id"])
    assert set(prob["person_id"]) <= known
    assert links.filter(pl.col("method") == "exact")["match_probability"].null_count() == len(
        links.filter(pl.col("method") == "exact")
    )


def test_links_against_the_simulators_truth(street: Path, cat: Catalogue) -> None:
    """Pairwise precision and recall of person links (TRUTH's evaluator over the street's
    deliveries): the goal is 99 % each; the fallback's own pairs are printed beside."""
    settings = Settings(home=street)
    with open_lake(settings, read_only=True) as con:
        deliveries = con.execute("SELECT * FROM landing.deliveries").pl()
        staged = {
            (sf.dept, sf.dataset.code): con.execute(
                f'SELECT _key_pid, _delivery_id, _source_row FROM staged."{sf.table}"'
            ).pl()
            for sf in subject_fields(cat)
        }
        mentions = con.execute(
            "SELECT dept, dataset, key_pid, person_id FROM curated.person_mentions"
        ).pl()
    scores = evaluate_links(settings.sim_dir_abs, cat, deliveries, staged, {"person": mentions})
    assert scores is not None
    every, fallback = scores["person"]["all"], scores["person"]["fallback"]
    for label, s in (("all", every), ("fallback", fallback)):
        print(f"person links ({label}): precision {s.right_pairs / s.linked_pairs:.4f}, "
              f"recall {s.right_pairs / s.true_pairs:.4f} over {s.true_pairs:,} true pairs")  # fmt: skip
    assert fallback.true_pairs > 0 and every.records >= mentions.height
    assert every.right_pairs / every.linked_pairs >= 0.99
    assert every.right_pairs / every.true_pairs >= 0.99


def test_no_plain_identifier_in_curated(street: Path, cat: Catalogue) -> None:
    settings = Settings(home=street)
    with open_lake(settings, read_only=True) as con:
        protection = Protection.from_settings(settings, "test:persons")
        names = registry_names(con, cat, protection)
        curated = sorted(tables_in(con, "curated"))
        findings = scan_tables(con, curated, KnownNames(names))
        cells = [
            str(v)
            for _, t in curated
            for col in con.execute(f'SELECT * FROM curated."{t}"').pl().iter_columns()
            if col.dtype == pl.String
            for v in col.drop_nulls()
        ]
    assert {("curated", "person_mentions"), ("curated", "person_keys")} <= set(curated)
    assert names and cells
    assert sum(f.leaks for f in findings) == 0
    assert not [c for c in cells if ID_OR_MOBILE.search(c)]
    assert not names & set(cells)


def test_incremental_equals_full_rebuild(street: Path, cat: Catalogue, tmp_path: Path) -> None:
    settings = copy_home(street, tmp_path)
    fallback = next(sf for sf in subject_fields(cat) if sf.citizen_id is None)
    registry = next(sf for sf in subject_fields(cat) if sf.dataset.key == [sf.citizen_id])
    with open_lake(settings) as con:
        protection = Protection.from_settings(settings, "test:persons")
        before = _links(con)
        # a caller linked by the fallback loses its person from the registry, and a third
        # of the callers' records are withdrawn: both datasets' staged rows change
        in_registry = set(
            con.execute(f'SELECT "_pid_{registry.citizen_id}" FROM staged."{registry.table}"')
            .pl()
            .to_series()
        )
        linked = before.filter(
            (pl.col("dataset") == fallback.dataset.code)
            & (pl.col("method") == "probabilistic")
            & pl.col("person_id").is_in(sorted(in_registry))
        )
        gone = linked["person_id"][0]
        only = before.filter(pl.col("person_id") == gone)
        removed = con.execute(
            f'DELETE FROM staged."{registry.table}" WHERE "_pid_{registry.citizen_id}" = ?',
            [gone],
        ).fetchone()[0]
        con.execute(
            f'DELETE FROM staged."{fallback.table}" WHERE _key_pid IN '
            f'(SELECT _key_pid FROM staged."{fallback.table}" ORDER BY _key_pid LIMIT 10)'
        )
        changed = {(registry.dept, registry.dataset.code), (fallback.dept, fallback.dataset.code)}
        # with the snapshot before the update: the fallback's inputs changed, all relinked
        link_persons(con, cat, protection, changed=changed, before=current_snapshot(con))
        incremental = _links(con)
        link_persons(con, cat, protection)
        full = _links(con)
    assert incremental.equals(full)
    assert not incremental.equals(before)
    assert incremental.height < before.height - 10
    assert gone not in set(
        incremental.filter(pl.col("dataset") == registry.dataset.code)["person_id"]
    )
    assert removed == 1 and len(only) >= 2  # a registry record and a caller's record


def test_incremental_without_fallback_change_reuses_its_result(
    street: Path, cat: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = copy_home(street, tmp_path)
    exact_only = next(sf for sf in subject_fields(cat) if sf.identifying == [sf.citizen_id])
    with open_lake(settings) as con:
        protection = Protection.from_settings(settings, "test:persons")
        before = _links(con)
        stored = con.execute("SELECT * FROM curated.person_fallback").pl()

        def no_splink(*args, **kwargs):
            raise AssertionError("the fallback ran although its inputs did not change")

        # a dataset whose records all carry the person's ID was delivered again
        monkeypatch.setattr(linkage, "Scorer", no_splink)
        link_persons(con, cat, protection, changed={(exact_only.dept, exact_only.dataset.code)})
        reused = _links(con)
        monkeypatch.undo()
        link_persons(con, cat, protection)
        full = _links(con)
    assert stored.height > 0 and stored["inputs_digest"].n_unique() == 1
    assert reused.equals(before) and full.equals(before)


def _new_records(con, sf, n: int, where: str = "TRUE") -> list[str]:
    """``n`` records of ``sf``'s staged table delivered again under new keys (the same
    person, a new case number): the new keys."""
    rows = con.execute(
        f'SELECT _key_pid FROM staged."{sf.table}" WHERE {where} ORDER BY _key_pid LIMIT {n}'
    ).fetchall()
    keys = [r[0] for r in rows]
    con.execute(
        f"INSERT INTO staged.\"{sf.table}\" SELECT * REPLACE (_key_pid || 'n' AS _key_pid) "
        f'FROM staged."{sf.table}" WHERE _key_pid IN (SELECT unnest(?))',
        [keys],
    )
    return [k + "n" for k in keys]


def test_incremental_links_only_the_changed_datasets_while_the_fallback_stands(
    street: Path, cat: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New records of persons known by ID (a day's new cases) leave the fallback's inputs
    as they were: only the changed dataset's mentions are linked (the whole index is
    not), a recorded merge applies to them, and the result equals a full rebuild."""
    settings = copy_home(street, tmp_path)
    exact_only = next(sf for sf in subject_fields(cat) if sf.identifying == [sf.citizen_id])
    pid = f'"_pid_{exact_only.citizen_id}"'
    with open_lake(settings) as con:
        protection = Protection.from_settings(settings, "test:persons")
        before = _links(con)
        held = before.filter(
            (pl.col("dataset") == exact_only.dataset.code) & (pl.col("method") == "exact")
        )
        a, b = held["person_id"].unique().sort()[:2]
        merge(con, cat, protection, into=a, person=b, actor="test:officer", reason="planted")
        merged = _links(con)
        of_b = _new_records(con, exact_only, 3, f"{pid} = '{b}'")
        new = of_b + _new_records(con, exact_only, 3, f"{pid} <> '{b}'")

        def everything(*args, **kwargs):
            raise AssertionError("the whole index was relinked")

        monkeypatch.setattr(persons, "_relink_all", everything)
        changed = {(exact_only.dept, exact_only.dataset.code)}
        counts = link_persons(con, cat, protection, changed=changed, before=current_snapshot(con))
        incremental = _links(con)
        monkeypatch.undo()
        link_persons(con, cat, protection)
        full = _links(con)
    assert incremental.equals(full)
    assert of_b and len(new) == len(of_b) + 3
    assert incremental.height == merged.height + len(new) == counts["mentions"]
    assert counts["persons"] == full["person_id"].n_unique()
    fresh = incremental.filter(pl.col("key_pid").is_in(new))
    assert fresh.height == len(new)
    # the merged-away person's new records follow the merge
    manual = fresh.filter(pl.col("method") == "manual")
    assert manual.height == len(of_b) and (manual["person_id"] == a).all()
    assert b not in set(incremental["person_id"])


def _known_persons(links: pl.DataFrame, n: int) -> list[str]:
    """``n`` persons known by ID with two mentions or more (the smallest ids)."""
    counts = links.filter(pl.col("method") == "exact").group_by("person_id").len()
    return counts.filter(pl.col("len") >= 2).sort("person_id")["person_id"][:n].to_list()


def test_wrong_merge_undone_by_split(street: Path, cat: Catalogue, tmp_path: Path) -> None:
    settings = copy_home(street, tmp_path)
    with open_lake(settings) as con:
        protection = Protection.from_settings(settings, "test:persons")
        before = _links(con)
        a, b = _known_persons(before, 2)
        merge(con, cat, protection, into=a, person=b, actor="test:officer", reason="planted")
        merged = _links(con)
        # a full rebuild replays the recorded merge
        link_persons(con, cat, protection)
        rebuilt = _links(con)
        split(con, cat, protection, person=a, restore=b, actor="test:officer", reason="undo")
        undone = _links(con)
        recorded = con.execute(
            'SELECT action, person_id, from_person_id FROM curated.link_actions ORDER BY "at"'
        ).fetchall()
    of_b = before.filter(pl.col("person_id") == b).select(KEY)
    moved = merged.join(of_b, on=KEY)
    assert (moved["person_id"] == a).all() and (moved["method"] == "manual").all()
    assert b not in set(merged["person_id"])
    assert rebuilt.equals(merged)
    assert undone.equals(before)
    assert recorded == [("merge", a, b), ("split", a, b)]
    audit = (settings.home / "audit").rglob("*")
    assert any(p.is_file() and b"person_merge" in p.read_bytes() for p in audit)


def _record_ids(con, cat: Catalogue) -> pl.DataFrame:
    """(dept, dataset, key_pid, record): each subject record's key pseudonym and its
    identity in the delivery (delivery id, source row), which no key change touches."""
    return pl.concat(
        con.execute(
            f"SELECT '{sf.dept}' AS dept, '{sf.dataset.code}' AS dataset, _key_pid AS key_pid, "
            f"_delivery_id || ':' || _source_row AS record FROM staged.\"{sf.table}\""
        ).pl()
        for sf in subject_fields(cat)
    )


def _partition(links: pl.DataFrame, records: pl.DataFrame) -> set[frozenset[str]]:
    """The index as groups of records (one group a person), whatever the ids."""
    rows = links.join(records, on=KEY)
    assert rows.height == links.height
    return {frozenset(g["record"]) for _, g in rows.group_by("person_id")}


def test_rekey_keeps_manual_merges_and_splits(street: Path, cat: Catalogue, tmp_path: Path) -> None:
    """``streethub keys rekey`` changes every pseudonym (mention keys, person ids): each
    recorded action is anchored on mentions whose keys the re-key maps, so after it the
    rebuilt index groups the records exactly as before — the merge and the split hold."""
    settings = copy_home(street, tmp_path)
    with open_lake(settings) as con:
        protection = Protection.from_settings(settings, "test:persons")
        before = _links(con)
        a, b, c = _known_persons(before, 3)
        merge(con, cat, protection, into=a, person=b, actor="test:officer", reason="planted")
        detached = before.filter(pl.col("person_id") == c).sort(KEY).select(KEY).row(0)
        split(con, cat, protection, person=c, mention=detached, actor="test:officer", reason="x")
        decided = _links(con)
        records = _record_ids(con, cat)
        old, untouched = _partition(decided, records), _partition(before, records)
        anchors = con.execute(
            "SELECT count(anchor_key_pid), count(from_anchor_key_pid) FROM curated.link_actions"
        ).fetchone()
    close_idle()
    rekey(settings, settings.cipher_suite, "test:officer")  # the same suite, new key versions
    with open_lake(settings) as con:
        protection = Protection.from_settings(settings, "test:persons")
        build_houses(con, cat, protection, load_street(settings.street_file))
        link_persons(con, cat, protection)
        after = _links(con)
        new = _partition(after, _record_ids(con, cat))
    close_idle()
    assert anchors == (2, 1)  # merge: a and b; split: c
    assert not set(after["person_id"]) & {a, b, c}  # every person id changed
    assert old != untouched  # the actions changed the index
    assert new == old
    assert (
        after.filter(pl.col("method") == "manual").height
        == decided.filter(pl.col("method") == "manual").height
    )


def test_actions_recorded_before_anchors_get_them(
    street: Path, cat: Catalogue, tmp_path: Path
) -> None:
    """A merge recorded by person ids alone (before actions were anchored) is given its
    anchor mentions — one of each person as the replay reached it — by the re-key's first
    step (``anchor_actions``) and by any whole relink; the index stays as it was."""
    settings = copy_home(street, tmp_path)
    with open_lake(settings) as con:
        protection = Protection.from_settings(settings, "test:persons")
        before = _links(con)
        a, b = _known_persons(before, 2)
        with transaction(con):
            record_action(con, "merge", "test:officer", "legacy", person_id=a, from_person_id=b)
        link = "SELECT anchor_dept, anchor_dataset, anchor_key_pid, from_anchor_dept, "
        link += "from_anchor_dataset, from_anchor_key_pid FROM curated.link_actions"
        bare = con.execute(link).fetchall()
        assert persons.anchor_actions(con, protection.keyring) == 1
        anchored = con.execute(link).fetchone()
        assert persons.anchor_actions(con, protection.keyring) == 0  # nothing left to anchor
        link_persons(con, cat, protection)
        after = _links(con)
    assert bare == [(None,) * 6]
    of = {p: before.filter(pl.col("person_id") == p).select(KEY).sort(KEY).row(0) for p in (a, b)}
    assert anchored == (*of[a], *of[b])  # the smallest mention of each person
    moved = after.join(before.filter(pl.col("person_id") == b).select(KEY), on=KEY)
    assert (moved["person_id"] == a).all() and b not in set(after["person_id"])


def test_ambiguous_candidate_goes_to_review(street: Path, cat: Catalogue, tmp_path: Path) -> None:
    settings = copy_home(street, tmp_path)
    with open_lake(settings) as con:
        protection = Protection.from_settings(settings, "test:persons")
        # a caller's record with the exact name of one person only keeps its name: too
        # little to merge on (its phone and home address are taken away)
        row = (
            con.execute(
                """SELECT m.dept, m.dataset, m.key_pid, m.person_id
               FROM curated.person_mentions m JOIN curated.person_keys k USING (dept, dataset, key_pid)
               WHERE m.method = 'probabilistic' AND k.name_pid IN (
                   SELECT name_pid FROM curated.person_keys WHERE citizen_pid IS NOT NULL
                   GROUP BY name_pid HAVING count(DISTINCT citizen_pid) = 1)
                 AND k.name_pid IN (SELECT name_pid FROM curated.person_keys
                                    WHERE citizen_pid = m.person_id)
               ORDER BY m.dept, m.dataset, m.key_pid LIMIT 1"""
            )
            .pl()
            .row(0, named=True)
        )
        where = "WHERE dept = ? AND dataset = ? AND key_pid = ?"
        mention = [row["dept"], row["dataset"], row["key_pid"]]
        con.execute(f"UPDATE curated.person_keys SET mobile_pid = NULL {where}", mention)
        con.execute(f"DELETE FROM curated.house_mentions {where}", mention)
        link_persons(con, cat, protection, changed=())
        after = _links(con)
        queue = review_queue(con)
        mine = queue.filter(pl.col("key_pid") == row["key_pid"])
        assert mine.height >= 1
        assert row["person_id"] in set(mine["candidate_person_id"])
        # never merged below the threshold: it is a person of its own until decided
        own = after.filter(pl.col("key_pid") == row["key_pid"]).row(0, named=True)
        assert own["method"] == "new" and own["person_id"] != row["person_id"]
        cand = mine.filter(pl.col("candidate_person_id") == row["person_id"]).row(0, named=True)
        assert linkage.REVIEW_FLOOR <= cand["match_probability"] < linkage.MATCH_THRESHOLD
        assert cand["agrees_on"] == "name"
        assert re.fullmatch(r"\S\*+", cand["name_masked"])
        assert cand["name_masked"] == cand["candidate_name_masked"]
        # the officer accepts the candidate: the mention joins the person, the item closes
        merge(
            con, cat, protection, into=row["person_id"],
            mention=(row["dept"], row["dataset"], row["key_pid"]),
            actor="test:officer", reason="same caller",
        )  # fmt: skip
        decided = _links(con).filter(pl.col("key_pid") == row["key_pid"]).row(0, named=True)
        assert decided["person_id"] == row["person_id"] and decided["method"] == "manual"
        assert review_queue(con).filter(pl.col("key_pid") == row["key_pid"]).height == 0


def _records(rows: list[tuple]) -> pl.DataFrame:
    """Splink input rows from (uid, name, mobile, house, name share among persons)."""
    frame = pl.DataFrame(
        rows, schema=["unique_id", "name", "mobile_pid", "house_id", "tf_name"], orient="row"
    )
    return frame.with_columns(
        linkage.name_parts(frame["name"]),
        name_pid=pl.col("name"),
        birth_pid=pl.lit(None, dtype=pl.String),
        tf_mobile_pid=pl.lit(1 / 1000),
        tf_house_id=pl.lit(3 / 1000),
    )


def _scored_records() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Five mentions and five persons' records: what each pair shares is said beside it."""
    rare, common = 1 / 1000, 20 / 1000
    left = _records(
        [
            ("a", "王秀英", "m1", None, rare),
            ("b", "张伟", None, None, common),
            ("c", "李娜", "m9", None, rare),  # 李挪 on record: one character differs
            ("d", "赵先生", "m4", "h4", rare),  # a surname and a title, from home
            ("e", "周杰", "m5", None, rare),  # another person's phone, another name
        ]
    )
    right = _records(
        [
            ("p1", "王秀英", "m1", "h1", rare),
            ("p2", "张伟", "m2", "h2", common),
            ("p3", "李挪", "m9", "h3", rare),
            ("p4", "赵建国", "m4", "h4", rare),
            ("p5", "吴芳", "m5", "h5", rare),
        ]
    )
    return left, right


def test_splink_scores_name_mobile_and_house() -> None:
    left, right = _scored_records()
    pairs = linkage.score_between(left, right, prior=1 / 1000)
    p = {(r["unique_id_l"], r["unique_id_r"]): r["match_probability"] for r in pairs.iter_rows(named=True)}  # fmt: skip
    assert p[("a", "p1")] >= linkage.MATCH_THRESHOLD  # same name and mobile
    assert p[("b", "p2")] < linkage.REVIEW_FLOOR  # a common name alone
    assert p[("c", "p3")] >= linkage.MATCH_THRESHOLD
    assert p[("d", "p4")] >= linkage.MATCH_THRESHOLD  # surname, phone and home agree
    assert p[("e", "p5")] < linkage.MATCH_THRESHOLD  # a phone alone is not enough
    assert ("a", "p2") not in p  # never blocked together: never scored
    # Splink's DuckDB holds decrypted names: it never spills them to disk
    with linkage.Scorer(left, right, prior=1 / 1000) as scorer:
        con = scorer._api.duckdb_con
        assert con.execute("SELECT current_setting('temp_directory')").fetchone() == ("",)
    parts = linkage.name_parts(pl.Series(["王秀英", "欧阳娜娜", "王先生", "老王", "小英", None]))
    assert parts.rows() == [
        ("王", "秀英", None), ("欧阳", "娜娜", None), ("王", None, None), (None, None, "王"),
        (None, None, "英"), (None, None, None),
    ]  # fmt: skip


def _pairs(frame: pl.DataFrame) -> list[tuple]:
    return sorted(frame.select(list(linkage.PAIR_SCHEMA)).rows())


def test_scorer_in_slices_from_a_floor_in_the_lake_equals_the_whole(
    street: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old path — every blocked pair scored at once in a DuckDB of Splink's own, the
    floor applied afterwards — against the production one: in a cursor of the lake's DuckDB
    (bounded, spilling encrypted under the home), a record's pairs at a time, only the pairs
    from a floor up kept. Same pairs, same probabilities; nothing of Splink's left behind."""
    left, right = _scored_records()
    mentions = pl.concat([left, right])  # the persons' records as mentions: pairs within
    with linkage.Scorer(mentions, right, prior=1 / 1000) as old:
        between, within = old.between(), old.within(mentions)
        assert old._calls == 2  # one registered table each: the whole
    assert within.height and between.filter(pl.col("match_probability") < 0.2).height
    monkeypatch.setattr(linkage, "PAIR_BUDGET", 1)  # a record's own pairs at a time
    settings = Settings(home=street)
    with open_lake(settings, read_only=True) as con:
        with linkage.Scorer(mentions, right, prior=1 / 1000, con=con) as new:
            assert _pairs(new.between()) == _pairs(between)
            assert new._calls > 2  # sliced
            for floor in (linkage.REVIEW_FLOOR, linkage.MATCH_THRESHOLD):
                kept = pl.col("match_probability") >= floor
                assert _pairs(new.between(floor)) == _pairs(between.filter(kept))
                assert _pairs(new.within(mentions, floor)) == _pairs(within.filter(kept))
            assert _pairs(new.within(mentions)) == _pairs(within)
            cursor = new._api.duckdb_con
            spill = cursor.execute(
                "SELECT current_setting('temp_directory'), current_setting('temp_file_encryption'),"
                " current_setting('memory_limit')"
            ).fetchone()
            limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
            assert (Path(spill[0]).parent, *spill[1:]) == (settings.spill_dir, True, limit)
        left_behind = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'memory'"
        ).fetchone()[0]
        assert left_behind == 0


def test_cli_review_merge_split_audited(
    street: Path, cat: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.curated_run import build_curated

    settings = copy_home(street, tmp_path)
    monkeypatch.setenv("STREETHUB_HOME", str(settings.home))
    with open_lake(settings) as con:  # the whole curated zone, as a run leaves it
        protection = Protection.from_settings(settings, "test:persons")
        build_curated(con, cat, protection, load_street(settings.street_file), full=True)
        before = _links(con)
        golden = set(con.execute("SELECT person_id FROM curated.person").pl()["person_id"])
    counts = before.filter(pl.col("method") == "exact").group_by("person_id").len()
    a, b = counts.sort("person_id")["person_id"][:2]
    runner = CliRunner()
    listed = runner.invoke(app, ["persons", "review", "--all"])
    merged = runner.invoke(app, ["persons", "merge", a, "--person", b, "--reason", "test"])
    unknown = runner.invoke(app, ["persons", "merge", a, "--person", "0" * 20, "--reason", "x"])
    with open_lake(settings, read_only=True) as con:
        after_merge = _links(con)
        golden_merged = set(con.execute("SELECT person_id FROM curated.person").pl()["person_id"])
    split_ = runner.invoke(app, ["persons", "split", a, "--restore", b, "--reason", "undo"])
    with open_lake(settings, read_only=True) as con:
        after_split = _links(con)
        golden_split = set(con.execute("SELECT person_id FROM curated.person").pl()["person_id"])
    assert listed.exit_code == 0, listed.output
    assert merged.exit_code == 0 and split_.exit_code == 0, merged.output + split_.output
    assert unknown.exit_code == 1
    assert b not in set(after_merge["person_id"])
    assert after_split.equals(before)
    # downstream follows: the golden record of the person merged away goes, and comes back
    assert {a, b} <= golden and golden_merged == golden - {b} and golden_split == golden
    log = b"".join(p.read_bytes() for p in (settings.home / "audit").rglob("*") if p.is_file())
    for action in (b"person_review_list", b"person_merge", b"person_split"):
        assert action in log


def test_review_ids_never_read_as_a_number() -> None:
    """An all-digit 16-character digest reads as a card number to the leak scanner (about
    one street in a hundred had one): review ids always hold a hex letter and scan clean."""
    from curated.review import review_id
    from masking.leaks import scan_frame

    ids = [review_id("d", "s", f"{i:020x}", "c") for i in range(5_000)]
    assert len(set(ids)) == len(ids) and all(len(i) == 16 and i[0] == "e" for i in ids)
    assert not scan_frame(pl.DataFrame({"review_id": ids})).by_kind
    assert scan_frame(pl.DataFrame({"review_id": ["4539578763621486"]})).by_kind  # the risk


def test_scorer_takes_any_id_type_for_the_persons_records() -> None:
    """Persons' records known by their row number (as the index gives them) score as the
    same records known by text: the same pairs and probabilities."""
    left, right = _scored_records()
    by_text = linkage.score_between(left, right, prior=1 / 1000)
    numbered = right.with_row_index("n")
    by_number = linkage.score_between(
        left, numbered.drop("unique_id").rename({"n": "unique_id"}), 1 / 1000
    )
    assert by_number["unique_id_r"].dtype == pl.UInt32
    back = by_number.join(numbered.select("n", "unique_id"), left_on="unique_id_r", right_on="n")
    assert _pairs(back.with_columns(unique_id_r=pl.col("unique_id"))) == _pairs(by_text)
    assert by_text.height > 0
