"""Build a mart (构建数据集市): its SQL over the curated zone, masked, checked, published.

``build_mart`` for one mart:

1. parses ``marts/sql/<mart>.sql`` (one query) and resolves its column lineage
   (:mod:`marts.lineage`); the output columns must be the YAML's, in its order;
2. refuses (:class:`MartMaskingError`, naming the mart, the column and the source field,
   never a value) a column with an L3/L4 source whose rule the value does not pass through
   — the same rule or a stricter one (:func:`masking.sql.satisfies`); where a column combines
   sources, each one's rule must hold, so the strictest decides, and the YAML's ``masking``
   must be at least that strict; the mart's ``level`` must be at least the strictest source
   the SQL reads (filters and joins included);
3. decrypts only the encrypted curated columns the SQL itself reads (audited, purpose
   ``mart_build``; not those behind a mart it reads) in temporary tables of the build
   connection, a column at a time, which the query reads in place of the curated tables
   (the plain text stays in DuckDB, within the lake's memory limit; what does not fit
   spills encrypted); a curated table the YAML's ``sources`` narrows is read as a temporary view of
   only those datasets' rows (decrypted, only those rows are opened); the mask functions
   (:mod:`masking.sql`) are registered on the connection, and the settings the SQL
   reads (``getvariable``: :func:`set_parameters`) set on it;
4. runs the query into a temporary table (the rows stay in DuckDB until published), checks
   the result's types against the YAML, enforces k-anonymity (:func:`masking.kanon.enforce_k`
   over the quasi-identifiers: further generalisation, then suppression of at most 5 % of
   the rows, else refused) when the YAML names quasi-identifiers;
5. replaces ``marts.<mart>`` in one lake transaction; the temporary tables are dropped
   whatever happens.

``build_marts`` builds several in dependency order (a mart that reads ``marts.<other>``
after the other), the order from the parsed SQL.

**History** (历史). A mart whose YAML says ``history_of: <mart>`` (the governance and quality
scorecards') is built right after each build of that mart: its SQL reads the mart's rows
with ``getvariable('run_date')``, the day of the run (Beijing), as its first column
``run_date``; publishing keeps the other days' rows and replaces that day's, so a re-run the
same day never duplicates a row and the figures have a trend.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import duckdb
import polars as pl
import pyarrow as pa
from sqlglot import exp

from catalog.days import beijing_day
from catalog.marts import HISTORY_COLUMN, Mart, load_marts
from catalog.model import Catalogue, FieldType
from catalog.settings import Settings, get_settings
from curated.lineage import CuratedColumn
from lakehouse.lake import has_table, registered, replace_table, transaction
from marts.checks import (
    MartMaskingError,
    build_order,
    check_columns,
    check_level,
    check_masking,
    check_resolved,
    check_sources,
)
from marts.lineage import (
    CURATED,
    DIALECT,
    MARTS,
    Lineage,
    MartError,
    SourceField,
    analyse_mart,
    mart_dependencies,
    output_columns,
    parsed_query,
    read_sql,
)
from marts.resolve import func_name
from marts.sources import ROW_SOURCE_COLUMNS
from masking.audit import AuditLog
from masking.crypto import decrypt_series
from masking.errors import KAnonymityError
from masking.kanon import EnforceReport, enforce_k
from masking.keys import KeyRing
from masking.sql import SQL_MASKS, register_masks

PURPOSE = "mart_build"
TEMP_PREFIX = "_mart_src_"
_OUT = "_out"  # a build's result, a temporary table while it is checked and published
_ROW = "_mart_row"  # a decrypted temporary table's row (its rowid) while a column is opened
MAX_SUPPRESSION = 0.05  # k-anonymity: share of rows a build may drop
# DuckDB result types each catalogue type accepts
TYPES: dict[FieldType, tuple[str, ...]] = {
    FieldType.string: ("VARCHAR",),
    FieldType.text: ("VARCHAR",),
    FieldType.integer: ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                        "USMALLINT", "UINTEGER", "UBIGINT"),
    FieldType.decimal: ("FLOAT", "DOUBLE", "DECIMAL"),
    FieldType.boolean: ("BOOLEAN",),
    FieldType.date: ("DATE",),
    FieldType.datetime: ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS"),
}  # fmt: skip


class Revealer(Protocol):
    """What a build needs of the caller's protection (``pipelines.protection.Protection``)."""

    keyring: KeyRing
    audit: AuditLog
    actor: str


