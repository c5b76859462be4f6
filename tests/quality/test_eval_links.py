"""Pairwise precision and recall of the master index's links against the simulator's truth:
hand-made mention tables, staged keys and truth files, and a brute-force oracle."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from catalog.authority import fields_of_concept
from catalog.loader import load_catalogue
from lakehouse.lake import ensure_table, insert_frame, open_lake
from pipelines.ingest.raw import raw_table
from pipelines.main_job import print_truth
from pipelines.protection import Protection
from pipelines.truth_run import evaluate_against_truth
from quality.evaluation import (
    LinkScore,
    PairCounts,
    evaluate_links,
    judged_parts,
    keyed_datasets,
    link_scores,
    pair_counts,
)
from tests.streets import ingest_and_stage

REGISTRY, APPEALS, INCIDENTS = ("gaj", "registered_residents"), ("rx", "appeals"), ("yjj", "incidents")  # fmt: skip
UNITS = ("zjj", "housing_units")  # the house register (its truth here: units only)
FILES = {REGISTRY: "registry.csv", APPEALS: "appeals.csv", INCIDENTS: "incidents.csv",
         UNITS: "units.parquet"}  # fmt: skip
# the truth: registry rows 2-5 are persons A-D living in units U1, U1, U2, U3; appeals rows
# 1-4 are called by A, A, an outsider, B (A and B from home, the outsider about a place)
TRUTH = {
    REGISTRY: {"_person": ["A", "B", "C", "D"], "_unit": ["U1", "U1", "U2", "U3"]},
    APPEALS: {"_person": ["A", "A", None, "B"], "_unit": ["U1", "U1", None, "U1"]},
    INCIDENTS: {"_person": ["C", None]},
    UNITS: {"_unit": ["U1", "U2", "U3"]},
}
FIRST_ROW = {REGISTRY: 2, APPEALS: 1, INCIDENTS: 1, UNITS: 1}
KEYS = {REGISTRY: ["k1", "k2", "k3", "k4"], APPEALS: ["a1", "a2", "a3", "a4"], INCIDENTS: ["i1", "i2"],
        UNITS: ["u1", "u2", "u3"]}  # fmt: skip
RIGHT = {"k1": "pA", "k2": "pB", "k3": "pC", "k4": "pD", "a1": "pA", "a2": "pA", "a3": "new1",
         "a4": "pB", "i1": "pC", "i2": "new2"}  # fmt: skip


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture()
def sim(tmp_path: Path) -> Path:
    """A simulator's folder with the hand-made truth and a manifest matching file hashes."""
    departments: dict = {}
    for (dept, code), columns in TRUTH.items():
        folder = tmp_path / "truth" / dept / code
        folder.mkdir(parents=True)
        n = len(next(iter(columns.values())))
        first = FIRST_ROW[(dept, code)]
        pl.DataFrame(
            {"_file": [FILES[(dept, code)]] * n, "_source_row": list(range(first, first + n))}
            | columns,
            schema_overrides={c: pl.String for c in columns},
        ).write_parquet(folder / "clean.parquet")
        departments.setdefault(dept, {})[code] = {
            "kind": "csv",
            "files": [FILES[(dept, code)]],
            "sha256": {FILES[(dept, code)]: f"hash-{code}"},
        }
    (tmp_path / "manifest.json").write_text(json.dumps({"departments": departments}))
    return tmp_path


def deliveries() -> pl.DataFrame:
    """The landed deliveries: one a dataset (``d-<dataset>``) and one from someone else."""
    rows = [(f"d-{c}", d, c, f"hash-{c}", f"/inbox/{FILES[(d, c)]}") for d, c in FILES]
    rows.append(("d-other", "rx", "appeals", "hash-of-someone-else", "/inbox/other.csv"))
    return pl.DataFrame(
        rows, schema=["delivery_id", "dept", "dataset", "sha256", "source"], orient="row"
    )


