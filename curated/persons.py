"""The master resident index (人员主索引): one person across every department.

:func:`link_persons` turns every staged record that has a subject (:mod:`curated.mentions`)
into one row of ``curated.person_mentions`` (dept, dataset, key_pid, person_id, method,
match_probability, linked_at):

1. **exact** — a record with a citizen-ID pseudonym is that person: ``person_id`` is the
   pseudonym itself (20 hex);
2. **probabilistic** — a record without one is scored by Splink (:mod:`curated.linkage`)
   against the persons known by ID (their names, mobiles and birth dates across all
   departments); at or above :data:`~curated.linkage.MATCH_THRESHOLD`, when no other
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
re-reads and re-pseudonymises only those datasets; the linking itself then runs over the
kept pseudonyms exactly as a full build does, so the result equals a full rebuild.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import duckdb
import polars as pl

from catalog.errors import StreethubError
from catalog.model import Catalogue
from curated import linkage
from curated.mentions import (
    KEY_COLUMNS,
    MENTION_SCHEMA,
    datasets_of,
    read_mentions,
    reveal_names,
)
from curated.review import REVIEW_COLUMNS, REVIEW_SCHEMA, evidence, review_queue
from lakehouse.lake import ensure_table, has_table, insert_frame, transaction
from masking.pseudonym import pseudonymise_series

ZONE = "curated"
KEYS_TABLE = "person_keys"
MENTIONS_TABLE = "person_mentions"
REVIEW_TABLE = "person_review"
ACTIONS_TABLE = "link_actions"
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
ACTION_COLUMNS = [
    ("action_id", "VARCHAR"),
    ("action", "VARCHAR"),  # merge | split
    ("actor", "VARCHAR"),
    ("at", "TIMESTAMPTZ"),
    ("person_id", "VARCHAR"),  # merge: the person kept; split: the person split
    ("from_person_id", "VARCHAR"),  # merge: the person folded in; split: the one restored
    ("dept", "VARCHAR"),  # a single mention moved (merge) or detached (split)
    ("dataset", "VARCHAR"),
    ("key_pid", "VARCHAR"),
    ("reason", "VARCHAR"),
]
LINK_SCHEMA = {
    "dept": pl.String,
    "dataset": pl.String,
    "key_pid": pl.String,
    "person_id": pl.String,
    "method": pl.String,
    "match_probability": pl.Float64,
}
_SEP = "\x1f"
UTC = pl.Datetime("us", "UTC")


class LinkError(StreethubError):
    """A merge or split that names no known person or mention."""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    ensure_table(con, ZONE, KEYS_TABLE, KEYS_COLUMNS)
    ensure_table(con, ZONE, MENTIONS_TABLE, MENTION_COLUMNS)
    ensure_table(con, ZONE, REVIEW_TABLE, REVIEW_COLUMNS)
    ensure_table(con, ZONE, ACTIONS_TABLE, ACTION_COLUMNS)


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


def derived_person_id(mention_ids: pl.Series, keyring, domain: str) -> pl.Series:
    """A person id (20 hex) derived from a mention: a keyed pseudonym of ``domain`` and the
    mention's pseudonymous key (``fallback``: a group's first mention; ``split``: a
    mention a data officer detached)."""
    return pseudonymise_series(domain + _SEP + mention_ids, keyring)


def _frequencies(exact: pl.DataFrame, persons: int) -> dict[str, pl.DataFrame]:
    """tf_<column> of each TF column: the share of the persons known by ID holding it."""
    out = {}
    for column, by in (
        ("name", "name_pid"),
        ("mobile_pid", "mobile_pid"),
        ("house_id", "house_id"),
    ):
        out[column] = (
            exact.filter(pl.col(by).is_not_null())
            .group_by(by)
            .agg((pl.col("citizen_pid").n_unique() / persons).alias(f"tf_{column}"))
        )
    return out


def _records(frame: pl.DataFrame, names: pl.DataFrame, tf: dict, floor: float) -> pl.DataFrame:
    """Splink's input rows: the pseudonyms, the plain name and its parts, the TF values."""
    out = frame.join(names, on="name_pid", how="left")
    out = out.with_columns(linkage.name_parts(out["name"]))
    for column, by in (
        ("name", "name_pid"),
        ("mobile_pid", "mobile_pid"),
        ("house_id", "house_id"),
    ):
        out = out.join(tf[column], on=by, how="left").with_columns(
            pl.col(f"tf_{column}").fill_null(floor)
        )
    return out


