"""What a mart must satisfy before it is built (and what ``streethub catalog check`` checks
without building): its SQL and YAML come in pairs, the SQL's output columns are the YAML's,
every L3/L4 source of a column passes through its rule or a stricter one (the strictest one
where sources combine), the mart's level is at least the strictest source it reads, the
datasets its YAML ``sources`` names are catalogue datasets whose records the curated table
holds, and marts that read marts do not read each other in a cycle.
"""

from __future__ import annotations

from pathlib import Path

from catalog.errors import StreethubError
from catalog.marts import Mart
from catalog.model import Catalogue, MaskingRule
from marts.lineage import (
    CURATED,
    MARTS,
    SQL_DIR,
    Lineage,
    MartAnalysis,
    MartError,
    SourceField,
    analyse_mart,
    mart_dependencies,
    output_columns,
    read_sql,
)
from marts.sources import ROW_SOURCE_COLUMNS, held_datasets
from masking.sql import COUNTS, satisfies, strictest


class MartMaskingError(MartError):
    """A mart would publish a sensitive value without its masking rule."""


def _publishes_value(source: SourceField) -> bool:
    """The source's value itself leaves (masked or not): not only counted, and not a
    pseudonym or count the curated zone made already."""
    if any(m in COUNTS for m in source.masks):
        return False
    c = source.curated
    return c is None or c.applied in (MaskingRule.none, MaskingRule.encrypt)


def check_masking(mart: Mart, lineage: Lineage) -> None:
    """Refuse a column whose L3/L4 sources do not all pass through their rule (or a
    stricter one), or whose YAML rule is weaker than the strictest rule of the sources whose
    values it publishes."""
    for column in mart.columns:
        required: list[MaskingRule] = []
        for src in lineage.get(column.name, []):
            for f in src.sensitive_fields:
                if _publishes_value(src):
                    required.append(f.masking)
                if not satisfies(src.applied, f.masking):
                    raise MartMaskingError(
                        f"column {column.name!r} publishes {src.ref} from {f.ref} "
                        f"(header {f.header!r}, {f.level.value}, rule {f.masking.value}) "
                        f"through {src.applied.value}: apply {f.masking.value} or a stricter rule",
                        dataset=mart.name,
                        field=column.name,
                    )
        claimed = column.masking
        for src in lineage.get(column.name, []):
            if (
                src.sensitive_fields
                and _publishes_value(src)
                and claimed is not MaskingRule.none
                and not satisfies(src.applied, claimed)
            ):
                raise MartMaskingError(
                    f"column {column.name!r}: its YAML says {claimed.value}, but the SQL "
                    f"publishes {src.ref} through {src.applied.value}",
                    dataset=mart.name,
                    field=column.name,
                )
        need = strictest(required)
        if need is not MaskingRule.none and not satisfies(column.masking, need):
            raise MartMaskingError(
                f"column {column.name!r} publishes sources whose strictest rule is "
                f"{need.value}; its YAML says {column.masking.value}",
                dataset=mart.name,
                field=column.name,
            )


def check_resolved(mart: Mart, analysis: MartAnalysis) -> None:
    """Every curated column the mart reads is one the curated lineage describes (its
    sources, its protection), and a mart reading curated tables names the table of every
    column: a column the masking check cannot follow could be a sensitive value."""
    unknown = sorted({s.ref for s in analysis.reads
                      if s.table.startswith(CURATED + ".") and s.curated is None})  # fmt: skip
    if unknown:
        raise MartError(
            f"reads {', '.join(unknown)}, which the curated lineage (curated/lineage.py) does "
            "not describe: read the curated entity tables or the indexes",
            dataset=mart.name,
        )
    curated = any(t.startswith(CURATED + ".") for t in analysis.tables)
    if analysis.hidden and curated:
        raise MartError(
            f"{', '.join(analysis.hidden)} hide(s) which columns are read: name them",
            dataset=mart.name,
        )
    if analysis.unresolved and curated:
        raise MartError(
            f"cannot tell which table {', '.join(analysis.unresolved)} come(s) from: "
            "qualify each column with its table's alias",
            dataset=mart.name,
        )


def check_level(mart: Mart, reads: list[SourceField]) -> None:
    """The mart's level is at least the strictest source field its SQL reads: a column read
    through another mart counts at the level that mart publishes it at; a source already
    read in a form its rule allows (a pseudonym of an ID) does not count."""
    levels = [(s.published_level, f"marts column {s.ref} as published")
              for s in reads if s.published_level is not None]  # fmt: skip
    levels += [(f.level, f.ref) for s in reads if s.published_level is None
               for f in s.fields if not _protected(s, f.masking)]  # fmt: skip
    top = max(levels, key=lambda lv: lv[0].rank, default=None)
    if top is not None and top[0].rank > mart.level.rank:
        raise MartError(
            f"level {mart.level.value} is below the {top[0].value} source it reads ({top[1]})",
            dataset=mart.name,
        )


def _protected(source: SourceField, rule: MaskingRule) -> bool:
    c = source.curated
    return (
        c is not None
        and not c.encrypted
        and c.applied is not MaskingRule.none
        and satisfies(c.applied, rule)
    )