def staged_keys(extra: bool = True) -> dict[tuple[str, str], pl.DataFrame]:
    """Each staged table's keys; the appeals also hold two rows of someone else's delivery
    (source rows 1 and 2, like the simulator's: they must map to no truth row)."""
    out = {}
    for (dept, code), keys in KEYS.items():
        first = FIRST_ROW[(dept, code)]
        out[(dept, code)] = pl.DataFrame(
            {
                "_key_pid": keys,
                "_delivery_id": [f"d-{code}"] * len(keys),
                "_source_row": list(range(first, first + len(keys))),
            }
        )
    if extra:
        other = pl.DataFrame(
            {"_key_pid": ["x1", "x2"], "_delivery_id": ["d-other"] * 2, "_source_row": [1, 2]}
        )
        out[APPEALS] = pl.concat([out[APPEALS], other])
    return out


def person_mentions(links: dict[str, str]) -> pl.DataFrame:
    where = {k: ref for ref, keys in KEYS.items() for k in keys} | {"x1": APPEALS, "x2": APPEALS}
    return pl.DataFrame(
        {
            "dept": [where[k][0] for k in links],
            "dataset": [where[k][1] for k in links],
            "key_pid": list(links),
            "person_id": list(links.values()),
            "method": ["exact" if k.startswith("k") else "probabilistic" for k in links],
        }
    )


def persons(sim: Path, catalogue, links: dict[str, str]) -> dict[str, LinkScore]:
    mentions = {"person": person_mentions(links)}
    return evaluate_links(sim, catalogue, deliveries(), staged_keys(), mentions)["person"]


def test_right_links_score_one(sim, catalogue):
    # true pairs: A (k1, a1, a2) 3, B (k2, a4) 1, C (k3, i1) 1; the outsider and the
    # incident reporter without an identity are no one else's
    # someone else's rows (x1, x2) are not judged, whatever they are linked to
    score = persons(sim, catalogue, RIGHT | {"x1": "pA", "x2": "pB"})["all"]
    assert score == LinkScore(records=10, true_pairs=5, linked_pairs=5, right_pairs=5)
    assert score.precision == score.recall == 1.0


def test_a_wrong_merge_costs_precision(sim, catalogue):
    # the outsider's appeal merged into A: A's cluster has 4 records (6 pairs), 3 right
    score = persons(sim, catalogue, RIGHT | {"a3": "pA"})
    assert score["all"] == LinkScore(10, 5, 8, 5)
    assert score["all"].precision == pytest.approx(5 / 8) and score["all"].recall == 1.0
    # the registry links exactly; every pair outside it involves a caller or a reporter
    assert score["fallback"] == LinkScore(6, 5, 8, 5)


def test_a_missed_or_split_link_costs_recall(sim, catalogue):
    missed = {k: v for k, v in RIGHT.items() if k != "a2"}  # a2 never mentioned
    score = persons(sim, catalogue, missed)["all"]
    assert score == LinkScore(10, 5, 3, 3) and score.recall == pytest.approx(3 / 5)
    split = persons(sim, catalogue, RIGHT | {"a1": "new3", "a2": "new3"})["all"]
    # A split in two: {k1} and {a1, a2} (1 pair, right); B and C whole
    assert split == LinkScore(10, 5, 3, 3) and split.precision == 1.0


HOUSES = {"k1": "h1", "k2": "h1", "k3": "h2", "k4": "h3", "a1": "h1", "a2": "h1", "a3": "h9",
          "a4": "h2", "i1": "h1"}  # fmt: skip


def test_houses_are_judged_where_the_truth_names_a_unit(sim, catalogue):
    """Only datasets whose truth has ``_unit`` count: a house mention of an incident (no
    unit in its truth) is not judged; nor the datasets skipped."""
    mentions = person_mentions(HOUSES).rename({"person_id": "house_id"})
    parts = judged_parts(mentions, staged_keys(False), sim / "truth", files(), "house", {UNITS})
    judged = pl.concat(frame for _, frame in parts)
    assert set(zip(judged["dept"], judged["dataset"], strict=True)) == {REGISTRY, APPEALS}
    score = link_scores(judged)["all"]
    # U1: k1, k2, a1, a2, a4 (10 pairs); linked h1: k1, k2, a1, a2 (6 pairs, right);
    # h2: k3 (U2) and a4 (U1): 1 wrong pair
    assert score == LinkScore(8, 10, 7, 6)


