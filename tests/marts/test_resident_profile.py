"""resident_profile against the simulator's truth: who the residents are, their age band,
gender, household, home and flags, recomputed from the clean rows of the records the lake
staged (``tests.marts.residents_truth``), and k-anonymity over its quasi-identifiers."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from catalog.marts import load_marts
from curated.houses import concept_field
from lakehouse.lake import open_lake
from masking.kanon import check_k
from tests.marts.residents_truth import (
    FLAGS,
    HOUSEHOLD_KEY,
    LOW_INCOME,
    RESIDENCE,
    age_on,
    band,
    holders,
    mapping,
    source,
    staged_subjects,
    unit_places,
)
from tests.marts.truth import header

MART = "resident_profile"
LIVES_AT = {"person.registered_address", RESIDENCE}
BAND = r"^(\d*0-\d*9|80\+)$"


@pytest.fixture(scope="module")
def profile(mart_street) -> pl.DataFrame:
    return mart_street.table(MART)


@pytest.fixture(scope="module")
def truth(mart_street, profile: pl.DataFrame) -> dict:
    """The registry's residents (one row per true person mapped to one person_id) with
    their true gender, birth date, household, home and flags; every true resident's id."""
    cat, sim = mart_street.catalogue, mart_street.sim_dir
    dept, register, hh_field = source(cat, HOUSEHOLD_KEY)
    gender = concept_field(register, "person.gender")
    birth = concept_field(register, "person.birth_date")
    with open_lake(mart_street.settings, read_only=True) as con:
        registry = staged_subjects(con, sim, dept, register)
        # the street's residents as its records of residence say: every person a staged
        # record of a dataset naming where people live (registered or residence address)
        subjects = pl.concat(
            [
                staged_subjects(con, sim, d.code, ds).select("_person", "person_id")
                for d, ds in cat.datasets()
                if any(f.concept in LIVES_AT for f in ds.fields)
            ]
        )
        residents = subjects.filter(pl.col("_person").is_not_null())
        flags = {col: holders(con, sim, cat, concept) for col, concept in FLAGS.items()}
        low_income_heads = holders(con, sim, cat, LOW_INCOME)
        places = unit_places(sim, con, cat)
    people = registry.select(
        "_person",
        pl.col(header(register, gender)).alias("true_gender"),
        pl.col(header(register, birth)).alias("true_birth"),
        pl.col(header(register, hh_field)).alias("hh"),
        "_unit",
    ).unique("_person")
    people = people.with_columns(
        pl.len().over("hh").alias("true_household_size"),
        pl.col("_person").is_in(list(low_income_heads)).any().over("hh").alias("true_low_income"),
        *(pl.col("_person").is_in(list(ids)).alias(f"true_{c}") for c, ids in flags.items()),
    ).join(places, on="_unit", how="left")
    mapped = mapping(registry)
    return {
        "people": people.join(mapped, on="_person", how="inner"),
        "mapped": mapped,
        "residents": residents,
        "as_of": profile["as_of"].unique().to_list(),
    }


def test_one_row_per_resident_and_no_one_else(mart_street, profile, truth):
    assert profile.height > 0 and profile["person_id"].is_unique().all()
    true_ids = set(truth["residents"]["person_id"].drop_nulls())
    published = set(profile["person_id"])
    strangers = len(published - true_ids)
    assert strangers == 0, f"{strangers} published person(s) are no resident of the street"
    # withheld: the rows k-anonymity suppressed, and at most 1 % more (a residence record
    # whose address resolved to no house)
    kanon = mart_street.build(MART).kanon
    suppressed = kanon.suppressed_rows if kanon else 0
    missing = len(true_ids - published)
    assert missing >= suppressed
    assert missing - suppressed <= 0.01 * len(true_ids), (missing, suppressed, len(true_ids))


