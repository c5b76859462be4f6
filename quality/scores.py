"""Quality scores per dataset and department (数据质量评分): six dimensions.

``score_datasets`` returns one row per (dept, dataset, dimension), and one per
(dept, '*', dimension) that is the row-weighted mean of the department's datasets:

- completeness 完整性: non-null share of the *required* fields over the rows delivered
  (a required cell counts as missing when it is null in staged, or when the row was
  quarantined by a null/required check on it); the detail also gives the non-null share
  of *all* fields in staged.
- validity 有效性: rows loaded into raw and passed by the row gate ÷ rows read, per the
  delivery accounts and the gate's quarantine (staged + quarantine when a dataset has no
  accounts).
- uniqueness 唯一性: distinct business keys ÷ rows of the staged table as it is now, over
  every delivery (staging keeps one row per key across deliveries, per the catalogue's
  ``update_mode``: a repeat here is a key staged twice, whatever delivery brought it).
- consistency 一致性: share of rows, joined to the authoritative dataset on the entity key
  (person.citizen_id …), whose concept values all agree with the authoritative ones.
- timeliness 及时性: max_age of the update cycle ÷ age of the newest delivery at ``now``
  (1 while fresh; 0.5 when twice too old; 0 with no delivery).
- accuracy 准确性: share of compared concept values equal to the authoritative value
  (cells); for a dataset that is itself authoritative and has nothing to compare, the
  validity of its key fields (rows not quarantined on a key field ÷ rows read).

A score is null when nothing could be measured (the detail says why). Sensitive values
never appear in a score or in ``flag_disagreements``: only row numbers and field names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from catalog.model import Catalogue, Dataset
from quality.scores_authority import (
    DISAGREEMENT_COLUMNS,
    Comparison,
    authoritative_datasets,
    compare,
    comparisons,
    no_authority_detail,
)

DIMENSIONS = ("completeness", "validity", "uniqueness", "consistency", "timeliness", "accuracy")
DIMENSION_LABELS = {
    "completeness": "完整性 completeness",
    "validity": "有效性 validity",
    "uniqueness": "唯一性 uniqueness",
    "consistency": "一致性 consistency",
    "timeliness": "及时性 timeliness",
    "accuracy": "准确性 accuracy",
}
SCORE_SCHEMA = {
    "dept": pl.String,
    "dataset": pl.String,
    "dimension": pl.String,
    "score": pl.Float64,
    "numerator": pl.Float64,
    "denominator": pl.Float64,
    "detail": pl.String,
    "computed_at": pl.Datetime("us", "UTC"),
}
# check_name values of the row gate that mean "the cell was empty"
NULL_CHECK_WORDS = ("null", "required", "blank", "missing", "empty")

Key = tuple[str, str]


@dataclass(frozen=True)
class TableFacts:
    """What the completeness, validity and uniqueness scores need of a staged table: its
    rows, the nulls of each column it has, and its distinct business keys (None when a key
    column is missing). Taken from a frame (:func:`table_facts`) or, for a table too large
    to hold, counted where it lies (``pipelines.quality_run``)."""

    rows: int
    nulls: dict[str, int]
    distinct_keys: int | None


def table_facts(ds: Dataset, frame: pl.DataFrame) -> TableFacts:
    """:class:`TableFacts` of a staged frame (its catalogue fields only)."""
    fields = [f.name for f in ds.fields if f.name in frame.columns]
    nulls = frame.select(pl.col(fields).null_count()).row(0, named=True) if fields else {}
    keys = [k for k in ds.key if k in frame.columns]
    distinct = frame.select(keys).unique().height if len(keys) == len(ds.key) else None
    return TableFacts(frame.height, {k: int(v) for k, v in nulls.items()}, distinct)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _ratio(num: float, den: float) -> float | None:
    return None if den <= 0 else max(0.0, min(1.0, num / den))


def _row(
    dept: str, ds: str, dim: str, num: float, den: float, detail: str, score: float | None = None
) -> dict:
    if den <= 0 and not detail.startswith("n/a"):
        detail = f"n/a: nothing to measure — {detail}"
    return {
        "dept": dept,
        "dataset": ds,
        "dimension": dim,
        "score": _ratio(num, den) if score is None else score,
        "numerator": float(num),
        "denominator": float(den),
        "detail": detail,
    }


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _slice(frame: pl.DataFrame | None, dept: str, ds: str) -> pl.DataFrame:
    if frame is None or frame.is_empty():
        return frame.clear() if frame is not None else pl.DataFrame()
    return frame.filter((pl.col("dept") == dept) & (pl.col("dataset") == ds))


def _quarantined_rows(q: pl.DataFrame, fields: list[str] | None = None) -> int:
    if q.is_empty():
        return 0
    if fields is not None:
        q = q.filter(pl.col("field").is_in(fields))
    return q.select(pl.struct("delivery_id", "source_row").n_unique()).item() if q.height else 0


def _rows_read(acc: pl.DataFrame, staged: TableFacts, q: pl.DataFrame) -> tuple[int, int, str]:
    """(rows read, rows loaded, where the figures come from)."""
    if not acc.is_empty():
        read = int(acc["rows_read"].fill_null(0).sum())
        loaded = int(acc["rows_loaded"].fill_null(0).sum())
        failed = acc.filter(pl.col("status") == "failed").height
        note = f"{acc.height} deliveries" + (f", {failed} failed" if failed else "")
        return read, loaded, note
    quarantined = _quarantined_rows(q)
    return staged.rows + quarantined, staged.rows, "no accounts: staged + quarantine"


def _completeness(
    dept: str, ds: Dataset, staged: TableFacts, q: pl.DataFrame, delivered: int
) -> dict:
    fields = [f.name for f in ds.fields if f.name in staged.nulls]
    required = [f.name for f in ds.fields if f.required and f.name in staged.nulls]
    staged_null_req = sum(staged.nulls[c] for c in required)
    q_null = 0
    if not q.is_empty() and required:
        words = "|".join(NULL_CHECK_WORDS)
        q_null = (
            q.filter(
                pl.col("field").is_in(required)
                & pl.col("check_name").str.to_lowercase().str.contains(words)
            )
            .select(pl.struct("delivery_id", "source_row", "field").n_unique())
            .item()
        )
    den = delivered * len(required)
    all_cells = staged.rows * len(fields)
    all_non_null = all_cells - sum(staged.nulls[c] for c in fields)
    all_share = _pct(all_non_null / all_cells) if all_cells else "n/a"
    detail = (
        f"score = required fields ({len(required)}) non-null over rows delivered; "
        f"missing {staged_null_req} in staged + {q_null} quarantined; "
        f"all fields ({len(fields)}) in staged: {all_share} non-null"
    )
    return _row(dept, ds.code, "completeness", den - staged_null_req - q_null, den, detail)


def _validity(dept: str, ds: Dataset, read: int, loaded: int, source: str, q: pl.DataFrame) -> dict:
    """Rows that passed both the reading and the row gate ÷ rows read."""
    gated = _quarantined_rows(q.filter(pl.col("stage") == "staged")) if q.height else 0
    if source.startswith("no accounts"):
        gated = 0  # the fallback's loaded rows are the staged rows already
    detail = (
        f"rows loaded and past the row gate ÷ rows read ({source}); "
        f"{_quarantined_rows(q)} rows in quarantine ({gated} held back by the row gate)"
    )
    return _row(dept, ds.code, "validity", max(loaded - gated, 0), read, detail)


def _uniqueness(dept: str, ds: Dataset, staged: TableFacts) -> dict:
    distinct = staged.distinct_keys
    if not staged.rows or distinct is None:
        return _row(dept, ds.code, "uniqueness", 0, 0, "n/a: no staged rows or key columns")
    return _row(
        dept,
        ds.code,
        "uniqueness",
        distinct,
        staged.rows,
        f"distinct key ({', '.join(ds.key)}) ÷ rows in staged, over every delivery; "
        f"{staged.rows - distinct} repeated",
    )


def _timeliness(dept: str, ds: Dataset, deliveries: pl.DataFrame, now: dt.datetime) -> dict:
    max_age = ds.update_cycle.max_age
    if deliveries.is_empty():
        return _row(dept, ds.code, "timeliness", 0, 1, "no delivery received", score=0.0)
    newest = _utc(deliveries["arrived_at"].max())
    age = max(now - newest, dt.timedelta(0))
    hours = age.total_seconds() / 3600
    limit = max_age.total_seconds() / 3600
    score = 1.0 if age <= max_age else limit / hours
    detail = (
        f"newest delivery {hours:.1f} h old at {now:%Y-%m-%d %H:%M} UTC; "
        f"{ds.update_cycle.value} allows {limit:.0f} h" + ("" if score == 1.0 else " — stale")
    )
    return _row(dept, ds.code, "timeliness", limit, max(hours, limit), detail, score=score)


Results = list[tuple[Comparison, pl.DataFrame]]


def comparison_results(
    catalogue: Catalogue, staged: Mapping[Key, pl.DataFrame], only: Key | None = None
) -> dict[Key, Results]:
    """Each staged dataset's concept fields compared with their authority (``only``: that
    dataset alone), computed once for the scores and the disagreements alike."""
    out: dict[Key, Results] = {}
    for cmp in comparisons(catalogue):
        if only is not None and (cmp.dept, cmp.dataset) != only:
            continue
        frame = staged.get((cmp.dept, cmp.dataset))
        authority = staged.get((cmp.auth_dept, cmp.auth_dataset))
        if frame is None or authority is None or frame.is_empty():
            continue
        needed = {cmp.field, cmp.join_field}
        if not needed <= set(frame.columns) or not {cmp.auth_key, cmp.auth_field} <= set(
            authority.columns
        ):
            continue
        out.setdefault((cmp.dept, cmp.dataset), []).append((cmp, compare(cmp, frame, authority)))
    return out


def _consistency(
    dept: str,
    ds: Dataset,
    results: list[tuple[Comparison, pl.DataFrame]],
    no_authority: str | None = None,
) -> dict:
    if not results:
        why = no_authority or "n/a: no concept field to compare"
        return _row(dept, ds.code, "consistency", 0, 0, why)
    flags = pl.DataFrame(
        {f"c{i}": r["compared"] for i, (_, r) in enumerate(results)}
        | {f"d{i}": r["compared"] & ~r["agrees"] for i, (_, r) in enumerate(results)}
    )
    counts = flags.select(
        pl.any_horizontal(pl.col("^c\\d+$")).sum().alias("compared"),
        pl.any_horizontal(pl.col("^d\\d+$")).sum().alias("disagrees"),
    ).row(0, named=True)
    matched = int(results[0][1]["matched"].sum())
    den = int(counts["compared"])
    num = den - int(counts["disagrees"])
    per_field = "; ".join(
        f"{c.field}→{c.auth_ref}.{c.auth_field}: {int((r['compared'] & r['agrees']).sum())}"
        f"/{int(r['compared'].sum())}" + (" (by PII kind)" if c.by_pii_kind else "")
        for c, r in results
    )
    rows = results[0][1].height
    detail = (
        f"rows agreeing on every concept with the authority; {matched}/{rows} rows matched "
        f"on {results[0][0].join_field}; {per_field}"
    )
    return _row(dept, ds.code, "consistency", num, den, detail)


def _accuracy(
    dept: str,
    ds: Dataset,
    results: list[tuple[Comparison, pl.DataFrame]],
    authoritative: bool,
    q: pl.DataFrame,
    delivered: int,
    no_authority: str | None = None,
) -> dict:
    if results:
        den = sum(int(r["compared"].sum()) for _, r in results)
        num = sum(int((r["compared"] & r["agrees"]).sum()) for _, r in results)
        refs = sorted({c.auth_ref for c, _ in results})
        detail = f"concept values equal to the authoritative value ({', '.join(refs)}) ÷ compared"
        return _row(dept, ds.code, "accuracy", num, den, detail)
    if authoritative:
        bad = _quarantined_rows(q, list(ds.key))
        detail = (
            f"authoritative source: rows whose key ({', '.join(ds.key)}) passed the gate "
            f"÷ rows read; {bad} quarantined on the key"
        )
        return _row(dept, ds.code, "accuracy", delivered - bad, delivered, detail)
    why = no_authority or "n/a: no authoritative source to compare with"
    return _row(dept, ds.code, "accuracy", 0, 0, why)


def _department_rows(rows: pl.DataFrame, weights: dict[Key, int]) -> pl.DataFrame:
    """Per department and dimension: mean of the datasets' scores weighted by staged rows."""
    w = pl.DataFrame(
        {
            "dept": [k[0] for k in weights],
            "dataset": [k[1] for k in weights],
            "weight": [float(v) for v in weights.values()],
        },
        schema={"dept": pl.String, "dataset": pl.String, "weight": pl.Float64},
    )
    scored = rows.filter(pl.col("score").is_not_null()).join(w, on=["dept", "dataset"])
    # a department whose scored datasets have no rows at all: plain mean
    scored = scored.with_columns(
        pl.when(pl.col("weight").sum().over("dept", "dimension") > 0)
        .then(pl.col("weight"))
        .otherwise(1.0)
        .alias("weight")
    )
    return (
        scored.group_by("dept", "dimension")
        .agg(
            (pl.col("score") * pl.col("weight")).sum().alias("numerator"),
            pl.col("weight").sum().alias("denominator"),
            pl.len().alias("_n"),
        )
        .with_columns(
            pl.lit("*").alias("dataset"),
            (pl.col("numerator") / pl.col("denominator")).clip(0.0, 1.0).alias("score"),
            pl.format("mean of {} datasets weighted by staged rows", pl.col("_n")).alias("detail"),
        )
        .select("dept", "dataset", "dimension", "score", "numerator", "denominator", "detail")
    )


