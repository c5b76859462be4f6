"""Free-text scrubbing on the labelled hotline set (``data/hotline_texts.jsonl``).

Texts written apart from the simulator's templates (``data/make_hotline_texts.py`` says
how): names where 12345 texts put them, identifiers in the spellings people use, and the
look-alikes a scrubber must leave (order, waybill and work-order numbers, 井盖 numbers,
dates, amounts, building numbers, places named like people). A labelled value counts as
scrubbed when it no longer stands in the scrubbed text, and as kept when it still does.
Goals (issue 13): names ≥ 95 % recall, identifiers ≥ 99 %, look-alikes kept ≥ 95 %; on the
whole set and on its held-out part (frames written last, never tuned on; the figures of
the other parts are printed too: ``data/README.md``). A name finding that
touches no labelled name is a false one: precision has a floor too, so recall is not
bought by masking every word that starts with a surname.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from masking.text import scrub

DATA = Path(__file__).parent / "data" / "hotline_texts.jsonl"
GOALS = {"names": 0.95, "identifiers": 0.99, "look-alikes kept": 0.95, "name precision": 0.95}


def _rows() -> list[dict]:
    with DATA.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _group(kind: str) -> str:
    if kind == "person_name":
        return "names"
    return "look-alikes kept" if kind.startswith("keep:") else "identifiers"


def _score(rows: list[dict], scrubbed: dict[int, tuple]) -> dict:
    total: Counter = Counter()
    good: Counter = Counter()
    for row in rows:
        text = row["text"]
        masked, findings = scrubbed[row["id"]]
        labelled = [(item["kind"], item["value"]) for item in row["pii"]]
        labelled += [("keep:" + item["kind"], item["value"]) for item in row["keep"]]
        for kind, value in labelled:
            total[kind] += 1
            good[kind] += (value in masked) is kind.startswith("keep:")
        names = [v for k, v in labelled if k == "person_name"]
        for f in findings:
            if f.kind == "person_name":
                span = text[f.start : f.end]
                total["name findings"] += 1
                good["name findings"] += any(span in n or n in span for n in names)
    rates: dict[str, float] = {}
    for group in ("names", "identifiers", "look-alikes kept"):
        kinds = [k for k in total if k != "name findings" and _group(k) == group]
        rates[group] = sum(good[k] for k in kinds) / sum(total[k] for k in kinds)
    rates["name precision"] = good["name findings"] / total["name findings"]
    per_kind = {k: f"{good[k]}/{total[k]}" for k in sorted(total)}
    return {"rates": rates, "per_kind": per_kind, "total": total, "texts": len(rows)}


@pytest.fixture(scope="module")
def figures() -> dict[str, dict]:
    rows = _rows()
    scrubbed = {r["id"]: scrub(r["text"]) for r in rows}
    parts = {f"part {p}": _score([r for r in rows if r["part"] == p], scrubbed)
             for p in ("tuning", "second", "third", "held_out")}  # fmt: skip
    return {"whole set": _score(rows, scrubbed), **parts}


def test_the_set_is_large_and_covers_every_kind(figures: dict) -> None:
    whole, held = figures["whole set"], figures["part held_out"]
    assert whole["texts"] >= 300 and held["texts"] >= 100
    total = whole["total"]
    assert total["person_name"] >= 300 and held["total"]["person_name"] >= 100
    for kind in ("mobile", "landline", "citizen_id", "bank_card", "plate", "email", "address"):
        assert total[kind] >= 5, kind
    for kind in ("order_number", "waybill_number", "work_order_number", "manhole_number",
                 "date", "amount", "building_number", "place"):  # fmt: skip
        assert total["keep:" + kind] >= 10, kind


def test_goals_on_the_hotline_set(figures: dict) -> None:
    missed = {}
    for part, scores in figures.items():
        rates = scores["rates"]
        print(f"\nhotline set, {part}: {scores['texts']} texts")
        for group, goal in GOALS.items():
            print(f"  {group:17} {rates[group]:7.2%}  (goal ≥ {goal:.0%})")
        print("  per kind:", scores["per_kind"])
        if part in ("whole set", "part held_out"):
            missed |= {(part, g): r for g, r in rates.items() if r < GOALS[g]}
    assert missed == {}
