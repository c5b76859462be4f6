"""The master resident index (人员主索引): one person across every department.

:func:`link_persons` turns every staged record that has a subject (:mod:`curated.mentions`)
into one row of ``curated.person_mentions`` (dept, dataset, key_pid, person_id, method,
match_probability, linked_at):

1. **exact** — a record with a citizen-ID pseudonym is that person: ``person_id`` is the
   pseudonym itself (20 hex);
2. **probabilistic** — a record without one is scored by Splink (:mod:`curated.linkage`)
   against the persons known by ID (their names, mobiles, birth dates and the units
   their addresses name, across all departments); at or above :data:`~curated.linkage.MATCH_THRESHOLD`, when no other
   person scores that high, it joins that person;
3. **review** — a best score in [:data:`~curated.linkage.REVIEW_FLOOR`, threshold), or two
   persons at or above the threshold: never merged; every candidate from the floor up goes
   to ``curated.person_review``;
4. **new** — the rest (and the mentions under review) are persons known only by fallback:
   linked among themselves by the same model and threshold, each group's ``person_id``
   derived from its first mention (a keyed pseudonym of the smallest mention key).

Then every row of ``curated.link_actions`` (merge / split, by a data officer) is replayed
in order, so a manual decision survives every rebuild and a wrong merge is undone by a
split (:func:`merge`, :func:`split`).

``curated.person_keys`` keeps each mention's pseudonyms (citizen, mobile, name, birth
date), so an incremental call (``changed`` = the (dept, dataset) whose staged rows changed)
re-reads and re-pseudonymises only those datasets; the linking then runs over the kept
pseudonyms as a full build does. The fallback's result is a function of its inputs (the
fallback mentions, their candidates' records, the term frequencies, the street's scale:
:func:`inputs_digest`); ``curated.person_fallback`` keeps the last result with the digest
of its inputs, and an incremental call whose inputs hash the same takes it instead of
running Splink again. Either way the result equals a full rebuild (which always runs it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable

import duckdb
import polars as pl

from catalog.errors import StreethubError
from catalog.model import Catalogue
from curated import index_delta, linkage
from curated.houses import house_datasets
from curated.mentions import (
    KEY_COLUMNS,
    MENTION_SCHEMA,
    datasets_of,
    read_mentions,
    reveal_names,
)
from curated.review import (
    ACTION_COLUMNS,
    LINK_SCHEMA,
    REVIEW_COLUMNS,
    REVIEW_SCHEMA,
    actions,
    anchor_mentions,
    derived_person_id,
    fill_anchors,
    record_action,
    replay,
    review_queue,
    review_rows,
)
from lakehouse.lake import ensure_table, has_table, insert_frame, transaction

ZONE = "curated"
KEYS_TABLE = "person_keys"
MENTIONS_TABLE = "person_mentions"
REVIEW_TABLE = "person_review"
ACTIONS_TABLE = "link_actions"
FALLBACK_TABLE = "person_fallback"  # the last fallback result and the digest of its inputs
HOUSE_MENTIONS = "house_mentions"  # PLACES' table: the unit a record's address names
METHODS = ("exact", "probabilistic", "new", "manual")
KEYS_COLUMNS = [(c, "VARCHAR") for c in MENTION_SCHEMA]
MENTION_COLUMNS = [
    ("dept", "VARCHAR"),
    ("dataset", "VARCHAR"),
    ("key_pid", "VARCHAR"),
    ("person_id", "VARCHAR"),
    ("method", "VARCHAR"),
    ("match_probability", "DOUBLE"),
    ("linked_at", "TIMESTAMPTZ"),
]
_SEP = "\x1f"
UTC = pl.Datetime("us", "UTC")


class LinkError(StreethubError):
    """A merge or split that names no known person or mention."""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    ensure_table(con, ZONE, KEYS_TABLE, KEYS_COLUMNS)
    ensure_table(con, ZONE, MENTIONS_TABLE, MENTION_COLUMNS)
    ensure_table(con, ZONE, REVIEW_TABLE, REVIEW_COLUMNS)
    ensure_table(con, ZONE, ACTIONS_TABLE, ACTION_COLUMNS)
    ensure_table(con, ZONE, FALLBACK_TABLE, [*MENTION_COLUMNS[:-1], ("inputs_digest", "VARCHAR")])
    ensure_table(con, ZONE, index_delta.WATCH_TABLE, index_delta.WATCH_COLUMNS)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- keys ----------------------------------------------------------------------------


def refresh_keys(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection,
    changed: Iterable[tuple[str, str]] | None,
) -> int:
    """Re-read the subject mentions of ``changed`` datasets (None: all) into person_keys."""
    targets = datasets_of(catalogue, changed)
    frames = [read_mentions(con, sf, protection, protection.keyring) for sf in targets]
    fresh = pl.concat(frames) if frames else pl.DataFrame(schema=MENTION_SCHEMA)
    if changed is None:
        con.execute(f"DELETE FROM {ZONE}.{KEYS_TABLE}")
    else:
        for sf in targets:
            con.execute(
                f"DELETE FROM {ZONE}.{KEYS_TABLE} WHERE dept = ? AND dataset = ?",
                [sf.dept, sf.dataset.code],
            )
    if fresh.height:
        insert_frame(con, ZONE, KEYS_TABLE, fresh)
    return fresh.height


# -- automatic links -------------------------------------------------------------------


def _mention_id() -> pl.Expr:
    return pl.concat_str([pl.col(c) for c in KEY_COLUMNS], separator=_SEP)


TF_BY = (("name", "name_pid"), ("mobile_pid", "mobile_pid"), ("house_id", "house_id"))


def persons_scale(exact: pl.DataFrame) -> int:
    """The number of persons known by ID, to the nearest power of two: the model's prior
    (1 / scale) and the term frequencies' denominator. Scores move only when the street's
    size doubles or halves, not with each new resident, so a delivery that touches no
    fallback mention's candidates leaves every fallback score as it was."""
    return index_delta.scale_of(exact["citizen_pid"].n_unique())