def present_datasets(staged: Mapping[Key, pl.DataFrame], *frames: pl.DataFrame | None) -> set[Key]:
    """(dept, dataset) of every dataset staged or named in one of ``frames`` (accounts,
    deliveries, quarantine): what the scorecard scores."""
    present: set[Key] = set(staged)
    for frame in frames:
        if frame is not None and not frame.is_empty():
            present |= set(frame.select("dept", "dataset").unique().iter_rows())
    return present


def score_dataset_rows(
    catalogue: Catalogue,
    key: Key,
    staged: Mapping[Key, pl.DataFrame],
    quarantine: pl.DataFrame,
    accounts: pl.DataFrame,
    deliveries: pl.DataFrame,
    now: dt.datetime,
    results: Results | None = None,
    facts: TableFacts | None = None,
) -> tuple[list[dict], int]:
    """One dataset's six score rows and its weight (staged rows). ``staged`` needs the
    dataset itself and the authorities it is compared with, nothing else; ``results``:
    its :func:`comparison_results`, and ``facts`` its :class:`TableFacts`, when the caller
    has them already (then the dataset's own frame is not read)."""
    now = _utc(now)
    dept, ds = catalogue.dataset(f"{key[0]}.{key[1]}")
    if facts is None:
        facts = table_facts(ds, staged.get(key, pl.DataFrame()))
    if results is None:
        results = comparison_results(catalogue, staged, only=key).get(key, [])
    q = _slice(quarantine, *key)
    acc = _slice(accounts, *key)
    read, loaded, source = _rows_read(acc, facts, q)
    undeclared = no_authority_detail(catalogue, ds)
    rows = [
        _completeness(dept.code, ds, facts, q, read),
        _validity(dept.code, ds, read, loaded, source, q),
        _uniqueness(dept.code, ds, facts),
        _consistency(dept.code, ds, results, undeclared),
        _timeliness(dept.code, ds, _slice(deliveries, *key), now),
        _accuracy(
            dept.code, ds, results, key in authoritative_datasets(catalogue), q, read, undeclared
        ),
    ]
    return rows, facts.rows


