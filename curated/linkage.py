"""Probabilistic linkage for mentions without a usable citizen ID (Splink 5, DuckDB backend).

Fellegi–Sunter: each compared attribute has, per agreement level, an *m* probability (of
that level among true matches) and a *u* probability (among non-matches); a pair's match
weight is the prior's log-odds plus log2(m/u) of each level. The attributes here:

- ``name`` (plain, decrypted for the comparison only): exact, with a term-frequency
  adjustment (an exact 张伟 weighs less than an exact rare name); one character
  substituted (a homophone typed through pinyin: 秀 → 绣; counted in characters); two
  swapped or the last dropped; surname + title or a nickname (王先生, 老王, 小英: what a
  caller gives on the phone, :func:`name_parts`); else;
- ``mobile_pid`` (TF: a family's shared phone weighs less), ``house_id`` (the housing unit
  the record's address names, ``curated.house_mentions``; TF by household size) and
  ``birth_pid``: exact on pseudonyms (never decrypted), else.

A missing value on either side is a null level (no evidence either way). The parameters
are fixed (:data:`M_U`), not estimated per run: the same mention then scores the same in a
full rebuild and in an incremental one, and a score does not move because another
department delivered. They are deliberately conservative; EM can estimate them offline
(``Linker.training``) when a street's data warrant it.

Candidate pairs come from blocking on an equal mobile, name, birth-date or house pseudonym
(:data:`BLOCKING`, :func:`blocked_pairs`), handed to Splink to score; a pair never blocked
is never scored. Decisions
(:data:`MATCH_THRESHOLD`, :data:`REVIEW_FLOOR`) are taken in :mod:`curated.persons`.
"""

from __future__ import annotations

import logging
import math

import duckdb
import polars as pl
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from lakehouse.lake import registered
from lakehouse.session import scratch
from masking.names import COMPOUND_SURNAMES

SEPARATOR = "-__-"  # Splink's composite id: <input table> -__- <unique id>
MENTIONS, PERSONS = "mentions", "persons"  # the two input tables

MATCH_THRESHOLD = 0.95  # link automatically at or above (when no second person scores as high)
REVIEW_FLOOR = 0.20  # best in [floor, threshold), or two above it: a data officer decides
INPUT_COLUMNS = (
    "unique_id", "name", "surname", "given", "nick", "name_pid", "mobile_pid", "birth_pid",
    "house_id",
)  # fmt: skip
# columns whose exact level is adjusted by term frequency (share of the street's persons
# holding the value, a ``tf_<column>`` of the records): 张伟 or a shared family phone
# weigh less than a rare name or a phone one person holds
TF_COLUMNS = ("name", "mobile_pid", "house_id")
# (m, u) per non-null level, most specific first; an exact level's u is replaced by its TF
M_U = {
    "name": [
        (0.80, 0.001),  # the same name
        (0.06, 0.002),  # one character substituted: a homophone typed by pinyin (秀 → 绣)
        (0.02, 0.0005),  # two characters swapped, or the last one dropped
        (0.10, 0.03),  # surname + title (王先生), 老王, 小英: what a caller gives on the phone
        (0.02, 0.9675),
    ],
    "mobile_pid": [(0.85, 0.0001), (0.15, 0.9999)],
    "house_id": [(0.70, 0.001), (0.30, 0.999)],
    "birth_pid": [(0.95, 0.00005), (0.05, 0.99995)],
}
BLOCKING = ("mobile_pid", "name_pid", "birth_pid", "house_id")
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
SWAPPED_OR_SHORTENED = (
    "(length(name_l) = length(name_r) "
    " AND list_sort(string_split(name_l, '')) = list_sort(string_split(name_r, ''))) "
    "OR (length(name_l) = length(name_r) + 1 AND length(name_r) >= 2 "
    " AND starts_with(name_l, name_r)) "
    "OR (length(name_r) = length(name_l) + 1 AND length(name_l) >= 2 "
    " AND starts_with(name_r, name_l))"
)
PARTIAL_NAME = (
    "(given_l IS NULL AND surname_l = surname_r) OR (given_r IS NULL AND surname_l = surname_r) "
    "OR (nick_l IS NOT NULL AND given_r IS NOT NULL "
    " AND (nick_l = surname_r OR nick_l = right(name_r, 1))) "
    "OR (nick_r IS NOT NULL AND given_l IS NOT NULL "
    " AND (nick_r = surname_l OR nick_r = right(name_l, 1)))"
)
TITLES = ("先生", "女士", "小姐", "师傅")  # 王先生: a surname and a title, no given name
NICK_PREFIXES = ("老", "小")  # 老王 (a surname), 小英 (a given name's last character)


