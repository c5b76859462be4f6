"""Quality scores on a simulated street: six dimensions, department roll-up, wrong values caught."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from test_scores_street import (
    EMPTY_QUARANTINE,
    LOADED_AT,
    defects,
    deliveries_and_accounts,
    staged_frames,
    street,
)

from catalog.loader import get_catalogue
from quality.scores import DIMENSIONS, flag_disagreements, score_datasets
from quality.scores_authority import comparisons

NOW = LOADED_AT + dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def world():
    home = street()
    cat = get_catalogue()
    frames = staged_frames(home, cat)
    deliveries, accounts = deliveries_and_accounts(home)
    return home, cat, frames, deliveries, accounts


@pytest.fixture(scope="module")
def scorecard(world):
    _, cat, frames, deliveries, accounts = world
    return score_datasets(cat, frames, EMPTY_QUARANTINE, accounts, deliveries, NOW)


def _wrong_values_in_registry(home, cat, frames) -> pl.DataFrame:
    """wrong_value defects whose person is in gaj.registered_residents."""
    registry = set(frames[("gaj", "registered_residents")]["citizen_id"].to_list())
    parts = []
    for dept, ds in cat.datasets():
        if (dept.code, ds.code) not in frames:
            continue
        d = defects(home, dept.code, ds, "wrong_value")
        if d.is_empty():
            continue
        joins = [f.name for f in ds.fields if f.concept == "person.citizen_id"]
        if len(joins) != 1:  # no citizen id to find the person by
            continue
        frame = frames[(dept.code, ds.code)].select(
            pl.col("_delivery_id").alias("delivery_id"),
            pl.col("_source_row"),
            pl.col(joins[0]).alias("_pid"),
        )
        d = d.join(frame, on=["delivery_id", "_source_row"]).filter(pl.col("_pid").is_in(registry))
        parts.append(
            d.select(
                pl.lit(dept.code).alias("dept"),
                pl.lit(ds.code).alias("dataset"),
                "delivery_id",
                pl.col("_source_row").alias("source_row"),
                pl.col("field_name").alias("field"),
            )
        )
    return pl.concat(parts)


def test_comparisons_come_from_the_catalogue() -> None:
    cmps = {(c.dept, c.dataset, c.field): c for c in comparisons(get_catalogue())}
    bd = cmps[("wjw", "family_doctor_contracts", "birth_date")]
    assert (bd.auth_ref, bd.auth_field, bd.join_field) == (
        "gaj.registered_residents",
        "birth_date",
        "citizen_id",
    )
    mobile = cmps[("wjw", "family_doctor_contracts", "mobile")]
    assert mobile.auth_field == "mobile" and not mobile.by_pii_kind  # gaj is authoritative
    assert ("mzj", "minimum_living", "head_name") in cmps  # joined on head_citizen_id
    assert not any(c.dept == "gaj" and c.dataset == "registered_residents" for c in cmps.values())
    assert ("rx", "appeals", "caller_name") not in cmps  # no citizen id to join on


def test_every_dataset_has_six_dimensions_in_range(scorecard: pl.DataFrame) -> None:
    per_ds = scorecard.filter(pl.col("dataset") != "*")
    assert per_ds.select("dept", "dataset").unique().height == len(get_catalogue().datasets())
    counts = per_ds.group_by("dept", "dataset").agg(pl.col("dimension").sort())
    assert all(sorted(d) == sorted(DIMENSIONS) for d in counts["dimension"].to_list())
    scores = scorecard["score"].drop_nulls()
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert scorecard["computed_at"].dtype == pl.Datetime("us", "UTC")
    assert scorecard.filter(pl.col("score").is_null())["detail"].str.starts_with("n/a").all()


def test_department_row_is_the_row_weighted_mean(world, scorecard: pl.DataFrame) -> None:
    frames = world[2]
    wjw = scorecard.filter((pl.col("dept") == "wjw") & (pl.col("dimension") == "accuracy"))
    dept_score = wjw.filter(pl.col("dataset") == "*")["score"].item()
    per = wjw.filter(pl.col("dataset") != "*")
    weights = [frames[("wjw", d)].height for d in per["dataset"]]
    expected = sum(w * s for w, s in zip(weights, per["score"], strict=True)) / sum(weights)
    assert dept_score == pytest.approx(expected)
    depts = scorecard.filter(pl.col("dataset") == "*")["dept"]
    assert set(depts) == set(get_catalogue().departments)


def test_clean_street_scores(scorecard: pl.DataFrame) -> None:
    def score(dept: str, ds: str, dim: str) -> float | None:
        return scorecard.filter(
            (pl.col("dept") == dept) & (pl.col("dataset") == ds) & (pl.col("dimension") == dim)
        )["score"].item()

    assert score("gaj", "registered_residents", "completeness") == 1.0
    assert score("gaj", "registered_residents", "accuracy") == 1.0  # key validity
    assert score("gaj", "registered_residents", "consistency") is None
    assert score("iot", "sensor_readings", "timeliness") < 1.0  # realtime: 1 h window, 65 min old
    assert score("mzj", "elderly_alone", "timeliness") == 1.0
    assert score("wjw", "family_doctor_contracts", "accuracy") < 1.0  # wrong values put back
    assert score("rsj", "social_insurance", "validity") == 1.0


def test_timeliness_decays_after_max_age(world) -> None:
    _, cat, frames, deliveries, accounts = world
    late = LOADED_AT + dt.timedelta(days=8)  # daily allows 48 h; monthly 35 days
    sc = score_datasets(cat, frames, EMPTY_QUARANTINE, accounts, deliveries, late)
    t = sc.filter((pl.col("dimension") == "timeliness") & (pl.col("dataset") != "*"))
    by = {(r["dept"], r["dataset"]): r["score"] for r in t.iter_rows(named=True)}
    assert by[("mzj", "elderly_alone")] == 1.0
    assert 0.2 < by[("gaj", "registered_residents")] < 0.3
    assert "stale" in t.filter(pl.col("dataset") == "registered_residents")["detail"].item()


def test_quarantine_lowers_completeness_and_validity(world) -> None:
    _, cat, frames, deliveries, accounts = world
    key = ("mzj", "elderly_alone")
    frame = frames[key]
    did = frame["_delivery_id"][0]
    q = pl.DataFrame(
        {
            "dept": ["mzj"] * 3,
            "dataset": ["elderly_alone"] * 3,
            "delivery_id": [did] * 3,
            "file_name": ["f.xlsx"] * 3,
            "source_row": [900, 900, 901],
            "stage": ["staged"] * 3,
            "field": ["name", "birth_date", "citizen_id"],
            "check_name": ["required", "not_null", "citizen_id_checksum"],
            "reason": ["blank"] * 3,
            "value_masked": [None] * 3,
            "quarantined_at": [LOADED_AT] * 3,
        },
        schema=EMPTY_QUARANTINE.schema,
    )
    grown = pl.col("delivery_id") == did  # two more rows read and loaded, held back by the gate
    acc = accounts.with_columns(
        pl.when(grown).then(pl.col(c) + 2).otherwise(pl.col(c)).alias(c)
        for c in ("rows_read", "rows_loaded")
    )
    sc = score_datasets(cat, frames, q, acc, deliveries, NOW).filter(
        (pl.col("dept") == "mzj") & (pl.col("dataset") == "elderly_alone")
    )
    by = {r["dimension"]: r for r in sc.iter_rows(named=True)}
    n_req = sum(f.required for f in cat.dataset("mzj.elderly_alone")[1].fields)
    read = acc.filter(pl.col("delivery_id") == did)["rows_read"].item()
    assert by["completeness"]["denominator"] == read * n_req
    assert by["completeness"]["numerator"] == read * n_req - 2
    assert by["validity"]["numerator"] == read - 3  # one stray header + the 2 quarantined


def _uniqueness(world, frame: pl.DataFrame) -> dict:
    _, cat, frames, deliveries, accounts = world
    key = ("zjj", "buildings")
    sc = score_datasets(cat, {**frames, key: frame}, EMPTY_QUARANTINE, accounts, deliveries, NOW)
    return sc.filter(
        (pl.col("dept") == "zjj")
        & (pl.col("dataset") == "buildings")
        & (pl.col("dimension") == "uniqueness")
    ).row(0, named=True)


def test_uniqueness_counts_repeats_within_a_delivery(world) -> None:
    frame = world[2][("zjj", "buildings")]
    u = _uniqueness(world, pl.concat([frame, frame.head(3)]))
    assert u["denominator"] - u["numerator"] == 3


def test_uniqueness_measures_the_staged_table_not_one_delivery(world) -> None:
    """A key staged by two deliveries is a repeat (it used to score 100.0)."""
    frame = world[2][("zjj", "buildings")]
    again = frame.head(4).with_columns(pl.lit("another delivery").alias("_delivery_id"))
    assert frame["_delivery_id"].n_unique() == 1
    u = _uniqueness(world, pl.concat([frame, again]))
    assert u["denominator"] - u["numerator"] == 4 and u["score"] < 1.0
    assert "over every delivery" in u["detail"]


def test_wrong_values_are_caught_and_clean_rows_rarely_flagged(world) -> None:
    home, cat, frames, _, _ = world
    truth = _wrong_values_in_registry(home, cat, frames)
    assert truth.height >= 3
    flagged = flag_disagreements(cat, frames)
    assert set(flagged.columns) == {
        "dept",
        "dataset",
        "delivery_id",
        "source_row",
        "field",
        "concept",
        "authoritative_dataset",
        "authoritative_field",
    }
    keys = ["dept", "dataset", "delivery_id", "source_row", "field"]
    caught = truth.join(flagged.select(keys), on=keys, how="semi").height
    recall = caught / truth.height
    # values judged: every compared cell of every comparison
    clean = flag_disagreements(cat, staged_frames(home, cat, wrong_values=False))
    judged = (
        score_datasets(cat, frames, EMPTY_QUARANTINE, pl.DataFrame(), pl.DataFrame(), NOW)
        .filter((pl.col("dimension") == "accuracy") & (pl.col("dataset") != "*"))
        .filter(pl.col("detail").str.starts_with("concept"))["denominator"]
        .sum()
    )
    false_flags = flagged.join(truth.select(keys), on=keys, how="anti").height
    print(
        f"\nwrong values in registry: {truth.height}, caught {caught} ({100 * recall:.1f} %); "
        f"false flags {false_flags}/{judged} values ({100 * false_flags / judged:.2f} %); "
        f"flags on the clean street: {clean.height}"
    )
    assert recall >= 0.95
    assert false_flags / judged < 0.01
    assert flagged.filter(pl.col("field") == "birth_date")["concept"].unique().to_list() == [
        "person.birth_date"
    ]


def test_detached_keeps_values_types_and_nulls() -> None:
    """``detached`` (a small frame in memory of its own, not the DuckDB read it came from):
    the same values, types, nulls and order, from a DuckDB result as the scorecard reads."""
    import datetime as dt

    import duckdb

    from quality.scores import detached

    read = (
        duckdb.connect()
        .execute(
            "SELECT 'dlv-' || i::VARCHAR || repeat('x', 20) AS d, i AS n, i / 3 AS f, "
            "CASE WHEN i % 3 = 0 THEN NULL ELSE 'v' || i::VARCHAR END AS maybe, "
            "TIMESTAMPTZ '2026-01-02 03:04:05+00' + to_seconds(i) AS at, DATE '2026-01-01' AS day "
            "FROM range(1000) t(i)"
        )
        .pl()
    )
    some = read.filter(pl.col("n") % 7 == 1).sort("n", descending=True)
    copy = detached(some)
    assert copy.schema == some.schema and copy.equals(some)
    assert copy["maybe"].null_count() == some["maybe"].null_count() > 0
    assert copy["at"].dtype == some["at"].dtype and copy["at"].dtype.time_zone is not None
    assert copy["at"][0] == some["at"][0] > dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert detached(some.clear()).schema == some.schema