def timeliness_row(
    catalogue: Catalogue, key: Key, deliveries: pl.DataFrame, now: dt.datetime
) -> dict:
    """One dataset's timeliness row alone (it moves with ``now``, nothing else of a kept
    dataset does)."""
    dept, ds = catalogue.dataset(f"{key[0]}.{key[1]}")
    return _timeliness(dept.code, ds, _slice(deliveries, *key), _utc(now))


def rescored(
    catalogue: Catalogue, touched: set[Key], changed: set[Key], also: set[Key] | None = None
) -> set[Key]:
    """The datasets an incremental scorecard scores again; every other keeps its rows.

    ``touched``: datasets whose staged table changed; ``changed``: datasets whose
    quarantine, delivery accounts or deliveries changed. A dataset is scored again when it
    is in either, when the staged table of an authority it is compared with (consistency,
    accuracy, disagreements) changed, or — for a dataset whose expectations check registry
    references — the staged table of a person register changed. ``also``: datasets to
    score again besides (e.g. with no previous rows to keep).
    """
    from catalog.authority import person_registers
    from quality.expectations import checks_registry

    out = set(touched) | set(changed) | set(also or ())
    for cmp in comparisons(catalogue):
        if (cmp.auth_dept, cmp.auth_dataset) in touched:
            out.add((cmp.dept, cmp.dataset))
    if any((r.dept, r.dataset.code) in touched for r in person_registers(catalogue)):
        out |= {
            (dept.code, ds.code)
            for dept, ds in catalogue.datasets()
            if checks_registry(ds, dept.code, catalogue)
        }
    return out


