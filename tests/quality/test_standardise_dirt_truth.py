"""The dirt of real exports against the simulator's ground truth: the small street carries
every new kind, the gate repairs or quarantines each one, and the evaluation would see it
if the standardiser stopped repairing one."""

from __future__ import annotations

import polars as pl
from test_gate_street import judged, street, street_report

from catalog.model import Standardising
from quality import evaluation

NEW_KINDS = (
    "placeholder", "zero_width", "id_separators", "money_unit", "dmy_date",
    "month_precision", "phone_extension", "unknown_date", "excel_text",
)  # fmt: skip


def truth_defects() -> pl.DataFrame:
    """The street's defects as the simulator made them, with the dataset each is in."""
    frames = [
        pl.read_parquet(p).with_columns(
            pl.lit(f"{p.parent.parent.name}.{p.parent.name}").alias("_ref")
        )
        for p in sorted(street().truth.rglob("defects.parquet"))
    ]
    return pl.concat(frames, how="diagonal_relaxed")


def carrying(kind: str) -> set[str]:
    """The datasets whose truth holds defects of ``kind``: the only ones whose figures a
    change about that kind can move (the others are judged as in the street's report)."""
    found = set(truth_defects().filter(pl.col("kind") == kind)["_ref"].to_list())
    assert found, f"the street carries no {kind} defect"
    return found


def test_the_street_carries_every_new_kind_with_its_truth():
    d = truth_defects().filter(pl.col("kind").is_in(NEW_KINDS))
    counts = dict(d.group_by("kind").len().iter_rows())
    assert set(counts) == set(NEW_KINDS), counts
    assert d.filter(pl.col("delivered") == pl.col("truth")).height == 0
    lost = d.filter(~pl.col("recoverable"))["kind"].unique().sort().to_list()
    assert lost == ["month_precision", "unknown_date"]


def test_every_new_kind_is_repaired_or_quarantined():
    rep = street_report()
    assert rep.problems() == [], rep.missed
    assert rep.missed.height == 0
    assert rep.totals["clean_rows_altered"] == 0


def test_a_standardiser_without_the_placeholder_rule_is_caught():
    rep = judged(carrying("placeholder"), Standardising(placeholders=()))
    missed = rep.missed.filter(pl.col("kind") == "placeholder")
    assert missed.height > 0
    assert rep.problems()


def test_month_only_and_unknown_dates_are_judged_by_the_documented_rule(monkeypatch):
    monkeypatch.setattr(evaluation, "POLICY_TRUTH", {})
    rep = judged(carrying("month_precision"))
    # against the true day the staged first-of-month is wrong: the rule is what is judged
    assert "month_precision" in set(rep.missed["kind"].to_list())


def assert_quarantined_not_repaired(right: evaluation.TruthReport, rep: evaluation.TruthReport):
    """A standardiser without a rule, judged (``rep``) beside the right one (``right``): rows
    it should have repaired are quarantined instead, and the cleaning rate falls below its
    target."""
    repaired = "repaired_recoverable"
    assert rep.datasets[repaired].sum() < right.datasets[repaired].sum()
    assert rep.datasets["quarantined"].sum() > right.datasets["quarantined"].sum()
    assert any("cleaning rate" in p for p in rep.problems()) and not right.problems()


def test_a_standardiser_leaving_excel_text_markers_is_caught(monkeypatch):
    from quality import standardise

    refs = carrying("excel_text")
    right = judged(refs)
    monkeypatch.setattr(standardise, "without_excel_markers", lambda t: t)
    rep = judged(refs)
    # the marked IDs are quarantined (no valid ID) instead of repaired: the cleaning rate falls
    assert_quarantined_not_repaired(right, rep)


def test_a_standardiser_leaving_padded_names_is_caught(monkeypatch):
    from quality import standardise

    refs = carrying("name_padded")
    right = judged(refs)
    monkeypatch.setattr(standardise, "name_unpadded", lambda t: t)
    rep = judged(refs)
    missed = rep.missed.filter(pl.col("kind") == "name_padded")
    assert missed.height > 0 and right.missed.height == 0
    assert any("cleaning rate" in p or "missed" in p for p in rep.problems())


def test_a_standardiser_ignoring_system_codes_is_caught(monkeypatch):
    from quality import standardise

    refs = carrying("coded_value")
    right = judged(refs)
    monkeypatch.setattr(standardise, "code_spellings", lambda f: {})
    rep = judged(refs)
    # a gender written 1 or 男性 is quarantined (not an allowed value) instead of staged as 男
    assert_quarantined_not_repaired(right, rep)


def test_a_standardiser_reading_units_on_money_only_is_caught(monkeypatch):
    from quality import standardise

    refs = carrying("count_unit")
    right = judged(refs)
    money_only = standardise.unit_pattern
    monkeypatch.setattr(
        standardise, "unit_pattern", lambda f: money_only(f) if f.unit and "元" in f.unit else None
    )
    rep = judged(refs)
    # an age typed 85岁 is quarantined (unreadable as a number) instead of staged as 85
    assert_quarantined_not_repaired(right, rep)


def test_a_standardiser_reading_no_stored_midnights_is_caught(monkeypatch):
    from quality import standardise

    refs = carrying("midnight_timestamp")
    right = judged(refs)
    # the date reading before: a bare midnight only, no fraction, no zone, no UTC day before
    bare = r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T]0{1,2}:0{1,2}(?::0{1,2})?)?$"
    monkeypatch.setattr(standardise, "_DATE_RE", bare)
    monkeypatch.setattr(standardise, "beijing_midnight", lambda t: pl.lit(None, pl.Date))
    rep = judged(refs)
    assert_quarantined_not_repaired(right, rep)