def test_the_house_register_is_judged_only_when_the_mentions_name_it(sim, catalogue):
    """The unit register's rows are the houses themselves: without mentions of its own it
    is not judged (else every unit's pairs would count as missed); with them it is."""
    mentions = person_mentions(HOUSES).rename({"person_id": "house_id"})
    houses = evaluate_links(sim, catalogue, deliveries(), staged_keys(), {"house": mentions})
    assert houses["house"]["all"] == LinkScore(8, 10, 7, 6)
    units = {"u1": "h1", "u2": "h2", "u3": "h3"}
    mentions = person_mentions(HOUSES | units).rename({"person_id": "house_id"})
    houses = evaluate_links(sim, catalogue, deliveries(), staged_keys(), {"house": mentions})
    # U1 gains u1 (6 records, 15 pairs), U2 k3 and u2, U3 k4 and u3; linked h1 5 records
    # (10 pairs, right), h2 k3, a4, u2 (3 pairs, k3-u2 right), h3 k4, u3 (right)
    assert houses["house"]["all"] == LinkScore(11, 17, 14, 12)
    assert houses["house"]["fallback"] == LinkScore(8, 17, 14, 12)  # no pair within units


def files() -> dict[str, str]:
    return {f"d-{c}": FILES[(d, c)] for d, c in FILES}


def test_the_exact_datasets_are_those_carrying_the_entity_key(catalogue):
    persons = keyed_datasets(catalogue, "person")
    assert REGISTRY in persons and ("wjw", "chronic_followups") in persons
    assert APPEALS not in persons and INCIDENTS not in persons
    houses = keyed_datasets(catalogue, "house")
    assert ("zjj", "housing_units") in houses and APPEALS not in houses


def test_nothing_is_judged_without_a_simulator(tmp_path, catalogue):
    mentions = {"person": person_mentions(RIGHT)}
    assert evaluate_links(tmp_path, catalogue, deliveries(), staged_keys(), mentions) is None


def test_no_mentions_at_all_is_zero_recall(sim, catalogue):
    # nothing names the registry: it is not judged (the register is the persons), the
    # callers' and reporters' records are: A called twice (1 pair), never linked
    score = persons(sim, catalogue, {})["all"]
    assert score == LinkScore(4, 1, 0, 0) and score.recall == 0.0
    assert score.precision == 1.0  # nothing linked, nothing wrong


@pytest.mark.parametrize("seed", range(5))
def test_pair_counts_equal_enumerating_every_pair(seed):
    """The cluster-size counts against an oracle that enumerates every pair of records."""
    rng = random.Random(seed)
    n = 300
    truth = [rng.choice([None, *range(60)]) for _ in range(n)]
    linked = [
        None if rng.random() < 0.1 else (t if t is not None and rng.random() < 0.8 else rng.randrange(70))
        for t in truth
    ]  # fmt: skip
    frame = pl.DataFrame({"linked": linked, "truth": truth}).cast(pl.String)
    true = linked_pairs = right = 0
    for i, j in itertools.combinations(range(n), 2):
        same_truth = truth[i] is not None and truth[i] == truth[j]
        same_link = linked[i] is not None and linked[i] == linked[j]
        true += same_truth
        linked_pairs += same_link
        right += same_truth and same_link
    records = sum(t is not None or lk is not None for t, lk in zip(truth, linked, strict=True))
    assert pair_counts(frame) == LinkScore(records, true, linked_pairs, right)
    assert 0 < right < min(true, linked_pairs)