def assemble_scorecard(rows: list[dict], weights: dict[Key, int], now: dt.datetime) -> pl.DataFrame:
    """The scorecard from every dataset's rows: those rows, each department's weighted
    means, ordered department by department."""
    schema = {k: v for k, v in SCORE_SCHEMA.items() if k != "computed_at"}
    per_dataset = pl.DataFrame(rows, schema=schema)
    out = pl.concat([per_dataset, _department_rows(per_dataset, weights)], how="vertical")
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    return (
        out.with_columns(
            pl.lit(_utc(now), dtype=pl.Datetime("us", "UTC")).alias("computed_at"),
            pl.col("dimension").replace_strict(order, return_dtype=pl.Int32).alias("_o"),
            (pl.col("dataset") == "*").alias("_dept_row"),
        )
        .sort("dept", "_dept_row", "dataset", "_o", descending=[False, True, False, False])
        .drop("_o", "_dept_row")
    )


def score_datasets(
    catalogue: Catalogue,
    staged: Mapping[Key, pl.DataFrame],
    quarantine: pl.DataFrame,
    accounts: pl.DataFrame,
    deliveries: pl.DataFrame,
    now: dt.datetime,
) -> pl.DataFrame:
    """Score every catalogued dataset present in staged, accounts or deliveries (see module doc)."""
    present = present_datasets(staged, accounts, deliveries, quarantine)
    rows: list[dict] = []
    weights: dict[Key, int] = {}
    for dept, ds in catalogue.datasets():
        key = (dept.code, ds.code)
        if key not in present:
            continue
        mine, weights[key] = score_dataset_rows(
            catalogue, key, staged, quarantine, accounts, deliveries, now
        )
        rows += mine
    return assemble_scorecard(rows, weights, now)


