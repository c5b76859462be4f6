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
- ``expect_column_values_to_be_in_set`` (registry references): every field carrying the
  person key (``catalog.authority.person_key``, e.g. ``person.citizen_id``) of a dataset
  that is not itself a register is found in ``registry_ids``, the IDs of the registers
  (``catalog.authority.person_registers``: the datasets of the person key's authoritative
  department that carry it — the household registry and the residence permits in the
  shipped catalogue). Not run when the caller has no registry IDs (``None``: the
  registers were never delivered) or the catalogue declares no authority for persons.
  Computed directly with polars, not by GE: GE's in-set with a 20k-ID value set took
  4–8 s per dataset on a 20k street (the whole run would pass a minute);
- ``freshness`` — computed directly, not by GE (there is no column to expect on: it
  compares ``newest_delivery_at`` with the update cycle's ``max_age`` at ``now``).

Results carry counts and percentages only, never the unexpected values themselves.
Great Expectations is imported lazily (about 1.5 s CPU: only when a suite runs; SciPy's
statistics, Altair and jsonschema, which it imports for expectations not used here, on first
use: ``DEFERRED_MODULES``) and the process keeps one ephemeral context with one pandas data
source, asset and whole-frame batch definition until :func:`release_context` (the scorecard
lets it go when done): each suite validates its frame as that definition's batch
parameter, the batch built once, each expectation's configuration built once while it
validates (``_validate``, ``_configurations_memoised``). (Adding and deleting a data source
per suite saved the context's project config twice, 0.05 s a suite.) Results are asked for
in the ``BASIC`` format: the counts and percentages read here; ``SUMMARY`` also counted each
unexpected value, never used (the same rows otherwise, tests/quality/test_expectations.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import threading
from collections.abc import Collection, Iterator
from typing import Any

import polars as pl

from catalog.authority import fields_of_concept, person_key, person_registers
from catalog.model import Catalogue, Dataset
from quality.deferred import defer

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

# the counts and percentages ``_observed`` reads (SUMMARY also counted every unexpected value)
RESULT_FORMAT = {"result_format": "BASIC"}
BATCH_SOURCE = "streethub_staged"  # the one data source of the process's context

_context: Any = None
_batch_definition: Any = None
_MEMO_LOCK = threading.RLock()  # one suite's validation at a time swaps GE's names


# modules Great Expectations imports for expectations no suite here has and calls only
# inside them: deferred to their first use (quality/deferred.py), not loaded with GE. SciPy's
# statistics (KL divergence, KS tests) pull in its optimisers, linear algebra and spatial
# code; Altair (the KL divergence's chart) and jsonschema (the JSON-schema metric; Altair
# imports it too) compile rfc3987_syntax's Lark grammar: with SciPy's, most of GE's import
DEFERRED_MODULES = ("scipy.stats", "altair", "jsonschema")


def _gx() -> tuple[Any, Any]:
    """The GE module and one ephemeral context for the process."""
    global _context
    if "great_expectations" not in sys.modules:
        for name in DEFERRED_MODULES:
            defer(name)
    import great_expectations as gx

    if _context is None:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _context = gx.get_context(mode="ephemeral")
        _context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, _context


def _whole_frame() -> Any:
    """The process's one batch definition: a pandas data source, a dataframe asset and its
    whole-frame batch definition, made once; each suite hands it its frame."""
    global _batch_definition
    if _batch_definition is None:
        _, context = _gx()
        source = context.data_sources.add_pandas(name=BATCH_SOURCE)
        asset = source.add_dataframe_asset(name="staged")
        _batch_definition = asset.add_batch_definition_whole_dataframe("all")
    return _batch_definition


def release_context() -> bool:
    """Let go of the process's context and batch definition, and with them everything GE
    held for the suites: the last suite's pandas frame (kept by the execution engine's batch
    manager), its batches and the context's stores (at 200,000 residents ~0.45 M blocks and
    ~70 MB of heap after the scorecard), GE's own reference to the context it made last
    (its project manager) included. What points back at its owner goes at the next full
    collection. The next suite makes a new context (~0.1 CPU s). True when there was one."""
    global _context, _batch_definition
    with _MEMO_LOCK:
        held = _context is not None
        if held:
            from great_expectations.data_context.data_context.context_factory import (
                project_manager,
            )
            from great_expectations.exceptions import DataContextRequiredError

            try:  # GE's current project: the context get_context made last, kept for good
                current = project_manager.get_current_project()
            except DataContextRequiredError:
                current = None
            if current is _context:
                project_manager.set_project(None)
        _context = _batch_definition = None
    return held


@contextlib.contextmanager
def _configurations_memoised() -> Iterator[None]:
    """While a suite validates, each expectation object builds its ``configuration`` once.

    GE's ``Expectation.configuration`` is a property that rebuilds an
    ``ExpectationConfiguration`` from the pydantic model (``dict()``, a regular expression
    for the type's name, a new object) every time it is read, and validation reads it about
    70 times per expectation (once per key of each kwargs lookup, for each metric it asks):
    a third of a suite's CPU. The expectation objects read inside a validation are made by
    GE for it (``to_domain_obj``) and none is changed after it is made, so the first
    configuration an object built is the one every later read would build again. The memo
    lives for one validation (objects kept alive by it, so an id is never reused) and the
    class gets its own property back afterwards; a GE whose ``configuration`` is no longer
    a plain property is left as it is. The results equal the plain property's
    (tests/quality/test_expectations.py)."""
    from great_expectations.expectations.expectation import Expectation

    plain = Expectation.__dict__.get("configuration")
    if not isinstance(plain, property) or plain.fget is None:
        yield
        return
    build = plain.fget
    memo: dict[int, tuple[Any, Any]] = {}

    def configuration(self: Any) -> Any:
        hit = memo.get(id(self))
        if hit is None or hit[0] is not self:
            hit = memo[id(self)] = (self, build(self))
        return hit[1]

    with _MEMO_LOCK:
        Expectation.configuration = property(configuration, doc=plain.__doc__)
        try:
            yield
        finally:
            Expectation.configuration = plain
            memo.clear()


_NOT_PLAIN = object()


def plain_json(data: Any) -> Any:
    """What GE's ``convert_to_json_serializable`` returns for plain data — exactly a
    ``str``, ``int``, ``bool``, ``float`` or None, and dicts with ``str`` keys, lists and
    tuples of them — in a few type tests; :data:`_NOT_PLAIN` for anything else (GE's own
    function answers that). GE's function tries a pydantic model, its dict types, NumPy's
    type hierarchy (three ``issubdtype`` calls for a None) and more before it gets to a
    plain value: for plain data its answer is the value (a NaN float: None), a dict with
    the keys as strings, a list."""
    kind = type(data)
    if kind is str or kind is int or kind is bool or data is None:
        return data
    if kind is float:
        return None if data != data else data  # NaN
    if kind is dict or kind is list or kind is tuple:
        items = data.items() if kind is dict else enumerate(data)
        out = {} if kind is dict else []
        for key, value in items:
            if kind is dict and type(key) is not str:
                return _NOT_PLAIN
            converted = plain_json(value)
            if converted is _NOT_PLAIN:
                return _NOT_PLAIN
            if kind is dict:
                out[key] = converted  # type: ignore[index]
            else:
                out.append(converted)  # type: ignore[union-attr]
        return out
    return _NOT_PLAIN


@contextlib.contextmanager
def _plain_ids() -> Iterator[None]:
    """While a suite validates, GE's ``IDDict.to_id`` converts plain data with
    :func:`plain_json`.

    Every metric configuration GE builds while it validates (about 25 per expectation)
    names its domain and value arguments by ``IDDict.to_id``: an MD5 of the JSON of
    ``convert_to_json_serializable``'s answer for the arguments — plain dicts of column
    names, batch ids and Nones — and that function's type tests were about a third of a
    suite's CPU. The ids are the same (the same JSON): anything that is not plain data is
    still converted by GE's own function. The module's name is given back afterwards;
    a GE whose ``id_dict`` no longer imports the function by that name is left as it is.
    """
    from great_expectations.core import id_dict

    own = getattr(id_dict, "convert_to_json_serializable", None)
    if own is None:
        yield
        return

    def convert(data: Any) -> Any:
        plain = plain_json(data)
        return own(data) if plain is _NOT_PLAIN else plain

    with _MEMO_LOCK:
        id_dict.convert_to_json_serializable = convert
        try:
            yield
        finally:
            id_dict.convert_to_json_serializable = own


def _validate(suite: Any, frame: Any) -> Any:
    """The suite's results on ``frame`` (pandas) as the whole-frame batch: what
    ``Batch.validate`` returns, with the batch built once — ``get_batch`` then
    ``Batch.validate`` built it twice, each time hashing the whole frame (GE's batch
    fingerprint: 1.5 s CPU for 170,000 rows of 13 columns) — each expectation's
    configuration built once (:func:`_configurations_memoised`) and plain ids made
    without GE's general conversion (:func:`_plain_ids`)."""
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(
        _whole_frame(), result_format=RESULT_FORMAT, batch_parameters={"dataframe": frame}
    )
    with _configurations_memoised(), _plain_ids():
        return validator.validate_expectation_suite(suite)


def _dept_of(dataset: Dataset, catalogue: Catalogue) -> str:
    for dept, ds in catalogue.datasets():
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


def checks_registry(dataset: Dataset, dept: str, catalogue: Catalogue) -> bool:
    """Whether the dataset's suite checks registry references: it carries the person key
    and is not itself a register (callers read the registry's IDs only then)."""
    key = person_key(catalogue)
    if key is None or not fields_of_concept(dataset, key):
        return False
    return not any(
        r.dept == dept and r.dataset.code == dataset.code for r in person_registers(catalogue)
    )


def _referential(
    dataset: Dataset,
    dept: str,
    frame: pl.DataFrame,
    registry_ids: Collection[str] | None,
    catalogue: Catalogue,
) -> list[dict]:
    """Registry references: the person key of each row is found in the registers."""
    key = person_key(catalogue)
    if registry_ids is None or key is None or not checks_registry(dataset, dept, catalogue):
        return []
    registers = person_registers(catalogue)
    ids = pl.Series("ids", list(registry_ids), dtype=pl.String)
    where = ", ".join(r.ref for r in registers)
    out = []
    for name in fields_of_concept(dataset, key):
        col = frame[name] if name in frame.columns else pl.Series(name, [], pl.String)
        present = col.drop_nulls().cast(pl.String)
        missing = int((~present.is_in(ids.implode())).sum())
        n = present.len()
        out.append(
            {
                "expectation": "expect_column_values_to_be_in_set",
                "column": name,
                "success": missing == 0,
                "observed": f"{missing} of {n} unexpected ({100 * missing / n if n else 0:.2f} %)",
                "detail": f"{key} found in {where} ({ids.len()} ids; computed directly, not by GE)",
            }
        )
    return out


def freshness(dataset: Dataset, newest: dt.datetime | None, now: dt.datetime) -> dict:
    """The freshness row's ``success``, ``observed``, ``column`` and ``detail``."""
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
    catalogue: Catalogue | None = None,
) -> pl.DataFrame:
    """Run the dataset's suite on its staged frame: one row per expectation.

    ``registry_ids``: the person keys of the registers (see the module doc), or None when
    there are none to check against. ``catalogue`` (default: the one the settings name)
    answers which department catalogues ``dataset`` (when ``dept`` is not given), the
    person key and the registers. Columns: dept, dataset, expectation, column, success,
    observed, detail, run_at.
    """
    if catalogue is None:
        from catalog.loader import get_catalogue
        from catalog.settings import get_settings

        catalogue = get_catalogue(get_settings().catalog_dir)
    dept = dept or _dept_of(dataset, catalogue)
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    gx, _ = _gx()
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
    # Arrow-backed columns: no Python object per string cell (the 170,000-row registers of a
    # 200,000-resident street left hundreds of MB of freed objects the process kept); the
    # same results as object columns on every dataset of a street
    pdf = frame.to_pandas(use_pyarrow_extension_array=True)
    suite = gx.ExpectationSuite(name=f"{dept}__{dataset.code}", expectations=expectations)
    result = _validate(suite, pdf)
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
    rows += _referential(dataset, dept, frame, registry_ids, catalogue)
    rows.append(
        {"expectation": "freshness", "detail": "", **freshness(dataset, newest_delivery_at, now)}
    )
    return _typed(pl.DataFrame(rows), dept, dataset.code, now)


def _typed(rows: pl.DataFrame, dept: str, dataset: str, now: dt.datetime) -> pl.DataFrame:
    return rows.select(
        pl.lit(dept).alias("dept"),
        pl.lit(dataset).alias("dataset"),
        pl.col("expectation").cast(pl.String),
        pl.col("column").cast(pl.String),
        pl.col("success").cast(pl.Boolean),
        pl.col("observed").cast(pl.String),
        pl.col("detail").cast(pl.String),
        pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("run_at"),
    )


def refresh_expectations(
    previous: pl.DataFrame,
    dataset: Dataset,
    *,
    newest_delivery_at: dt.datetime | None,
    now: dt.datetime,
) -> pl.DataFrame:
    """A dataset's expectation rows of the last run, for a dataset nothing has changed for
    since (its suite would find the same): freshness judged again at ``now``, ``run_at``
    now. Great Expectations is neither imported nor run."""
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    fresh = {"detail": "", **freshness(dataset, newest_delivery_at, now)}
    is_fresh = pl.col("expectation") == "freshness"
    rows = previous.with_columns(
        pl.when(is_fresh).then(pl.lit(fresh["success"])).otherwise("success").alias("success"),
        pl.when(is_fresh).then(pl.lit(fresh["observed"])).otherwise("observed").alias("observed"),
        pl.when(is_fresh).then(pl.lit(fresh["detail"])).otherwise("detail").alias("detail"),
    )
    dept = previous["dept"][0] if previous.height else ""
    return _typed(rows, dept, dataset.code, now)
