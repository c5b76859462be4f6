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
from collections.abc import Callable, Iterable, Iterator

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
from lakehouse.lake import ensure_table, has_table, insert_frame, registered, transaction

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


class LinkError(StreethubError):
    """A merge or split that names no known person or mention."""


# the index's tables: (name, columns)
INDEX_TABLES: list[tuple[str, list[tuple[str, str]]]] = [
    (KEYS_TABLE, KEYS_COLUMNS),
    (MENTIONS_TABLE, MENTION_COLUMNS),
    (REVIEW_TABLE, REVIEW_COLUMNS),
    (ACTIONS_TABLE, ACTION_COLUMNS),
    (FALLBACK_TABLE, [*MENTION_COLUMNS[:-1], ("inputs_digest", "VARCHAR")]),
    (index_delta.WATCH_TABLE, index_delta.WATCH_COLUMNS),
]


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table, columns in INDEX_TABLES:
        ensure_table(con, ZONE, table, columns)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- keys ----------------------------------------------------------------------------


def refresh_keys(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection,
    changed: Iterable[tuple[str, str]] | None,
) -> int:
    """Re-read the subject mentions of ``changed`` datasets (None: all) into person_keys,
    a dataset at a time (the whole street's mentions at once were ~400 MB at 200,000
    residents); the mentions read."""
    targets = datasets_of(catalogue, changed)
    if changed is None:
        con.execute(f"DELETE FROM {ZONE}.{KEYS_TABLE}")
    else:
        for sf in targets:
            con.execute(
                f"DELETE FROM {ZONE}.{KEYS_TABLE} WHERE dept = ? AND dataset = ?",
                [sf.dept, sf.dataset.code],
            )
    read = 0
    for sf in targets:
        fresh = read_mentions(con, sf, protection, protection.keyring)
        insert_frame(con, ZONE, KEYS_TABLE, fresh)
        read += fresh.height
    return read


# -- automatic links -------------------------------------------------------------------


def _mention_id() -> pl.Expr:
    return pl.concat_str([pl.col(c) for c in KEY_COLUMNS], separator=_SEP)


TF_BY = (("name", "name_pid"), ("mobile_pid", "mobile_pid"), ("house_id", "house_id"))


# a whole relink reads every mention through views of the lake's DuckDB, not polars
# frames of them (1.1 million mentions at 200,000 residents were ~1.3 GB of frames beside
# Splink's scoring); views, not temporary tables: what a table holds stays in memory until
# the index's transaction commits, even once dropped
KEYED = "_index_keyed"  # every mention row with the unit its record names
LINKS = "_index_links"  # the links a relink ends with (automatic, then replayed)
FALLBACK = "_index_fallback"  # table: the mentions without a citizen-ID pseudonym (few)
FOUND = "_index_found"  # table: the fallback's links (a few per cent of the mentions)
FINAL = "_index_final"  # table: links replayed with recorded actions, or an update's


def _keep_keyed(con: duckdb.DuckDBPyConnection) -> None:
    """:data:`KEYED`: every row of ``person_keys`` with ``house_id``, the unit the record's
    address names (PLACES' ``curated.house_mentions``, built before the index; the smallest
    when a record names several; null without); :data:`FALLBACK`: those without a
    citizen-ID pseudonym, kept (the linking reads them several times)."""
    if has_table(con, ZONE, HOUSE_MENTIONS):
        sql = index_delta.keyed_sql()
    else:
        cols = ", ".join(MENTION_SCHEMA)
        sql = f"SELECT {cols}, NULL::VARCHAR AS house_id FROM {ZONE}.{KEYS_TABLE}"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {KEYED} AS {sql}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {FALLBACK} AS SELECT * FROM {KEYED} "
        "WHERE citizen_pid IS NULL"
    )


