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
    # the mentions that name the action's persons (:data:`ANCHORS`): person ids change
    # (a re-key, a fallback group's first mention), a mention's key is mapped by the re-key
    ("anchor_dept", "VARCHAR"),  # a mention of person_id when the action was taken
    ("anchor_dataset", "VARCHAR"),
    ("anchor_key_pid", "VARCHAR"),
    ("from_anchor_dept", "VARCHAR"),  # merge: a mention of from_person_id then; split: a
    ("from_anchor_dataset", "VARCHAR"),  # mention the automatic links gave from_person_id
    ("from_anchor_key_pid", "VARCHAR"),
]
# (column of the recorded id, prefix of its anchor's columns)
ANCHORS = (("person_id", "anchor_"), ("from_person_id", "from_anchor_"))
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


Mention = tuple[str, str, str]  # (dept, dataset, key_pid)


def _is(mention: Mention) -> pl.Expr:
    return (
        (pl.col("dept") == mention[0])
        & (pl.col("dataset") == mention[1])
        & (pl.col("key_pid") == mention[2])
    )


def anchor_of(frame: pl.DataFrame, column: str, person: str | None) -> Mention | None:
    """The mention that names ``person`` in ``frame`` (its smallest key among the rows
    whose ``column`` is ``person``), or None."""
    if person is None:
        return None
    rows = frame.filter(pl.col(column) == person)
    if rows.height == 0:
        return None
    return tuple(rows.select(KEY_COLUMNS).sort(list(KEY_COLUMNS)).row(0))  # type: ignore[return-value]


def _anchor(act: dict, prefix: str) -> Mention | None:
    key = act.get(f"{prefix}key_pid")
    return (act[f"{prefix}dept"], act[f"{prefix}dataset"], key) if key else None


def _resolve(cur: pl.DataFrame, anchor: Mention | None, recorded: str | None, column: str):
    """The person an action names as the replay stands: its anchor mention's ``column``
    (``person_id``, or ``origin``: the mention's automatic link); the recorded id when the
    action has no anchor; None when the anchor mention is gone."""
    if anchor is None:
        return recorded
    hit = cur.filter(_is(anchor))
    return hit[column][0] if hit.height else None


def _replay(links: pl.DataFrame, recorded: pl.DataFrame, keyring, fill: bool):
    """(links after every action, each action's anchors as dicts); ``fill``: an action
    recorded without anchors gets them from the replay as it stands at that action."""
    cur = links.with_columns(
        pl.col("person_id").alias("origin"),
        pl.col("method").alias("origin_method"),
        pl.col("match_probability").alias("origin_p"),
    )
    manual = {"method": pl.lit("manual"), "match_probability": pl.lit(None, dtype=pl.Float64)}
    anchors = []
    for act in recorded.iter_rows(named=True):
        one = _is((act["dept"], act["dataset"], act["key_pid"])) if act["key_pid"] else None
        source = "person_id" if act["action"] == "merge" else "origin"
        mine, theirs = _anchor(act, "anchor_"), _anchor(act, "from_anchor_")
        if fill and mine is None and theirs is None:
            mine = anchor_of(cur, "person_id", act["person_id"])
            theirs = anchor_of(cur, source, act["from_person_id"])
        anchors.append(
            {
                **{f"anchor_{c}": v for c, v in zip(KEY_COLUMNS, mine or (None,) * 3, strict=True)},
                **{
                    f"from_anchor_{c}": v
                    for c, v in zip(KEY_COLUMNS, theirs or (None,) * 3, strict=True)
                },
            }
        )
        person = _resolve(cur, mine, act["person_id"], "person_id")
        other = _resolve(cur, theirs, act["from_person_id"], source)
        if act["action"] == "merge":
            if person is None or (one is None and other is None):
                continue  # the person merged into, or the one merged, is no longer held
            hit = one if one is not None else pl.col("person_id") == other
            cur = cur.with_columns(
                pl.when(hit).then(pl.lit(person)).otherwise("person_id").alias("person_id"),
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
        elif person is not None and other is not None:
            # undo a merge: the mentions that came from the restored person go back
            hit = (pl.col("person_id") == person) & (pl.col("origin") == other)
            cur = cur.with_columns(
                pl.when(hit).then("origin").otherwise("person_id").alias("person_id"),
                pl.when(hit).then("origin_method").otherwise("method").alias("method"),
                pl.when(hit)
                .then("origin_p")
                .otherwise("match_probability")
                .alias("match_probability"),
            )
    return cur.select(list(LINK_SCHEMA)), anchors


def replay(links: pl.DataFrame, recorded: pl.DataFrame, keyring) -> pl.DataFrame:
    """``links`` after every action of ``recorded``, in order (method ``manual``).

    An action names its persons through its anchor mentions (the person a mention is
    linked to as the replay reaches the action; a split's restored person: the mention's
    automatic link), so it stays valid when person ids change (a re-key); an action
    recorded without anchors names them by the ids recorded; one whose anchor mention is
    gone does nothing. Row by row: a mention's result depends only on its own links and
    the anchors' (the incremental index replays the changed mentions with the anchors)."""
    return _replay(links, recorded, keyring, fill=False)[0]


def fill_anchors(links: pl.DataFrame, recorded: pl.DataFrame, keyring) -> pl.DataFrame:
    """``recorded`` with the anchors of every action recorded without them, chosen from
    ``links`` replayed up to that action (the smallest mention of each person then)."""
    if recorded.height == 0:
        return recorded
    anchors = pl.DataFrame(
        _replay(links, recorded, keyring, fill=True)[1],
        schema={f"{p}{c}": pl.String for p in ("anchor_", "from_anchor_") for c in KEY_COLUMNS},
    )
    return recorded.with_columns(anchors)


def anchor_mentions(recorded: pl.DataFrame) -> pl.DataFrame:
    """(dept, dataset, key_pid) of every mention an action names (moved, detached or
    anchoring a person)."""
    parts = [
        recorded.select([pl.col(f"{prefix}{c}").cast(pl.String).alias(c) for c in KEY_COLUMNS])
        for prefix in ("", "anchor_", "from_anchor_")
    ]
    schema = dict.fromkeys(KEY_COLUMNS, pl.String)
    return pl.concat([pl.DataFrame(schema=schema), *parts]).drop_nulls().unique()


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
