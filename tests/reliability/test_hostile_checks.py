"""The hostile corpus and its checks, fast: what it covers, and that its checks can fail.

``test_hostile.py`` is only worth its minutes if a missed expectation, an
unbalanced account or a leaked value would make it fail: these tests feed its
checks lakes and outputs made up to be wrong (in milliseconds, unmarked); the
two corpus tests build the session street and are ``slow`` like the rest here.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from stdnum.cn import ric

from tests.reliability.conftest import fresh_home
from tests.reliability.corpus import (
    MARK_MOBILE,
    MARK_NAME,
    MARKERS,
    build_corpus,
    clean_markers_absent,
    fail,
    load,
    marker_id,
    plant,
    quarantine,
    refused,
    skipped_rows,
    waiting,
)
from tests.reliability.test_hostile import (
    Lake,
    balance_problems,
    check_variant,
    leak_problems,
    miss,
)

CONNECTORS = {"csv-utf8", "csv-bom", "csv-gbk", "jsonl", "json", "xlsx", "parquet"}
# the kinds of issue 9 and the connectors each must be tried with (at least)
KINDS = {
    "nesting bomb": {"jsonl", "json"},
    "truncated": {"csv-utf8", "csv-bom", "csv-gbk", "jsonl", "json", "xlsx", "parquet"},
    "broken line": {"jsonl"},
    "wrong encoding in one line": {"csv-utf8", "csv-gbk"},
    "oversized field": {"csv-utf8", "csv-gbk", "jsonl", "json"},
    "empty": {"csv-utf8", "csv-bom", "csv-gbk", "jsonl", "json", "xlsx", "parquet"},
    "missing header": {"csv-utf8", "csv-gbk"},
    "wrong number of cells": {"csv-bom", "csv-gbk"},
    "stray header": {"csv-utf8", "csv-gbk", "xlsx"},
    "duplicate key": {"jsonl", "json"},
    "not an object": {"jsonl", "json"},
    "re-delivery": {"csv-bom", "csv-utf8", "jsonl", "json", "xlsx", "parquet"},
    "wrong encoding": {"csv-gbk"},
    "symlink": set(),
    "device": set(),
    "directory": set(),
    "odd file name": set(),
    "upper-case extension": {"csv-utf8", "jsonl"},
    "corrupt archive": {"xlsx"},
    "oversized member": {"xlsx"},
    "too many members": {"xlsx"},
    "still being written": set(),
    "not parquet": {"parquet"},
    "file too large": set(),
}


@pytest.fixture(scope="module")
def corpus(reliability_street, tmp_path_factory):
    home = tmp_path_factory.mktemp("corpus") / "home"
    fresh_home(reliability_street, home)
    return home, build_corpus(home, reliability_street[1])


@pytest.mark.slow  # builds the session street
def test_corpus_covers_every_kind_for_every_connector(corpus):
    _, variants = corpus
    assert len(variants) >= 40
    have: dict[str, set[str]] = {}
    for v in variants:
        have.setdefault(v.hostility, set()).add(v.connector)
    assert {v.connector for v in variants} == CONNECTORS
    missing = {
        k: sorted(c - have.get(k, set())) for k, c in KINDS.items() if c - have.get(k, set())
    }
    assert not missing
    assert not set(KINDS) - set(have)
    names = [v.file_name for v in variants]
    for odd in ("\n", "\x1b[2J", "\u202e", " ", "补报"):
        assert any(odd in n for n in names), odd
    assert any(len(n.encode()) > 200 for n in names)
    assert {n.rsplit(".", 1)[1] for n in names} >= {"CSV", "JSONL"}


@pytest.mark.slow  # builds the session street
def test_markers_are_valid_unused_and_planted(corpus):
    home, variants = corpus
    ids = [m for m in MARKERS if len(m) == 18]
    assert ids and all(ric.is_valid(m) for m in ids)
    assert len({marker_id(i) for i in range(len(variants))}) == len(variants)
    assert not clean_markers_absent(home)  # the street itself never holds one
    plant(home, variants)
    planted = b"".join(
        v.path(home).read_bytes() for v in variants if v.path(home).is_file() and v.settled
    )
    for marker in (MARK_NAME, MARK_MOBILE):
        assert marker.encode() in planted or marker.encode("gbk") in planted
    crc = next(v for v in variants if v.file_name.endswith("_crc.xlsx"))
    with zipfile.ZipFile(crc.path(home)) as z:
        assert z.testzip() is not None  # a member fails its CRC


# ------------------------------------------------------------------ the checks can fail
def account(delivery_id="d1", status="loaded", reason=None, read=10, loaded=9, q=1):
    return {
        "delivery_id": delivery_id,
        "dept": "cgj",
        "dataset": "violation_cases",
        "status": status,
        "reason": reason,
        "rows_read": read,
        "rows_loaded": loaded,
        "rows_quarantined": q,
        "notes": None,
    }


def qrow(delivery_id="d1", row=12, reason="row 12: possibly truncated last row"):
    return {
        "delivery_id": delivery_id,
        "file_name": "f.csv",
        "stage": "raw",
        "source_row": row,
        "field": None,
        "check_name": "parse",
        "reason": reason,
        "value_masked": None,
    }


def stage(delivery_id="d1", rows_in=9, out=9, q=0, skipped=0):
    return {
        "delivery_id": delivery_id,
        "stage": "staged",
        "rows_in": rows_in,
        "rows_out": out,
        "rows_quarantined": q,
        "rows_skipped": skipped,
    }


def test_miss_tells_each_way_an_outcome_can_be_wrong():
    lake = Lake(quarantine=[qrow()], stages=[stage()])
    good = [account()]
    assert miss(quarantine(1, "truncated", rows=10, at=(12,)), good, lake, None) is None
    assert miss(quarantine(1, "truncated", rows=10, at=(13,)), good, lake, None)
    assert miss(quarantine(1, "too deep", rows=10), good, lake, None)
    assert miss(quarantine(2, "truncated", rows=10), good, lake, None)
    assert miss(quarantine(1, "truncated", rows=11), good, lake, None)
    assert miss(load(10), good, lake, None)
    assert miss(fail("truncated"), good, lake, None)
    assert miss(quarantine(1, "truncated"), [], lake, None)
    assert miss(quarantine(1, "truncated"), good * 2, lake, None)
    failed = [
        account(status="failed", reason="file f.csv: the file is empty", read=0, q=0, loaded=0)
    ]
    assert miss(fail("empty"), failed, lake, None, "f.csv") is None
    assert miss(fail("empty"), failed, lake, None, "g.csv")  # names another file
    assert miss(refused("symbolic link"), failed, lake, None)
    assert miss(fail("truncated"), failed, lake, None)


def test_redelivery_and_waiting_checks_can_fail():
    orig = account("d0", q=0, loaded=10)
    again = account("d1", q=0, loaded=10)
    deliveries = {
        "d0": {"dept": "cgj", "dataset": "violation_cases", "file_name": "a.csv"},
        "d1": {"dept": "cgj", "dataset": "violation_cases", "file_name": "b.csv"},
    }
    staged_all = Lake(
        deliveries=deliveries,
        accounts=[orig, again],
        stages=[stage("d0", 10, 9, 1), stage("d1", 10, 9, 1)],  # staged again: the bug
    )
    exp = skipped_rows("a.csv", load(10))
    assert miss(exp, [again], staged_all, orig)
    skipped = Lake(
        deliveries=deliveries,
        accounts=[orig, again],
        stages=[stage("d0", 10, 9, 1), stage("d1", 10, 0, 1, 9)],
    )
    assert miss(exp, [again], skipped, orig) is None

    from tests.reliability.corpus import Variant

    v = Variant("late", "csv-bom", "still being written", "cgj", "violation_cases", "b.csv",
                waiting(10), lambda p: None, settled=False)  # fmt: skip
    landed_early = {"late": [again]}
    assert check_variant(v, skipped, skipped, landed_early, landed_early)
    assert check_variant(v, Lake(), skipped, {}, {"late": [again]}) is None


def test_balance_problems_find_unbalanced_and_unaccounted():
    lake = Lake(
        deliveries={"d1": {"delivery_id": "d1"}, "d2": {"delivery_id": "d2"}},
        accounts=[account(read=10, loaded=8, q=1)],
        quarantine=[qrow()],
        stages=[stage(rows_in=8, out=7)],
    )
    problems = " ".join(balance_problems(lake))
    assert "raw account does not balance" in problems
    assert "staged account does not balance" in problems
    assert "d2: landed, never accounted" in problems


def test_leak_problems_find_markers_control_characters_and_paths(tmp_path: Path):
    home = tmp_path / "home"
    (home / "reports").mkdir(parents=True)
    (home / "reports" / "quality.html").write_text("<p>ok</p>", encoding="utf-8")
    clean = Lake(accounts=[account(reason="file a\\x1b[2J.csv: truncated")])
    assert leak_problems([b"INFO fine\n"], [clean], home) == []

    assert leak_problems([f"x {MARK_NAME}".encode("gbk")], [clean], home)
    assert leak_problems([b"name \\u6d4b\\u8bd5\\u7532\\u4e59\\u4e19"], [clean], home)
    assert leak_problems([b"file \x1b[2J.csv"], [clean], home)
    assert leak_problems([b"a\nFORGED LOG LINE.csv"], [clean], home)
    for reason in (f"row 3: {marker_id(5)}", f"landed at {home}/landing/x.csv", "a\u202eb"):
        assert leak_problems([], [Lake(accounts=[account(reason=reason)])], home), reason
    masked = Lake(quarantine=[{**qrow(), "value_masked": MARK_MOBILE}])
    assert leak_problems([], [masked], home)
    (home / "reports" / "quality.html").write_text(f"<td>{MARK_NAME}</td>", encoding="utf-8")
    assert leak_problems([], [clean], home)