def test_age_band_gender_and_household_are_the_registers(profile, truth):
    (as_of,) = truth["as_of"]
    assert abs((as_of - dt.date.today()).days) <= 1  # the build's date
    people = truth["people"].with_columns(
        band(age_on(pl.col("true_birth"), as_of)).alias("true_band")
    )
    got = profile.join(people, on="person_id", how="inner")
    assert got.height >= 0.9 * people.height, (got.height, people.height)
    for column, want in [
        ("age_band", "true_band"),
        ("gender", "true_gender"),
        ("household_size", "true_household_size"),
    ]:
        wrong = got.filter(~pl.col(column).eq_missing(pl.col(want).cast(got[column].dtype)))
        assert wrong.height == 0, (column, wrong.height, got.height)
    assert got["living_alone"].equals(got["true_household_size"] == 1, check_names=False)
    elderly = got["age_band"].str.extract(r"^(\d+)").cast(pl.Int32) >= 60
    assert got["elderly"].equals(elderly, check_names=False)


def test_flags_are_the_departments_records(profile, truth):
    got = profile.join(truth["people"], on="person_id", how="inner")
    for column in [*FLAGS, "low_income"]:
        assert got[column].null_count() == 0, column
        wrong = got.filter(pl.col(column) != pl.col(f"true_{column}"))
        assert wrong.height == 0, (column, wrong.height, int(got[f"true_{column}"].sum()))
        assert got[column].sum() > 0, f"no {column} on the street: the test proves nothing"


def test_home_community_and_grid_cell_are_the_true_units(profile, truth):
    got = profile.join(truth["people"], on="person_id", how="inner")
    placed = got.filter(pl.col("grid_code").is_not_null())
    assert placed.height >= 0.95 * got.height, (placed.height, got.height)
    assert (placed["grid_code"] == placed["true_grid"]).all()
    assert (placed["community_code"] == placed["true_community"]).all()
    # one house per household member: the household's members share it
    homes = placed.group_by("household_id").agg(pl.col("house_id").n_unique().alias("n"))
    assert (homes["n"] == 1).mean() >= 0.99


def test_k_anonymity_over_the_quasi_identifiers(profile):
    mart = load_marts()[MART]
    assert mart.quasi_identifiers and mart.k_anonymity
    report = check_k(profile, mart.quasi_identifiers, mart.k_anonymity)
    assert report.ok, report.worst_class
    assert report.smallest_class >= mart.k_anonymity


def test_only_bands_and_flags_leave(profile):
    """Sensitive attributes are published as bands and yes/no, never as values."""
    assert profile["age_band"].drop_nulls().str.contains(BAND).all()
    for column in [*FLAGS, "low_income", "elderly", "living_alone"]:
        assert profile[column].dtype == pl.Boolean, column
    assert set(profile.columns) == set(load_marts()[MART].column_names)


def test_as_of_is_the_builds_street_day_not_the_sessions_date(mart_street, tmp_path):
    """``as_of`` (and the ages the bands stand on) is the build's ``run_date``, the street's
    day in Beijing, as every mart's; ``current_date`` was the session's, UTC on a UTC
    machine: 16:00-24:00 UTC a day behind the door records' Beijing days."""
    from marts.build import build_mart
    from tests.streets import copy_home

    settings = copy_home(mart_street.home, tmp_path)
    built: dict[dt.date, tuple[list, list]] = {}
    with open_lake(settings) as con:
        for day in (dt.date(2031, 7, 1), dt.date(2061, 7, 1)):
            for name in ("resident_profile", "age_structure"):
                build_mart(con, mart_street.catalogue, mart_street.marts, name,
                           mart_street.protection(), run_date=day)  # fmt: skip
            built[day] = (
                con.execute("SELECT DISTINCT as_of FROM marts.resident_profile").fetchall(),
                con.execute("SELECT age_band, sum(residents) FROM marts.age_structure "
                            "GROUP BY 1 ORDER BY 1").fetchall(),
            )  # fmt: skip
    (soon, later) = built
    assert built[soon][0] == [(soon,)] and built[later][0] == [(later,)]
    assert built[soon][1] != built[later][1]  # thirty years on, the same people are older
