"""Column lineage of a mart (列级血缘), parsed from its SQL with sqlglot.

For each output column of ``marts/sql/<mart>.sql``: the curated (or mart) columns it is
computed from, each with the department fields behind it (``curated.lineage``: dept,
dataset, field and the raw source header) and the masking rule the value passes through on
the way out — the strictest SQL mask function (``masking.sql``) between the source column
and the output, a ``count`` (which publishes no value), or the protection the curated zone
applied already (pseudonyms).

How a column is followed: the query is qualified against the curated tables' schema (stars
expanded, every column given its table); then each output expression's column references
are resolved through CTEs, derived tables, unions, ``UNNEST`` and scalar subqueries down to a
table of the lake. An expression with no column at all (``count(*)``, a literal) stands for
the rows it counts: the id column of each table its query reads. A curated table the mart's
YAML ``sources`` narrows (``curated.event: [dept.dataset, …]``) contributes only those
datasets' fields — the build shows the SQL only their rows; the SQL never names a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify

from catalog.marts import Mart
from catalog.model import Catalogue
from curated.lineage import curated_schema
from marts.resolve import Context, Resolver, leftmost
from marts.sources import CURATED, DIALECT, MARTS, SQL_DIR, Lineage, MartError, SourceField


def sql_path(name: str, sql_dir: Path | None = None) -> Path:
    return Path(sql_dir or SQL_DIR) / f"{name}.sql"


def read_sql(name: str, sql_dir: Path | None = None) -> str:
    path = sql_path(name, sql_dir)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MartError(f"cannot read the mart's SQL: {exc.strerror}", dataset=name) from None


def lake_schema(catalogue: Catalogue, marts: dict[str, Mart]) -> dict[str, dict[str, dict]]:
    """zone → table → column → type: the curated entity tables and every catalogued mart
    (other tables, such as the catalogue's own, are read as their queries qualify them)."""
    sql_types = {"string": "VARCHAR", "text": "VARCHAR", "integer": "BIGINT", "decimal": "DOUBLE",
                 "boolean": "BOOLEAN", "date": "DATE", "datetime": "TIMESTAMP"}  # fmt: skip
    out: dict[str, dict[str, dict]] = {CURATED: dict(curated_schema(catalogue))}
    out[MARTS] = {
        m.name: {c.name: sql_types[c.type.value] for c in m.columns} for m in marts.values()
    }
    return out


def parse_mart(sql: str, name: str, schema: dict) -> exp.Query:
    """The mart's one query, qualified (every column with its table, stars expanded)."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except SqlglotError as exc:
        raise MartError(f"the SQL does not parse: {_first_line(exc)}", dataset=name) from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise MartError("the SQL must be exactly one SELECT (CTEs welcome)", dataset=name)
    try:
        tree = qualify(
            statements[0],
            schema=schema,
            dialect=DIALECT,
            validate_qualify_columns=False,
            identify=False,
        )
    except SqlglotError as exc:
        raise MartError(f"the SQL cannot be qualified: {_first_line(exc)}", dataset=name) from None
    return tree


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def output_columns(tree: exp.Query) -> list[str]:
    """The query's output column names, in order."""
    return list(leftmost(tree).named_selects)


def _lineage(
    catalogue: Catalogue,
    marts: dict[str, Mart],
    name: str,
    seen: tuple[str, ...] = (),
    sql_dir: Path | None = None,
) -> Lineage:
    if name in seen:
        raise MartError(
            f"marts read each other in a cycle: {' → '.join((*seen, name))}", dataset=name
        )
    tree = parse_mart(read_sql(name, sql_dir), name, lake_schema(catalogue, marts))
    return Resolver(_context(catalogue, marts, name, (*seen, name), sql_dir), tree).outputs(tree)


def _context(
    catalogue: Catalogue,
    marts: dict[str, Mart],
    name: str,
    seen: tuple[str, ...],
    sql_dir: Path | None,
) -> Context:
    def lineage_of(other: str, on_the_way: tuple[str, ...]) -> Lineage:
        if not _reaches(marts, other, set(on_the_way), sql_dir):
            # no mart on the way is read from there: its lineage is what it is on its own
            return _kept(catalogue, marts, other, sql_dir).lineage
        return _lineage(catalogue, marts, other, on_the_way, sql_dir)

    return Context(catalogue, marts, name, seen, lineage_of)


def _reaches(marts: dict[str, Mart], start: str, targets: set[str], sql_dir: Path | None) -> bool:
    """Whether ``start`` reads (directly or through other marts) a mart of ``targets``; an
    SQL that does not parse counts as reaching (its caller takes the path that says so)."""
    todo, done = [start], set()
    while todo:
        name = todo.pop()
        done.add(name)
        try:
            read = mart_dependencies(marts, name, sql_dir=sql_dir)
        except MartError:
            return True
        for table in read:
            zone, _, other = table.partition(".")
            if zone != MARTS or other not in marts:
                continue
            if other in targets:
                return True
            if other not in done:
                todo.append(other)
    return False


def mart_lineage(
    catalogue: Catalogue, marts: dict[str, Mart], name: str, *, sql_dir: Path | None = None
) -> Lineage:
    """Output column → the sources it is computed from (:class:`SourceField`), in order
    (the mart's analysis, kept for the process: :func:`analyse_mart`); the caller's copy."""
    return _copied(_kept(catalogue, marts, name, sql_dir).lineage)


def _copied(lineage: Lineage) -> Lineage:
    return {column: list(sources) for column, sources in lineage.items()}


@dataclass(frozen=True)
class MartAnalysis:
    """A mart's parsed query, its output columns' lineage and every column it reads."""

    tree: exp.Query
    lineage: Lineage
    reads: list[SourceField]  # every reference, filters, joins and groupings included
    unresolved: list[str]  # column references no table of their query provides, as written
    # stars and COLUMNS(…) the parser could not expand into columns (it knows no schema)
    hidden: list[str]
    tables: set[str]  # the lake tables the query reads


# analyse_mart's results of this process: a run asks for each mart's lineage several times
# (which marts the catalogue can build, twice; the catalogue's mart_sources table; its build;
# the builds of the marts reading it), which parses and resolves its SQL once
_ANALYSES: dict[tuple, tuple[Catalogue, list[Mart], MartAnalysis]] = {}
_ANALYSES_KEPT = 256


def analyse_mart(
    catalogue: Catalogue, marts: dict[str, Mart], name: str, *, sql_dir: Path | None = None
) -> MartAnalysis:
    """Parse the mart's SQL and resolve its lineage and its reads.

    Kept for the process, by the identity of the (frozen) catalogue and mart entries and
    the text of every mart's SQL (a mart's lineage follows the marts it reads): the same
    objects and files give the same analysis. The caller gets its own lists; the parsed
    ``tree`` is shared (read it, never change it)."""
    kept = _kept(catalogue, marts, name, sql_dir)
    return MartAnalysis(
        tree=kept.tree,
        lineage=_copied(kept.lineage),
        reads=list(kept.reads),
        unresolved=list(kept.unresolved),
        hidden=list(kept.hidden),
        tables=set(kept.tables),
    )


def _kept(
    catalogue: Catalogue, marts: dict[str, Mart], name: str, sql_dir: Path | None
) -> MartAnalysis:
    texts = tuple(
        (n, sql_path(n, sql_dir).read_text(encoding="utf-8") if sql_path(n, sql_dir).is_file()
         else None)
        for n in sorted(marts)
    )  # fmt: skip
    key = (id(catalogue), tuple(id(marts[n]) for n, _ in texts), name, str(sql_dir), texts)
    kept = _ANALYSES.get(key)
    if kept is None or kept[0] is not catalogue:
        analysis = _analyse(catalogue, marts, name, sql_dir)
        if len(_ANALYSES) >= _ANALYSES_KEPT:
            _ANALYSES.clear()
        # the objects are kept with the result, so their ids are not reused meanwhile
        kept = _ANALYSES[key] = (catalogue, [marts[n] for n, _ in texts], analysis)
    return kept[2]


def _analyse(
    catalogue: Catalogue, marts: dict[str, Mart], name: str, sql_dir: Path | None
) -> MartAnalysis:
    tree = parse_mart(read_sql(name, sql_dir), name, lake_schema(catalogue, marts))
    resolver = Resolver(_context(catalogue, marts, name, (name,), sql_dir), tree)
    reads, unresolved = [], []
    for scope in resolver.root.traverse():
        for c in scope.columns:
            if resolver.source(scope, c) is None:
                unresolved.append(c.sql(dialect=DIALECT))
            reads += resolver.column(scope, c, ())
    tables = {
        f"{t.db}.{t.name}"
        for scope in resolver.root.traverse()
        for t in scope.sources.values()
        if isinstance(t, exp.Table) and t.db
    }
    hidden = [n.sql(dialect=DIALECT) for n in tree.find_all(exp.Columns)]
    hidden += [
        (star.parent if isinstance(star.parent, exp.Column) else star).sql(dialect=DIALECT)
        for star in tree.find_all(exp.Star)
        if not isinstance(star.parent, exp.Count)
    ]
    return MartAnalysis(
        tree=tree,
        lineage=resolver.outputs(tree),
        reads=reads,
        unresolved=sorted(set(unresolved)),
        hidden=sorted(set(hidden)),
        tables=tables,
    )


def mart_dependencies(
    marts: dict[str, Mart], name: str, *, sql_dir: Path | None = None
) -> set[str]:
    """The lake tables (``curated.person``, ``marts.quality_scorecard`` …) the mart's SQL
    reads, parsed from it (once a process for a given text: a run asks ~70 times)."""
    return set(_tables_read(read_sql(name, sql_dir), name))


@lru_cache(maxsize=256)
def _tables_read(sql: str, name: str) -> frozenset[str]:
    try:
        tree = parsed_query(sql)
    except SqlglotError as exc:
        raise MartError(f"the SQL does not parse: {_first_line(exc)}", dataset=name) from None
    return frozenset(
        f"{t.db}.{t.name}" for t in tree.find_all(exp.Table) if t.db in (CURATED, MARTS)
    )


@lru_cache(maxsize=256)
def parsed_query(sql: str) -> exp.Expression:
    """The SQL as sqlglot parses it (one query, not qualified), once a process for a given
    text (the tables it reads, the build's runnable query). Shared: read it, or transform a
    copy (``Expression.transform`` copies), never change it."""
    return sqlglot.parse_one(sql, read=DIALECT)


__all__ = [
    "CURATED",
    "DIALECT",
    "MARTS",
    "SQL_DIR",
    "Lineage",
    "MartAnalysis",
    "MartError",
    "SourceField",
    "analyse_mart",
    "lake_schema",
    "mart_dependencies",
    "mart_lineage",
    "output_columns",
    "parse_mart",
    "parsed_query",
    "read_sql",
    "sql_path",
]
