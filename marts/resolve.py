"""Following a mart query's column references down to lake tables (sqlglot scopes).

:class:`Resolver` walks a qualified query: each column reference through CTEs, derived
tables, unions (by position), ``UNNEST`` and scalar subqueries to a table of the lake,
collecting the SQL functions on the way (the masks); a curated table's columns come with
their department fields (``curated.lineage``) — only those of the datasets the mart's YAML
``sources`` keeps of that table, where it names them — and a mart's with the lineage of that
mart. The public face is :mod:`marts.lineage`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, build_scope

from catalog.marts import Mart
from catalog.model import Catalogue, MaskingRule
from curated.lineage import ROW_ID, curated_lineage
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
            names.append(func_name(cur))
        elif isinstance(cur, exp.Filter) and isinstance(cur.this, exp.Count):
            names.append("count")  # count(*) FILTER (WHERE …): counted, no value
        if cur is top:
            break
        cur = cur.parent
    return tuple(reversed(names))


def func_name(f: exp.Func) -> str:
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
        mart = ctx.marts.get(ctx.name)
        self.restrict = mart.source_datasets if mart is not None else lambda _table: None

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
        return tuple(dict.fromkeys(func_name(f) for f in funcs))

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
        alias, source, _ = found
        name = col.name  # of a struct field of an unnested element (u.m.x): the element's
        if isinstance(source, exp.Table):
            return self.table(source, name, masks)
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
        for _, source in scope.selected_sources.values():
            if isinstance(source, exp.Table):
                table = f"{source.db}.{source.name}" if source.db else source.name
                zone, _, name = table.partition(".")
                key = ROW_ID.get(name) if zone == CURATED else None
                if key is None and zone == MARTS and name in self.ctx.marts:
                    key = self.ctx.marts[name].columns[0].name
                if key is not None:
                    out += self.table(source, key, masks)
            elif isinstance(source, Scope):
                inner = source.expression
                for select in selects(inner):
                    sub = self.by_expr.get(id(select), source)
                    out += self.rows(sub, masks)
        return out

    def table(self, table: exp.Table, column: str, masks: tuple[str, ...]) -> list[SourceField]:
        zone, name = table.db, table.name
        rule = _rule_of(masks)
        if zone == CURATED:
            c = self.curated.get((name, column))
            if c is None:
                return [SourceField(f"{zone}.{name}", column, (), rule, masks)]
            fields = c.fields
            kept = self.restrict(name)
            if kept is not None:
                fields = tuple(f for f in fields if (f.dept, f.dataset) in kept)
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


__all__ = ["Context", "Resolver", "leftmost", "selects"]
