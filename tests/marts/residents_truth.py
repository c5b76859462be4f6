"""The simulator's residents as the hub's person pseudonyms, for the resident marts' tests.

The truth says whom each record is about (``_person``, a true citizen ID); the hub knows a
person by the master index's ``person_id``. A staged record joins the two: its clean row
(``tests.marts.truth.staged_truth``: by delivered file and source row) carries ``_person``,
its key pseudonym meets ``curated.person_mentions``. A true person whose records the index
put under one ``person_id`` (and no other person's) is *mapped*; the rest (split or merged
by the index) are left out of the comparisons and counted apart.

Which dataset holds what is asked of the catalogue (the authority of a concept), as the
hub itself does; the truth's columns are the department's raw headers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl

from catalog.authority import authority
from catalog.model import Catalogue, Dataset
from curated.houses import concept_field
from tests.marts.truth import clean_rows, header, nearest_cell, staged_truth

HOUSEHOLD_KEY = "household.id"
RESIDENCE = "person.residence_address"
# the flags of resident_profile and the concept whose golden value each says there is
FLAGS = {
    "on_elderly_alone_register": "person.care_level",
    "disability": "person.disability_category",
    "chronic_disease": "person.chronic_disease",
    "old_age_allowance": "person.old_age_allowance",
    "family_doctor": "person.family_doctor_package",
}
LOW_INCOME = "person.minimum_living"  # the roster names the household's head


def source(cat: Catalogue, concept: str) -> tuple[str, Dataset, str]:
    """(dept, dataset, field) of the catalogue's authority for ``concept``."""
    a = authority(cat, concept)
    assert a is not None, f"no authority for {concept}"
    return a.dept, a.dataset, a.field


def staged_subjects(
    con: duckdb.DuckDBPyConnection, sim_dir: Path, dept: str, ds: Dataset
) -> pl.DataFrame:
    """Every staged record of ``dept.ds`` with its clean row, its true subject ``_person``
    and the ``person_id`` the master index gave it."""
    mentions = con.execute(
        "SELECT key_pid, person_id FROM curated.person_mentions WHERE dept = ? AND dataset = ?",
        [dept, ds.code],
    ).pl()
    rows = staged_truth(con, sim_dir, dept, ds)
    return rows.join(mentions, on="key_pid", how="left")


def mapping(subjects: pl.DataFrame) -> pl.DataFrame:
    """``_person`` ↔ ``person_id`` pairs where each side has exactly one of the other."""
    pairs = subjects.select("_person", "person_id").drop_nulls().unique()
    one = pairs.filter((pl.len().over("_person") == 1) & (pl.len().over("person_id") == 1))
    return one


def holders(con: duckdb.DuckDBPyConnection, sim_dir: Path, cat: Catalogue, concept: str) -> set:
    """True citizen IDs with a staged record of the authority for ``concept`` that holds a
    value of it."""
    dept, ds, field = source(cat, concept)
    rows = staged_truth(con, sim_dir, dept, ds)
    value = pl.col(header(ds, field)).cast(pl.String).str.strip_chars()
    return set(rows.filter(value.is_not_null() & (value != ""))["_person"].drop_nulls())


def true_cells(sim_dir: Path, con: duckdb.DuckDBPyConnection, cat: Catalogue) -> pl.DataFrame:
    """code, lon, lat of the true centres of the grid cells the lake staged."""
    dept, ds, field = source(cat, "place.grid_code")
    rows = staged_truth(con, sim_dir, dept, ds)
    lon = concept_field(ds, "place.lon")
    lat = concept_field(ds, "place.lat")
    return rows.select(
        pl.col(header(ds, field)).alias("code"),
        pl.col(header(ds, lon)).cast(pl.Float64).alias("lon"),
        pl.col(header(ds, lat)).cast(pl.Float64).alias("lat"),
    ).unique("code")


def unit_places(sim_dir: Path, con: duckdb.DuckDBPyConnection, cat: Catalogue) -> pl.DataFrame:
    """_unit → the true community and grid cell of its building (the building's point in
    the truth's cells, as the lake staged them)."""
    u_dept, units, _ = source(cat, "house.unit_id")
    b_dept, buildings, b_key = source(cat, "house.building_id")
    lon = concept_field(buildings, "place.lon")
    lat = concept_field(buildings, "place.lat")
    comm = concept_field(buildings, "place.community_code")
    b = clean_rows(sim_dir, b_dept, buildings.code).unique(header(buildings, b_key))
    b = b.select(
        pl.col(header(buildings, b_key)).alias("building"),
        pl.col(header(buildings, comm)).alias("true_community"),
        nearest_cell(b[header(buildings, lon)], b[header(buildings, lat)],
                     true_cells(sim_dir, con, cat)).alias("true_grid"),
    )  # fmt: skip
    # the unit register names its building by the building register's key field
    assert b_key in {f.name for f in units.fields}
    u = clean_rows(sim_dir, u_dept, units.code).select(
        pl.col("_unit"), pl.col(header(units, b_key)).alias("building")
    )
    return u.unique("_unit").join(b, on="building", how="left").drop("building")


def age_on(birth: pl.Expr, as_of: dt.date) -> pl.Expr:
    """Whole years from the truth's ``YYYY-MM-DD`` birth date to ``as_of``."""
    born = birth.str.to_date("%Y-%m-%d", strict=False)
    before = (born.dt.month() > as_of.month) | (
        (born.dt.month() == as_of.month) & (born.dt.day() > as_of.day)
    )
    return as_of.year - born.dt.year().cast(pl.Int32) - before.cast(pl.Int32)


def band(age: pl.Expr) -> pl.Expr:
    """resident_profile's age band: ten years (``60-69``), 10 to 29 as ``10-29``, 80 and
    older as ``80+``."""
    lo = (age // 10) * 10
    return (
        pl.when(age >= 80)
        .then(pl.lit("80+"))
        .when(age.is_between(10, 29))
        .then(pl.lit("10-29"))
        .otherwise(pl.format("{}-{}", lo, lo + 9))
    )