def _frequencies(exact: pl.DataFrame, scale: int) -> dict[str, pl.DataFrame]:
    """tf_<column> of each TF column: persons known by ID holding the value / scale."""
    return {
        column: exact.filter(pl.col(by).is_not_null())
        .group_by(by)
        .agg((pl.col("citizen_pid").n_unique() / scale).alias(f"tf_{column}"))
        for column, by in TF_BY
    }


def _with_tf(frame: pl.DataFrame, tf: dict, floor: float) -> pl.DataFrame:
    for column, by in TF_BY:
        frame = frame.join(tf[column], on=by, how="left").with_columns(
            pl.col(f"tf_{column}").fill_null(floor)
        )
    return frame


def _with_names(frame: pl.DataFrame, names: pl.DataFrame) -> pl.DataFrame:
    """Splink's input rows: the pseudonyms and TF values, the plain name and its parts."""
    out = frame.join(names, on="name_pid", how="left")
    return out.with_columns(linkage.name_parts(out["name"]))


def inputs_digest(scale: int, *frames: pl.DataFrame) -> str:
    """A digest of everything the fallback's result depends on (the scale, the fallback
    mentions and their candidates' records with their term frequencies)."""
    h = hashlib.sha256(f"{scale}".encode())
    for frame in frames:
        cols = sorted(frame.columns)
        rows = frame.select(
            pl.concat_str(
                [pl.col(c).cast(pl.String).fill_null("\x00") for c in cols], separator=_SEP
            )
        ).to_series()
        h.update("\x1e".join(cols).encode())
        h.update("\x1e".join(sorted(rows.to_list())).encode())
    return h.hexdigest()


def _houses(con: duckdb.DuckDBPyConnection, keys: pl.DataFrame) -> pl.DataFrame:
    """``keys`` with ``house_id``: the unit the record's address names (PLACES'
    ``curated.house_mentions``, built before the index; the smallest when a record names
    several; null without)."""
    if not has_table(con, ZONE, HOUSE_MENTIONS):
        return keys.with_columns(pl.lit(None, dtype=pl.String).alias("house_id"))
    houses = con.execute(index_delta.house_of_mentions()).pl().cast(pl.String)
    return keys.join(houses, on=list(KEY_COLUMNS), how="left")


def _plain_names(con, catalogue, keys: pl.DataFrame, wanted: pl.Series, protection):
    """(name_pid, name) of the wanted name pseudonyms: one staged record each (the
    smallest key), decrypted for the comparison only."""
    reps = (
        keys.filter(pl.col("name_pid").is_in(wanted.drop_nulls().unique().implode()))
        .sort(list(KEY_COLUMNS))
        .unique("name_pid", keep="first", maintain_order=True)
    )
    plain = reveal_names(con, catalogue, reps.select(KEY_COLUMNS), protection)
    return reps.join(plain, on=list(KEY_COLUMNS)).select("name_pid", "name")