def _drop(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the relink's views and tables."""
    for view in (KEYED, LINKS):
        con.execute(f"DROP VIEW IF EXISTS temp.main.{view}")
    for table in (FALLBACK, FOUND, FINAL):
        con.execute(f"DROP TABLE IF EXISTS temp.main.{table}")


def _frequencies(con: duckdb.DuckDBPyConnection, scale: int) -> dict[str, pl.DataFrame]:
    """tf_<column> of each TF column: persons known by ID holding the value / scale."""
    return {
        column: con.execute(
            f"SELECT {by}, count(DISTINCT citizen_pid) / {int(scale)} AS tf_{column} "
            f"FROM {KEYED} WHERE citizen_pid IS NOT NULL AND {by} IS NOT NULL GROUP BY {by}"
        )
        .pl()
        .cast({by: pl.String, f"tf_{column}": pl.Float64})
        for column, by in TF_BY
    }


def _profiles(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The persons' records (person_id and the blocking pseudonyms, each distinct
    combination once) that share a blocking pseudonym with some fallback mention."""
    blocking = ", ".join(linkage.BLOCKING)
    shares = " OR ".join(
        f"{c} IN (SELECT {c} FROM {FALLBACK} WHERE {c} IS NOT NULL)" for c in linkage.BLOCKING
    )
    return (
        con.execute(
            f"SELECT DISTINCT citizen_pid AS person_id, {blocking} FROM {KEYED} "
            f"WHERE citizen_pid IS NOT NULL AND ({shares})"
        )
        .pl()
        .cast(pl.String)
    )


def _with_tf(frame: pl.DataFrame, tf: dict, floor: float) -> pl.DataFrame:
    for column, by in TF_BY:
        frame = frame.join(tf[column], on=by, how="left").with_columns(
            pl.col(f"tf_{column}").fill_null(floor)
        )
    return frame


def _with_names(frame: pl.DataFrame, names: pl.DataFrame) -> pl.DataFrame:
    """Splink's input rows: the pseudonyms and TF values, the plain name and its parts
    (``names``: :func:`_plain_names`)."""
    return frame.join(names, on="name_pid", how="left")


def _profile_id() -> pl.Expr:
    """A candidate record's id as the fallback's inputs digest knows it: its person and
    blocking pseudonyms, ``-`` for a null."""
    return pl.concat_str(
        [pl.col(c).fill_null("-") for c in ("person_id", *linkage.BLOCKING)], separator=_SEP
    ).alias("unique_id")


DIGEST_ROWS = 20_000  # rows of the fallback's inputs hashed at once (about)
DIGEST_PREFIX = 32  # characters of a row's text that place it in a slice


def _texts(cols: list[str]) -> list[pl.Expr]:
    """Each column as the digest writes it: text, ``\\x00`` for a null."""
    return [pl.col(c).cast(pl.String).fill_null("\x00") for c in cols]


def _prefixes(frame: pl.DataFrame, cols: list[str]) -> pl.Series:
    """The first :data:`DIGEST_PREFIX` characters of each row's text (its columns' texts
    joined by ``\\x1f``), made a column at a time and cut as they go."""
    texts = _texts(cols)
    prefix = frame.select(texts[0].str.slice(0, DIGEST_PREFIX)).to_series()
    for text in texts[1:]:
        if prefix.str.len_chars().min() >= DIGEST_PREFIX:  # type: ignore[operator]
            break  # every row's prefix is whole
        prefix = frame.select(
            pl.concat_str([pl.lit(prefix), text], separator=_SEP).str.slice(0, DIGEST_PREFIX)
        ).to_series()
    return prefix


def _sorted_texts(frame: pl.DataFrame, cols: list[str]) -> Iterator[pl.Series]:
    """The rows' texts in order (polars sorts text by its UTF-8 bytes: Python's code-point
    order), about :data:`DIGEST_ROWS` at a time, never every row's text at once (~75 MB
    at 200,000 residents): the rows ordered by their texts' first
    :data:`DIGEST_PREFIX` characters, cut into slices where that prefix changes, each
    slice's texts sorted. A row whose prefix sorts before another's has the smaller text:
    the two differ within the prefix, or the prefix is its whole text and begins the
    other's."""
    if frame.height == 0:
        return
    prefix = _prefixes(frame, cols)
    order = prefix.arg_sort()
    prefix = prefix.gather(order)
    start = 0
    while start < frame.height:
        end = min(start + DIGEST_ROWS, frame.height)
        end = int(prefix.search_sorted(prefix[end - 1], side="right"))  # the prefix's last
        rows = frame[order.slice(start, end - start)].select(
            pl.concat_str(_texts(cols), separator=_SEP)
        )
        yield rows.to_series().sort()
        start = end


