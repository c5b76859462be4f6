"""Probabilistic linkage for mentions without a usable citizen ID (Splink 5, DuckDB backend).

Fellegi–Sunter: each compared attribute has, per agreement level, an *m* probability (of
that level among true matches) and a *u* probability (among non-matches); a pair's match
weight is the prior's log-odds plus log2(m/u) of each level. The attributes here:

- ``name`` (plain, decrypted for the comparison only): exact, with a term-frequency
  adjustment (an exact 张伟 weighs less than an exact rare name: ``tf_name`` is the share
  of the street's persons with that normalised name), one character substituted (a typo
  or a homophone variant, counted in characters), else;
- ``mobile_pid`` and ``birth_pid``: exact on the pseudonyms (never decrypted), else.

A missing value on either side is a null level (no evidence either way). The parameters
are fixed (:data:`M_U`), not estimated per run: the same mention then scores the same in a
full rebuild and in an incremental one, and a score does not move because another
department delivered. They are deliberately conservative; EM can estimate them offline
(``Linker.training``) when a street's data warrant it.

Candidate pairs come from blocking on equal mobile, name or birth-date pseudonyms
(:data:`BLOCKING`); a pair never blocked is never scored. Decisions
(:data:`MATCH_THRESHOLD`, :data:`REVIEW_FLOOR`) are taken in :mod:`curated.persons`.
"""

from __future__ import annotations

import logging

import polars as pl
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

MATCH_THRESHOLD = 0.95  # link automatically at or above (when no second person scores as high)
REVIEW_FLOOR = 0.20  # best in [floor, threshold), or two above it: a data officer decides
INPUT_COLUMNS = ("unique_id", "name", "name_pid", "mobile_pid", "birth_pid")
# (m, u) per non-null level, most specific first; the exact name's u is replaced by tf_name
M_U = {
    "name": [(0.88, 0.001), (0.08, 0.003), (0.04, 0.996)],
    "mobile_pid": [(0.85, 0.0002), (0.15, 0.9998)],
    "birth_pid": [(0.95, 0.00005), (0.05, 0.99995)],
}
BLOCKING = ("mobile_pid", "name_pid", "birth_pid")
NAME_CHARACTERS = 4  # a Chinese name has 2-4 characters; longer ones never count as a typo
# one substituted character, counted in characters (DuckDB's levenshtein counts UTF-8 bytes:
# 李娜/李挪 would be 3 apart)
ONE_CHARACTER_DIFFERS = (
    "length(name_l) = length(name_r) AND length(name_l) <= {n} AND ({d}) = 1".format(
        n=NAME_CHARACTERS,
        d=" + ".join(
            f"CAST(substring(name_l, {i}, 1) <> substring(name_r, {i}, 1) AS INTEGER)"
            for i in range(1, NAME_CHARACTERS + 1)
        ),
    )
)


def _name() -> cl.CustomComparison:
    (m_eq, u_eq), (m_typo, u_typo), (m_else, u_else) = M_U["name"]
    return cl.CustomComparison(
        [
            cll.NullLevel("name"),
            cll.ExactMatchLevel("name", term_frequency_adjustments=True).configure(
                m_probability=m_eq, u_probability=u_eq
            ),
            cll.CustomLevel(ONE_CHARACTER_DIFFERS, "one character differs").configure(
                m_probability=m_typo, u_probability=u_typo
            ),
            cll.ElseLevel().configure(m_probability=m_else, u_probability=u_else),
        ],
        output_column_name="name",
    )


def _exact(column: str) -> cl.ExactMatch:
    (m_eq, u_eq), (m_else, u_else) = M_U[column]
    return cl.ExactMatch(column).configure(
        m_probabilities=[m_eq, m_else], u_probabilities=[u_eq, u_else]
    )