@dataclass
class MartBuild:
    """What a build published."""

    name: str
    rows: int
    columns: list[str]
    lineage: Lineage
    seconds: float
    decrypted: list[str] = field(default_factory=list)  # curated columns read in plain text
    kanon: EnforceReport | None = None
    # the rows, when the caller asked not to publish them (``publish=False``: a what-if, the
    # elderly alert as of a past date for its backtest)
    result: pa.Table | None = None


def _check_types(mart: Mart, relation: duckdb.DuckDBPyRelation) -> None:
    for name, dtype in zip(relation.columns, relation.types, strict=True):
        want = mart.column(name).type
        got = str(dtype)
        if not any(got == t or got.startswith(t + "(") for t in TYPES[want]):
            raise MartError(
                f"column {name!r} is {got} in the result; the YAML says {want.value}",
                dataset=mart.name,
                field=name,
            )


def _rows_kept(mart: Mart, table: str) -> str:
    """The SQL condition keeping the rows of ``curated.<table>`` the mart's ``sources`` name
    (TRUE where it names none)."""
    kept = mart.source_datasets(table)
    if kept is None:
        return "TRUE"
    dept, dataset = ROW_SOURCE_COLUMNS
    return " OR ".join(
        f"({dept} = {exp.Literal.string(d).sql()} AND {dataset} = {exp.Literal.string(s).sql()})"
        for d, s in sorted(kept)
    )


def _narrow_sources(
    con: duckdb.DuckDBPyConnection, mart: Mart, temps: dict[str, str], views: dict[str, str]
) -> None:
    """A temporary view of only the named datasets' rows for each curated table the YAML's
    ``sources`` narrows and no decrypted table stands for already; ``views`` gets curated table
    → view name as each is created (the caller drops them whatever happens)."""
    for ref in sorted(mart.sources):
        table = ref.partition(".")[2]
        if table in temps:
            continue
        views[table] = TEMP_PREFIX + table
        con.execute(
            f'CREATE OR REPLACE TEMP VIEW "{views[table]}" AS '
            f'SELECT * FROM {CURATED}."{table}" WHERE {_rows_kept(mart, table)}'
        )


def _decrypt_sources(
    con: duckdb.DuckDBPyConnection,
    mart: Mart,
    reads: list[SourceField],
    protection: Revealer,
    temps: dict[str, str],
) -> list[str]:
    """The curated tables whose encrypted columns the SQL reads — only the rows of the
    datasets the YAML's ``sources`` keeps, only the columns it reads — copied into temporary
    tables of the connection, then those columns decrypted (audited) one at a time in place.
    The plain text stays inside DuckDB, within the lake's memory limit (what does not fit
    spills encrypted: ``lakehouse.extensions.spill_encrypted``); Python holds one column's
    ciphertexts and plain text at a time, not the whole table. ``temps`` gets curated table
    → temporary table as each is created (the caller drops them whatever happens). The
    columns opened."""
    reads = read_directly(reads)
    wanted: dict[str, dict[str, CuratedColumn]] = {}
    for s in reads:
        c = s.curated
        if c is not None and c.encrypted:
            wanted.setdefault(c.table, {})[c.column] = c
    opened: list[str] = []
    for table, columns in sorted(wanted.items()):
        temps[table] = TEMP_PREFIX + table
        con.execute(
            f'CREATE OR REPLACE TEMP TABLE "{temps[table]}" AS '
            f"SELECT {columns_read(reads, table, columns.values())} "
            f'FROM {CURATED}."{table}" WHERE {_rows_kept(mart, table)}'
        )
        for column, c in sorted(columns.items()):
            _decrypt_in_place(con, temps[table], column, c, protection)
            opened.append(c.ref)
    return opened