def _stored_fallback(con, digest: str) -> pl.DataFrame | None:
    """The last build's fallback links, when its inputs were these."""
    if not has_table(con, ZONE, FALLBACK_TABLE):
        return None
    stored = con.execute(f"SELECT * FROM {ZONE}.{FALLBACK_TABLE}").pl()
    if stored.height == 0 or set(stored["inputs_digest"]) != {digest}:
        return None
    return stored.select(list(LINK_SCHEMA)).cast(LINK_SCHEMA)


def auto_links(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    keys: pl.DataFrame,
    protection,
    *,
    reuse: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame | None, str | None]:
    """(links, review rows, the fallback inputs' digest) of every mention in ``keys``,
    before manual actions. With ``reuse`` the fallback (Splink) runs only when its inputs
    changed since the last build; otherwise its stored result is the result, and the
    review rows are None (the stored queue stands)."""
    if "house_id" not in keys.columns:
        keys = _houses(con, keys)
    exact = keys.filter(pl.col("citizen_pid").is_not_null())
    # a mention id only where Splink needs one (not a million strings for the exact links)
    fallback = keys.filter(pl.col("citizen_pid").is_null()).with_columns(
        _mention_id().alias("mention_id")
    )
    links = exact.select(
        *KEY_COLUMNS,
        pl.col("citizen_pid").alias("person_id"),
        pl.lit("exact").alias("method"),
        pl.lit(None, dtype=pl.Float64).alias("match_probability"),
    ).cast(LINK_SCHEMA)
    if fallback.height == 0:
        return links, pl.DataFrame(schema=REVIEW_SCHEMA), None

    scale = persons_scale(exact)
    tf = _frequencies(exact, scale)
    # the persons' records that share a blocking pseudonym with some fallback mention
    shares = pl.any_horizontal(
        [pl.col(c).is_in(fallback[c].drop_nulls().unique().implode()) for c in linkage.BLOCKING]
    )
    profiles = (
        exact.select(pl.col("citizen_pid").alias("person_id"), *linkage.BLOCKING)
        .unique()
        .filter(shares)
        .with_columns(
            pl.concat_str(
                [pl.col(c).fill_null("-") for c in ("person_id", *linkage.BLOCKING)],
                separator=_SEP,
            ).alias("unique_id")
        )
    )
    mentions = fallback.select(
        pl.col("mention_id").alias("unique_id"), *KEY_COLUMNS, *linkage.BLOCKING
    )
    left = _with_tf(mentions, tf, 1 / scale)
    right = _with_tf(profiles, tf, 1 / scale)
    digest = inputs_digest(scale, left, right)
    stored = _stored_fallback(con, digest) if reuse else None
    if stored is not None:
        return pl.concat([links, stored]), None, digest

    names = _plain_names(
        con, catalogue, keys, pl.concat([left["name_pid"], right["name_pid"]]), protection
    )
    left, right = _with_names(left, names), _with_names(right, names)
    with linkage.Scorer(left, right, prior=1 / scale, con=con) as scorer:
        return _fallback(con, catalogue, scorer, links, names, protection, digest)


def _fallback(con, catalogue, scorer, links, names, protection, digest):
    """Link, queue or group the fallback mentions (``scorer``'s left-hand records)."""
    left, right = scorer.left, scorer.right
    # only the pairs from the review floor up decide anything (linked or queued)
    scored = linkage.per_person(scorer.between(linkage.REVIEW_FLOOR), right)
    linked, queued = linkage.decide(scored)
    found = [
        left.join(linked, left_on="unique_id", right_on="unique_id_l").select(
            *KEY_COLUMNS,
            "person_id",
            pl.lit("probabilistic").alias("method"),
            "match_probability",
        )
    ]
    # persons known only by fallback: the unlinked mentions grouped among themselves
    rest = left.filter(~pl.col("unique_id").is_in(linked["unique_id_l"].implode()))
    groups = linkage.group_within(scorer, rest)
    groups = groups.with_columns(
        derived_person_id(groups["root"], protection.keyring, "fallback").alias("person_id")
    )
    found.append(
        left.join(groups, left_on="unique_id", right_on="node").select(
            *KEY_COLUMNS,
            "person_id",
            pl.lit("new").alias("method"),
            pl.col("p").alias("match_probability"),
        )
    )
    out = pl.concat([f.cast(LINK_SCHEMA) for f in found])
    review = review_rows(con, catalogue, queued, left, right, out, names, protection)
    return pl.concat([links, out]), review, digest


