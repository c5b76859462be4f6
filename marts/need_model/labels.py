"""The need model's labels (需求结果): per ``(person_id, cutoff)`` one boolean per need — the
need recorded by its department in the ``HORIZON_DAYS`` after the cut-off
(``cutoff < day <= cutoff + HORIZON_DAYS``, :mod:`marts.need_model.spec`).

Which datasets record which need is configuration: ``sql/labels.sql`` lists every recorded
outcome as ``(person_id, need, day)``; this module only counts them against the cut-offs and
names no department or dataset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial

import duckdb
import polars as pl

from marts.build import sql_failure
from marts.lineage import MartError
from marts.need_model.features import known_relations, read_feature_sql
from marts.need_model.spec import HORIZON_DAYS, KEYS, NEEDS

LABELS_SQL = "labels"
WHAT = "need_model.labels"
OUTCOME_SCHEMA = {"person_id": pl.String(), "need": pl.String(), "day": pl.Date()}


def outcomes(con: duckdb.DuckDBPyConnection, *, sql: str | None = None) -> pl.DataFrame:
    """Every recorded outcome: ``person_id``, ``need`` (a code of ``NEEDS``), ``day``."""
    try:
        # known by infinity: no dataset's first load is read (known_records' backfill rule)
        with known_relations(con, datasets=()):
            frame = con.execute(sql or read_feature_sql(LABELS_SQL)).pl()
    except duckdb.Error as exc:
        raise MartError(f"the SQL failed: {sql_failure(exc)}", dataset=WHAT) from None
    unknown = set(frame["need"].unique().to_list()) - set(NEEDS)
    if unknown:
        raise MartError(f"labels.sql names needs spec.NEEDS lacks: {sorted(unknown)}", dataset=WHAT)
    return frame.cast(OUTCOME_SCHEMA)  # type: ignore[arg-type]


def label_frame(keys: pl.DataFrame, recorded: pl.DataFrame) -> pl.DataFrame:
    """``keys`` (``person_id``, ``cutoff``) with one boolean column per need: an outcome of
    ``recorded`` in (cutoff, cutoff + HORIZON_DAYS]."""
    keys = keys.select(KEYS).unique()
    hits = (
        keys.join(recorded, on="person_id", how="inner")
        .filter(
            (pl.col("day") > pl.col("cutoff"))
            & (pl.col("day") <= pl.col("cutoff") + pl.duration(days=HORIZON_DAYS))
        )
        .select(*KEYS, "need")
        .unique()
    )
    out = keys
    for need in NEEDS:
        mine = hits.filter(pl.col("need") == need).select(*KEYS, pl.lit(True).alias(need))
        out = out.join(mine, on=list(KEYS), how="left").with_columns(pl.col(need).fill_null(False))
    return out.sort(list(KEYS))


def labels(con: duckdb.DuckDBPyConnection, keys: pl.DataFrame) -> pl.DataFrame:
    """The labels frame of ``keys`` (e.g. a features frame's keys)."""
    return labeller(con)(keys)


def labeller(con: duckdb.DuckDBPyConnection) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The labels frame of any ``keys``, every outcome read once (:func:`outcomes`) for all
    of them: what :func:`labels` gives, without its query for each set of keys."""
    return partial(label_frame, recorded=outcomes(con))


def complete_until(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The last cut-off whose horizon the outcome records cover: the latest outcome day less
    ``HORIZON_DAYS`` (None without outcomes). A later cut-off's labels are still open."""
    last = outcomes(con)["day"].max()
    return None if last is None else last - dt.timedelta(days=HORIZON_DAYS)  # type: ignore[operator]


__all__ = ["complete_until", "label_frame", "labeller", "labels", "outcomes"]