@pytest.mark.parametrize("seed", range(3))
def test_pair_counts_added_in_parts_equal_the_whole(seed, monkeypatch):
    """Counted a part at a time (a dataset's records each, merged as they come: here every
    few rows), the figures equal enumerating every pair of the whole; a cluster spans
    parts."""
    monkeypatch.setattr(PairCounts, "MERGE_ROWS", 7)
    rng = random.Random(seed)
    n = 240
    truth = [rng.choice([None, *map(str, range(40))]) for _ in range(n)]
    linked = [None if rng.random() < 0.1 else str(rng.randrange(45)) for _ in range(n)]
    cuts = sorted(rng.sample(range(1, n), 9))
    counts = PairCounts()
    for lo, hi in itertools.pairwise([0, *cuts, n]):
        counts.add(pl.DataFrame({"linked": linked[lo:hi], "truth": truth[lo:hi]}))
    pairs = list(itertools.combinations(range(n), 2))
    same_truth = {p for p in pairs if truth[p[0]] is not None and truth[p[0]] == truth[p[1]]}
    same_link = {p for p in pairs if linked[p[0]] is not None and linked[p[0]] == linked[p[1]]}
    records = sum(t is not None or lk is not None for t, lk in zip(truth, linked, strict=True))
    expected = LinkScore(records, len(same_truth), len(same_link), len(same_truth & same_link))
    assert counts.score() == expected
    whole = pl.DataFrame({"linked": linked, "truth": truth})
    assert pair_counts(whole) == expected and expected.right_pairs > 0


def test_mentions_read_a_dataset_at_a_time_score_as_the_whole_table(sim, catalogue):
    """The link evaluation asks a mention table for one dataset's mentions at a time (the
    lake's is read so); the figures equal those of the whole table as a frame."""

    class ByDataset:
        def __init__(self, frame: pl.DataFrame) -> None:
            self.frame, self.asked = frame, []

        def named(self):
            return set(zip(self.frame["dept"], self.frame["dataset"], strict=True))

        def of(self, dept: str, dataset: str) -> pl.DataFrame:
            self.asked.append((dept, dataset))
            where = (pl.col("dept") == dept) & (pl.col("dataset") == dataset)
            return self.frame.filter(where).select("key_pid", "person_id")

    wrong = RIGHT | {"a3": "pA", "i2": "pB"}
    table = person_mentions(wrong)
    parts = ByDataset(table)
    read = evaluate_links(sim, catalogue, deliveries(), staged_keys(), {"person": parts})
    whole = evaluate_links(sim, catalogue, deliveries(), staged_keys(), {"person": table})
    # pA: k1, a1, a2, a3 (6 pairs, 3 right); pB: k2, a4, i2 (3, 1 right); pC: k3, i1 (right)
    assert read == whole and whole["person"]["all"] == LinkScore(10, 5, 10, 5)
    assert sorted(parts.asked) == sorted({REGISTRY, APPEALS, INCIDENTS})  # no person in units


