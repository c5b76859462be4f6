"""The correction loop (校核纠错): quarantine issues and disputes opened, then resolved."""

from __future__ import annotations

import datetime as dt

import polars as pl

from quality.corrections import (
    ISSUE_SCHEMA,
    empty_issues,
    issue_counts,
    open_dispute,
    update_issues,
)

T0 = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def quarantine(rows: list[tuple[str, str, str, str, dt.datetime]]) -> pl.DataFrame:
    """rows of (key_pid, delivery_id, field, check_name, quarantined_at) for mzj.elderly_alone."""
    return pl.DataFrame(
        {
            "dept": ["mzj"] * len(rows),
            "dataset": ["elderly_alone"] * len(rows),
            "delivery_id": [r[1] for r in rows],
            "file_name": ["elderly_alone.xlsx"] * len(rows),
            "source_row": list(range(3, 3 + len(rows))),
            "stage": ["staged"] * len(rows),
            "field": [r[2] for r in rows],
            "check_name": [r[3] for r in rows],
            "reason": ["bad"] * len(rows),
            "value_masked": [None] * len(rows),
            "quarantined_at": [r[4] for r in rows],
            "key_pid": [r[0] for r in rows],
        },
        schema_overrides={"quarantined_at": pl.Datetime("us", "UTC")},
    )


def staged(rows: list[tuple[str, str, dt.datetime, str | None]]) -> pl.DataFrame:
    """rows of (key_pid, delivery_id, loaded_at, mobile) for mzj.elderly_alone."""
    return pl.DataFrame(
        {
            "dept": ["mzj"] * len(rows),
            "dataset": ["elderly_alone"] * len(rows),
            "key_pid": [r[0] for r in rows],
            "_delivery_id": [r[1] for r in rows],
            "_loaded_at": [r[2] for r in rows],
            "mobile": [r[3] for r in rows],
        },
        schema_overrides={"_loaded_at": pl.Datetime("us", "UTC")},
    )


def test_quarantined_rows_open_one_issue_per_key_and_check() -> None:
    q = quarantine(
        [
            ("p1", "d1", "citizen_id", "citizen_id_checksum", T0),
            ("p1", "d1", "birth_date", "birth_date_matches_citizen_id", T0),
            ("p2", "d1", "name", "required", T0),
            ("p2", "d1", "gender", "required", T0),  # same key and check: one issue
            (None, "d1", "citizen_id", "required", T0),  # no key: cannot be followed
        ]
    )
    issues = update_issues(empty_issues(), q, staged([]), T0)
    assert issues.schema == pl.Schema(ISSUE_SCHEMA)
    assert issues.height == 3
    assert set(issues["status"]) == {"open"} and set(issues["kind"]) == {"quarantine"}
    assert issues.filter(pl.col("key_pid") == "p2")["field"].item() == "gender"
    # running again with the same quarantine opens nothing new
    again = update_issues(issues, q, staged([]), T0 + DAY)
    assert again.height == 3 and again["issue_id"].n_unique() == 3


def test_next_delivery_passing_the_gate_resolves() -> None:
    q = quarantine([("p1", "d1", "name", "required", T0), ("p2", "d1", "name", "required", T0)])
    issues = update_issues(empty_issues(), q, staged([]), T0)
    # the next delivery: p1 passes the gate, p2 is quarantined again
    q2 = pl.concat([q, quarantine([("p2", "d2", "name", "required", T0 + DAY)])])
    s2 = staged([("p1", "d2", T0 + DAY, "13800000000"), ("p3", "d2", T0 + DAY, None)])
    issues = update_issues(issues, q2, s2, T0 + DAY)
    by = {r["key_pid"]: r for r in issues.iter_rows(named=True)}
    assert by["p1"]["status"] == "resolved"
    assert by["p1"]["resolved_by_delivery"] == "d2"
    assert by["p1"]["resolved_at"] == T0 + DAY
    assert by["p2"]["status"] == "open"
    assert issues.height == 2
    counts = issue_counts(issues)
    assert counts.select("dept", "dataset", "open", "resolved").row(0) == (
        "mzj",
        "elderly_alone",
        1,
        1,
    )


def test_a_row_from_the_quarantined_delivery_does_not_resolve() -> None:
    # the duplicate of a bad row that passed in the same delivery is not a correction
    q = quarantine([("p1", "d1", "name", "required", T0)])
    issues = update_issues(
        empty_issues(), q, staged([("p1", "d1", T0 + dt.timedelta(seconds=1), None)]), T0
    )
    assert issues["status"].to_list() == ["open"]


def test_quarantine_after_a_resolution_reopens() -> None:
    q = quarantine([("p1", "d1", "name", "required", T0)])
    issues = update_issues(empty_issues(), q, staged([("p1", "d2", T0 + DAY, None)]), T0 + DAY)
    assert issues["status"].to_list() == ["resolved"]
    q3 = pl.concat([q, quarantine([("p1", "d3", "name", "required", T0 + 2 * DAY)])])
    issues = update_issues(issues, q3, staged([("p1", "d2", T0 + DAY, None)]), T0 + 2 * DAY)
    assert sorted(issues["status"].to_list()) == ["open", "resolved"]


def test_dispute_resolves_only_when_the_field_changes() -> None:
    before = staged([("p9", "d1", T0, "13800000000")])
    issues = open_dispute(
        "mzj",
        "elderly_alone",
        "p9",
        "mobile",
        "电话打不通 number unreachable",
        "wjw",
        now=T0 + DAY / 2,
    )
    assert issues["kind"].item() == "dispute" and issues["check_name"].item() == "dispute"
    # next delivery brings the same value: still open
    same = pl.concat([before, staged([("p9", "d2", T0 + DAY, "13800000000")])])
    issues = update_issues(issues, None, same, T0 + DAY)
    assert issues["status"].item() == "open"
    # then a corrected value
    fixed = pl.concat([same, staged([("p9", "d3", T0 + 2 * DAY, "13900000000")])])
    issues = update_issues(issues, None, fixed, T0 + 2 * DAY)
    row = issues.row(0, named=True)
    assert (row["status"], row["resolved_by_delivery"]) == ("resolved", "d3")
    assert issue_counts(issues)["open_disputes"].item() == 0


def test_dispute_without_an_earlier_row_stays_open() -> None:
    issues = open_dispute("mzj", "elderly_alone", "p9", "mobile", "wrong", "wjw", now=T0)
    issues = update_issues(issues, None, staged([("p9", "d2", T0 + DAY, "13900000000")]), T0 + DAY)
    assert issues["status"].item() == "open"


def test_issue_counts_of_nothing() -> None:
    assert issue_counts(empty_issues()).is_empty()