# -- manual actions --------------------------------------------------------------------


def _persons(con) -> set[str]:
    rows = con.execute(f"SELECT DISTINCT person_id FROM {ZONE}.{MENTIONS_TABLE}").fetchall()
    return {r[0] for r in rows}


def _mention(con, mention: tuple[str, str, str]) -> str:
    row = con.execute(
        f"SELECT person_id FROM {ZONE}.{MENTIONS_TABLE} WHERE dept=? AND dataset=? AND key_pid=?",
        list(mention),
    ).fetchone()
    if row is None:
        raise LinkError("no such mention in the index", dataset=f"{mention[0]}.{mention[1]}")
    return row[0]


def merge(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection,
    *,
    into: str,
    person: str | None = None,
    mention: tuple[str, str, str] | None = None,
    actor: str,
    reason: str,
) -> str:
    """Merge ``person`` (all its mentions) or one ``mention`` into person ``into``;
    recorded in link_actions, audited, and applied by relinking. Returns the action id."""
    known = _persons(con)
    if into not in known or (person is not None and person not in known):
        raise LinkError("merge names a person the index does not hold")
    if (person is None) == (mention is None):
        raise LinkError("merge takes a person or a mention, not both")
    if mention is not None:
        _mention(con, mention)
    ids = dict(person_id=into, from_person_id=person)
    if mention is not None:
        ids.update(dept=mention[0], dataset=mention[1], key_pid=mention[2])
    return _act(con, catalogue, protection, "merge", actor, reason, ids)


def split(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection,
    *,
    person: str,
    restore: str | None = None,
    mention: tuple[str, str, str] | None = None,
    actor: str,
    reason: str,
) -> str:
    """Undo: give back to ``restore`` the mentions that were linked to it before they were
    merged into ``person``, or detach one ``mention`` of ``person`` into a person of its
    own. Recorded, audited, applied by relinking. Returns the action id."""
    if person not in _persons(con):
        raise LinkError("split names a person the index does not hold")
    if (restore is None) == (mention is None):
        raise LinkError("split takes the person to restore or a mention, not both")
    ids: dict[str, str | None] = dict(person_id=person, from_person_id=restore)
    if mention is not None:
        if _mention(con, mention) != person:
            raise LinkError("the mention is not linked to that person", dataset=mention[1])
        ids.update(dept=mention[0], dataset=mention[1], key_pid=mention[2])
    return _act(con, catalogue, protection, "split", actor, reason, ids)


def _act(con, catalogue, protection, action, actor, reason, ids) -> str:
    """Record the action and relink in one transaction (the index never lags a recorded
    action: the incremental index trusts the stored links of unchanged datasets); its
    anchors are filled by that relink."""
    recorded: list[str] = []

    def record() -> None:
        recorded.append(record_action(con, action, actor, reason, **ids))

    link_persons(con, catalogue, protection, changed=(), record=record)
    protection.audit.append(
        f"person_{action}", actor, action_id=recorded[0], purpose="master_index",
        person_id=ids["person_id"],
    )  # fmt: skip
    return recorded[0]


# -- the build -------------------------------------------------------------------------


_ID_SQL = "concat_ws(chr(31), dept, dataset, key_pid)"  # a mention's id, as _mention_id()


def _register(con: duckdb.DuckDBPyConnection, name: str, keys: pl.DataFrame) -> None:
    """Register ``keys`` (dept, dataset, key_pid) as view ``name`` with their mention ids."""
    con.register(name, keys.select(_mention_id().alias("id")).to_arrow())


def _write_mentions(
    con: duckdb.DuckDBPyConnection,
    final: pl.DataFrame,
    now: dt.datetime,
    scope: set[tuple[str, str]] | None = None,
) -> None:
    """Make ``curated.person_mentions`` equal ``final`` (in ``scope``: only those datasets'
    rows), writing only the rows that changed (a row whose person, method and probability
    stay keeps its ``linked_at``)."""
    read = f"SELECT {', '.join(LINK_SCHEMA)} FROM {ZONE}.{MENTIONS_TABLE}"
    if scope is None:
        old = con.execute(read).pl()
    else:
        con.register(index_delta.SCOPE, _datasets_frame(scope).to_arrow())
        try:
            old = con.execute(f"{read} SEMI JOIN {index_delta.SCOPE} USING (dept, dataset)").pl()
        finally:
            con.unregister(index_delta.SCOPE)
    old = old.cast(LINK_SCHEMA)
    same = list(LINK_SCHEMA)
    gone = old.join(final, on=same, how="anti", nulls_equal=True).select(KEY_COLUMNS)
    new = final.join(old, on=same, how="anti", nulls_equal=True)
    _delete_mentions(con, MENTIONS_TABLE, gone)
    if new.height:
        rows = new.with_columns(pl.lit(now, dtype=UTC).alias("linked_at"))
        insert_frame(con, ZONE, MENTIONS_TABLE, rows.select([c for c, _ in MENTION_COLUMNS]))


