"""The row gate against the simulator's ground truth: the targets hold on every dataset."""

from __future__ import annotations

from functools import lru_cache

import polars as pl
from test_gate_street import street

from quality.gate import gate
from quality.truth_eval import TruthReport, evaluate


@lru_cache(maxsize=1)
def report() -> TruthReport:
    s = street()
    staged, quarantine = {}, {}
    for ref, raw in s.raw.items():
        r = gate(raw, s.dataset(ref))
        staged[ref], quarantine[ref] = r.staged, r.quarantine
    return evaluate(staged, quarantine, s.truth, s.catalogue, s.files)


def test_every_dataset_is_measured():
    assert report().datasets.height == len(street().raw)


def test_targets_hold():
    rep = report()
    assert rep.problems() == [], rep.missed
    t = rep.totals
    assert t["dirty_rows"] > 300
    assert t["clean_rows_quarantined"] == 0
    assert t["citizen_id_exact"] == 1.0 and t["citizen_ids_repaired"] > 50
    assert t["cleaning_rate"] >= 0.98
    assert t["defects_missed"] == 0


def test_targets_hold_per_dataset():
    d = report().datasets
    assert d.filter(pl.col("clean_rows_quarantined") > 0).height == 0
    assert d.filter(pl.col("defects_missed") > 0).height == 0
    assert d.filter(pl.col("repaired_recoverable") < pl.col("dirty_recoverable") * 0.98).height == 0


def test_a_gate_that_stages_everything_raw_is_caught():
    s = street()
    ref = "gaj.registered_residents"
    raw = s.raw[ref]
    lazy = gate(raw, s.dataset(ref))
    sloppy = raw.select(lazy.staged.columns).with_columns(
        pl.col("birth_date").str.to_date(strict=False),
        pl.col("updated_at").str.to_datetime(strict=False),
    )
    empty = lazy.quarantine.clear()
    rep = evaluate({ref: sloppy}, {ref: empty}, s.truth, s.catalogue, s.files)
    assert rep.totals["cleaning_rate"] < 0.5 and rep.problems()
