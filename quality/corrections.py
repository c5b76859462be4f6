"""The correction loop (校核纠错): issues for quarantined rows and consumer disputes.

An issue is opened

- for each quarantined record: one per (dept, dataset, record key, check), kind
  ``quarantine``, opened at the first quarantine time seen for it;
- for each dispute a consuming department files about a shared value
  (``open_dispute``), kind ``dispute``.

It is resolved when the owning department's next delivery brings a row for the same key
that passes the gate (the row is in staged, loaded after the issue was opened, from
another delivery) and, for a dispute, whose disputed field differs from the value staged
before the dispute. With no earlier staged row to compare with, a dispute stays open:
the change cannot be shown.

Keys are pseudonyms (``key_pid``), opaque strings: no plaintext key is stored here.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import polars as pl

ISSUE_SCHEMA = {
    "issue_id": pl.String,
    "dept": pl.String,
    "dataset": pl.String,
    "key_pid": pl.String,
    "field": pl.String,
    "check_name": pl.String,
    "kind": pl.String,
    "status": pl.String,
    "opened_at": pl.Datetime("us", "UTC"),
    "resolved_at": pl.Datetime("us", "UTC"),
    "resolved_by_delivery": pl.String,
    "reason": pl.String,
    "opened_by": pl.String,
}
DISPUTE_CHECK = "dispute"


def empty_issues() -> pl.DataFrame:
    return pl.DataFrame(schema=ISSUE_SCHEMA)


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _issue_id(*parts: object) -> str:
    # base32 letters, not hex: a hex id can hold a digit run that reads as a phone or card
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return "iss-" + base64.b32encode(digest[:10]).decode("ascii").lower()


def _conform(issues: pl.DataFrame | None) -> pl.DataFrame:
    if issues is None or issues.is_empty():
        return empty_issues()
    missing = [
        pl.lit(None, dtype=t).alias(c) for c, t in ISSUE_SCHEMA.items() if c not in issues.columns
    ]
    return issues.with_columns(missing).select(list(ISSUE_SCHEMA)).cast(ISSUE_SCHEMA)


def open_dispute(
    dept: str,
    dataset: str,
    key_pid: str,
    field: str,
    reason: str,
    by: str,
    *,
    now: dt.datetime | None = None,
) -> pl.DataFrame:
    """A one-row issues frame for a consumer's dispute; concat it to the issue table."""
    opened = _utc(now or dt.datetime.now(dt.UTC))
    row = {
        "issue_id": _issue_id("dispute", dept, dataset, key_pid, field, by, opened.isoformat()),
        "dept": dept,
        "dataset": dataset,
        "key_pid": key_pid,
        "field": field,
        "check_name": DISPUTE_CHECK,
        "kind": "dispute",
        "status": "open",
        "opened_at": opened,
        "resolved_at": None,
        "resolved_by_delivery": None,
        "reason": reason,
        "opened_by": by,
    }
    return pl.DataFrame([row], schema=ISSUE_SCHEMA)


def _open_quarantine_issues(issues: pl.DataFrame, quarantine: pl.DataFrame) -> pl.DataFrame:
    """New issues for quarantined (dataset, key, check) that have no open issue yet."""
    if quarantine is None or quarantine.is_empty():
        return empty_issues()
    keys = ["dept", "dataset", "key_pid", "check_name"]
    # quarantines already answered by a resolution (the history is passed again) are not new
    last_resolved = (
        issues.filter(pl.col("kind") == "quarantine")
        .group_by(keys)
        .agg(pl.col("resolved_at").max().alias("_resolved"))
    )
    still_open = issues.filter((pl.col("kind") == "quarantine") & (pl.col("status") == "open"))
    new = (
        quarantine.filter(pl.col("key_pid").is_not_null())
        .join(last_resolved, on=keys, how="left")
        .filter(pl.col("_resolved").is_null() | (pl.col("quarantined_at") > pl.col("_resolved")))
        .join(still_open.select(keys), on=keys, how="anti")
        .group_by(keys)
        .agg(
            pl.col("field").drop_nulls().sort().first().alias("field"),
            pl.col("quarantined_at").min().alias("opened_at"),
            pl.col("reason").first().alias("reason"),
        )
    )
    if new.is_empty():
        return empty_issues()
    return new.select(
        pl.concat_str(
            [pl.lit("quarantine"), *[pl.col(k) for k in keys], pl.col("opened_at").cast(pl.String)],
            separator="|",
        )
        .map_elements(lambda s: _issue_id(s), return_dtype=pl.String)
        .alias("issue_id"),
        "dept",
        "dataset",
        "key_pid",
        "field",
        "check_name",
        pl.lit("quarantine").alias("kind"),
        pl.lit("open").alias("status"),
        pl.col("opened_at").cast(pl.Datetime("us", "UTC")),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("resolved_at"),
        pl.lit(None, pl.String).alias("resolved_by_delivery"),
        "reason",
        pl.lit("gate").alias("opened_by"),
    ).cast(ISSUE_SCHEMA)


def _quarantine_deliveries(quarantine: pl.DataFrame | None) -> pl.DataFrame:
    if quarantine is None or quarantine.is_empty():
        return pl.DataFrame(
            schema={
                "dept": pl.String,
                "dataset": pl.String,
                "key_pid": pl.String,
                "_qdel": pl.String,
            }
        )
    return quarantine.select(
        "dept", "dataset", "key_pid", pl.col("delivery_id").alias("_qdel")
    ).unique()