@pytest.mark.timeout(600)
def test_the_exact_rule_alone_is_precise_but_misses_the_callers(tmp_path: Path, catalogue):
    """On a lake: person mentions by the exact rule only (the staged citizen ID; callers
    left unlinked) judged through ``truth_run``: every link right, recall short of the
    target (the fallback is needed); a planted wrong merge costs precision and is a
    problem the run prints."""
    cat = catalogue.model_copy(
        update={"departments": {c: catalogue.departments[c] for c in ("gaj", "wjw", "rx")}}
    )
    settings = ingest_and_stage(tmp_path / "home", cat, residents=300, seed=4)
    protection = Protection.from_settings(settings)
    assert evaluate_against_truth(settings, cat).links == {}  # no curated mentions yet
    mentions = []
    with open_lake(settings, read_only=True) as con:
        for dept, ds in cat.datasets():
            ids = fields_of_concept(ds, "person.citizen_id")
            if not ids:
                continue
            staged = con.execute(
                f'SELECT _key_pid, _delivery_id, _source_row, "{ids[0]}" '
                f'FROM staged."{raw_table(dept.code, ds)}"'
            ).pl()
            revealed = protection.reveal(staged, ds, "master_index")
            mentions.append(
                revealed.select(
                    pl.lit(dept.code).alias("dept"),
                    pl.lit(ds.code).alias("dataset"),
                    pl.col("_key_pid").alias("key_pid"),
                    pl.col(ids[0]).hash().cast(pl.String).alias("person_id"),
                )
            )
    table = pl.concat(mentions)
    columns = [("dept", "VARCHAR"), ("dataset", "VARCHAR"), ("key_pid", "VARCHAR"),
               ("person_id", "VARCHAR")]  # fmt: skip
    with open_lake(settings) as con:
        ensure_table(con, "curated", "person_mentions", columns)
        insert_frame(con, "curated", "person_mentions", table)
    exact = evaluate_against_truth(settings, cat)
    score = exact.links["person"]
    assert score["all"].precision == 1.0 and score["all"].linked_pairs > 100
    assert 0.5 < score["all"].recall < 0.99  # the callers' pairs are missed
    assert score["fallback"].linked_pairs == 0 and score["fallback"].recall == 0.0
    assert any(p.startswith("person links: recall") for p in exact.problems)
    assert exact.link_lines()[0].startswith("person links: precision 100.00% recall")
    console = Console(record=True, width=200)
    print_truth(console, exact)  # what `make run` and `streethub quality report` print
    printed = console.export_text()
    assert exact.link_lines()[0] in printed and "target missed: person links: recall" in printed
    # ten people merged into one by wrong links: precision falls under the target
    doctor = table.filter(pl.col("dataset") == "family_doctor_contracts")
    ten = doctor["person_id"].unique(maintain_order=True)[:10].to_list()
    with open_lake(settings) as con:
        con.execute(
            "UPDATE curated.person_mentions SET person_id = ? WHERE list_contains(?, person_id)",
            [ten[0], ten],
        )
    merged = evaluate_against_truth(settings, cat)
    assert merged.links["person"]["all"].precision < 1.0
    assert any(p.startswith("person links: precision") for p in merged.problems)


def test_records_of_two_files_with_the_same_source_rows_meet_their_own_truth(tmp_path):
    """A dataset delivered in two files numbers its source rows from 1 in each: a record is
    matched to the truth of its own file's row (the file and the row key it), never to the
    other file's row of the same number."""
    folder = tmp_path / "truth" / "yjj" / "incidents"
    folder.mkdir(parents=True)
    pl.DataFrame(
        {
            "_file": ["a.csv", "a.csv", "b.csv", "b.csv"],
            "_source_row": [1, 2, 1, 2],
            "_person": ["A", "B", "C", None],
        }
    ).write_parquet(folder / "clean.parquet")
    keys = {
        INCIDENTS: pl.DataFrame(
            {
                "_key_pid": ["ka1", "ka2", "kb1", "kb2", "kx1"],
                "_delivery_id": ["d-a", "d-a", "d-b", "d-b", "d-x"],
                "_source_row": [1, 2, 1, 2, 1],
            }
        )
    }
    mentions = pl.DataFrame(
        {
            "dept": ["yjj"] * 5,
            "dataset": ["incidents"] * 5,
            "key_pid": ["ka1", "ka2", "kb1", "kb2", "kx1"],
            "person_id": ["pA", "pB", "pC", "pD", "pX"],
        }
    )
    files = {"d-a": "a.csv", "d-b": "b.csv"}  # d-x: someone else's delivery
    [(ref, judged)] = judged_parts(mentions, keys, tmp_path / "truth", files, "person")
    assert ref == INCIDENTS
    pairs = sorted(zip(judged["linked"], judged["truth"], strict=True), key=str)
    assert pairs == [("pA", "A"), ("pB", "B"), ("pC", "C"), ("pD", None)]
