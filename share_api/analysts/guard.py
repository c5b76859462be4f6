"""What an analyst's SQL may be (查询守卫): one read-only SELECT over the analyst database's
own tables, judged by sqlglot before DuckDB sees it — every refusal with its reason.

:func:`check` parses the text (DuckDB dialect) and lets through exactly one query — a
SELECT, with CTEs, set operations and subqueries, or DuckDB's ``PIVOT`` — that:

- holds no statement of another kind anywhere (DDL, DML, ``PRAGMA``, ``SET``/``RESET``,
  ``ATTACH``/``DETACH``, ``COPY``, ``INSTALL``/``LOAD``, ``EXPORT``/``IMPORT``, ``CALL``,
  ``USE``, ``DESCRIBE``…; sqlglot reads what it does not know as a bare command: refused);
- reads only tables the database holds (``Allowed.tables``; ``main.`` may qualify them)
  or CTEs named on the way up — never a schema or catalogue of another name (``staged.``,
  ``raw.``, an attached lake), a file path (DuckDB's replacement scans read a table named
  ``'x.parquet'`` as a file), a table function in ``FROM`` (``read_parquet``, ``glob``,
  ``range``, ``query``, ``UNNEST``…);
- calls only DuckDB's own scalar, aggregate and macro functions (``Allowed.functions``;
  a table function such as ``read_text`` used as a scalar is unknown there) and none of
  :data:`DENIED_FUNCTIONS` (settings, variables, SQL (de)serialisation);
- has no parameter placeholder (nothing is bound).

Comments are dropped and names compared case-blind, so neither hides anything; a text
that does not parse is refused, never passed on. What runs is :attr:`Checked.sql`, the
query as sqlglot read it, written back out — so DuckDB runs exactly what was judged, not
a text two parsers might read two ways. A refusal's reason names what it refused; its
audited form (:attr:`QueryRefused.audited`) writes ``…`` for a name only the analyst
knows. This is the first wall; the second is the
database itself (:func:`share_api.analysts.lock.open_locked`), which refuses files,
``ATTACH``, ``COPY`` and ``SET`` whatever gets past this one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from lakehouse.lake import ZONES

DIALECT = "duckdb"
MAX_SQL_CHARS = 20_000  # longer texts are refused before parsing

# scalar functions DuckDB has that read settings or state, or handle SQL as data
DENIED_FUNCTIONS = frozenset(
    {
        "current_setting",
        "getvariable",
        "json_serialize_sql",
        "json_deserialize_sql",
        "json_serialize_plan",
        "json_execute_serialized_sql",
    }
)
# name patterns refused whatever DuckDB calls them: file readers and the database's meta
DENIED_PATTERN = re.compile(r"^(read_|glob|sniff_|parquet_|duckdb_|pragma_)|_scan$")
# schemas and catalogues said as is in an audited reason (others are the analyst's words)
SCHEMA_WORDS = frozenset({*ZONES, "main", "information_schema", "pg_catalog", "system", "temp"})
# statements refused wherever they stand (the root must be a query anyway)
STATEMENTS: tuple[type[exp.Expression], ...] = (
    exp.DDL,
    exp.DML,
    exp.Command,
    exp.Set,
    exp.Pragma,
    exp.Attach,
    exp.Detach,
    exp.Install,
    exp.Export,
    exp.Use,
    exp.Describe,
    exp.Summarize,
    exp.Show,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Analyze,
    exp.Into,
)
KINDS = {exp.TruncateTable: "TRUNCATE", exp.Transaction: "BEGIN TRANSACTION"}
FILE_READERS: tuple[type[exp.Expression], ...] = (exp.ReadCSV, exp.ReadParquet)

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its warnings quote the query text


class QueryRefused(Exception):
    """The query may not run; ``reason`` says why, naming the statement, function, table or
    file refused. ``audited`` is the reason for the audit log: a name the analyst typed
    that neither DuckDB nor the database knows is written ``…`` there (an identifier or a
    path may hold anything, a value included)."""

    def __init__(self, reason: str, audited: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.audited = audited or reason


@dataclass(frozen=True)
class Allowed:
    """What a query may name: the database's tables and DuckDB's usable functions (lower
    case); ``known``: every function name DuckDB has (said as is in the audit log)."""

    tables: frozenset[str]
    functions: frozenset[str]
    known: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Checked:
    """A query that passed: the SQL to run (sqlglot's writing of it, no comments) and the
    tables it reads."""

    sql: str
    tables: tuple[str, ...]


def allowed_in(con: duckdb.DuckDBPyConnection) -> Allowed:
    """What a query on ``con`` may name: its database's tables and DuckDB's functions."""
    return Allowed(database_tables(con), usable_functions(con), function_names(con))


def database_tables(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The tables of ``con``'s own database (not temporary ones), lower case."""
    rows = con.execute(
        "SELECT lower(table_name) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT temporary"
    ).fetchall()
    return frozenset(name for (name,) in rows)


def function_names(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Every function name DuckDB has on ``con`` (any kind), lower case."""
    rows = con.execute("SELECT DISTINCT lower(function_name) FROM duckdb_functions()").fetchall()
    return frozenset(name for (name,) in rows)


def usable_functions(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """DuckDB's scalar, aggregate and macro functions on ``con`` but the denied ones (the
    same for every database of one DuckDB version: a worker asks once)."""
    rows = con.execute(
        "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
        "WHERE function_type IN ('scalar', 'aggregate', 'macro')"
    ).fetchall()
    names = {name for (name,) in rows}
    return frozenset(n for n in names if n not in DENIED_FUNCTIONS and not DENIED_PATTERN.search(n))


def check(sql: str, allowed: Allowed) -> Checked:
    """``sql`` judged against ``allowed``: the query to run, or :class:`QueryRefused`."""
    if not sql.strip():
        raise QueryRefused("the query is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"the query is longer than {MAX_SQL_CHARS} characters")
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except (SqlglotError, RecursionError) as exc:
        raise QueryRefused(f"the query could not be parsed ({type(exc).__name__})") from None
    if not statements:
        raise QueryRefused("the query holds no statement")
    if len(statements) > 1:
        raise QueryRefused(
            f"the text holds {len(statements)} statements: only a single SELECT may run"
        )
    root = statements[0]
    if not isinstance(root, exp.Query | exp.Pivot):  # DuckDB's PIVOT statement reads too
        if isinstance(root, STATEMENTS):
            raise QueryRefused(f"{_kind(root)} is refused: only a read-only SELECT may run here")
        raise QueryRefused("the text is not a SELECT: only a read-only SELECT may run here")
    tables = []
    for node in root.walk():
        _check_node(node, allowed)
        named = isinstance(node, exp.Table) and _is_named(node)
        if named and node.name.lower() not in _ctes_above(node):
            tables.append(node.name.lower())
    try:
        text = root.sql(dialect=DIALECT, comments=False)
    except (SqlglotError, RecursionError) as exc:
        raise QueryRefused(f"the query could not be written back ({type(exc).__name__})") from None
    return Checked(text, tuple(dict.fromkeys(tables)))


def _check_node(node: exp.Expression, allowed: Allowed) -> None:
    if isinstance(node, STATEMENTS):
        raise QueryRefused(f"{_kind(node)} is refused: only a read-only SELECT may run here")
    if isinstance(node, exp.Placeholder | exp.Parameter):
        raise QueryRefused("parameters are refused: nothing is bound to them")
    if isinstance(node, FILE_READERS):
        raise _refused("the table function {f} is refused: it reads files", allowed,
                       f=_function_name(node))  # fmt: skip
    if isinstance(node, exp.Table):
        _check_table(node, allowed)
    elif isinstance(node, exp.Unnest) and isinstance(node.parent, exp.From | exp.Join):
        raise QueryRefused("the table function UNNEST is refused in FROM: read the tables")
    elif isinstance(node, exp.Anonymous):
        _check_function(node.name, allowed)
    elif isinstance(node, exp.Func):
        name = _function_name(node)
        if name in DENIED_FUNCTIONS or DENIED_PATTERN.search(name):
            raise _refused("the function {f} is refused", allowed, f=name)


def _check_table(table: exp.Table, allowed: Allowed) -> None:
    if not _is_named(table):
        name = _function_name(table.this) if isinstance(table.this, exp.Func) else "?"
        raise _refused("the table function {f} is refused: read the database's tables",
                       allowed, f=name)  # fmt: skip
    name = table.name.lower()
    where = ".".join(p for p in (table.catalog, table.db) if p).lower()
    if where and where != "main":
        raise _refused("{w}.{t} is refused: only this database's own tables (schema main) "
                       "may be read", allowed, w=where, t=name)  # fmt: skip
    if not where and name in _ctes_above(table):
        return
    shown = "main.{t}" if where else "{t}"
    if re.search(r"[./\\:]", name):
        raise _refused(shown + " names a file: files are refused, read the tables", allowed,
                       t=name)  # fmt: skip
    if name not in allowed.tables:
        raise _refused("the table " + shown + " is not in this analyst database", allowed,
                       t=name)  # fmt: skip


def _check_function(name: str, allowed: Allowed) -> None:
    lowered = name.lower()
    if lowered in DENIED_FUNCTIONS or DENIED_PATTERN.search(lowered):
        raise _refused("the function {f} is refused", allowed, f=lowered)
    if lowered not in allowed.functions:
        raise _refused("the function {f} is refused: only DuckDB's scalar and aggregate "
                       "functions may be called (no table functions, no extensions)",
                       allowed, f=lowered)  # fmt: skip


def _refused(template: str, allowed: Allowed, **names: str) -> QueryRefused:
    """A refusal whose reason names ``names`` (``template`` with them filled in); in its
    audited form a name neither DuckDB nor the database knows is ``…``."""
    known = allowed.tables | allowed.known | DENIED_FUNCTIONS | SCHEMA_WORDS
    logged = {k: v if v in known else "…" for k, v in names.items()}
    return QueryRefused(template.format(**names), template.format(**logged))


def _is_named(table: exp.Table) -> bool:
    return isinstance(table.this, exp.Identifier)


def _ctes_above(node: exp.Expression) -> set[str]:
    """Names of the CTEs in scope at ``node``: those of every WITH on its way up."""
    names: set[str] = set()
    parent = node.parent
    while parent is not None:
        with_ = parent.args.get("with_") or parent.args.get("with")
        if isinstance(with_, exp.With):
            names.update(cte.alias_or_name.lower() for cte in with_.expressions)
        parent = parent.parent
    return names


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    written = node.sql(dialect=DIALECT)
    return written.split("(", 1)[0].strip().lower() or node.key


def _kind(node: exp.Expression) -> str:
    """A statement's kind as SQL names it (``PRAGMA``, ``ATTACH``, ``CALL``…)."""
    if isinstance(node, exp.Command):
        words = str(node.this).split()
        return words[0].upper() if words else "a command"
    if isinstance(node, exp.Into):
        return "SELECT … INTO"
    return KINDS.get(type(node), type(node).__name__.upper())


__all__ = [
    "Allowed",
    "Checked",
    "QueryRefused",
    "allowed_in",
    "check",
    "database_tables",
    "function_names",
    "usable_functions",
]