def flag_disagreements(
    catalogue: Catalogue, staged: Mapping[Key, pl.DataFrame], only: Key | None = None
) -> pl.DataFrame:
    """Each staged value that disagrees with its authoritative source (never the values).

    Columns: dept, dataset, delivery_id, source_row, field, concept, authoritative_dataset,
    authoritative_field. Only rows whose entity key is found in the authority and where both
    values are present are judged.
    """
    parts = [
        disagreement_rows(staged[key], results)
        for key, results in comparison_results(catalogue, staged, only).items()
    ]
    return concat_disagreements(parts)


def detached(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` rebuilt from its values, every column in memory of its own; for small
    frames kept after the frame they were taken from. A frame read from DuckDB (``.pl()``)
    is one allocation shared by all its columns, and polars' filters, gathers and
    selections share it too: a few disagreement rows of each staged table read kept the
    whole read alive (the scorecard at 200,000 residents: ~350 MB by its end)."""
    return pl.DataFrame(
        [pl.Series(s.name, s.to_list(), dtype=s.dtype) for s in frame.iter_columns()],
        schema=frame.schema,
    )


def disagreement_rows(frame: pl.DataFrame, results: Results) -> pl.DataFrame:
    """The disagreements of one dataset (``frame``) from its comparison ``results``, in
    memory of their own (:func:`detached`)."""
    parts = []
    for cmp, r in results:
        bad = r.filter(pl.col("compared") & ~pl.col("agrees"))
        if bad.is_empty():
            continue
        lineage = frame.select(
            pl.col("_delivery_id").cast(pl.String)
            if "_delivery_id" in frame.columns
            else pl.lit(None, pl.String).alias("_delivery_id"),
            pl.col("_source_row").cast(pl.Int64)
            if "_source_row" in frame.columns
            else pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_source_row"),
        )[bad["_row"]]
        parts.append(
            lineage.select(
                pl.lit(cmp.dept).alias("dept"),
                pl.lit(cmp.dataset).alias("dataset"),
                pl.col("_delivery_id").alias("delivery_id"),
                pl.col("_source_row").alias("source_row"),
                pl.lit(cmp.field).alias("field"),
                pl.lit(cmp.concept).alias("concept"),
                pl.lit(cmp.auth_ref).alias("authoritative_dataset"),
                pl.lit(cmp.auth_field).alias("authoritative_field"),
            )
        )
    return detached(concat_disagreements(parts))


def concat_disagreements(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Disagreement frames as one, typed and ordered (an empty one with its columns)."""
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame(schema=DISAGREEMENT_COLUMNS)
    return pl.concat(parts).cast(DISAGREEMENT_COLUMNS).sort("dept", "dataset", "source_row")
