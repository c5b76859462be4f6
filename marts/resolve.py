"""Following a mart query's column references down to lake tables (sqlglot scopes).

:class:`Resolver` walks a qualified query: each column reference through CTEs, derived
tables, unions (by position), ``UNNEST`` and scalar subqueries to a table of the lake,
collecting the SQL functions on the way (the masks); a curated table's columns come with
their department fields (``curated.lineage``), a mart's with the lineage of that mart. The
public face is :mod:`marts.lineage`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, build_scope

from catalog.marts import Mart
from catalog.model import Catalogue, MaskingRule
from curated.lineage import ROW_ID, DeptField, curated_lineage
from marts.sources import CURATED, MARTS, Lineage, MartError, SourceField
from masking.sql import mask_rule, strongest


@dataclass
class Context:
    """What a walk needs beyond the query: the catalogue, the marts, the mart walked, the
    marts on the way to it (cycles) and how to get another mart's lineage."""

    catalogue: Catalogue
    marts: dict[str, Mart]
    name: str
    seen: tuple[str, ...]
    lineage_of: Callable[[str, tuple[str, ...]], Lineage]
    upstream: dict[str, Lineage] = field(default_factory=dict)  # marts read, resolved once


def leftmost(query: exp.Expression) -> exp.Select:
    """The first SELECT of a query (a union's leftmost branch): it names the columns."""
    while isinstance(query, exp.SetOperation):
        query = query.left
    if isinstance(query, exp.Subquery):
        return leftmost(query.this)
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
        elif isinstance(cur, exp.Filter) and isinstance(cur.this, exp.Count):
            names.append("count")  # count(*) FILTER (WHERE …): counted, no value
        if cur is top:
            break
        cur = cur.parent
    return tuple(reversed(names))


def _func_name(f: exp.Func) -> str:
    if isinstance(f, exp.Anonymous):
        return str(f.this).lower()
    return f.sql_name().lower()


def _rule_of(masks: tuple[str, ...]) -> MaskingRule:
    return strongest(r for m in masks if (r := mask_rule(m)) is not None)


class Resolver:
    """Follows a qualified query's column references down to lake tables."""

    def __init__(self, ctx: Context, tree: exp.Query) -> None:
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
            select = leftmost(sub.this)
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
        name = col.name  # of a struct field of an unnested element (u.m.x): the element's
        if isinstance(source, exp.Table):
            return self.table(source, name, masks, self._filters(owner, alias))
        return self.derived(source, alias, name, masks)

    def derived(
        self, scope: Scope, alias: str, name: str, masks: tuple[str, ...]
    ) -> list[SourceField]:
        node = scope.expression
        if isinstance(node, exp.Unnest):
            return [s for e in node.expressions for s in self.expression(e, scope, masks)]
        names = list(leftmost(node).named_selects)
        if name not in names:
            return []
        index = names.index(name)
        out = []
        for select in selects(node):  # a union's branches: the column by position
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
                for select in selects(inner):
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
                rule = strongest([rule, c.applied])
            return [SourceField(f"{zone}.{name}", column, fields, rule, masks, c)]
        if zone == MARTS and name in self.ctx.marts and name not in self.ctx.seen:
            upstream = self.ctx.upstream.get(name)
            if upstream is None:
                upstream = self.ctx.lineage_of(name, self.ctx.seen)
                self.ctx.upstream[name] = upstream
            mart = self.ctx.marts[name]
            known = column in mart.column_names
            published = mart.column(column).masking if known else MaskingRule.none
            level = mart.column(column).level if known else None
            out = []
            for src in upstream.get(column, []):
                applied = strongest([rule, published, src.applied])
                out.append(
                    SourceField(src.table, src.column, src.fields, applied, masks, src.curated,
                                level, src.via or f"{zone}.{name}.{column}")
                )  # fmt: skip
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
        names = list(leftmost(tree).named_selects)
        out: Lineage = {n: [] for n in names}
        for select in selects(tree):  # a union's branches: their columns by position
            scope = self.by_expr.get(id(select), self.root)
            for name, proj in zip(names, select.selects, strict=False):
                out[name].extend(self.expression(proj, scope, ()))
        return out


def selects(node: exp.Expression) -> Iterator[exp.Select]:
    if isinstance(node, exp.SetOperation):
        yield from selects(node.left)
        yield from selects(node.right)
    elif isinstance(node, exp.Subquery):
        yield from selects(node.this)
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


__all__ = ["Context", "Resolver", "leftmost", "selects"]