def inputs_digest(scale: int, *frames: pl.DataFrame) -> str:
    """A digest of everything the fallback's result depends on (the scale, the fallback
    mentions and their candidates' records with their term frequencies): each frame's
    column names and its rows' texts in order."""
    h = hashlib.sha256(f"{scale}".encode())
    for frame in frames:
        cols = sorted(frame.columns)
        h.update("\x1e".join(cols).encode())
        for i, rows in enumerate(_sorted_texts(frame, cols)):
            if i:
                h.update(b"\x1e")
            h.update("\x1e".join(rows.to_list()).encode())
    return h.hexdigest()


def _plain_names(con, catalogue, wanted: pl.Series, protection):
    """(name_pid, name, surname, given, nick) of the wanted name pseudonyms: one staged
    record each (the smallest key of :data:`KEYED`), decrypted for the comparison only;
    the parts (:func:`~curated.linkage.name_parts`) made once a name."""
    keys = ", ".join(KEY_COLUMNS)
    _streethub_wanted = wanted.drop_nulls().unique().to_frame("name_pid").to_arrow()
    reps = (
        con.execute(
            f"SELECT {keys}, name_pid FROM {KEYED} SEMI JOIN _streethub_wanted USING (name_pid) "
            f"QUALIFY row_number() OVER (PARTITION BY name_pid ORDER BY {keys}) = 1"
        )
        .pl()
        .cast(pl.String)
    )
    del _streethub_wanted
    plain = reveal_names(con, catalogue, reps.select(KEY_COLUMNS), protection)
    names = reps.join(plain, on=list(KEY_COLUMNS)).select("name_pid", "name")
    return names.with_columns(linkage.name_parts(names["name"]))


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
    protection,
    *,
    reuse: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame | None, str | None]:
    """(links of the fallback mentions, review rows, the fallback inputs' digest) of the
    mentions of :data:`KEYED`, before manual actions; a mention with a citizen-ID
    pseudonym is linked exactly to it (:func:`_exact_links`). With ``reuse`` the fallback
    (Splink) runs only when its inputs changed since the last build; otherwise its stored
    result is the result, and the review rows are None (the stored queue stands)."""
    # a mention id only where Splink needs one (not a million strings for the exact links)
    fallback = (
        con.execute(f"SELECT * FROM {FALLBACK}")
        .pl()
        .cast(pl.String)
        .with_columns(_mention_id().alias("mention_id"))
    )
    if fallback.height == 0:
        return pl.DataFrame(schema=LINK_SCHEMA), pl.DataFrame(schema=REVIEW_SCHEMA), None

    scale = index_delta.scale_of(index_delta.persons_known(con))
    tf = _frequencies(con, scale)
    # the persons' records that share a blocking pseudonym with some fallback mention
    profiles = _profiles(con)
    mentions = fallback.select(
        pl.col("mention_id").alias("unique_id"), *KEY_COLUMNS, *linkage.BLOCKING
    )
    left = _with_tf(mentions, tf, 1 / scale)
    right = _with_tf(profiles, tf, 1 / scale)
    del tf, fallback, mentions, profiles
    digest = inputs_digest(scale, left, right.with_columns(_profile_id()))
    stored = _stored_fallback(con, digest) if reuse else None
    if stored is not None:
        return stored, None, digest
    # a record's id for the scorer: its row number (a person's record is known by its
    # person_id; the pseudonyms' concatenation above is ~100 characters a record)
    right = right.with_row_index("unique_id")

    names = _plain_names(
        con, catalogue, pl.concat([left["name_pid"], right["name_pid"]]), protection
    )
    left, right = _with_names(left, names), _with_names(right, names)
    with linkage.Scorer(left, right, prior=1 / scale, con=con) as scorer:
        del left, right  # the scorer holds them, in its order
        return _fallback(con, catalogue, scorer, names, protection, digest)


def _exact_links() -> str:
    """SQL: the link of every mention with a citizen-ID pseudonym (``person_keys``): that
    person, exactly."""
    keys = ", ".join(KEY_COLUMNS)
    return (
        f"SELECT {keys}, citizen_pid AS person_id, 'exact' AS method, "
        f"NULL::DOUBLE AS match_probability FROM {ZONE}.{KEYS_TABLE} "
        "WHERE citizen_pid IS NOT NULL"
    )


def _fallback(con, catalogue, scorer, names, protection, digest):
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
    return out, review, digest


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


