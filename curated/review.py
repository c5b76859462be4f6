"""The review queue (人工复核): ambiguous fallback candidates a data officer decides.

A mention whose best candidate scores in the review band, or that has two rival
candidates, is never merged: it keeps a person of its own and one row per candidate goes
to ``curated.person_review`` with the evidence masked by the display masks of
``masking.masks`` (name 张*, mobile 138****5678) and a note of which pseudonyms agree.
A decision (``streethub persons merge|split``) is a ``curated.link_actions`` row; the
queue lists only mentions without one.
"""

from __future__ import annotations

import hashlib

import duckdb
import polars as pl

from catalog.model import Catalogue, PiiKind
from masking.masks import mask_values

REVIEW_COLUMNS = [
    ("review_id", "VARCHAR"),
    ("dept", "VARCHAR"),
    ("dataset", "VARCHAR"),
    ("key_pid", "VARCHAR"),
    ("person_id", "VARCHAR"),  # the mention's own (unmerged) person
    ("candidate_person_id", "VARCHAR"),
    ("match_probability", "DOUBLE"),
    ("name_masked", "VARCHAR"),
    ("mobile_masked", "VARCHAR"),
    ("candidate_name_masked", "VARCHAR"),
    ("agrees_on", "VARCHAR"),  # name, name~ (one edit), mobile, birth_date
    ("queued_at", "TIMESTAMPTZ"),
]
REVIEW_SCHEMA = {
    "review_id": pl.String,
    "dept": pl.String,
    "dataset": pl.String,
    "key_pid": pl.String,
    "person_id": pl.String,
    "candidate_person_id": pl.String,
    "match_probability": pl.Float64,
    "name_masked": pl.String,
    "mobile_masked": pl.String,
    "candidate_name_masked": pl.String,
    "agrees_on": pl.String,
}


def review_id(dept: str, dataset: str, key_pid: str, candidate: str) -> str:
    """A stable id of one (mention, candidate) pair, from pseudonyms only."""
    text = "\x1f".join((dept, dataset, key_pid, candidate)).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def evidence(
    candidates: pl.DataFrame,
    mention_names: pl.DataFrame,
    candidate_names: pl.DataFrame,
) -> pl.DataFrame:
    """Review rows (:data:`REVIEW_SCHEMA`) for ``candidates``.

    ``candidates``: dept, dataset, key_pid, person_id, candidate_person_id,
    match_probability, agrees_on. ``mention_names``: dept, dataset, key_pid, name,
    mobile_masked (plain names, masked here). ``candidate_names``: candidate_person_id,
    name (plain, masked here).
    """
    if candidates.height == 0:
        return pl.DataFrame(schema=REVIEW_SCHEMA)
    mentions = mention_names.select(
        "dept",
        "dataset",
        "key_pid",
        mask_values(mention_names["name"], PiiKind.person_name).alias("name_masked"),
        "mobile_masked",
    )
    cands = candidate_names.select(
        "candidate_person_id",
        mask_values(candidate_names["name"], PiiKind.person_name).alias("candidate_name_masked"),
    ).unique("candidate_person_id", keep="first", maintain_order=True)
    rows = candidates.join(mentions, on=["dept", "dataset", "key_pid"], how="left").join(
        cands, on="candidate_person_id", how="left"
    )
    ids = [
        review_id(d, s, k, c)
        for d, s, k, c in rows.select(
            "dept", "dataset", "key_pid", "candidate_person_id"
        ).iter_rows()
    ]
    return rows.with_columns(pl.Series("review_id", ids)).select(list(REVIEW_SCHEMA))


def review_queue(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue | None = None
) -> pl.DataFrame:
    """Open review items, most likely first (empty before the index is built)."""
    from lakehouse.lake import has_table

    if not has_table(con, "curated", "person_review"):
        return pl.DataFrame(schema=REVIEW_SCHEMA)
    return con.execute(
        "SELECT * FROM curated.person_review "
        "ORDER BY match_probability DESC, dept, dataset, key_pid, candidate_person_id"
    ).pl()