def name_parts(names: pl.Series) -> pl.DataFrame:
    """(surname, given, nick) of each name: 王秀英 → (王, 秀英, null); 欧阳娜娜 → (欧阳, 娜娜,
    null), the compound surnames of ``masking.names``; 王先生 → (王, null, null); 老王 →
    (null, null, 王); 小英 → (null, null, 英); null → all null."""
    rows = []
    for name in names.to_list():
        if not name:
            rows.append((None, None, None))
        elif len(name) == 2 and name[0] in NICK_PREFIXES:
            rows.append((None, None, name[1]))
        elif len(name) >= 3 and name.endswith(TITLES):
            rows.append((name[:-2], None, None))
        else:
            cut = 2 if len(name) > 2 and name[:2] in COMPOUND_SURNAMES else 1
            rows.append((name[:cut], name[cut:] or None, None))
    return pl.DataFrame(
        rows, schema=dict.fromkeys(("surname", "given", "nick"), pl.String), orient="row"
    )


def _level(sql: str, label: str, m: float, u: float):
    return cll.CustomLevel(sql, label).configure(m_probability=m, u_probability=u)


def _name() -> cl.CustomComparison:
    exact, sub, swap, partial, other = M_U["name"]
    return cl.CustomComparison(
        [
            cll.NullLevel("name"),
            cll.ExactMatchLevel("name", term_frequency_adjustments=True).configure(
                m_probability=exact[0], u_probability=exact[1]
            ),
            _level(ONE_CHARACTER_DIFFERS, "one character differs", *sub),
            _level(SWAPPED_OR_SHORTENED, "swapped or shortened", *swap),
            _level(PARTIAL_NAME, "surname or nickname", *partial),
            cll.ElseLevel().configure(m_probability=other[0], u_probability=other[1]),
        ],
        output_column_name="name",
    )


def _exact(column: str) -> cl.ExactMatch:
    (m_eq, u_eq), (m_else, u_else) = M_U[column]
    return cl.ExactMatch(column).configure(
        m_probabilities=[m_eq, m_else],
        u_probabilities=[u_eq, u_else],
        term_frequency_adjustments=column in TF_COLUMNS,
    )


