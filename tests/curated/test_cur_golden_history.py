"""Golden-record rules without a street: history runs, the record date, the attributes."""

from __future__ import annotations

import datetime as dt

import polars as pl

from catalog.authority import authority, person_key
from catalog.loader import load_catalogue
from catalog.model import FieldType
from curated.golden import as_of_field, golden_attributes, golden_checks, history_of
from quality.scores_authority import comparisons

UTC = dt.UTC


def _obs(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "person_id": pl.String, "concept": pl.String, "value": pl.String,
            "source_dept": pl.String, "source_dataset": pl.String, "as_of": pl.Date,
            "known_at": pl.Datetime("us", "UTC"), "key_pid": pl.String,
        },
        orient="row",
    )  # fmt: skip


def _at(day: int) -> dt.datetime:
    return dt.datetime(2026, 6, day, tzinfo=UTC)


def test_history_is_runs_of_equal_values_in_date_order():
    d = dt.date
    obs = _obs([
        ("p1", "c", "B", "x", "y", d(2026, 3, 1), _at(3), "k3"),
        ("p1", "c", "A", "x", "y", d(2026, 1, 1), _at(5), "k1"),  # learned late
        ("p1", "c", "A", "x", "y", d(2026, 2, 1), _at(2), "k2"),
        ("p1", "c", "A", "x", "y", d(2026, 4, 1), _at(4), "k4"),
        ("p2", "c", "Z", "x", "y", d(2025, 1, 1), _at(1), "k5"),
    ])  # fmt: skip
    hist = history_of(obs)
    assert hist.select("person_id", "value", "valid_from", "valid_to", "as_of").rows() == [
        ("p1", "A", d(2026, 1, 1), d(2026, 3, 1), d(2026, 2, 1)),
        ("p1", "B", d(2026, 3, 1), d(2026, 4, 1), d(2026, 3, 1)),
        ("p1", "A", d(2026, 4, 1), None, d(2026, 4, 1)),
        ("p2", "Z", d(2025, 1, 1), None, d(2025, 1, 1)),
    ]
    # known_at: when the hub first held any record of the run
    assert hist["known_at"].to_list() == [_at(2), _at(3), _at(4), _at(1)]


def test_history_of_one_day_orders_by_load_time_then_record():
    d = dt.date(2026, 5, 1)
    obs = _obs([
        ("p", "c", "new", "x", "y", d, _at(2), "k1"),
        ("p", "c", "old", "x", "y", d, _at(1), "k9"),
    ])  # fmt: skip
    hist = history_of(obs)
    current = hist.filter(pl.col("valid_to").is_null())
    assert current["value"].to_list() == ["new"]
    assert history_of(obs.reverse()).equals(hist)


def test_history_of_one_day_and_load_is_the_same_whatever_the_record_keys():
    # three records of one day and one load, two values: which key a record has is the
    # home's key's choice (a keyed pseudonym), so it must not order the runs
    d, at = dt.date(2026, 5, 1), _at(1)
    rows = [("A", "k1"), ("B", "k2"), ("A", "k3")]
    hists = [
        history_of(_obs([("p", "c", v, "x", "y", d, at, keys[k]) for v, k in rows])).drop(
            "key_pid", strict=False
        )
        for keys in (
            {"k1": "k1", "k2": "k2", "k3": "k3"},
            {"k1": "k2", "k2": "k3", "k3": "k1"},
            {"k1": "k3", "k2": "k1", "k3": "k2"},
        )
    ]
    assert all(h.equals(hists[0]) for h in hists)
    # equal values make one run: A then B (value order), not A, B, A
    assert hists[0].select("value", "valid_from", "valid_to").rows() == [
        ("A", d, d),
        ("B", d, None),
    ]


def test_history_of_nothing_is_empty():
    assert history_of(_obs([])).height == 0


def test_a_record_is_dated_by_its_event_time_else_its_own_date():
    cat = load_catalogue()
    for _, ds in cat.datasets():
        name = as_of_field(ds)
        dated = [f for f in ds.fields if f.type in (FieldType.date, FieldType.datetime)]
        if name is None:
            assert all(f.level.sensitive or f.concept not in (None, "event.time") for f in dated)
            continue
        f = ds.field(name)
        assert not f.level.sensitive and f.concept in (None, "event.time")
        events = [g for g in dated if g.concept == "event.time" and not g.level.sensitive]
        assert f.concept == "event.time" or not events
    # a follow-up is dated by its visit, not by the next one planned
    chronic = authority(cat, "person.chronic_disease").dataset
    assert chronic.field(as_of_field(chronic)).concept == "event.time"


def test_attributes_and_checks_follow_the_catalogue():
    cat = load_catalogue()
    attrs = golden_attributes(cat)
    assert person_key(cat) not in {a.concept for a in attrs}
    assert all(a.concept.startswith("person.") for a in attrs)
    for a in attrs:
        assert authority(cat, a.concept) == a.authority
        assert a.sensitive == a.authority.dataset.field(a.authority.field).level.sensitive
    assert len({a.column for a in attrs}) == len(attrs)
    checks = golden_checks(cat)
    keyed = {(c.dept, c.dataset, c.field) for c in comparisons(cat)}
    # every comparison of the consistency score on a golden attribute is a golden check
    golden = {a.concept for a in attrs}
    on_golden = {(c.dept, c.dataset, c.field) for c in comparisons(cat) if c.concept in golden}
    assert on_golden and on_golden <= {(c.dept, c.dataset, c.field) for c in checks}
    # and the others reach datasets without the person key (through the master index)
    extra = [c for c in checks if (c.dept, c.dataset, c.field) not in keyed]
    assert extra and all(c.join_field == c.auth_key == "person_id" for c in extra)
    # never a dataset against itself
    assert all((c.dept, c.dataset) != (c.auth_dept, c.auth_dataset) for c in checks)
