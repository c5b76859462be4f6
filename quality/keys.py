"""Keys across deliveries (跨批次主键): one delivery's rows against what is already staged.

The row gate (``quality.gate``) settles a delivery on its own: exact copies skipped, a
key's versions ordered by the cursor or quarantined. What is left has one row per key;
this module meets those rows with the staged table, as the catalogue's ``update_mode``
says a known key should be met. Rows are compared through two keyed digests stored at
staging, never by decrypting: ``_key_pid`` (pseudonym of the business key) and
``_row_digest`` (HMAC of every catalogue field, ``masking.pseudonym.row_digests``).

For a row whose key is already staged (any mode, the key unknown → staged):

============  =======================  ==============================================
mode          same digest              other values
============  =======================  ==============================================
``append``    skipped (``duplicate``)  quarantined (``conflicting_key``): events never
                                       change, so one that does is for an officer
``upsert``    skipped (``duplicate``)  newer → staged, **replacing** the staged row;
                                       older → quarantined (``stale_version``); the
                                       same cursor value → quarantined
                                       (``conflicting_key``)
``snapshot``  skipped (``duplicate``)  staged, **replacing** the staged row
============  =======================  ==============================================

"Newer" is the ``update_cursor`` when the dataset has one and both rows carry it,
otherwise the arrival of the delivery (a delivery arriving later wins; an older
delivery staged late is stale).

A ``snapshot`` delivery is the whole dataset, so staged rows whose key it does not
carry at all are **withdrawn** (they leave staged; time travel keeps them). A key it
carries but whose new row the gate quarantined keeps its last good staged version: a
bad cell must not make a resident vanish from a register (a record the connector could
not read at all carries no key we know, so its staged version is withdrawn). A
delivery with no rows withdraws nothing: an empty export is not an empty register.

Accounting per delivery: ``delivered = staged + quarantined + skipped``. An identical
re-delivery is all skipped (the staged rows keep the lineage of the delivery that
first brought them), in every mode. Replaced and withdrawn rows were counted by the
delivery that staged them; they are reported, not counted again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from catalog.model import Dataset, UpdateMode

KEY_PID = "_key_pid"
ROW_DIGEST = "_row_digest"
CURSOR = "_cursor"
ARRIVED = "_arrived_at"
OUTCOME_SCHEMA = {
    "_source_row": pl.Int64,
    "field": pl.String,
    "check_name": pl.String,
    "reason": pl.String,
}


@dataclass(frozen=True)
class Reconciled:
    """What to do with one delivery's gate-passed rows against the staged table."""

    stage: pl.Series  # _source_row of the rows to insert
    replace_keys: pl.Series  # _key_pid whose staged rows the inserted rows replace
    skipped: pl.DataFrame  # OUTCOME_SCHEMA: rows identical to a staged one
    quarantine: pl.DataFrame  # OUTCOME_SCHEMA: conflicting or stale versions


def reconcile(
    incoming: pl.DataFrame,
    staged: pl.DataFrame,
    dataset: Dataset,
    arrived_at: dt.datetime | None,
) -> Reconciled:
    """Meet one delivery's gate-passed rows with the staged rows of the same keys.

    ``incoming``: ``_source_row, _key_pid, _row_digest`` (+ ``_cursor`` with a cursor).
    ``staged``: the staged rows whose ``_key_pid`` is among incoming's, with
    ``_delivery_id, _source_row, _key_pid, _row_digest, _arrived_at`` (+ ``_cursor``).
    ``arrived_at``: when this delivery arrived.
    """
    cursor = dataset.update_cursor is not None and CURSOR in incoming.columns
    per_key = staged.group_by(KEY_PID).agg(
        pl.col(ROW_DIGEST).alias("_digests"),
        pl.col(ARRIVED).max().alias("_old_arrived"),
        *([pl.col(CURSOR).max().alias("_old_cursor")] if cursor else []),
        pl.format(
            "source row {} of delivery {}", pl.col("_source_row").cast(pl.String), "_delivery_id"
        )
        .first()
        .alias("_old_row"),
    )
    met = incoming.join(per_key, on=KEY_PID, how="left")
    known = pl.col("_digests").is_not_null()
    same = known & pl.col("_digests").list.contains(pl.col(ROW_DIGEST)).fill_null(False)
    other = known & ~same
    mode = dataset.update_mode
    when = pl.lit(arrived_at, dtype=pl.Datetime("us", "UTC"))
    old_arrived = pl.col("_old_arrived").cast(pl.Datetime("us", "UTC"))
    later = (when >= old_arrived).fill_null(True)
    if cursor:
        both = pl.col(CURSOR).is_not_null() & pl.col("_old_cursor").is_not_null()
        newer = pl.when(both).then(pl.col(CURSOR) > pl.col("_old_cursor")).otherwise(later)
        tie = both & (pl.col(CURSOR) == pl.col("_old_cursor"))
    else:
        newer, tie, both = later, pl.lit(False), pl.lit(False)
    if mode is UpdateMode.append:
        replace = pl.lit(False)
        conflict, stale = other, pl.lit(False)
    elif mode is UpdateMode.upsert:
        replace = other & ~tie & newer
        conflict = other & tie
        stale = other & ~tie & ~newer
    else:  # snapshot: the delivery is the dataset now
        replace = other
        conflict = stale = pl.lit(False)
    met = met.with_columns(
        both.alias("_by_cursor"),
        same.alias("_same"),
        replace.alias("_replace"),
        conflict.alias("_conflict"),
        stale.alias("_stale"),
    )
    key_label = "、".join(dataset.field(k).label_zh for k in dataset.key)
    skipped = met.filter("_same").select(
        "_source_row",
        pl.lit(None, dtype=pl.String).alias("field"),
        pl.lit("duplicate").alias("check_name"),
        pl.lit("identical to the row already staged").alias("reason"),
    )
    cursor_label = dataset.field(dataset.update_cursor).label_zh if cursor else "arrival"
    conflict_reason = pl.format(
        "{} already staged with other values{} ({})",
        pl.lit(key_label),
        pl.lit("" if mode is UpdateMode.append else f" and the same {cursor_label}"),
        "_old_row",
    )
    quarantine = pl.concat(
        [
            met.filter("_conflict").select(
                "_source_row",
                pl.lit(None, dtype=pl.String).alias("field"),
                pl.lit("conflicting_key").alias("check_name"),
                conflict_reason.alias("reason"),
            ),
            met.filter("_stale").select(
                "_source_row",
                pl.lit(None, dtype=pl.String).alias("field"),
                pl.lit("stale_version").alias("check_name"),
                pl.format(
                    "an older version of the record already staged ({}): {}",
                    "_old_row",
                    pl.when("_by_cursor")
                    .then(pl.lit(f"its {cursor_label} is earlier"))
                    .otherwise(pl.lit("this delivery arrived before the staged one")),
                ).alias("reason"),
            ),
        ]
    )
    stage = met.filter(~pl.col("_same") & ~pl.col("_conflict") & ~pl.col("_stale"))
    return Reconciled(
        stage=stage.get_column("_source_row"),
        replace_keys=met.filter("_replace").get_column(KEY_PID),
        skipped=skipped.cast(OUTCOME_SCHEMA),  # type: ignore[arg-type]
        quarantine=quarantine.cast(OUTCOME_SCHEMA),  # type: ignore[arg-type]
    )
