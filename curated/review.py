"""The review queue (人工复核) and the decisions of data officers (merge / split).

A mention whose best candidate scores in the review band, or that has two rival
candidates, is never merged: it keeps a person of its own and one row per candidate goes
to ``curated.person_review`` with the evidence masked by the display masks of
``masking.masks`` (name 张*, mobile 138****5678) and a note of which pseudonyms agree.
A decision (``streethub persons merge|split``) is a ``curated.link_actions`` row; the
queue lists only mentions without one, and every build replays the recorded decisions in
order over its automatic links (:func:`replay`), so a wrong merge is undone by a split.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import duckdb
import polars as pl

from catalog.model import PiiKind
from curated.mentions import KEY_COLUMNS, reveal_names
from lakehouse.lake import insert_frame
from masking.masks import mask_values
from masking.pseudonym import pseudonymise_series

ZONE = "curated"
ACTIONS_TABLE = "link_actions"

# columns holding display-masked evidence (王*, 138****5678): a name in them is a whole
# value or nothing, never free text (the leak scanner reads them so)
MASKED_COLUMNS = frozenset({"name_masked", "mobile_masked", "candidate_name_masked"})
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
    """A stable id of one (mention, candidate) pair, from pseudonyms only. It starts with
    the hex letter ``e``, so it is never all digits: 16 digits can
    read as a Luhn-valid card to the leak scanner (which blanks a hex word only when it
    holds a letter), about one street in a hundred."""
    text = "\x1f".join((dept, dataset, key_pid, candidate)).encode()
    return "e" + hashlib.sha256(text).hexdigest()[:15]


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


def review_queue(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Open review items, most likely first (empty before the index is built)."""
    from lakehouse.lake import has_table

    if not has_table(con, "curated", "person_review"):
        return pl.DataFrame(schema=REVIEW_SCHEMA)
    return con.execute(
        "SELECT * FROM curated.person_review "
        "ORDER BY match_probability DESC, dept, dataset, key_pid, candidate_person_id"
    ).pl()


# -- automatic review rows ------------------------------------------------------------

AGREES = (("name_pid", "name"), ("mobile_pid", "mobile"), ("house_id", "house"),
          ("birth_pid", "birth_date"))  # fmt: skip


def review_rows(con, catalogue, queued, left, right, links, names, protection):
    """The review queue's rows: each queued (mention, candidate), what agrees with the
    candidate's best-agreeing record (whose name is shown), the names masked."""
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
            "name_pid_c",
            descending=[False, False, True, False, False],
            nulls_last=True,
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
    candidate_names = rows.join(names, left_on="name_pid_c", right_on="name_pid").select(
        pl.col("person_id").alias("candidate_person_id"), "name"
    )
    return evidence(candidates, mention_names, candidate_names)


# -- recorded decisions ---------------------------------------------------------------

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


def derived_person_id(mention_ids: pl.Series, keyring, domain: str) -> pl.Series:
    """A person id (20 hex) derived from a mention: a keyed pseudonym of ``domain`` and the
    mention's pseudonymous key (``fallback``: a group's first mention; ``split``: a
    mention a data officer detached)."""
    return pseudonymise_series(domain + _SEP + mention_ids, keyring)


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


def record_action(con, action: str, actor: str, reason: str, **ids: str | None) -> str:
    """One merge or split into ``curated.link_actions`` (inside the caller's transaction)."""
    action_id = uuid.uuid4().hex
    row = {c: None for c, _ in ACTION_COLUMNS}
    row.update(
        action_id=action_id,
        action=action,
        actor=actor,
        at=dt.datetime.now(dt.UTC),
        reason=reason,
        **ids,
    )
    frame = pl.DataFrame(
        [row], schema={c: pl.String for c, _ in ACTION_COLUMNS} | {"at": pl.Datetime("us", "UTC")}
    )
    insert_frame(con, ZONE, ACTIONS_TABLE, frame)
    return action_id