def settings(link_type: str, prior: float) -> SettingsCreator:
    """The Splink model: ``link_type`` ``link_only`` (mentions → persons) or
    ``dedupe_only`` (mentions among themselves); ``prior`` = P(two random records match)."""
    return SettingsCreator(
        link_type=link_type,
        unique_id_column_name="unique_id",
        probability_two_random_records_match=min(max(prior, 1e-9), 0.5),
        comparisons=[_name(), _exact("mobile_pid"), _exact("house_id"), _exact("birth_pid")],
        blocking_rules_to_generate_predictions=[block_on(c) for c in BLOCKING],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


RANK = "_rank"  # a record's place in its side's unique_id order: Splink's id for it
# blocked pairs scored at once (a record's own pairs are never cut): at 200,000 residents
# (2.3 million pairs) 1,000,000 took Splink's DuckDB ~550 MB above what the index held,
# 200,000 ~200 MB but twice the time (each call prunes and joins the inputs again);
# 400,000 -> 150,000: the index's part of a curated build alone 846 -> 706 MB, +4.4 CPU s
PAIR_BUDGET = 150_000
# Splink filters on the match weight: a hair below the floor's, then the exact floor on the
# probability (the same filter as on the whole table, whatever rounding the two take)
WEIGHT_MARGIN = 1e-6


def _records(frame: pl.DataFrame) -> pl.DataFrame:
    """Splink's input rows: :data:`INPUT_COLUMNS`, the unique_id being the record's rank."""
    return frame.select(
        [pl.col(RANK if c == "unique_id" else c).cast(pl.String).alias(c) for c in INPUT_COLUMNS]
    )


def _table(
    con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, columns: str = "*"
) -> str:
    """``columns`` (SQL) of ``frame`` copied into a temporary table ``name`` of ``con``
    (Splink's DuckDB, never inside the lake's transaction), the frame's Arrow form let go
    at once: Splink reads tables of its own DuckDB, not Python objects (DuckDB 1.5 may push
    a join's bloom filter into an Arrow scan and fail), and Python holds no second copy."""
    with registered(con, "_streethub_frame", frame.to_arrow(compat_level=pl.CompatLevel.newest())):
        con.execute(f"CREATE TEMP TABLE {name} AS SELECT {columns} FROM _streethub_frame")
    return name


def _term_frequencies(api: DuckDBAPI, linker: Linker, *frames: pl.DataFrame) -> None:
    """Register each :data:`TF_COLUMNS` value's frequency (the records' ``tf_<column>``:
    the share of the street's persons holding it) as Splink's lookup, instead of Splink
    counting the records it was given (a handful of candidates, not the street)."""
    for column in TF_COLUMNS:
        tf = f"tf_{column}"
        table = (
            pl.concat([f.select(column, tf) for f in frames])
            .drop_nulls(column)
            .group_by(column)
            .agg(pl.col(tf).max())
        )
        name = _table(api.duckdb_con, f"lookup_{tf}", table)
        registered = api.register(name, table_name=name)
        linker.table_management.register_term_frequency_lookup(registered, column)


PAIR_SCHEMA = {"unique_id_l": pl.String, "unique_id_r": pl.String, "match_probability": pl.Float64}
RANK_PAIRS = {"unique_id_l": pl.UInt32, "unique_id_r": pl.UInt32, "match_probability": pl.Float64}
# what only Splink reads of a record (its DuckDB holds them): the plain name and its parts,
# and the term frequencies (its lookups)
SPLINK_ONLY = ("name", "surname", "given", "nick", *(f"tf_{c}" for c in TF_COLUMNS))


def _scored(frame) -> pl.DataFrame:
    """The pairs (as ranks) and probabilities of Splink's predictions — only these three
    columns leave its DuckDB (the table holds every comparison's values, levels and Bayes
    factors) — and the table dropped."""
    try:
        relation = frame.as_duckdbpyrelation().select(*PAIR_SCHEMA)
        out = pl.from_arrow(relation.to_arrow_table())
    finally:
        frame.drop_table_from_database_and_remove_from_cache()
    return out.cast(RANK_PAIRS)  # type: ignore[union-attr]


def blocked_pairs(
    left: pl.DataFrame, right: pl.DataFrame | None = None, on: str = "unique_id"
) -> pl.DataFrame:
    """(unique_id_l, unique_id_r): the ``on`` values of the pairs that agree on at least one
    :data:`BLOCKING` pseudonym — equi-joins in polars, each pair once (``right`` None: pairs
    within ``left``, the smaller id on the left). Splink's own rule-by-rule blocking joined
    the two sides in nested loops here (8 s for 1,300 × 7,100 records, against 0.05 s)."""
    within = right is None
    right = left if right is None else right
    parts = [
        left.select(on, c)
        .drop_nulls(c)
        .join(right.select(on, c).drop_nulls(c), on=c, suffix="_r")
        .select(unique_id_l=on, unique_id_r=f"{on}_r")
        for c in BLOCKING
    ]
    pairs = pl.concat(parts).unique()
    if within:
        pairs = pairs.filter(pl.col("unique_id_l") < pl.col("unique_id_r"))
    return pairs.sort("unique_id_l", "unique_id_r")


def slices(left: pl.DataFrame, right: pl.DataFrame, budget: int) -> list[pl.DataFrame]:
    """``left`` cut into consecutive slices whose :func:`blocked_pairs` with ``right`` number
    at most about ``budget`` each (counted per rule, so a pair two rules find counts twice;
    a record whose own pairs exceed it is a slice of its own)."""
    pairs = pl.sum_horizontal(
        [
            pl.col(c).replace_strict(*_held(right, c), default=0, return_dtype=pl.UInt64)
            for c in BLOCKING
        ]
    )
    cut = ((pairs.cum_sum() - pairs) // max(budget, 1)).alias("_slice")
    return left.with_columns(cut).partition_by("_slice", maintain_order=True, include_key=False)


def _held(frame: pl.DataFrame, column: str) -> tuple[pl.Series, pl.Series]:
    """Each non-null value of ``column`` and how many records hold it."""
    counts = frame.group_by(column).len().drop_nulls(column)
    return counts[column], counts["len"].cast(pl.UInt64)


def _ranked(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in unique_id order with :data:`RANK` (so ranks compare as the ids do)."""
    return frame.sort("unique_id").with_row_index(RANK)


class Scorer:
    """One Splink model (link_only) over the fallback mentions (``left``) and the known
    persons' candidate records (``right``), both with :data:`INPUT_COLUMNS` and a ``tf_``
    column of each :data:`TF_COLUMNS`: it scores mention→person pairs (:meth:`between`)
    and mention↔mention pairs (:meth:`within`) with the same parameters, so Splink's
    settings are built once (half a second of SQL parsing each time).

    ``con``: the lake's connection. Splink then works in a cursor of the lake's DuckDB,
    whose memory is bounded (``lake_memory_limit``) and whose overflow spills encrypted
    (:func:`lakehouse.extensions.spill_encrypted`): it sees decrypted names. Without one
    (a test's frames) it gets an in-memory DuckDB of its own that never spills. Splink
    knows each record by its rank (:data:`RANK`): a pair is two small integers, scored
    :data:`PAIR_BUDGET` at a time, and only the pairs from a ``floor`` up are kept."""

    def __init__(
        self,
        left: pl.DataFrame,
        right: pl.DataFrame,
        prior: float,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self._calls = 0
        # without the lake: Splink's own in-memory DuckDB sees the fallback's decrypted
        # names, it must never spill them to disk (its default would be ``.tmp/`` here)
        own = scratch() if con is None else con.cursor()
        self._api = DuckDBAPI(own)
        try:
            ranked = {MENTIONS: _ranked(left), PERSONS: _ranked(right)}
            inputs = [
                self._api.register(_table(own, name, _records(frame)), table_name=name)
                for name, frame in ranked.items()
            ]
            self._linker = Linker(inputs, settings("link_only", prior), log_level=logging.WARNING)
            _term_frequencies(self._api, self._linker, left, right)
        except BaseException:
            self.close()
            raise
        # each side in rank order without what Splink alone reads (``left``/``right`` are
        # these: a caller drops its own frames once the scorer holds them)
        self._ranked = {k: f.drop(SPLINK_ONLY, strict=False) for k, f in ranked.items()}
        self.left, self.right = self._ranked[MENTIONS], self._ranked[PERSONS]

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop what Splink left in the DuckDB (a lake cursor's tables stay in the lake's
        in-memory database otherwise) and close the connection. Splink keeps the names of
        the tables it created: listing the database instead (``duckdb_tables()``) loaded
        the metadata of every table of the lake, ~0.25 CPU s the first time in a process."""
        try:
            self._api.delete_tables_created_by_splink_from_db()
        finally:
            self._api.duckdb_con.close()

    def between(self, floor: float | None = None) -> pl.DataFrame:
        """Scored pairs (unique_id_l a mention, unique_id_r a person's record); with
        ``floor``, only those scoring at least that."""
        left, right = self._ranked[MENTIONS], self._ranked[PERSONS]
        return self._scores(left, right, PERSONS, floor)

    def within(self, records: pl.DataFrame, floor: float | None = None) -> pl.DataFrame:
        """Scored pairs among ``records`` (some of the mentions), each unordered pair once
        (the smaller unique_id on the left); with ``floor``, only those scoring at least that."""
        mine = self._ranked[MENTIONS].join(records.select("unique_id"), on="unique_id", how="semi")
        return self._scores(mine, None, MENTIONS, floor)

    def _scores(self, left, right, table: str, floor: float | None) -> pl.DataFrame:
        """The pairs of ``left``'s records with ``right``'s (None: among ``left``'s), scored
        a slice of ``left`` at a time, as unique ids (of their sides' own type)."""
        ranked: list[pl.DataFrame] = []
        for part in slices(left, left if right is None else right, PAIR_BUDGET):
            pairs = blocked_pairs(part, left if right is None else right, on=RANK)
            if right is None:
                pairs = pairs.filter(pl.col("unique_id_l") < pl.col("unique_id_r"))
            ranked.append(self._predict(pairs, table, floor))
        out = pl.concat(ranked) if ranked else pl.DataFrame(schema=RANK_PAIRS)
        ids_l = self._ranked[MENTIONS]["unique_id"]
        ids_r = self._ranked[table]["unique_id"]
        return out.select(
            ids_l.gather(out["unique_id_l"]).alias("unique_id_l"),
            ids_r.gather(out["unique_id_r"]).alias("unique_id_r"),
            "match_probability",
        )

    def _predict(self, pairs: pl.DataFrame, right: str, floor: float | None) -> pl.DataFrame:
        """Splink scores exactly ``pairs`` (ranks; join keys in its composite-id form: the
        input table's name, ``-__-``, the rank, made by its DuckDB), from ``floor`` up when
        given."""
        if pairs.height == 0:
            return pl.DataFrame(schema=RANK_PAIRS)
        self._calls += 1  # each registered table needs a name of its own
        con = self._api.duckdb_con
        name = _table(
            con, f"blocked_pairs_{self._calls}", pairs,
            f"'0' AS match_key, '{MENTIONS}{SEPARATOR}' || unique_id_l::VARCHAR AS join_key_l, "
            f"'{right}{SEPARATOR}' || unique_id_r::VARCHAR AS join_key_r",
        )  # fmt: skip
        weight = None if floor is None else math.log2(floor / (1 - floor)) - WEIGHT_MARGIN
        try:
            table = self._api.register(name, table_name=name)
            self._linker.table_management.register_blocked_pairs_for_predict(table)
            scored = _scored(
                self._linker.inference.predict(threshold_match_weight=weight, warning_mode="never")
            )
        finally:
            con.execute(f"DROP TABLE {name}")
        if floor is not None:
            scored = scored.filter(pl.col("match_probability") >= floor)
        return scored


def score_between(left: pl.DataFrame, right: pl.DataFrame, prior: float) -> pl.DataFrame:
    """Scored candidate pairs (unique_id_l from ``left``, unique_id_r from ``right``,
    match_probability): :meth:`Scorer.between`."""
    with Scorer(left, right, prior) as scorer:
        return scorer.between()


def per_person(pairs: pl.DataFrame, persons: pl.DataFrame) -> pl.DataFrame:
    """(unique_id_l, person_id, match_probability): a mention's best score per person
    (``persons`` maps the right-hand unique_id to its person_id; a person has a record
    per distinct combination of its values)."""
    return (
        pairs.join(
            persons.select("unique_id", "person_id"), left_on="unique_id_r", right_on="unique_id"
        )
        .group_by("unique_id_l", "person_id")
        .agg(pl.col("match_probability").max())
    )


def decide(scored: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(linked, queued) from :func:`per_person`'s scores.

    Linked: the one person at or above :data:`MATCH_THRESHOLD` (unique_id_l, person_id,
    match_probability). Queued for review: every candidate from :data:`REVIEW_FLOOR` up of
    a mention not linked (its best below the threshold, or two persons above it).
    """
    above = scored.filter(pl.col("match_probability") >= REVIEW_FLOOR)
    sure = above.filter(pl.col("match_probability") >= MATCH_THRESHOLD)
    one = sure.group_by("unique_id_l").agg(pl.len().alias("n")).filter(pl.col("n") == 1)
    linked = sure.join(one.select("unique_id_l"), on="unique_id_l")
    queued = above.join(linked.select("unique_id_l"), on="unique_id_l", how="anti")
    return linked, queued.sort("unique_id_l", "person_id")


def group_within(scorer: Scorer, records: pl.DataFrame) -> pl.DataFrame:
    """(node, root, p): ``records`` grouped by links at or above the threshold among
    themselves; root = the group's smallest unique_id, p = the node's best link (null alone)."""
    edges = scorer.within(records, MATCH_THRESHOLD).select(
        a="unique_id_l", b="unique_id_r", p="match_probability"
    )
    best = (
        pl.concat([edges.select(node="a", p="p"), edges.select(node="b", p="p")])
        .group_by("node")
        .agg(pl.col("p").max())
    )
    return components(records["unique_id"], edges).join(best, on="node", how="left")


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