def settings(link_type: str, prior: float) -> SettingsCreator:
    """The Splink model: ``link_type`` ``link_only`` (mentions → persons) or
    ``dedupe_only`` (mentions among themselves); ``prior`` = P(two random records match)."""
    return SettingsCreator(
        link_type=link_type,
        unique_id_column_name="unique_id",
        probability_two_random_records_match=min(max(prior, 1e-9), 0.5),
        comparisons=[_name(), _exact("mobile_pid"), _exact("birth_pid")],
        blocking_rules_to_generate_predictions=[block_on(c) for c in BLOCKING],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def _records(frame: pl.DataFrame):
    return frame.select([pl.col(c).cast(pl.String) for c in INPUT_COLUMNS]).to_arrow()


def _term_frequencies(api: DuckDBAPI, linker: Linker, *frames: pl.DataFrame) -> None:
    """Register the names' frequencies (the records' ``tf_name``, the share of the
    street's persons with that name) as Splink's lookup, instead of counting the inputs."""
    tf = (
        pl.concat([f.select("name", "tf_name") for f in frames])
        .drop_nulls("name")
        .group_by("name")
        .agg(pl.col("tf_name").max())
    )
    table = api.register(tf.to_arrow(), table_name="tf_lookup")
    linker.table_management.register_term_frequency_lookup(table, "name")


PAIR_SCHEMA = {"unique_id_l": pl.String, "unique_id_r": pl.String, "match_probability": pl.Float64}


def _scored(frame) -> pl.DataFrame:
    out = pl.from_arrow(frame.as_pyarrow_table())
    return out.select(list(PAIR_SCHEMA)).cast(PAIR_SCHEMA)  # type: ignore[union-attr]


def score_between(left: pl.DataFrame, right: pl.DataFrame, prior: float) -> pl.DataFrame:
    """Scored candidate pairs (unique_id_l from ``left``, unique_id_r from ``right``,
    match_probability); both frames have :data:`INPUT_COLUMNS` and ``tf_name``."""
    if left.height == 0 or right.height == 0:
        return pl.DataFrame(schema=PAIR_SCHEMA)
    api = DuckDBAPI()
    lt = api.register(_records(left), table_name="mentions")
    rt = api.register(_records(right), table_name="persons")
    linker = Linker([lt, rt], settings("link_only", prior), log_level=logging.WARNING)
    _term_frequencies(api, linker, left, right)
    pairs = linker.inference.predict_between(lt, rt, warning_mode="never")
    out = _scored(pairs)
    api.duckdb_con.close()
    return out


def score_within(records: pl.DataFrame, prior: float) -> pl.DataFrame:
    """Scored candidate pairs among ``records`` (each unordered pair once)."""
    if records.height < 2:
        return pl.DataFrame(schema=PAIR_SCHEMA)
    api = DuckDBAPI()
    t = api.register(_records(records), table_name="mentions")
    linker = Linker(t, settings("dedupe_only", prior), log_level=logging.WARNING)
    _term_frequencies(api, linker, records)
    pairs = linker.inference.predict_within(t, warning_mode="never")
    out = _scored(pairs)
    api.duckdb_con.close()
    return out


def components(nodes: pl.Series, edges: pl.DataFrame) -> pl.DataFrame:
    """Connected components: (node, root) with root the smallest node of its component.

    ``edges`` has columns ``a`` and ``b``; label propagation to a fixed point, in polars.
    """
    unique = nodes.unique().sort()
    label = pl.DataFrame({"node": unique, "root": unique})
    if edges.height == 0:
        return label
    both = pl.concat([edges.select("a", "b"), edges.select(a="b", b="a")])
    while True:
        nxt = (
            both.join(label, left_on="b", right_on="node")
            .group_by("a")
            .agg(pl.col("root").min().alias("via"))
            .join(label, left_on="a", right_on="node", how="right")
            .select(
                pl.col("node"),
                pl.min_horizontal("root", pl.col("via").fill_null(pl.col("root"))).alias("root"),
            )
        )
        if nxt.sort("node").equals(label.sort("node")):
            return label
        label = nxt