def _keep_links(con: duckdb.DuckDBPyConnection, final: pl.DataFrame) -> None:
    """:data:`LINKS` holds ``final`` (:data:`LINK_SCHEMA`)."""
    _streethub_links = final.select(list(LINK_SCHEMA)).cast(LINK_SCHEMA).to_arrow()
    con.execute(f"CREATE OR REPLACE TEMP TABLE {FINAL} AS SELECT * FROM _streethub_links")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {LINKS} AS SELECT * FROM {FINAL}")


def _write_mentions(
    con: duckdb.DuckDBPyConnection,
    now: dt.datetime,
    scope: set[tuple[str, str]] | None = None,
) -> None:
    """Make ``curated.person_mentions`` equal :data:`LINKS` (in ``scope``: only those
    datasets' rows), writing only the rows that changed (a row whose person, method and
    probability stay keeps its ``linked_at``); compared in DuckDB."""
    cols = ", ".join(LINK_SCHEMA)
    old = f"SELECT {cols} FROM {ZONE}.{MENTIONS_TABLE}"
    if scope is not None:
        _streethub_scope = _datasets_frame(scope).to_arrow()
        old += " SEMI JOIN _streethub_scope USING (dept, dataset)"
    con.execute(f"DELETE FROM {ZONE}.{MENTIONS_TABLE} WHERE {_ID_SQL} IN (SELECT "
                f"{_ID_SQL} FROM ({old} EXCEPT SELECT {cols} FROM {LINKS}))")  # fmt: skip
    # the rows gone are deleted: what is left of the old ones is in LINKS
    con.execute(
        f"INSERT INTO {ZONE}.{MENTIONS_TABLE} ({cols}, linked_at) SELECT *, "
        f"?::TIMESTAMPTZ FROM (SELECT {cols} FROM {LINKS} EXCEPT {old})",
        [now],
    )


def _delete_mentions(con, table: str, keys: pl.DataFrame) -> None:
    """Delete the rows of ``curated.<table>`` of the mentions in ``keys``."""
    if keys.height == 0:
        return
    with registered(con, "_mention_keys", keys.select(_mention_id().alias("id")).to_arrow()):
        con.execute(f"DELETE FROM {ZONE}.{table} WHERE {_ID_SQL} IN (SELECT id FROM _mention_keys)")


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
    _keep_links(con, final)
    try:
        _write_mentions(con, _now(), changed)
    finally:
        _drop(con)
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
    try:
        _keep_keyed(con)
        index_delta.write_watch(con, KEYED, FALLBACK)
        found, review, digest = auto_links(con, catalogue, protection, reuse=changed is not None)
        return _write_all(con, protection, found, review, digest)
    finally:
        _drop(con)


def _write_all(con, protection, found: pl.DataFrame, review, digest) -> dict[str, int]:
    """Write the index of a whole relink: the exact links and ``found`` (the fallback's),
    replayed with the recorded actions; the review queue; counts."""
    reused = review is None  # the stored fallback result stands (and its review rows)
    found = found.cast(LINK_SCHEMA)
    if not reused:
        con.execute(f"DELETE FROM {ZONE}.{FALLBACK_TABLE}")
        insert_frame(
            con, ZONE, FALLBACK_TABLE,
            found.with_columns(pl.lit(digest, dtype=pl.String).alias("inputs_digest")),
        )  # fmt: skip
    _streethub_found = found.to_arrow()
    con.execute(f"CREATE OR REPLACE TEMP TABLE {FOUND} AS SELECT * FROM _streethub_found")
    del _streethub_found
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {LINKS} AS {_exact_links()} UNION ALL SELECT * FROM {FOUND}"
    )
    recorded = actions(con)
    if recorded.height:  # a replay reads every link (a manual action names any person)
        links = con.execute(f"SELECT * FROM {LINKS}").pl().cast(LINK_SCHEMA)
        recorded = _anchored(con, links, recorded, protection.keyring)
        _keep_links(con, replay(links, recorded, protection.keyring))
        del links
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
    _write_mentions(con, now)
    counts = dict(con.execute(f"SELECT method, count(*) FROM {LINKS} GROUP BY method").fetchall())
    mentions, persons = con.execute(
        f"SELECT count(*), count(DISTINCT person_id) FROM {LINKS}"
    ).fetchone()
    out = {m: 0 for m in METHODS} | {str(m): int(n) for m, n in counts.items()}
    out.update(mentions=int(mentions), persons=int(persons), review=review_count)
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
    "INDEX_TABLES",
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
