"""Free-text scrubbing against the simulator's ground truth (text_pii.parquet).

A simulated street (1,000 residents, seed 7, one day): the 12345 appeals (data behind
the HTTP API, in the served order) and the cgj / wg / yjj descriptions in the inbox.
A true value counts as found when it no longer appears in the scrubbed text (for
addresses: when an address finding covers its part below the community). A finding
is a true positive when its span lies inside a true value of the same kind in that row.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from departments.simulate import SYSTEMS_DIR, sim_dir_for, simulate, truth_dir
from masking.text import scrub

START = dt.date(2026, 11, 20)


def _texts(home: Path) -> list[tuple[str, int, str]]:
    rows: list[tuple[str, int, str]] = []
    appeals = pl.read_parquet(sim_dir_for(home) / SYSTEMS_DIR / "rx" / "appeals.parquet")
    appeals = appeals.sort(["update_time", "appeal_id"])
    rows += [("rx", i, t) for i, t in enumerate(appeals["content"].to_list(), start=1)]
    day = START.strftime("%Y%m%d")
    for dept, name, column in (
        ("cgj", "violation_cases", "案件描述"),
        ("wg", "grid_events", "事件描述"),
    ):
        frame = pl.read_csv(home / f"inbox/{dept}/{name}_{day}.csv", infer_schema=False)
        rows += [(dept, i, t) for i, t in enumerate(frame[column].to_list(), start=2)]
    with (home / f"inbox/yjj/incidents_{day}.jsonl").open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            try:
                rows.append(("yjj", i, json.loads(line)["description"]))
            except (ValueError, KeyError):
                continue  # a broken line: the simulator's truth has no text for it either
    return [r for r in rows if r[2]]


def _truth(home: Path) -> dict[tuple[str, int], list[tuple[str, str]]]:
    truth: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for dept, name in (
        ("rx", "appeals"),
        ("cgj", "violation_cases"),
        ("wg", "grid_events"),
        ("yjj", "incidents"),
    ):
        frame = pl.read_parquet(truth_dir(sim_dir_for(home)) / dept / name / "text_pii.parquet")
        for r in frame.iter_rows(named=True):
            truth.setdefault((dept, r["_source_row"]), []).append((r["kind"], r["value"]))
    return truth


@pytest.fixture(scope="module")
def scores(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("street") / "home"
    simulate(home, residents=1000, seed=7, days=1, start=START)
    truth = _truth(home)
    found: dict[str, int] = {}
    total: dict[str, int] = {}
    tp: dict[str, int] = {}
    fp: dict[str, int] = {}
    for dept, row, text in _texts(home):
        masked, findings = scrub(text)
        values = truth.get((dept, row), [])
        for kind, value in values:
            assert value in text, (dept, row, kind)  # rows line up with the truth
            total[kind] = total.get(kind, 0) + 1
            if kind == "address":
                hit = any(f.kind == "address" and text[f.start : f.end] in value for f in findings)
            else:
                hit = value not in masked
            found[kind] = found.get(kind, 0) + hit
        for f in findings:
            span = text[f.start : f.end]
            ok = any(k == f.kind and span in v for k, v in values)
            (tp if ok else fp)[f.kind] = (tp if ok else fp).get(f.kind, 0) + 1
    recall = {k: found.get(k, 0) / n for k, n in total.items()}
    precision = {k: tp.get(k, 0) / (tp.get(k, 0) + fp.get(k, 0)) for k in set(tp) | set(fp)}
    return {"recall": recall, "precision": precision, "total": total, "false_positives": fp}


def test_truth_is_not_trivial(scores: dict) -> None:
    assert scores["total"]["person_name"] >= 50 and scores["total"]["mobile"] >= 20
    assert scores["total"]["citizen_id"] >= 3


def test_recall_ids_and_mobiles(scores: dict) -> None:
    assert scores["recall"]["citizen_id"] >= 0.99
    assert scores["recall"]["mobile"] >= 0.99


def test_recall_names(scores: dict) -> None:
    assert scores["recall"]["person_name"] >= 0.90


PRECISION_FLOOR = {"person_name": 0.9, "address": 0.9}  # every other kind: 0.99


def test_precision_reported(scores: dict) -> None:
    """Every kind the truth has was found and measured; no kind (one the truth lacks
    included: its precision is 0) falls below its floor."""
    print("text PII scrubbing vs truth:", scores)
    precision = scores["precision"]
    assert set(scores["total"]) <= set(precision), "a kind in the truth was never found"
    low = {k: p for k, p in precision.items() if p < PRECISION_FLOOR.get(k, 0.99)}
    assert low == {}, scores["false_positives"]
