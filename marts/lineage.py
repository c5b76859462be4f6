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
the rows it counts: the id column of each table its query reads. A curated table filtered in
the same query on its ``dept`` / ``dataset`` columns (``e.dataset = 'appeals'``,
``e.dept IN ('rx', 'wg')``, joined by AND) contributes only those datasets' fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

from catalog.errors import StreethubError
from catalog.marts import Mart
from catalog.model import Catalogue, Level, MaskingRule
from curated.lineage import ROW_ID, CuratedColumn, DeptField, curated_lineage, curated_schema
from masking.sql import mask_rule, strictest

SQL_DIR = Path(__file__).parent / "sql"
DIALECT = "duckdb"
CURATED, MARTS = "curated", "marts"


class MartError(StreethubError):
    """A mart's SQL or YAML cannot be built as it stands (never carries a value)."""


@dataclass(frozen=True)
class SourceField:
    """One curated (or mart) column an output column is computed from."""

    table: str  # zone.table: curated.person, marts.resident_profile
    column: str
    fields: tuple[DeptField, ...]  # the department fields behind it
    applied: MaskingRule  # the strictest rule the value passes on its way out
    masks: tuple[str, ...] = ()  # SQL functions between the output and the column, outermost first
    curated: CuratedColumn | None = None

    @property
    def ref(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def level(self) -> Level:
        return max((f.level for f in self.fields), key=lambda lv: lv.rank, default=Level.L1)

    @property
    def sensitive_fields(self) -> tuple[DeptField, ...]:
        return tuple(f for f in self.fields if f.level.sensitive)


Lineage = dict[str, list[SourceField]]


@dataclass
class _Context:
    catalogue: Catalogue
    marts: dict[str, Mart]
    name: str
    seen: tuple[str, ...] = ()
    upstream: dict[str, Lineage] = field(default_factory=dict)  # marts read, resolved once


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
    return list(_leftmost(tree).named_selects)


def read_tables(tree: exp.Query) -> set[str]:
    """The lake tables (``zone.table``) a query reads: every table that is not a CTE."""
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    out = set()
    for t in tree.find_all(exp.Table):
        if t.db and not (not t.db and t.name in ctes):
            out.add(f"{t.db}.{t.name}")
        elif t.name not in ctes and not t.db:
            out.add(t.name)
    return out


def _leftmost(query: exp.Expression) -> exp.Select:
    while isinstance(query, exp.SetOperation):
        query = query.left
    if isinstance(query, exp.Subquery):
        return _leftmost(query.this)
    return query


def _scopes(root: Scope) -> dict[int, Scope]:
    return {id(s.expression): s for s in root.traverse()}


def _masks_between(node: exp.Expression, top: exp.Expression) -> tuple[str, ...]:
    """Function names enclosing ``node`` up to ``top`` (inclusive), outermost first."""
    names = []
    cur = node.parent
    while cur is not None:
        if isinstance(cur, exp.Func):
            names.append(_func_name(cur))
        if cur is top:
            break
        cur = cur.parent
    return tuple(reversed(names))


def _func_name(f: exp.Func) -> str:
    if isinstance(f, exp.Anonymous):
        return str(f.this).lower()
    return f.sql_name().lower()


def _rule_of(masks: tuple[str, ...]) -> MaskingRule:
    return strictest(r for m in masks if (r := mask_rule(m)) is not None)


class _Resolver:
    def __init__(self, ctx: _Context, tree: exp.Query) -> None:
        self.ctx = ctx
        self.root = build_scope(tree)
        if self.root is None:
            raise MartError("the SQL has no query to follow", dataset=ctx.name)
        self.by_expr = _scopes(self.root)
        self.curated = curated_lineage(ctx.catalogue)

    # -- expressions ---------------------------------------------------------------------
    def expression(
        self, node: exp.Expression, scope: Scope, masks: tuple[str, ...]
    ) -> list[SourceField]:
        """Sources of an expression evaluated in ``scope``, ``masks`` applied above it."""
        out: list[SourceField] = []
        found = False
        for col in self._columns(node):
            found = True
            out += self.column(scope, col, masks + _masks_between(col, node))
        for sub in self._subqueries(node):
            found = True
            inner = self.by_expr.get(id(sub.this))
            if inner is None:
                continue
            above = masks + _masks_between(sub, node)
            select = _leftmost(sub.this)
            for proj in select.selects[:1]:
                out += self.expression(proj, inner, above)
        if not found:  # count(*), a literal: the rows of what the scope reads
            out += self.rows(scope, masks + self._row_masks(node))
        return out

    @staticmethod
    def _row_masks(node: exp.Expression) -> tuple[str, ...]:
        funcs = [node] if isinstance(node, exp.Func) else []
        funcs += list(node.find_all(exp.Func))
        return tuple(dict.fromkeys(_func_name(f) for f in funcs))

    @staticmethod
    def _columns(node: exp.Expression) -> Iterator[exp.Column]:
        """Columns of ``node`` outside nested subqueries."""
        stack = [node]
        while stack:
            cur = stack.pop()
            if isinstance(cur, exp.Column):
                yield cur
                continue
            if cur is not node and isinstance(cur, exp.Subquery | exp.Query):
                continue
            stack.extend(cur.iter_expressions())

    @staticmethod
    def _subqueries(node: exp.Expression) -> Iterator[exp.Subquery]:
        stack = [node]
        while stack:
            cur = stack.pop()
            if cur is not node and isinstance(cur, exp.Subquery):
                yield cur
                continue
            stack.extend(cur.iter_expressions())

    # -- columns -------------------------------------------------------------------------
    def source(self, scope: Scope, col: exp.Column) -> tuple[str, object, Scope] | None:
        names = [p for p in (col.table, col.db, col.catalog) if p]
        s: Scope | None = scope
        while s is not None:
            for name in names:
                if name in s.sources:
                    return name, s.sources[name], s
            s = s.parent
        return None

    def column(self, scope: Scope, col: exp.Column, masks: tuple[str, ...]) -> list[SourceField]:
        found = self.source(scope, col)
        if found is None:
            return []
        alias, source, owner = found
        name = col.name
        if isinstance(col.this, exp.Dot) or (col.db and col.table and alias == col.db):
            name = col.name  # a struct field of an unnested element: the element's column
        if isinstance(source, exp.Table):
            return self.table(source, name, masks, self._filters(owner, alias))
        return self.derived(source, alias, name, masks)

    def derived(
        self, scope: Scope, alias: str, name: str, masks: tuple[str, ...]
    ) -> list[SourceField]:
        node = scope.expression
        if isinstance(node, exp.Unnest):
            return [s for e in node.expressions for s in self.expression(e, scope, masks)]
        names = list(_leftmost(node).named_selects)
        if name not in names:
            return []
        index = names.index(name)
        out = []
        for select in _selects(node):  # a union's branches: the column by position
            sub = self.by_expr.get(id(select), scope)
            if index < len(select.selects):
                out += self.expression(select.selects[index], sub, masks)
        return out

    def rows(self, scope: Scope, masks: tuple[str, ...]) -> list[SourceField]:
        out = []
        for alias, (_, source) in scope.selected_sources.items():
            if isinstance(source, exp.Table):
                table = f"{source.db}.{source.name}" if source.db else source.name
                zone, _, name = table.partition(".")
                key = ROW_ID.get(name) if zone == CURATED else None
                if key is None and zone == MARTS and name in self.ctx.marts:
                    key = self.ctx.marts[name].columns[0].name
                if key is not None:
                    out += self.table(source, key, masks, self._filters(scope, alias))
            elif isinstance(source, Scope):
                inner = source.expression
                for select in _selects(inner):
                    sub = self.by_expr.get(id(select), source)
                    out += self.rows(sub, masks)
        return out

    def table(
        self,
        table: exp.Table,
        column: str,
        masks: tuple[str, ...],
        datasets: set[tuple[str | None, str | None]] | None,
    ) -> list[SourceField]:
        zone, name = table.db, table.name
        rule = _rule_of(masks)
        if zone == CURATED:
            c = self.curated.get((name, column))
            if c is None:
                return [SourceField(f"{zone}.{name}", column, (), rule, masks)]
            fields = c.fields
            if datasets:
                fields = tuple(f for f in fields if _kept(f, datasets))
            if c.applied in (MaskingRule.pseudonymise, MaskingRule.suppress):
                rule = strictest([rule, c.applied])
            return [SourceField(f"{zone}.{name}", column, fields, rule, masks, c)]
        if zone == MARTS and name in self.ctx.marts and name not in self.ctx.seen:
            upstream = self.ctx.upstream.get(name)
            if upstream is None:
                upstream = _lineage(self.ctx.catalogue, self.ctx.marts, name, self.ctx.seen)
                self.ctx.upstream[name] = upstream
            published = (
                self.ctx.marts[name].column(column).masking
                if column in {c.name for c in self.ctx.marts[name].columns}
                else MaskingRule.none
            )
            out = []
            for src in upstream.get(column, []):
                applied = strictest([rule, published, src.applied])
                out.append(
                    SourceField(src.table, src.column, src.fields, applied, masks, src.curated)
                )
            return out or [SourceField(f"{zone}.{name}", column, (), rule, masks)]
        return [SourceField(f"{zone}.{name}" if zone else name, column, (), rule, masks)]

    @staticmethod
    def _filters(scope: Scope, alias: str) -> set[tuple[str | None, str | None]] | None:
        """(dept, dataset) pairs a scope keeps of ``alias`` by equality / IN on its ``dept``
        and ``dataset`` columns, AND-joined in WHERE or a JOIN's ON; None when it keeps all."""
        select = scope.expression
        if not isinstance(select, exp.Select):
            return None
        conditions = []
        where = select.args.get("where")
        if where is not None:
            conditions.append(where.this)
        for join in select.args.get("joins") or []:
            if join.args.get("on") is not None:
                conditions.append(join.args["on"])
        kept: dict[str, set[str]] = {}
        for cond in conditions:
            for term in _conjuncts(cond):
                col, values = _equality(term)
                if col is None or col.table != alias or col.name not in ("dept", "dataset"):
                    continue
                have = kept.get(col.name)
                kept[col.name] = values if have is None else have & values
        if not kept:
            return None
        depts, datasets = kept.get("dept"), kept.get("dataset")
        return {(d, s) for d in (depts or {None}) for s in (datasets or {None})}

    def outputs(self, tree: exp.Query) -> Lineage:
        names = output_columns(tree)
        out: Lineage = {n: [] for n in names}
        for select in _selects(tree):  # a union's branches: their columns by position
            scope = self.by_expr.get(id(select), self.root)
            for name, proj in zip(names, select.selects, strict=False):
                out[name].extend(self.expression(proj, scope, ()))
        return out


def _selects(node: exp.Expression) -> Iterator[exp.Select]:
    if isinstance(node, exp.SetOperation):
        yield from _selects(node.left)
        yield from _selects(node.right)
    elif isinstance(node, exp.Subquery):
        yield from _selects(node.this)
    elif isinstance(node, exp.Select):
        yield node


def _conjuncts(cond: exp.Expression) -> Iterator[exp.Expression]:
    if isinstance(cond, exp.And):
        yield from _conjuncts(cond.left)
        yield from _conjuncts(cond.right)
    elif isinstance(cond, exp.Paren):
        yield from _conjuncts(cond.this)
    else:
        yield cond


def _equality(term: exp.Expression) -> tuple[exp.Column | None, set[str]]:
    if isinstance(term, exp.EQ):
        left, right = term.left, term.right
        if isinstance(right, exp.Column):
            left, right = right, left
        if isinstance(left, exp.Column) and isinstance(right, exp.Literal) and right.is_string:
            return left, {right.this}
    if isinstance(term, exp.In) and isinstance(term.this, exp.Column):
        values = term.expressions
        if values and all(isinstance(v, exp.Literal) and v.is_string for v in values):
            return term.this, {v.this for v in values}
    return None, set()


def _kept(f: DeptField, datasets: set[tuple[str | None, str | None]]) -> bool:
    return any((d is None or d == f.dept) and (s is None or s == f.dataset) for d, s in datasets)


_CACHE: dict[tuple, Lineage] = {}


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
    ctx = _Context(catalogue, marts, name, (*seen, name))
    return _Resolver(ctx, tree).outputs(tree)


def mart_lineage(
    catalogue: Catalogue, marts: dict[str, Mart], name: str, *, sql_dir: Path | None = None
) -> Lineage:
    """Output column → the sources it is computed from (:class:`SourceField`), in order."""
    return _lineage(catalogue, marts, name, (), sql_dir)


@dataclass(frozen=True)
class MartAnalysis:
    """A mart's parsed query, its output columns' lineage and every column it reads."""

    tree: exp.Query
    lineage: Lineage
    reads: list[SourceField]  # every reference, filters, joins and groupings included
    unresolved: list[str]  # column references no table of their query provides, as written
    tables: set[str]  # the lake tables the query reads


def analyse_mart(
    catalogue: Catalogue, marts: dict[str, Mart], name: str, *, sql_dir: Path | None = None
) -> MartAnalysis:
    """Parse the mart's SQL and resolve its lineage and its reads."""
    tree = parse_mart(read_sql(name, sql_dir), name, lake_schema(catalogue, marts))
    resolver = _Resolver(_Context(catalogue, marts, name, (name,)), tree)
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
    return MartAnalysis(tree, resolver.outputs(tree), reads, sorted(set(unresolved)), tables)


def mart_dependencies(
    marts: dict[str, Mart], name: str, *, sql_dir: Path | None = None
) -> set[str]:
    """The lake tables (``curated.person``, ``marts.quality_scorecard`` …) the mart's SQL
    reads, parsed from it."""
    try:
        tree = sqlglot.parse_one(read_sql(name, sql_dir), read=DIALECT)
    except SqlglotError as exc:
        raise MartError(f"the SQL does not parse: {_first_line(exc)}", dataset=name) from None
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    return {
        f"{t.db}.{t.name}"
        for t in tree.find_all(exp.Table)
        if t.db in (CURATED, MARTS) and not (t.name in ctes and not t.db)
    }


__all__ = [
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
    "read_sql",
    "sql_path",
]
