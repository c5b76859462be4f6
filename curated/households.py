"""Households (户): ``curated.household``, one row per household of the authoritative register.

The register is the dataset the catalogue names authoritative for ``household.id``; its
records are the members. A household is keyed by ``household_id``, the pseudonym of its
register number; its members are ``person_id`` + ``relation`` (the register's
``person.relation_to_head`` field), person ids from the master index (or, before it exists,
exact on the person-key pseudonym). The house it lives in is the house most of its members'
addresses in that register resolve to (``curated.house_mentions``); ``houses_named`` > 1
says the members' addresses disagree (a conflict for a data officer), ``members_housed``
how many of them resolved at all.
"""

from __future__ import annotations

import duckdb
import polars as pl

from catalog.authority import authority
from catalog.model import Catalogue
from curated.houses import (
    MENTIONS,
    Revealer,
    concept_field,
    pseudonyms,
    read_staged,
    replace_rows,
    subject_ids,
)
from lakehouse.lake import has_table

HOUSEHOLD = "household"
HOUSEHOLD_KEY = "household.id"
RELATION = "person.relation_to_head"
MEMBER = pl.Struct({"person_id": pl.String, "relation": pl.String})
HOUSEHOLD_COLUMNS = [
    ("household_id", "VARCHAR"),
    ("house_id", "VARCHAR"),
    ("members", "STRUCT(person_id VARCHAR, relation VARCHAR)[]"),
    ("member_count", "BIGINT"),
    ("members_housed", "BIGINT"),
    ("houses_named", "BIGINT"),
    ("dept", "VARCHAR"),
    ("dataset", "VARCHAR"),
    ("built_at", "TIMESTAMPTZ"),
]


def household_frame(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, protection: Revealer
) -> pl.DataFrame:
    """The ``curated.household`` rows (not written); empty without a register."""
    a = authority(catalogue, HOUSEHOLD_KEY)
    if a is None:
        return pl.DataFrame()
    ds = a.dataset
    relation = concept_field(ds, RELATION)
    frame = read_staged(
        con, a.dept, ds, [a.field] + ([relation] if relation else []), protection=protection
    )
    if frame is None:
        return pl.DataFrame()
    members = frame.select(
        pl.col("_key_pid").alias("key_pid"),
        pl.col(a.field).cast(pl.String).alias("_household"),
        (pl.col(relation) if relation else pl.lit(None)).cast(pl.String).alias("relation"),
    ).filter(pl.col("_household").is_not_null())
    members = members.with_columns(
        pseudonyms(members["_household"], protection, ds.field(a.field).pii).alias("household_id")
    ).drop("_household")
    ids = subject_ids(con, catalogue, a.dept, ds)
    if ids is None:
        ids = pl.DataFrame(schema={"key_pid": pl.String, "person_id": pl.String})
    members = members.join(ids, on="key_pid", how="left")
    if has_table(con, "curated", MENTIONS):
        houses = con.execute(
            f'SELECT key_pid, house_id FROM curated."{MENTIONS}" '
            "WHERE dept = ? AND dataset = ? AND house_id IS NOT NULL",
            [a.dept, ds.code],
        ).pl()
        members = members.join(houses.unique("key_pid"), on="key_pid", how="left")
    else:
        members = members.with_columns(pl.lit(None, pl.String).alias("house_id"))
    # the house most members name (ties: the smallest house_id, so a rebuild is stable)
    votes = (
        members.filter(pl.col("house_id").is_not_null())
        .group_by("household_id", "house_id")
        .len()
        .sort(["household_id", "len", "house_id"], descending=[False, True, False])
    )
    chosen = votes.group_by("household_id", maintain_order=True).agg(
        pl.col("house_id").first(),
        pl.col("len").sum().alias("members_housed"),
        pl.col("house_id").n_unique().alias("houses_named"),
    )
    grouped = (
        members.sort("household_id", "relation", "person_id", nulls_last=True)
        .group_by("household_id", maintain_order=True)
        .agg(
            pl.struct("person_id", "relation").alias("members"),
            pl.len().alias("member_count"),
        )
    )
    return (
        grouped.join(chosen, on="household_id", how="left")
        .with_columns(
            pl.col("members_housed", "houses_named").fill_null(0).cast(pl.Int64),
            pl.col("member_count").cast(pl.Int64),
            pl.lit(a.dept).alias("dept"),
            pl.lit(ds.code).alias("dataset"),
        )
        .sort("household_id")
    )


def build_households(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, protection: Revealer
) -> dict[str, int]:
    """Write ``curated.household``, always whole: its person ids follow the master index,
    which a delivery of any department may change (merges, splits), and the register has
    no sensitive column to decrypt (a second at 50,000 residents). Counts for metadata."""
    frame = household_frame(con, catalogue, protection)
    replace_rows(con, HOUSEHOLD, HOUSEHOLD_COLUMNS, frame, None)
    return {"households": _count(con)}


def _count(con: duckdb.DuckDBPyConnection) -> int:
    if not has_table(con, "curated", HOUSEHOLD):
        return 0
    return int(con.execute(f'SELECT count(*) FROM curated."{HOUSEHOLD}"').fetchone()[0])
