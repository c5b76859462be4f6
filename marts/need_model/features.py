"""The need model's features (需求预测特征): one row per resident as of a cut-off date.

The features are configuration: ``sql/features.sql`` (one query, the cut-off a bound
parameter) and ``features.yaml`` (each column's Chinese label, type, role — a model input, a
fairness group or context — whether it is stored encrypted, and the phrase an explanation
says). This module only runs the query; it names no department or dataset.

Nothing after the cut-off: the golden attributes are read as they stood on the cut-off
(:func:`curated.golden.person_as_of`), only the ones ``features.yaml`` lists under ``decrypt``
opened (through the caller's protection, audited); every staged record the SQL reads is dated
on or before the cut-off and was known to the hub by the end of that day, or came with its
dataset's first delivery (the backfill: sql/macros.sql).
``tests/marts/need_model/test_leakage.py`` checks it by truncating the lake at a cut-off.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import duckdb
import polars as pl

from catalog.model import dataset_table
from catalog.yamlfile import read_yaml
from curated.golden import (
    HISTORY,
    MENTIONS,
    ZONE,
    Revealer,
    mentions_to_read,
    reveal_history_rows,
)
from lakehouse.allocator import purge_freed
from lakehouse.lake import current_limit, memory_limit, restore_limit, tables_in, transaction
from lakehouse.snapshots import list_tables
from lakehouse.sqltext import sql_literal
from marts.build import sql_failure
from marts.lineage import MartError
from marts.need_model.spec import KEYS

SQL_DIR = Path(__file__).parent / "sql"
FEATURES_YAML = Path(__file__).parent / "features.yaml"
FEATURES_SQL = "features"
MACROS_SQL = "macros"  # the table macros the feature and label queries read staged records by
ATTRIBUTES = "attributes"  # the relation of golden attributes as of the cut-off the SQL reads
OPENED = "_need_attributes_opened"  # the decrypted rows it is made with (registered frame)
FIRST_LOADS = "first_loads"  # per staged dataset, when its first delivery finished loading
LINKED = "need_linked_mentions"  # a block's copy of the mentions the SQL reads (when few)
COPIED = "need_mentions_copied"  # the variable listing the datasets of the copy (macros)
STAGED_COPY = "need_staged_"  # a block's copy of a staged table the SQL reads: + its name
STAGED_COPIED = "need_staged_copied"  # the variable listing the datasets copied (macros)
STAGED_COPY_ROWS = 50_000
"""The most staged rows (of :func:`linked_datasets`, all together) a block of several feature
queries copies into temporary tables, read there instead of the lake's tables
(:func:`staged_copies`): each query reads each of those datasets, and each read of a lake
table costs DuckLake catalogue queries of its own (its file list and statistics); a step's
six training cut-offs at 1,000 residents (~2,100 such rows) took 1.44-1.46 CPU s on copies
against 1.66-1.79 on the lake (2026-12-06). Up to ~20,000 residents; a larger street reads
the lake (a staged row is a few hundred bytes of ciphertext and codes in DuckDB's memory)."""
STAGED = "staged"  # the lake's zone of the staged tables (``<dept>__<dataset>``)
WHAT = "need_model.features"  # how errors name the feature query
QUERY_MEMORY = 256 * 2**20
"""The most (bytes) the lake's DuckDB holds while a feature query runs (its own limit restored
after): the query joins every person-linked dataset as of a cut-off, and within the lake's
limit (512 MB) its joins and aggregates were the need step's peak at 200,000 residents
(~450 MB over the process's ~400 MB); what does not fit spills, encrypted (the lake's
connection spills only so). A query that does not fit runs again within the lake's limit
(:func:`bounded_query`), a peak of its own: at 200,000 residents the scoring cut-off's
query (194,000 residents, the most history) did not fit in 256 MB on 2026-12-03 nor in 224
MB on 2026-12-06. From 2026-12-05 to 2026-12-06 the bound was 288 MB, and 256 MB peaked as
high, because the peak came after the query: its result converted while its freed pages
were still resident (:func:`lean_result`). With those pages handed back first, the query
itself is the peak and the bound counts: on that street's lake, the query alone in a
process, 408–442 MB over the level before it at 288 MB as before, 369–402 MB with the
freed pages handed back, 347–350 MB so at 256 MB (not run again; 3.7–3.9 CPU s against
3.4–3.6 at 288 MB: more of it spills)."""
Role = Literal["input", "group", "context"]
DTYPES: dict[str, pl.DataType] = {
    "integer": pl.Int64(),
    "number": pl.Float64(),
    "boolean": pl.Boolean(),
    "category": pl.String(),
}


@dataclass(frozen=True)
class Feature:
    """One column of the features frame (``features.yaml``)."""

    name: str
    label_zh: str
    type: str
    role: Role
    sensitive: bool
    phrase: str

    @property
    def dtype(self) -> pl.DataType:
        return DTYPES[self.type]


@dataclass(frozen=True)
class FeatureSet:
    """``features.yaml``: the features in column order and the attributes decrypted."""

    features: tuple[Feature, ...]
    decrypt: tuple[str, ...]

    def names(self, role: Role | None = None) -> list[str]:
        return [f.name for f in self.features if role is None or f.role == role]

    @property
    def inputs(self) -> list[str]:
        """The model inputs (never a fairness group)."""
        return self.names("input")

    @property
    def groups(self) -> list[str]:
        """The fairness groups (gender, registered vs migrant, age band)."""
        return self.names("group")

    def feature(self, name: str) -> Feature:
        return next(f for f in self.features if f.name == name)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """The features frame's schema: the keys, then each feature."""
        return {
            "person_id": pl.String(),
            "cutoff": pl.Date(),
            **{f.name: f.dtype for f in self.features},
        }


@cache
def load_feature_set(path: Path = FEATURES_YAML) -> FeatureSet:
    """``features.yaml`` read and checked (types and roles known)."""
    raw = read_yaml(path)
    features = tuple(Feature(**entry) for entry in raw["features"])
    for f in features:
        if f.type not in DTYPES or f.role not in ("input", "group", "context"):
            raise MartError(f"features.yaml: unknown type or role of {f.name!r}", dataset=WHAT)
    return FeatureSet(features=features, decrypt=tuple(raw.get("decrypt", ())))


def read_feature_sql(name: str = FEATURES_SQL, sql_dir: Path | None = None) -> str:
    return ((sql_dir or SQL_DIR) / f"{name}.sql").read_text(encoding="utf-8")


def register_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``sql/macros.sql``'s temporary table macros on the connection
    (``linked_records``, ``known_records``: the one home of tying a staged record to its
    resident and of when it was known)."""
    con.execute(read_feature_sql(MACROS_SQL))


def known_by(cutoff: dt.date) -> dt.datetime:
    """The end of the cut-off day (UTC): what was loaded by then was known then."""
    return dt.datetime.combine(cutoff + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def _as_of(cutoff: dt.date) -> str:
    """The history rows that held on ``cutoff`` (as :func:`curated.golden.person_as_of`)."""
    day = f"DATE '{cutoff.isoformat()}'"
    return f"valid_from <= {day} AND (valid_to IS NULL OR valid_to > {day})"


def attributes_as_of(
    con: duckdb.DuckDBPyConnection, protection: Revealer, cutoff: dt.date, decrypt: Iterable[str]
) -> None:
    """Create the temporary view ``attributes`` the feature SQL reads: the golden attributes as
    they stood on ``cutoff`` (:func:`curated.golden.person_as_of`'s rows), the ``decrypt``
    concepts opened (audited), every other sensitive value left ciphertext. Only the opened
    rows come into Python (decrypted, then registered); the rest stays in DuckDB, which the
    lake bounds in memory (at 200,000 residents the whole history as of a cut-off held in
    polars was the features' peak)."""
    history = f"{ZONE}.{HISTORY}"
    listed = ", ".join(sql_literal(c) for c in sorted(set(decrypt)))
    opening = f"concept IN ({listed}) AND encrypted" if listed else "false"
    frame = con.execute(f"SELECT * FROM {history} WHERE {_as_of(cutoff)} AND {opening}").pl()
    opened = reveal_history_rows(frame, protection)
    con.register(OPENED, opened.to_arrow())
    names = ", ".join(f'"{c}"' for c in opened.columns)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {ATTRIBUTES} AS SELECT {names} FROM {history} "
        f"WHERE {_as_of(cutoff)} AND NOT ({opening}) "
        f"UNION ALL SELECT {names} FROM {OPENED}"
    )


def register_first_loads(
    con: duckdb.DuckDBPyConnection, datasets: Iterable[tuple[str, str]] | None = None
) -> None:
    """Fill the temporary table ``first_loads`` the feature SQL and ``known_records`` read
    (:func:`register_macros` creates it): per staged dataset (``source_dept``,
    ``source_dataset``), ``loaded_until``, when its first delivery finished loading (the
    ``first_load`` macro: a delivery read a batch at a time carries a stamp per batch, so
    the backfill is told by its delivery, not by its earliest stamp). ``datasets``: (dept,
    dataset) pairs, default every staged table of the lake (all of them in one statement, a
    scan of each); none: only a query that knows by infinity (the labels) runs on it."""
    if datasets is None:
        datasets = [tuple(t.split("__", 1)) for _, t in tables_in(con, STAGED)]
    rows = [
        f"SELECT {sql_literal(dept)}, {sql_literal(ds)}, loaded_until "
        f"FROM first_load({sql_literal(dept)}, {sql_literal(ds)})"
        for dept, ds in sorted(set(datasets))
    ]
    con.execute(f"DELETE FROM {FIRST_LOADS}")  # created empty by the macros
    if rows:
        con.execute(f"INSERT INTO {FIRST_LOADS} {' UNION ALL '.join(rows)}")


def linked_datasets() -> list[tuple[str, str]]:
    """The (dept, dataset) pairs the need model's SQL reads through ``linked_records`` or
    ``known_records`` (``sql/``: each names its datasets, as literals)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(SQL_DIR.glob("*.sql")))
    pattern = r"(?:linked|known)_records\(\s*'([^']+)'\s*,\s*'([^']+)'"
    return sorted(set(re.findall(pattern, text)))


@contextlib.contextmanager
def linked_mentions(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> Iterator[bool]:
    """For a block of feature or label queries: ``linked_records`` (:func:`register_macros`)
    reads a temporary copy of the master index's linked mentions of :func:`linked_datasets`
    when they are few (:func:`curated.golden.mentions_to_read`, ``limit``), the lake's index
    otherwise and for any dataset not copied. Whether the copy is read.

    A feature query reads the index once per person-linked dataset, a DuckLake file-pruning
    query each: at 1,000 residents those were ~180 of a feature query's ~265 ms of CPU, and a
    step's seven cut-offs took 2.0 s against 1.24 s on the copy (2026-12-05). A larger street
    reads the index: at 200,000 residents the copy would be ~400,000 rows, ~40 MB more at the
    need model's peak (:data:`QUERY_MEMORY`)."""
    pairs = linked_datasets()
    with mentions_to_read(con, LINKED, pairs, limit) as relation:
        copied = relation != f"{ZONE}.{MENTIONS}"
        if copied:
            names = ", ".join(sql_literal(f"{d}.{s}") for d, s in pairs)
            con.execute(f"SET VARIABLE {COPIED} = CAST([{names}] AS VARCHAR[])")
        try:
            yield copied
        finally:
            if copied:
                con.execute(f"SET VARIABLE {COPIED} = CAST([] AS VARCHAR[])")


@contextlib.contextmanager
def staged_copies(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> Iterator[bool]:
    """For a block of several feature or label queries: ``linked_records``
    (:func:`register_macros`) reads temporary copies of the staged tables of
    :func:`linked_datasets` when their rows are few (at most ``limit``, default
    :data:`STAGED_COPY_ROWS`: counted from DuckLake's catalogue in one read), the lake's
    tables otherwise; whether the copies are read. The copies are made in one lake
    transaction (one snapshot) and dropped after the block; a dataset without a staged table
    is read from the lake as before (its error the query's). Outside a transaction."""
    limit = STAGED_COPY_ROWS if limit is None else limit
    rows = {table: n for zone, table, n in list_tables(con) if zone == STAGED}
    tables = {f"{d}.{s}": t for d, s in linked_datasets() if (t := dataset_table(d, s)) in rows}
    names = sorted(tables.values())
    if not names or sum(rows[n] for n in names) > limit:
        yield False
        return
    copies = ", ".join(sql_literal(pair) for pair in sorted(tables))
    try:
        with transaction(con):
            for name in names:
                con.execute(
                    f'CREATE OR REPLACE TEMP TABLE "{STAGED_COPY}{name}" AS '
                    f'SELECT * FROM {STAGED}."{name}"'
                )
        con.execute(f"SET VARIABLE {STAGED_COPIED} = CAST([{copies}] AS VARCHAR[])")
        yield True
    finally:
        con.execute(f"SET VARIABLE {STAGED_COPIED} = CAST([] AS VARCHAR[])")
        # named in their catalogue: a bare name is looked up in the lake's first
        con.execute("".join(f'DROP TABLE IF EXISTS temp.main."{STAGED_COPY}{n}";' for n in names))


_PREPARED: dict[int, int] = {}  # id of a connection -> its open known_relations blocks


@contextlib.contextmanager
def known_relations(
    con: duckdb.DuckDBPyConnection,
    datasets: Iterable[tuple[str, str]] | None = None,
    *,
    queries: int = 1,
) -> Iterator[None]:
    """The macros and the ``first_loads`` table (:func:`register_first_loads`, of
    ``datasets``) registered on ``con`` for the block, with the linked mentions the SQL reads
    (:func:`linked_mentions`) and, for a block of several ``queries``, the staged tables it
    reads (:func:`staged_copies`: copying costs a read of each, as one query does), the tables
    dropped after it. A block
    inside another on the same connection uses the outer one's: a step opens one around all
    its cut-offs, so that each staged dataset's first load is computed once, not once per
    cut-off (and, inside the macros, once per ``known_records`` call). The first loads and
    the mentions are those of the block's start: a first delivery landing meanwhile counts
    from the next step on, for all of that step's cut-offs alike."""
    key = id(con)
    if _PREPARED.get(key):
        _PREPARED[key] += 1
        try:
            yield
        finally:
            _PREPARED[key] -= 1
        return
    register_macros(con)
    register_first_loads(con, datasets)
    _PREPARED[key] = 1
    try:
        several = staged_copies(con) if queries > 1 else contextlib.nullcontext(False)
        with linked_mentions(con), several:
            yield
    finally:
        del _PREPARED[key]
        # named in its catalogue: a bare name is looked up in the lake's first, a DuckLake
        # transaction of its own (``lakehouse.lake.registered``)
        con.execute(f"DROP TABLE IF EXISTS temp.main.{FIRST_LOADS}")


def lean_result(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]
) -> pl.DataFrame:
    """The query's result as a frame, what its operators freed (its joins, aggregates and
    sort, all done once DuckDB holds the result) handed back before the result is converted
    (:func:`lakehouse.allocator.purge_freed`): converted at once, the result stood on
    those pages, still resident for their decay, and that was the need model's peak at
    200,000 residents (:data:`QUERY_MEMORY`)."""
    con.execute(sql, params)
    purge_freed()
    return con.pl()


def bounded_query(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]
) -> pl.DataFrame:
    """The query's result, run within :data:`QUERY_MEMORY`; one that does not fit (DuckDB
    cannot spill every operator: at 200,000 residents with a year of history the scoring
    cut-off's query once needed more than the bound and failed, so the step trained
    nothing) is run again within the lake's own limit — the same query, the same rows."""
    limit = current_limit(con)
    try:
        with memory_limit(con, QUERY_MEMORY):
            return lean_result(con, sql, params)
    except duckdb.OutOfMemoryException:
        pass  # run again below, outside the handler (the failed attempt's state let go)
    if current_limit(con) != limit:  # the block's own restore ran out of memory too
        restore_limit(con, limit)
    return lean_result(con, sql, params)


def run_feature_sql(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: dict[str, object],
    schema: dict[str, pl.DataType],
) -> pl.DataFrame:
    """Run a feature query over the ``attributes`` view (:func:`attributes_as_of`), which is
    dropped after it; the result cast to ``schema`` (its columns must be the schema's, in
    order)."""
    try:
        with known_relations(con):
            frame = bounded_query(con, sql, params)
    except duckdb.Error as exc:
        raise MartError(f"the SQL failed: {sql_failure(exc)}", dataset=WHAT) from None
    finally:
        con.execute(f"DROP VIEW IF EXISTS temp.main.{ATTRIBUTES}")
        con.unregister(OPENED)
    # what the query freed (its joins and aggregates, up to QUERY_MEMORY), back to the
    # system now, not over the next seconds while the caller encrypts and writes the rows
    # (at 200,000 residents the two together were the run's peak)
    purge_freed()
    if frame.columns != list(schema):
        raise MartError(
            f"the SQL's columns {frame.columns} are not features.yaml's {list(schema)}",
            dataset=WHAT,
        )
    return frame.cast(schema)  # type: ignore[arg-type]


def features(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    cutoff: dt.date,
    *,
    sql: str | None = None,
    feature_set: FeatureSet | None = None,
) -> pl.DataFrame:
    """The features frame (:mod:`marts.need_model.spec`) as of ``cutoff``: one row per
    resident of the street then, in ``person_id`` order (``KEYS[0]``). ``sql``: another
    feature query (the leakage test's).

    Ordered here, not by the query: DuckDB's sort held every result row beside the joins'
    hash tables, and polars' holds them once DuckDB has let its memory go (a 200,000-resident
    step alone peaked 804-823 MB with the query's sort and its window over the result's
    columns, 744 MB without them, 2026-12-06)."""
    fs = feature_set or load_feature_set()
    attributes_as_of(con, protection, cutoff, fs.decrypt)
    params = {"cutoff": cutoff, "known_by": known_by(cutoff)}
    return run_feature_sql(con, sql or read_feature_sql(), params, fs.schema).sort(KEYS[0])


def features_for(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    cutoffs: Iterable[dt.date],
    *,
    sql: str | None = None,
) -> pl.DataFrame:
    """The features of several cut-offs, one frame (keys ``person_id``, ``cutoff``)."""
    fs = load_feature_set()
    frames = [features(con, protection, c, sql=sql, feature_set=fs) for c in sorted(set(cutoffs))]
    if not frames:
        return pl.DataFrame(schema=fs.schema)
    if len(frames) == 1:  # in key order already (one cut-off, in person_id order)
        return frames[0]
    return pl.concat(frames).sort(list(KEYS))


def monthly_cutoffs(last: dt.date, months: int) -> list[dt.date]:
    """``months`` cut-offs a month apart ending on ``last`` (the same day of each month,
    the month's last day where it has fewer), oldest first."""
    out = []
    for k in range(months - 1, -1, -1):
        year, month = divmod(last.year * 12 + last.month - 1 - k, 12)
        month += 1
        following = dt.date(year + month // 12, month % 12 + 1, 1)
        out.append(min(last.replace(year=year, month=month, day=1) + dt.timedelta(days=last.day - 1),
                       following - dt.timedelta(days=1)))  # fmt: skip
    return out


__all__ = [
    "Feature",
    "FeatureSet",
    "features",
    "features_for",
    "known_by",
    "known_relations",
    "linked_datasets",
    "linked_mentions",
    "load_feature_set",
    "monthly_cutoffs",
    "register_first_loads",
    "register_macros",
    "run_feature_sql",
]