def _decrypt_in_place(
    con: duckdb.DuckDBPyConnection,
    temp: str,
    column: str,
    c: CuratedColumn,
    protection: Revealer,
) -> None:
    """The ciphertexts of ``temp.<column>`` replaced by their plain text (one audit record
    for the column: its values, as ``decrypt_series`` counts them), row by row id."""
    cipher = con.execute(
        f'SELECT rowid AS "{_ROW}", "{c.row_id}", "{column}" FROM temp.main."{temp}" '
        f'WHERE "{column}" IS NOT NULL'
    ).pl()
    plain = decrypt_series(
        cipher[column],
        protection.keyring,
        column=c.cipher_column,
        purpose=PURPOSE,
        actor=protection.actor,
        audit=protection.audit,
        rows=cipher[c.row_id],
    )
    opened = cipher.select(_ROW).with_columns(plain).to_arrow()
    del cipher, plain
    view = f"{temp}_{_ROW}"
    with registered(con, view, opened):
        con.execute(
            f'UPDATE temp.main."{temp}" AS t SET "{column}" = p."{column}" '
            f'FROM "{view}" AS p WHERE t.rowid = p."{_ROW}"'
        )


def read_directly(reads: list[SourceField]) -> list[SourceField]:
    """The references of ``reads`` the query makes to curated tables itself, not through a
    mart it reads (``via``): that mart published its columns masked already, so nothing of
    the curated column behind them is decrypted for this build (``elderly_care`` reads seven
    of a person's encrypted attributes as ``resident_profile``'s flags and decrypts only the
    health check it reads from ``curated.person``; ``elderly_alert``, reading no curated
    person, none)."""
    return [s for s in reads if s.via is None]


def columns_read(reads: list[SourceField], table: str, decrypted: Iterable[CuratedColumn]) -> str:
    """SQL: the columns of ``curated.<table>`` a decrypted temporary table needs — every
    one the query reads (its references, stars expanded when it was qualified) and the row
    id each decrypted column's ciphertext is bound to — not the whole table (a person's
    sixty columns, at 200,000 residents)."""
    needed = {s.curated.column for s in reads if s.curated is not None and s.curated.table == table}
    needed |= {c.row_id for c in decrypted if c.row_id is not None}
    return ", ".join(f'"{c}"' for c in sorted(needed))


def _runnable(sql: str, temps: dict[str, str]) -> str:
    """The mart's SQL reading the decrypted temporary tables in place of curated ones."""
    tree = parsed_query(sql)  # shared: transform makes the copy

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.db == CURATED and node.name in temps:
            alias = node.alias or node.name
            return exp.Table(
                this=exp.to_identifier(temps[node.name]),
                db=exp.to_identifier("main"),
                catalog=exp.to_identifier("temp"),
                alias=exp.TableAlias(this=exp.to_identifier(alias)),
            )
        return node

    return tree.transform(swap).sql(dialect=DIALECT)


def calls_masks(tree: exp.Expression) -> bool:
    """Whether the query calls a SQL mask function (:data:`masking.sql.SQL_MASKS`): only
    then must the build register them on its connection."""
    return any(func_name(f) in SQL_MASKS for f in tree.find_all(exp.Func))


def set_parameters(con: duckdb.DuckDBPyConnection, settings: Settings | None = None) -> None:
    """The settings mart SQL reads as ``getvariable('<name>')`` (``Settings.mart_parameters``:
    the elderly alert's window and threshold) set on the connection (numbers, validated by
    the settings object)."""
    for name, value in (settings or get_settings()).mart_parameters.items():
        con.execute(f"SET VARIABLE {name} = {float(value)!r}")


# errors whose message names the query's parts (tables, columns, functions), never a value
_NAMING_ERRORS = (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException)


def sql_failure(exc: duckdb.Error) -> str:
    """What a failed query may say: a binder, catalogue or parser error's first line (names
    only); any other error only its kind (a conversion error would quote the value)."""
    if isinstance(exc, _NAMING_ERRORS):
        return str(exc).splitlines()[0][:300]
    return f"{type(exc).__name__} (message withheld: it may quote a value)"


def _drop_temps(
    con: duckdb.DuckDBPyConnection, temps: dict[str, str], views: dict[str, str]
) -> None:
    for temp in temps.values():
        con.execute(f'DROP TABLE IF EXISTS temp.main."{temp}"')
    temps.clear()
    for view in views.values():
        con.execute(f'DROP VIEW IF EXISTS temp.main."{view}"')
    views.clear()