def _delete_mentions(con, table: str, keys: pl.DataFrame) -> None:
    """Delete the rows of ``curated.<table>`` of the mentions in ``keys``."""
    if keys.height == 0:
        return
    _register(con, "_mention_keys", keys)
    try:
        con.execute(f"DELETE FROM {ZONE}.{table} WHERE {_ID_SQL} IN (SELECT id FROM _mention_keys)")
    finally:
        con.unregister("_mention_keys")


def _datasets_frame(datasets: set[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(sorted(datasets), schema=["dept", "dataset"], orient="row")


def _in(frame: pl.DataFrame, datasets: set[tuple[str, str]]) -> pl.DataFrame:
    """The rows of ``frame`` in ``datasets``."""
    return frame.join(_datasets_frame(datasets), on=["dept", "dataset"], how="semi")


def _close_decided(con, recorded: pl.DataFrame) -> int:
    """Drop the review items a recorded decision settled; the open items left."""
    decided = recorded.filter(pl.col("key_pid").is_not_null()).select(KEY_COLUMNS)
    _delete_mentions(con, REVIEW_TABLE, decided)
    return int(con.execute(f"SELECT count(*) FROM {ZONE}.{REVIEW_TABLE}").fetchone()[0])


def _index_counts(con) -> dict[str, int]:
    """Mentions per method, mentions and persons of ``curated.person_mentions``."""
    rows = con.execute(
        f"SELECT method, count(*) FROM {ZONE}.{MENTIONS_TABLE} GROUP BY method"
    ).fetchall()
    persons = con.execute(
        f"SELECT count(DISTINCT person_id) FROM {ZONE}.{MENTIONS_TABLE}"
    ).fetchone()[0]
    out = {m: 0 for m in METHODS} | {str(m): int(n) for m, n in rows}
    out.update(mentions=sum(int(n) for _, n in rows), persons=int(persons))
    return out


def _relink_changed(con, catalogue, protection, changed, old) -> dict | None:
    """The incremental update (:mod:`curated.index_delta`): the changed datasets' mentions
    re-read; when the fallback's inputs stand, only they (and the actions' anchor
    mentions) are linked and replayed; None: link everything (the keys are re-read)."""
    refresh_keys(con, catalogue, protection, changed)
    new = index_delta.keyed_rows(con, changed)
    if new is None:
        return None
    if not index_delta.fallback_untouched(con, index_delta.changed_rows(old, new)):
        return None
    recorded = actions(con)
    if recorded.filter(
        pl.col("anchor_key_pid").is_null() & pl.col("from_anchor_key_pid").is_null()
    ).height:
        return None  # an action without anchors: the whole replay fills them
    wanted = pl.concat([new.select(KEY_COLUMNS), anchor_mentions(recorded)]).unique()
    links = index_delta.auto_links_of(con, wanted, LINK_SCHEMA)
    if links is None:
        return None
    final = _in(replay(links, recorded, protection.keyring), changed)
    review = _close_decided(con, recorded)
    _write_mentions(con, final, _now(), changed)
    return _index_counts(con) | {"review": review}


def link_persons(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection,
    changed: Iterable[tuple[str, str]] | None = None,
    *,
    before: int | None = None,
    record: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Build (``changed`` None) or update the index; returns counts per method, persons,
    mentions and open review items. ``protection`` is the pipelines' Protection.

    ``before``: the lake snapshot before this build wrote anything (the house mentions
    and the index as they stood): with it, an update whose changes leave the fallback's
    inputs as they were links only the changed datasets' mentions
    (:mod:`curated.index_delta`). ``record``: called first inside the index's transaction
    (a manual action recorded with the relink that applies it)."""
    changed = None if changed is None else set(changed)
    old = None
    if changed and before is not None and not changed & house_datasets(catalogue):
        old = index_delta.keyed_rows(con, changed, before)  # None: a table missing then
    with transaction(con):
        ensure_tables(con)  # in the transaction: no commit of their own
        if record is not None:
            record()
        if old is not None:
            counts = _relink_changed(con, catalogue, protection, changed, old)
            if counts is not None:
                return counts
        else:
            refresh_keys(con, catalogue, protection, changed)
        return _relink_all(con, catalogue, protection, changed)


def _relink_all(con, catalogue, protection, changed) -> dict[str, int]:
    """Link every mention of ``curated.person_keys`` (inside the caller's transaction)."""
    keys = (
        con.execute(f"SELECT {', '.join(MENTION_SCHEMA)} FROM {ZONE}.{KEYS_TABLE}")
        .pl()
        .cast(MENTION_SCHEMA)
    )
    keys = _houses(con, keys)
    index_delta.write_watch(con, keys)
    links, review, digest = auto_links(con, catalogue, keys, protection, reuse=changed is not None)
    reused = review is None  # the stored fallback result stands (and its review rows)
    if not reused:
        con.execute(f"DELETE FROM {ZONE}.{FALLBACK_TABLE}")
        fallback = links.filter(pl.col("method") != "exact").with_columns(
            pl.lit(digest, dtype=pl.String).alias("inputs_digest")
        )
        insert_frame(con, ZONE, FALLBACK_TABLE, fallback)
    recorded = _anchored(con, links, actions(con), protection.keyring)
    final = replay(links, recorded, protection.keyring)
    now = _now()
    if reused:  # the open items stay open unless a decision was recorded since
        review_count = _close_decided(con, recorded)
    else:
        decided = recorded.filter(pl.col("key_pid").is_not_null()).select(KEY_COLUMNS)
        review = review.join(decided, on=list(KEY_COLUMNS), how="anti")
        con.execute(f"DELETE FROM {ZONE}.{REVIEW_TABLE}")
        if review.height:
            insert_frame(con, ZONE, REVIEW_TABLE, review.with_columns(queued_at=pl.lit(now)))
        review_count = review.height
    _write_mentions(con, final, now)
    counts = final.group_by("method").len()
    out = {m: 0 for m in METHODS} | dict(counts.iter_rows())
    out.update(mentions=final.height, persons=final["person_id"].n_unique(), review=review_count)
    return out


ANCHOR_COLUMNS = [f"{p}{c}" for p in ("anchor_", "from_anchor_") for c in KEY_COLUMNS]


def _anchored(con, links: pl.DataFrame, recorded: pl.DataFrame, keyring) -> pl.DataFrame:
    """``recorded`` with every action's anchors, those missing filled from ``links``
    replayed up to the action and written to ``curated.link_actions``."""
    bare = recorded.filter(
        pl.col("anchor_key_pid").is_null() & pl.col("from_anchor_key_pid").is_null()
    )
    if bare.height == 0:
        return recorded
    filled = fill_anchors(links, recorded, keyring)
    fresh = filled.join(bare.select("action_id"), on="action_id", how="semi")
    for row in fresh.select("action_id", *ANCHOR_COLUMNS).iter_rows(named=True):
        sets = ", ".join(f"{c} = ?" for c in ANCHOR_COLUMNS)
        con.execute(
            f"UPDATE {ZONE}.{ACTIONS_TABLE} SET {sets} WHERE action_id = ?",
            [row[c] for c in ANCHOR_COLUMNS] + [row["action_id"]],
        )
    return filled


def anchor_actions(con: duckdb.DuckDBPyConnection, keyring) -> int:
    """Give every recorded action without anchors its anchor mentions, from the stored
    automatic links (``person_keys``, ``person_fallback``); the actions anchored. The
    re-key calls it before it maps mention keys (person ids are about to change)."""
    if not has_table(con, ZONE, ACTIONS_TABLE):
        return 0
    ensure_tables(con)
    recorded = actions(con)
    bare = recorded.filter(
        pl.col("anchor_key_pid").is_null() & pl.col("from_anchor_key_pid").is_null()
    ).height
    if bare == 0:
        return 0
    keys = con.execute(f"SELECT dept, dataset, key_pid FROM {ZONE}.{KEYS_TABLE}").pl()
    links = index_delta.auto_links_of(con, keys, LINK_SCHEMA)
    if links is None:
        raise LinkError("the stored automatic links are incomplete: build the index first")
    with transaction(con):
        _anchored(con, links, recorded, keyring)
    return bare


__all__ = [
    "LinkError",
    "actions",
    "anchor_actions",
    "auto_links",
    "ensure_tables",
    "link_persons",
    "merge",
    "replay",
    "review_queue",
    "split",
]
