"""Dataset-level expectations (数据集级校验) with Great Expectations, generated from the catalogue.

One suite per dataset, run on the dataset's staged frame (converted to pandas; only the
columns the suite needs):

- ``expect_table_row_count_to_be_between``: 0.5×–2× the previous delivery's rows
  (at least one row on a first delivery);
- ``expect_column_values_to_not_be_null``: every required field (null rate 0), every
  optional field with ``mostly = 1 - optional_max_null`` (default: at most 95 % null, i.e.
  a column that went empty fails);
- ``expect_column_values_to_be_unique`` / ``expect_compound_columns_to_be_unique`` on the
  business key;
- ``expect_column_values_to_be_in_set``: every ``person.citizen_id`` field of a dataset
  outside gaj (which keeps the registers) is found in ``registry_ids`` (the IDs of
  gaj.registered_residents; add residence-permit holders if migrants should count).
  Computed directly with polars, not by GE: GE's in-set with a 20k-ID value set took
  4–8 s per dataset on a 20k street (the whole run would pass a minute);
- ``freshness`` — computed directly, not by GE (there is no column to expect on: it
  compares ``newest_delivery_at`` with the update cycle's ``max_age`` at ``now``).

Results carry counts and percentages only, never the unexpected values themselves.
Great Expectations is imported lazily (≈2.4 s) and its ephemeral context is reused.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Collection
from typing import Any

import polars as pl

from catalog.model import Dataset

EXPECTATION_SCHEMA = {
    "dept": pl.String,
    "dataset": pl.String,
    "expectation": pl.String,
    "column": pl.String,
    "success": pl.Boolean,
    "observed": pl.String,
    "detail": pl.String,
    "run_at": pl.Datetime("us", "UTC"),
}
ROW_COUNT_BOUNDS = (0.5, 2.0)
OPTIONAL_MAX_NULL = 0.95
REGISTRY = ("gaj", "registered_residents")

_context: Any = None
_names = itertools.count()


def _gx() -> tuple[Any, Any]:
    """The GE module and one ephemeral context for the process."""
    global _context
    import great_expectations as gx

    if _context is None:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _context = gx.get_context(mode="ephemeral")
        _context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, _context


def _dept_of(dataset: Dataset) -> str:
    from catalog.loader import get_catalogue

    for dept, ds in get_catalogue().datasets():
        if ds.resource_code == dataset.resource_code:
            return dept.code
    raise KeyError(f"dataset {dataset.code} ({dataset.resource_code}) is not in the catalogue")


def build_suite(
    dataset: Dataset,
    dept: str,
    *,
    previous_rows: int | None,
    optional_max_null: float = OPTIONAL_MAX_NULL,
) -> tuple[list[Any], list[str]]:
    """The GE expectations for one dataset, and the columns they read."""
    gx, _ = _gx()
    ge = gx.expectations
    out: list[Any] = []
    lo, hi = ROW_COUNT_BOUNDS
    if previous_rows:
        out.append(
            ge.ExpectTableRowCountToBeBetween(
                min_value=int(previous_rows * lo), max_value=int(previous_rows * hi) + 1
            )
        )
    else:
        out.append(ge.ExpectTableRowCountToBeBetween(min_value=1, max_value=None))
    for f in dataset.fields:
        mostly = 1.0 if f.required else max(0.0, 1.0 - optional_max_null)
        out.append(ge.ExpectColumnValuesToNotBeNull(column=f.name, mostly=mostly))
    if len(dataset.key) == 1:
        out.append(ge.ExpectColumnValuesToBeUnique(column=dataset.key[0]))
    else:
        out.append(ge.ExpectCompoundColumnsToBeUnique(column_list=list(dataset.key)))
    return out, [f.name for f in dataset.fields]


def _observed(kind: str, result: dict) -> str:
    if kind == "expect_table_row_count_to_be_between":
        return f"{result.get('observed_value')} rows"
    if "unexpected_count" in result:
        n = result.get("element_count") or 0
        pct = result.get("unexpected_percent") or 0.0
        return f"{result['unexpected_count']} of {n} unexpected ({pct:.2f} %)"
    return str(result.get("observed_value", ""))


def _detail(kind: str, kwargs: dict) -> str:
    if kind == "expect_table_row_count_to_be_between":
        hi = kwargs.get("max_value")
        return f"rows between {kwargs.get('min_value')} and {hi if hi is not None else '∞'}"
    if kind == "expect_column_values_to_not_be_null":
        mostly = kwargs.get("mostly", 1.0)
        return "required: no nulls" if mostly >= 1.0 else f"optional: at most {1 - mostly:.0%} null"
    if kind in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
        return "business key unique"
    return ""


def _referential(
    dataset: Dataset, dept: str, frame: pl.DataFrame, registry_ids: Collection[str] | None
) -> list[dict]:
    if registry_ids is None or dept == REGISTRY[0]:  # gaj keeps the registers themselves
        return []
    ids = pl.Series("ids", list(registry_ids), dtype=pl.String)
    out = []
    for f in dataset.fields:
        if f.concept != "person.citizen_id":
            continue
        col = frame[f.name] if f.name in frame.columns else pl.Series(f.name, [], pl.String)
        present = col.drop_nulls().cast(pl.String)
        missing = int((~present.is_in(ids.implode())).sum())
        n = present.len()
        out.append(
            {
                "expectation": "expect_column_values_to_be_in_set",
                "column": f.name,
                "success": missing == 0,
                "observed": f"{missing} of {n} unexpected ({100 * missing / n if n else 0:.2f} %)",
                "detail": f"found in gaj.registered_residents ({ids.len()} ids; "
                "computed directly, not by GE)",
            }
        )
    return out


def _freshness(dataset: Dataset, newest: dt.datetime | None, now: dt.datetime) -> dict:
    max_age = dataset.update_cycle.max_age
    if newest is None:
        return {"success": False, "observed": "no delivery", "column": None}
    newest = newest if newest.tzinfo else newest.replace(tzinfo=dt.UTC)
    age = now - newest
    return {
        "success": age <= max_age,
        "observed": f"newest delivery {age.total_seconds() / 3600:.1f} h old",
        "column": None,
        "detail": f"{dataset.update_cycle.value}: at most {max_age.total_seconds() / 3600:.0f} h "
        "(computed directly, not by GE)",
    }


def run_expectations(
    dataset: Dataset,
    frame: pl.DataFrame,
    *,
    previous_rows: int | None,
    registry_ids: Collection[str] | None,
    newest_delivery_at: dt.datetime | None,
    now: dt.datetime,
    dept: str | None = None,
    optional_max_null: float = OPTIONAL_MAX_NULL,
) -> pl.DataFrame:
    """Run the dataset's suite on its staged frame: one row per expectation.

    ``dept`` defaults to the department that catalogues ``dataset``. Columns: dept,
    dataset, expectation, column, success, observed, detail, run_at.
    """
    dept = dept or _dept_of(dataset)
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    gx, context = _gx()
    expectations, columns = build_suite(
        dataset,
        dept,
        previous_rows=previous_rows,
        optional_max_null=optional_max_null,
    )
    # a column missing from the frame must fail, not crash: add it empty
    frame = frame.with_columns(
        [pl.lit(None).alias(c) for c in columns if c not in frame.columns]
    ).select(columns)
    pdf = frame.to_pandas()
    name = f"{dept}__{dataset.code}__{next(_names)}"
    source = context.data_sources.add_pandas(name=name)
    batch_def = source.add_dataframe_asset(name="staged").add_batch_definition_whole_dataframe(
        "all"
    )
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    try:
        batch = batch_def.get_batch(batch_parameters={"dataframe": pdf})
        result = batch.validate(suite, result_format={"result_format": "SUMMARY"})
    finally:
        context.data_sources.delete(name)
    rows = []
    for r in result.results:
        cfg = r.expectation_config
        kwargs = dict(cfg.kwargs)
        column = kwargs.get("column") or (
            ",".join(kwargs["column_list"]) if "column_list" in kwargs else None
        )
        exc = (r.exception_info or {}).get("exception_message") if r.exception_info else None
        rows.append(
            {
                "expectation": cfg.type,
                "column": column,
                "success": bool(r.success),
                "observed": f"error: {exc}" if exc else _observed(cfg.type, r.result or {}),
                "detail": _detail(cfg.type, kwargs),
            }
        )
    rows += _referential(dataset, dept, frame, registry_ids)
    fresh = _freshness(dataset, newest_delivery_at, now)
    rows.append({"expectation": "freshness", "detail": "", **fresh})
    return pl.DataFrame(rows).select(
        pl.lit(dept).alias("dept"),
        pl.lit(dataset.code).alias("dataset"),
        pl.col("expectation").cast(pl.String),
        pl.col("column").cast(pl.String),
        pl.col("success").cast(pl.Boolean),
        pl.col("observed").cast(pl.String),
        pl.col("detail").cast(pl.String),
        pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("run_at"),
    )