def build_mart(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    marts: dict[str, Mart],
    name: str,
    protection: Revealer,
    *,
    inputs: Mapping[str, pa.Table | pl.DataFrame] | None = None,
    sql_dir: Path | None = None,
    publish: bool = True,
    run_date: dt.date | None = None,
    staged: Collection[str] = (),
) -> MartBuild:
    """Build and publish ``marts.<name>`` (see the module docstring); ``inputs``: frames
    registered on the connection under those names for the SQL to read (a metrics mart's
    computed rows); ``publish=False``: every check and the query, the rows returned in
    :attr:`MartBuild.result` instead of written. Published, the marts keeping its history
    are built after it, under ``run_date`` (default: today in Beijing). ``staged``:
    temporary tables of the connection the SQL reads (a frame mart's rows handed over a part
    at a time: :func:`marts.publish.publish_parts`), dropped as soon as the result is made
    — not held beside it while it is checked and written."""
    started = time.perf_counter()
    mart = marts.get(name)
    if mart is None:
        raise MartError("no catalogue entry (catalog/marts/<mart>.yaml) for this mart",
                        dataset=name)  # fmt: skip
    analysis = analyse_mart(catalogue, marts, name, sql_dir=sql_dir)
    tree, lineage, reads = analysis.tree, analysis.lineage, analysis.reads
    check_resolved(mart, analysis)
    check_sources(catalogue, mart, analysis.tables)
    check_columns(mart, output_columns(tree))
    check_masking(mart, lineage)
    check_level(mart, reads)
    if calls_masks(tree):  # registering them costs ~0.2 s a connection
        register_masks(con)
    set_parameters(con)
    run_date = run_date or run_day()
    con.execute(f"SET VARIABLE {HISTORY_COLUMN} = DATE '{run_date.isoformat()}'")
    registered = []
    temps: dict[str, str] = {}
    views: dict[str, str] = {}
    out = f"{TEMP_PREFIX}{name}{_OUT}"
    try:
        for input_name, frame in (inputs or {}).items():
            con.register(input_name, frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame)
            registered.append(input_name)
        opened = _decrypt_sources(con, mart, reads, protection, temps)
        _narrow_sources(con, mart, temps, views)
        try:
            runnable = _runnable(read_sql(name, sql_dir), {**views, **temps})
            relation = con.sql(runnable)
            check_columns(mart, list(relation.columns))
            _check_types(mart, relation)
            # the rows stay in DuckDB (within the lake's memory limit) until published
            con.execute(f'CREATE OR REPLACE TEMP TABLE "{out}" AS {runnable}')
        except duckdb.Error as exc:
            raise MartError(f"the SQL failed: {sql_failure(exc)}", dataset=name) from None
        _drop_temps(con, temps, views)  # the plain text is not needed any more
        for table in staged:  # nor the rows the result was made from
            con.execute(f'DROP TABLE IF EXISTS temp.main."{table}"')
        report = None
        if mart.k_anonymity is not None:
            report = _k_anonymous(con, mart, out)
        rows, columns = _shape(con, out)
        result = None
        if not publish:
            result = con.execute(f'SELECT * FROM temp.main."{out}"').to_arrow_table()
        elif mart.history_of is None:
            _publish(con, name, out)
        else:
            _publish_history(con, name, out, columns)
    finally:
        _drop_temps(con, temps, views)
        for table in (out, f"{out}_k"):  # the result, and its k-anonymous rows (_k_anonymous)
            con.execute(f'DROP TABLE IF EXISTS temp.main."{table}"')
        for input_name in registered:
            con.unregister(input_name)
    if publish:
        for history in histories_of(marts, name):
            build_mart(con, catalogue, marts, history, protection, run_date=run_date)
    return MartBuild(
        name=name,
        rows=rows,
        columns=columns,
        lineage=lineage,
        seconds=time.perf_counter() - started,
        decrypted=opened,
        kanon=report,
        result=result,
    )


def _shape(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, list[str]]:
    """The rows and column names of the temporary table ``table``."""
    relation = con.table(f'temp.main."{table}"')
    return relation.aggregate("count(*)").fetchone()[0], list(relation.columns)