def check_sources(catalogue: Catalogue, mart: Mart, tables: set[str]) -> None:
    """Refuse a YAML ``sources`` entry for a table the SQL does not read (``tables``: the
    lake tables it reads), for a table without the columns its rows' datasets are told by,
    or naming a dataset the catalogue does not know or whose records the table does not hold
    (another entity)."""
    for table, refs in mart.sources.items():
        name = table.partition(".")[2]
        if table not in tables:
            raise MartError(f"sources: the SQL does not read {table}", dataset=mart.name)
        held = held_datasets(catalogue, name)
        if held is None:
            raise MartError(
                f"sources: {table} has no {' / '.join(ROW_SOURCE_COLUMNS)} columns to keep "
                "datasets by",
                dataset=mart.name,
            )
        known = {(d.code, ds.code) for d, ds in catalogue.datasets()}
        for ref in refs:
            dept, _, dataset = ref.partition(".")
            if (dept, dataset) not in known:
                raise MartError(f"sources: {table}: no catalogue dataset {ref}", dataset=mart.name)
            if (dept, dataset) not in held:
                raise MartError(
                    f"sources: {table} holds no records of {ref} (another entity)",
                    dataset=mart.name,
                )


def check_columns(mart: Mart, columns: list[str]) -> None:
    if columns != mart.column_names:
        missing = [c for c in mart.column_names if c not in columns]
        extra = [c for c in columns if c not in mart.column_names]
        detail = "; ".join(
            part
            for part in (
                f"the YAML has {', '.join(missing)} that the SQL does not" if missing else "",
                f"the SQL outputs {', '.join(extra)} that the YAML does not" if extra else "",
                "" if missing or extra else "same columns, another order",
            )
            if part
        )
        raise MartError(f"the SQL's output columns differ from the YAML's: {detail}",
                        dataset=mart.name)  # fmt: skip


def build_order(
    marts: dict[str, Mart], names: list[str] | None = None, *, sql_dir: Path | None = None
) -> list[str]:
    """``names`` (default: every mart) and the marts they read, readers after what they read."""
    wanted = list(names) if names is not None else sorted(marts)
    deps = {}
    pending = list(wanted)
    while pending:
        n = pending.pop()
        if n in deps:
            continue
        if n not in marts:
            raise MartError("no catalogue entry (catalog/marts/<mart>.yaml) for this mart",
                            dataset=n)  # fmt: skip
        deps[n] = {
            t.split(".", 1)[1] for t in mart_dependencies(marts, n, sql_dir=sql_dir)
            if t.startswith(MARTS + ".") and t.split(".", 1)[1] in marts
        }  # fmt: skip
        pending += sorted(deps[n])
    order: list[str] = []
    visiting: set[str] = set()

    def visit(n: str, path: tuple[str, ...]) -> None:
        if n in order:
            return
        if n in visiting:
            raise MartError(f"marts read each other in a cycle: {' → '.join((*path, n))}",
                            dataset=n)  # fmt: skip
        visiting.add(n)
        for d in sorted(deps[n]):
            visit(d, (*path, n))
        visiting.discard(n)
        order.append(n)

    for n in sorted(deps):
        visit(n, ())
    return order


def check_marts(
    catalogue: Catalogue,
    marts: dict[str, Mart],
    *,
    sql_dir: Path | None = None,
    yaml_dir: Path | None = None,
) -> list[StreethubError]:
    """Every problem of the marts that shows without building them: a SQL file without a
    YAML or the reverse, SQL without its opening comment or that does not parse, output
    columns other than the YAML's, columns it cannot follow, masking and level (from the
    lineage), YAML sources the catalogue or the curated table does not hold, a cycle."""
    from catalog.marts import MARTS_DIR

    sql_dir = Path(sql_dir or SQL_DIR)
    problems: list[StreethubError] = []
    sql_names = {p.stem for p in sql_dir.glob("*.sql")}
    for name in sorted(sql_names - set(marts)):
        problems.append(
            MartError(
                f"marts/sql/{name}.sql has no catalogue entry "
                f"({(yaml_dir or MARTS_DIR).name}/{name}.yaml)",
                dataset=name,
            )
        )
    for name in sorted(set(marts) - sql_names):
        problems.append(MartError(f"no SQL file marts/sql/{name}.sql for this mart", dataset=name))
    paired = {n: m for n, m in marts.items() if n in sql_names}
    for name in sorted(paired):
        first = next((ln for ln in read_sql(name, sql_dir).splitlines() if ln.strip()), "")
        if not first.lstrip().startswith("--"):
            problems.append(
                MartError(
                    "the SQL must open with a -- comment saying what the mart is for and who "
                    "reads it",
                    dataset=name,
                )
            )
        try:
            analysis = analyse_mart(catalogue, paired, name, sql_dir=sql_dir)
            check_resolved(paired[name], analysis)
            check_sources(catalogue, paired[name], analysis.tables)
            check_columns(paired[name], output_columns(analysis.tree))
            check_masking(paired[name], analysis.lineage)
            check_level(paired[name], analysis.reads)
        except MartError as exc:
            problems.append(exc)
    try:
        build_order(paired, sql_dir=sql_dir)
    except MartError as exc:
        problems.append(exc)
    return problems


__all__ = [
    "MartMaskingError",
    "build_order",
    "check_columns",
    "check_level",
    "check_marts",
    "check_masking",
    "check_resolved",
    "check_sources",
]