def _resolutions(
    issues: pl.DataFrame, staged: pl.DataFrame, quarantine: pl.DataFrame | None
) -> pl.DataFrame:
    """issue_id → (resolved_at, resolved_by_delivery) for open issues a later row fixes."""
    open_ = issues.filter(pl.col("status") == "open")
    if open_.is_empty() or staged is None or staged.is_empty():
        return pl.DataFrame(
            schema={
                "issue_id": pl.String,
                "resolved_at": ISSUE_SCHEMA["resolved_at"],
                "resolved_by_delivery": pl.String,
            }
        )
    rows = staged.select(
        "dept",
        "dataset",
        "key_pid",
        pl.col("_delivery_id").alias("_del"),
        pl.col("_loaded_at").cast(pl.Datetime("us", "UTC")).alias("_at"),
        pl.int_range(pl.len()).alias("_row"),
    )
    cand = open_.select(
        "issue_id", "dept", "dataset", "key_pid", "field", "kind", "opened_at"
    ).join(rows, on=["dept", "dataset", "key_pid"])
    later = cand.filter(pl.col("_at") > pl.col("opened_at"))
    # a row from the very delivery that was quarantined for this key does not fix it
    qdel = _quarantine_deliveries(quarantine)
    later = later.join(
        qdel.rename({"_qdel": "_del"}).with_columns(pl.lit(True).alias("_bad")),
        on=["dept", "dataset", "key_pid", "_del"],
        how="left",
    ).filter(pl.col("_bad").is_null() | (pl.col("kind") == "dispute"))
    disputes = later.filter(pl.col("kind") == "dispute")
    if not disputes.is_empty():
        changed = _changed(disputes, cand, staged)
        later = pl.concat(
            [
                later.filter(pl.col("kind") != "dispute"),
                later.join(changed, on=["issue_id", "_row"], how="semi"),
            ]
        )
    return (
        later.sort("_at")
        .group_by("issue_id")
        .agg(
            pl.col("_at").first().alias("resolved_at"),
            pl.col("_del").first().alias("resolved_by_delivery"),
        )
    )


def _changed(disputes: pl.DataFrame, cand: pl.DataFrame, staged: pl.DataFrame) -> pl.DataFrame:
    """(issue_id, _row) of later rows whose disputed field differs from the value before."""
    out = []
    for field in disputes["field"].unique().to_list():
        if field not in staged.columns:
            continue
        value = staged.select(
            pl.int_range(pl.len()).alias("_row"), pl.col(field).cast(pl.String).alias("_v")
        )
        c = cand.filter((pl.col("kind") == "dispute") & (pl.col("field") == field)).join(
            value, on="_row"
        )
        before = (
            c.filter(pl.col("_at") <= pl.col("opened_at"))
            .sort("_at")
            .group_by("issue_id")
            .agg(pl.col("_v").last().alias("_before"))
        )
        after = (
            disputes.filter(pl.col("field") == field)
            .join(value, on="_row")
            .join(before, on="issue_id")
        )
        out.append(
            after.filter(pl.col("_v").ne_missing(pl.col("_before"))).select("issue_id", "_row")
        )
    if not out:
        return pl.DataFrame(schema={"issue_id": pl.String, "_row": pl.Int64})
    return pl.concat(out).cast({"_row": pl.Int64})


def update_issues(
    issues: pl.DataFrame,
    quarantine_with_keys: pl.DataFrame,
    staged_with_keys: pl.DataFrame,
    now: dt.datetime,
) -> pl.DataFrame:
    """Open issues for new quarantines, resolve open issues that later rows fix.

    ``quarantine_with_keys``: the quarantine frame plus ``key_pid``.
    ``staged_with_keys``: staged rows of any datasets with ``dept, dataset, key_pid,
    _delivery_id, _loaded_at`` and the disputed fields (include the rows staged before a
    dispute, so a change can be seen). ``now`` stamps issues whose rows carry no time.
    """
    now = _utc(now)
    issues = _conform(issues)
    if quarantine_with_keys is not None and not quarantine_with_keys.is_empty():
        quarantine_with_keys = quarantine_with_keys.with_columns(
            pl.col("quarantined_at").cast(pl.Datetime("us", "UTC")).fill_null(now)
        )
    issues = pl.concat([issues, _open_quarantine_issues(issues, quarantine_with_keys)])
    fixes = _resolutions(issues, staged_with_keys, quarantine_with_keys)
    if fixes.is_empty():
        return issues
    return (
        issues.join(fixes, on="issue_id", how="left", suffix="_new")
        .with_columns(
            pl.when(pl.col("resolved_at_new").is_not_null())
            .then(pl.lit("resolved"))
            .otherwise(pl.col("status"))
            .alias("status"),
            pl.coalesce("resolved_at", "resolved_at_new").alias("resolved_at"),
            pl.coalesce("resolved_by_delivery", "resolved_by_delivery_new").alias(
                "resolved_by_delivery"
            ),
        )
        .select(list(ISSUE_SCHEMA))
    )


def issue_counts(issues: pl.DataFrame) -> pl.DataFrame:
    """Per (dept, dataset): open and resolved issues, and how many of each are disputes."""
    issues = _conform(issues)
    return (
        issues.group_by("dept", "dataset")
        .agg(
            (pl.col("status") == "open").sum().cast(pl.Int64).alias("open"),
            (pl.col("status") == "resolved").sum().cast(pl.Int64).alias("resolved"),
            ((pl.col("status") == "open") & (pl.col("kind") == "dispute"))
            .sum()
            .cast(pl.Int64)
            .alias("open_disputes"),
        )
        .sort("dept", "dataset")
    )