def _k_anonymous(con: duckdb.DuckDBPyConnection, mart: Mart, out: str) -> EnforceReport:
    """The result in the temporary table ``out`` made k-anonymous over the mart's
    quasi-identifiers (``enforce_k`` over those columns only, with each row's rowid: the
    rest of the row stays in DuckDB), replaced by its rows joined to what ``enforce_k`` kept
    (generalised values in place of the old, suppressed rows gone, in the result's order).
    A quasi-identifier generalised to text must be a text column of the YAML."""
    qis = ", ".join(f'"{q}"' for q in mart.quasi_identifiers)
    frame = con.execute(f'SELECT rowid AS "{_ROW}", {qis} FROM temp.main."{out}"').pl()
    try:
        kept, report = enforce_k(
            frame, mart.quasi_identifiers, mart.k_anonymity, max_suppression=MAX_SUPPRESSION
        )
    except KAnonymityError as exc:
        raise MartError(f"k-anonymity: {exc.message}", dataset=mart.name) from None
    for q in mart.quasi_identifiers:
        text = mart.column(q).type in (FieldType.string, FieldType.text)
        if kept[q].dtype != frame[q].dtype and not text:
            raise MartError(
                f"k-anonymity generalised {q!r} to text ({'; '.join(report.steps)}); the YAML "
                f"says {mart.column(q).type.value}: generalise it in the SQL or declare it string",
                dataset=mart.name,
                field=q,
            )
    if not report.steps:
        return report
    view = f"{out}{_ROW}"
    with registered(con, view, kept.to_arrow()):
        del frame, kept
        replaced = ", ".join(f'k."{q}" AS "{q}"' for q in mart.quasi_identifiers)
        con.execute(
            f'CREATE OR REPLACE TEMP TABLE "{out}_k" AS SELECT o.* REPLACE ({replaced}) '
            f'FROM temp.main."{out}" AS o JOIN "{view}" AS k ON o.rowid = k."{_ROW}" '
            f"ORDER BY o.rowid"
        )
    con.execute(f'DROP TABLE temp.main."{out}"')
    con.execute(f'ALTER TABLE temp.main."{out}_k" RENAME TO "{out}"')
    return report


def _publish(con: duckdb.DuckDBPyConnection, name: str, out: str) -> None:
    """Replace ``marts.<name>``'s rows with the temporary table ``out`` in one transaction
    (in place when its columns are the same: :func:`lakehouse.lake.replace_table`; its
    history stays in time travel)."""
    with transaction(con):
        replace_table(con, MARTS, name, f'temp.main."{out}"')


def run_day(now: dt.datetime | None = None) -> dt.date:
    """The street's day (Beijing) of ``now`` (default: the present instant): a history
    mart's ``run_date``, the day the marts' ``getvariable('run_date')`` reads."""
    return beijing_day(now)


def histories_of(marts: Mapping[str, Mart], name: str) -> list[str]:
    """The marts keeping ``name``'s history (``history_of``)."""
    return sorted(n for n, m in marts.items() if m.history_of == name)


def _publish_history(
    con: duckdb.DuckDBPyConnection, name: str, out: str, columns: list[str]
) -> None:
    """``marts.<name>`` as it was without the days the temporary table ``out`` holds, plus
    ``out``, in one transaction: a day's rows replaced, the other days' kept (by column name:
    a column the YAML added is empty on older days, one it dropped is gone)."""
    if not has_table(con, MARTS, name):
        _publish(con, name, out)
        return
    old = f"_mart_kept_{name}"
    new = f'temp.main."{out}"'
    selected = ", ".join(f'"{c}"' for c in columns)
    kept = con.execute(
        f'SELECT * FROM {MARTS}."{name}" '
        f'WHERE "{HISTORY_COLUMN}" NOT IN (SELECT "{HISTORY_COLUMN}" FROM {new})'
    ).to_arrow_table()
    with registered(con, old, kept):  # one transaction: the replace commits at its end
        replace_table(
            con,
            MARTS,
            name,
            f"(SELECT {selected} FROM (SELECT * FROM {new} UNION ALL BY NAME "
            f'SELECT * FROM "{old}"))',
            order_by=f'"{HISTORY_COLUMN}"',
        )


def build_marts(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    names: list[str] | None = None,
    *,
    marts: dict[str, Mart] | None = None,
    sql_dir: Path | None = None,
) -> dict[str, MartBuild]:
    """Build ``names`` (default: every catalogued mart) and what they read, in dependency
    order; mart → its build."""
    marts = load_marts() if marts is None else marts
    return {
        n: build_mart(con, catalogue, marts, n, protection, sql_dir=sql_dir)
        for n in build_order(marts, names, sql_dir=sql_dir)
    }


__all__ = [
    "PURPOSE",
    "MartBuild",
    "MartError",
    "MartMaskingError",
    "build_mart",
    "build_marts",
    "build_order",
    "check_columns",
    "check_level",
    "check_masking",
    "check_sources",
    "histories_of",
    "mart_dependencies",
    "run_day",
]
