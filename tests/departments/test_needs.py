"""The latent need process (departments/NEEDS.md): reproducible, responding to the signals
in the documented direction, its true probabilities calibrated and a meaningful ceiling."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from departments import history, needs
from departments.outcomes import OUTCOME_SPECS
from departments.simulate import SPECS
from departments.world import build_world

LAST = dt.date(2026, 11, 30)
DAYS = 2 * 365


def street(residents: int, seed: int):
    """A world, the records the departments deliver, the process over two years."""
    w = build_world(residents, seed, LAST)
    records = {(s.dept, s.code): s.build(w) for s in SPECS if s not in OUTCOME_SPECS}
    first = LAST - dt.timedelta(days=DAYS - 1)
    w.needs = needs.run(w, records, first, LAST)
    return w, records


@pytest.fixture(scope="module")
def big():
    return street(3000, 16)


def complete_cutoffs(proc: needs.NeedProcess) -> list[dt.date]:
    return [c for c in needs.month_cutoffs(proc)
            if (c - proc.first).days + needs.HORIZON_DAYS < proc.days]  # fmt: skip


def scored(proc: needs.NeedProcess) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per need: the true probabilities and the outcomes over every complete cut-off."""
    out = {need: ([], []) for need in needs.NEEDS}
    for cutoff in complete_cutoffs(proc):
        probs, happened = proc.probabilities(cutoff), proc.outcomes(cutoff)
        for need in needs.NEEDS:
            out[need][0].append(probs[need])
            out[need][1].append(happened[need])
    return {need: (np.concatenate(p), np.concatenate(y)) for need, (p, y) in out.items()}


def test_the_process_is_reproducible_for_a_seed_and_leaves_the_world_as_it_was():
    w, records = street(400, 5)
    again, _ = street(400, 5)
    other, _ = street(400, 6)
    assert w.needs.events == again.needs.events
    assert w.needs.events != other.needs.events
    cutoff = needs.month_cutoffs(w.needs)[-1]
    p, q = w.needs.probabilities(cutoff), again.needs.probabilities(cutoff)
    assert all(np.array_equal(p[k], q[k]) for k in needs.NEEDS)
    before = w.rng.getstate()  # the outcomes draw from streams of their own
    rows = [spec.build(w) for spec in OUTCOME_SPECS]
    needs.run(w, records, w.needs.first, LAST)
    assert w.rng.getstate() == before
    assert rows == [spec.build(w) for spec in OUTCOME_SPECS]
    assert sum(len(r) for r in rows) > 0


def test_the_true_probabilities_are_calibrated(big):
    """The exact recursion agrees with the draws: over every complete cut-off the expected
    number of residents with a need is the number that had one (within 4 standard errors)."""
    for need, (p, y) in scored(big[0].needs).items():
        spread = np.sqrt((p * (1 - p)).sum())
        assert abs(p.sum() - y.sum()) < 4 * spread + 0.1 * y.sum(), need


def _rate(proc: needs.NeedProcess, need: str, rows: np.ndarray, mask: np.ndarray) -> float:
    """Events per person-day of ``need`` among ``rows`` on the days ``mask`` is true."""
    hits = np.zeros_like(mask)
    for r, t in proc.events[need]:
        hits[r, t] = True
    return hits[rows][mask[rows]].sum() / max(mask[rows].sum(), 1)


def test_outcomes_respond_to_the_signals_in_the_documented_direction(big):
    w, _ = big
    proc = w.needs
    n, days = len(w.people), proc.days
    everyone = np.arange(n)
    always = np.ones((n, days), dtype=bool)
    sig = {k: np.broadcast_to(v, (n, days + needs.HORIZON_DAYS))[:, :days] > 0
           for k, v in proc.signals.items() if k != "old"}  # fmt: skip
    old = np.array([p.age(LAST) >= 70 for p in w.people])
    for need, signal in [("health_event", "chronic"), ("home_care", "alone"),
                         ("financial_assistance", "low_income"), ("emergency_help", "alone")]:  # fmt: skip
        with_it = _rate(proc, need, everyone, sig[signal])
        without = _rate(proc, need, everyone, ~sig[signal])
        assert with_it > 1.5 * without, (need, signal)
    elderly = everyone[old]
    assert _rate(proc, "home_care", elderly, always) > 3 * _rate(
        proc, "home_care", everyone[~old], always
    )
    # living alone and in a decline (what declining door activity shows): a health event
    # is far likelier than for the same elderly on their other days
    alone_old = everyone[old & sig["alone"][:, 0]]
    in_decline = _rate(proc, "health_event", alone_old, proc.decline)
    otherwise = _rate(proc, "health_event", alone_old, ~proc.decline)
    assert in_decline > 5 * otherwise


def test_door_activity_declines_before_a_planted_health_event(big):
    """The seed's example as the hub sees it: elderly residents living alone with smart
    doors pass their door far less between the decline's onset and a planted event than
    on their own usual days (two to four months before it)."""
    w, _ = big
    proc = w.needs
    doors = history.DoorHistory(w, proc, 365)
    where = {p.cid: i for i, p in enumerate(doors.people)}
    before, usual = [], []
    for e in needs.planted_events(proc):
        i = where.get(e["_person"])
        t = (e["event_date"] - doors.first).days
        if i is None or t < 120:
            continue
        onset = (e["decline_onset"] - doors.first).days
        before.append(doors.counts[i, max(onset, t - 30) : t].mean())
        usual.append(doors.counts[i, t - 120 : t - 60].mean())
    assert len(before) >= 3
    assert np.mean(before) < 0.6 * np.mean(usual)


def test_the_ceiling_pr_auc_is_computable_and_beats_the_rule(big):
    """PR-AUC (average precision) of the true probabilities: the ceiling a need model is
    compared with, printed; it must be far above the prevalence and above the street's
    rule ("aged 80+ and living alone")."""
    w, _ = big
    proc = w.needs
    rule = []
    for cutoff in complete_cutoffs(proc):
        rule.append([p.age(cutoff) >= 80 and len(p.household.members) == 1 for p in w.people])
    rule_score = np.concatenate(rule).astype(float)
    for need, (p, y) in scored(proc).items():
        ceiling = average_precision_score(y, p)
        by_rule = average_precision_score(y, rule_score)
        print(f"ceiling PR-AUC {need}: {ceiling:.3f} (prevalence {y.mean():.4f}, "
              f"rule {by_rule:.3f})")  # fmt: skip
        assert ceiling > 3 * y.mean() and ceiling > 2 * by_rule, need