def _houses(con: duckdb.DuckDBPyConnection, keys: pl.DataFrame) -> pl.DataFrame:
    """``keys`` with ``house_id``: the unit the record's address names (PLACES'
    ``curated.house_mentions``; the smallest when a record names several; null without)."""
    if not has_table(con, ZONE, HOUSE_MENTIONS):
        return keys.with_columns(pl.lit(None, dtype=pl.String).alias("house_id"))
    houses = (
        con.execute(
            f"SELECT dept, dataset, key_pid, min(house_id) AS house_id FROM {ZONE}.{HOUSE_MENTIONS} "
            "WHERE house_id IS NOT NULL GROUP BY ALL"
        )
        .pl()
        .cast(pl.String)
    )
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


def auto_links(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, keys: pl.DataFrame, protection
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(links, review rows) of every mention in ``keys``, before manual actions."""
    keys = _houses(con, keys).with_columns(_mention_id().alias("mention_id"))
    exact = keys.filter(pl.col("citizen_pid").is_not_null())
    fallback = keys.filter(pl.col("citizen_pid").is_null())
    links = [
        exact.select(
            *KEY_COLUMNS,
            pl.col("citizen_pid").alias("person_id"),
            pl.lit("exact").alias("method"),
            pl.lit(None, dtype=pl.Float64).alias("match_probability"),
        )
    ]
    if fallback.height == 0:
        return pl.concat(links).cast(LINK_SCHEMA), pl.DataFrame(schema=REVIEW_SCHEMA)

    persons = max(exact["citizen_pid"].n_unique(), 1)
    tf = _frequencies(exact, persons)
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
    wanted = pl.concat([fallback["name_pid"], profiles["name_pid"]])
    names = _plain_names(con, catalogue, keys, wanted, protection)
    left = _records(fallback.rename({"mention_id": "unique_id"}), names, tf, 1 / persons)
    right = _records(profiles, names, tf, 1 / persons)
    pairs = linkage.score_between(left, right, prior=1 / persons)
    scored = linkage.per_person(pairs, right)
    linked, queued = linkage.decide(scored)
    links.append(
        fallback.join(linked, left_on="mention_id", right_on="unique_id_l").select(
            *KEY_COLUMNS,
            "person_id",
            pl.lit("probabilistic").alias("method"),
            "match_probability",
        )
    )
    # persons known only by fallback: the unlinked mentions grouped among themselves
    rest = left.filter(~pl.col("unique_id").is_in(linked["unique_id_l"].implode()))
    groups = linkage.group_within(rest, prior=1 / persons)
    groups = groups.with_columns(
        derived_person_id(groups["root"], protection.keyring, "fallback").alias("person_id")
    )
    links.append(
        fallback.join(groups, left_on="mention_id", right_on="node").select(
            *KEY_COLUMNS,
            "person_id",
            pl.lit("new").alias("method"),
            pl.col("p").alias("match_probability"),
        )
    )
    out = pl.concat([f.cast(LINK_SCHEMA) for f in links])
    review = _review_rows(con, catalogue, queued, left, right, out, keys, protection)
    return out, review


AGREES = (("name_pid", "name"), ("mobile_pid", "mobile"), ("house_id", "house"),
          ("birth_pid", "birth_date"))  # fmt: skip


def _review_rows(con, catalogue, queued, left, right, links, keys, protection):
    """The review queue's rows: each queued (mention, candidate), what agrees with the
    candidate's best-agreeing record, the names masked."""
    if queued.height == 0:
        return pl.DataFrame(schema=REVIEW_SCHEMA)
    own = left.select("unique_id", *KEY_COLUMNS, *[c for c, _ in AGREES])
    cand = right.select("person_id", *[pl.col(c).alias(f"{c}_c") for c, _ in AGREES])
    agree = [pl.when(pl.col(c) == pl.col(f"{c}_c")).then(pl.lit(label)) for c, label in AGREES]
    rows = (
        queued.join(own, left_on="unique_id_l", right_on="unique_id")
        .join(cand, on="person_id", how="left")
        .with_columns(
            pl.concat_str(agree, separator=",", ignore_nulls=True).alias("agrees_on"),
            pl.sum_horizontal(
                [(pl.col(c) == pl.col(f"{c}_c")).fill_null(False) for c, _ in AGREES]
            ).alias("n_agree"),
        )
        .sort(
            "unique_id_l",
            "person_id",
            "n_agree",
            "agrees_on",
            descending=[False, False, True, False],
        )
        .unique(["unique_id_l", "person_id"], keep="first", maintain_order=True)
        .join(links.select(*KEY_COLUMNS, pl.col("person_id").alias("own")), on=list(KEY_COLUMNS))
    )
    candidates = rows.select(
        *KEY_COLUMNS,
        pl.col("own").alias("person_id"),
        pl.col("person_id").alias("candidate_person_id"),
        "match_probability",
        "agrees_on",
    )
    mention_names = reveal_names(
        con, catalogue, candidates.select(KEY_COLUMNS).unique(), protection, masked_mobile=True
    )
    # a candidate's name as its first record (smallest key) spells it
    firsts = (
        keys.filter(
            pl.col("citizen_pid").is_in(candidates["candidate_person_id"].implode())
            & pl.col("name_pid").is_not_null()
        )
        .sort(list(KEY_COLUMNS))
        .unique("citizen_pid", keep="first", maintain_order=True)
    )
    plain = reveal_names(con, catalogue, firsts.select(KEY_COLUMNS), protection)
    candidate_names = firsts.join(plain, on=list(KEY_COLUMNS)).select(
        pl.col("citizen_pid").alias("candidate_person_id"), "name"
    )
    return evidence(candidates, mention_names, candidate_names)


# -- manual actions --------------------------------------------------------------------


def actions(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every recorded merge and split, in the order they are replayed."""
    return con.execute(f'SELECT * FROM {ZONE}.{ACTIONS_TABLE} ORDER BY "at", action_id').pl()


def replay(links: pl.DataFrame, recorded: pl.DataFrame, keyring) -> pl.DataFrame:
    """``links`` after every action of ``recorded``, in order (method ``manual``)."""
    cur = links.with_columns(
        pl.col("person_id").alias("origin"),
        pl.col("method").alias("origin_method"),
        pl.col("match_probability").alias("origin_p"),
    )
    manual = {"method": pl.lit("manual"), "match_probability": pl.lit(None, dtype=pl.Float64)}
    for act in recorded.iter_rows(named=True):
        one = (
            (pl.col("dept") == act["dept"])
            & (pl.col("dataset") == act["dataset"])
            & (pl.col("key_pid") == act["key_pid"])
            if act["key_pid"]
            else None
        )
        if act["action"] == "merge":
            hit = one if one is not None else pl.col("person_id") == act["from_person_id"]
            cur = cur.with_columns(
                pl.when(hit)
                .then(pl.lit(act["person_id"]))
                .otherwise("person_id")
                .alias("person_id"),
                *[pl.when(hit).then(v).otherwise(k).alias(k) for k, v in manual.items()],
            )
        elif one is not None:  # split one mention off into a person of its own
            mid = pl.concat_str(
                [pl.lit(act["dept"]), pl.lit(act["dataset"]), pl.lit(act["key_pid"])],
                separator=_SEP,
            )
            new_id = derived_person_id(pl.select(mid).to_series(), keyring, "split")[0]
            cur = cur.with_columns(
                pl.when(one).then(pl.lit(new_id)).otherwise("person_id").alias("person_id"),
                *[pl.when(one).then(v).otherwise(k).alias(k) for k, v in manual.items()],
            )
        else:  # undo a merge: the mentions that came from from_person_id go back
            hit = (pl.col("person_id") == act["person_id"]) & (
                pl.col("origin") == act["from_person_id"]
            )
            cur = cur.with_columns(
                pl.when(hit).then("origin").otherwise("person_id").alias("person_id"),
                pl.when(hit).then("origin_method").otherwise("method").alias("method"),
                pl.when(hit)
                .then("origin_p")
                .otherwise("match_probability")
                .alias("match_probability"),
            )
    return cur.select(list(LINK_SCHEMA))


def _record(con, action: str, actor: str, reason: str, **ids: str | None) -> str:
    action_id = uuid.uuid4().hex
    row = {c: None for c, _ in ACTION_COLUMNS}
    row.update(action_id=action_id, action=action, actor=actor, at=_now(), reason=reason, **ids)
    frame = pl.DataFrame(
        [row], schema={c: pl.String for c, _ in ACTION_COLUMNS} | {"at": pl.Datetime("us", "UTC")}
    )
    insert_frame(con, ZONE, ACTIONS_TABLE, frame)
    return action_id


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
    with transaction(con):
        action_id = _record(con, action, actor, reason, **ids)
    protection.audit.append(
        f"person_{action}", actor, action_id=action_id, purpose="master_index",
        person_id=ids["person_id"],
    )  # fmt: skip
    link_persons(con, catalogue, protection, changed=())
    return action_id


# -- the build -------------------------------------------------------------------------


def link_persons(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection,
    changed: Iterable[tuple[str, str]] | None = None,
) -> dict[str, int]:
    """Build (``changed`` None) or update the index; returns counts per method, persons,
    mentions and open review items. ``protection`` is the pipelines' Protection."""
    ensure_tables(con)
    changed = None if changed is None else set(changed)
    with transaction(con):
        refresh_keys(con, catalogue, protection, changed)
        keys = (
            con.execute(f"SELECT {', '.join(MENTION_SCHEMA)} FROM {ZONE}.{KEYS_TABLE}")
            .pl()
            .cast(MENTION_SCHEMA)
        )
        links, review = auto_links(con, catalogue, keys, protection)
        final = replay(links, actions(con), protection.keyring)
        decided = actions(con).filter(pl.col("key_pid").is_not_null())
        review = review.join(decided.select(KEY_COLUMNS), on=list(KEY_COLUMNS), how="anti")
        now = _now()
        old = con.execute(f"SELECT * FROM {ZONE}.{MENTIONS_TABLE}").pl()
        same = list(LINK_SCHEMA)
        kept = final.join(
            old.select(*same, "linked_at"), on=same, how="left", nulls_equal=True
        ).with_columns(pl.col("linked_at").cast(UTC).fill_null(pl.lit(now, dtype=UTC)))
        con.execute(f"DELETE FROM {ZONE}.{MENTIONS_TABLE}")
        insert_frame(con, ZONE, MENTIONS_TABLE, kept.select([c for c, _ in MENTION_COLUMNS]))
        con.execute(f"DELETE FROM {ZONE}.{REVIEW_TABLE}")
        if review.height:
            insert_frame(con, ZONE, REVIEW_TABLE, review.with_columns(queued_at=pl.lit(now)))
    counts = final.group_by("method").len()
    out = {m: 0 for m in METHODS} | dict(counts.iter_rows())
    out.update(mentions=final.height, persons=final["person_id"].n_unique(), review=review.height)
    return out


__all__ = [
    "LinkError",
    "actions",
    "auto_links",
    "ensure_tables",
    "link_persons",
    "merge",
    "replay",
    "review_queue",
    "split",
]
