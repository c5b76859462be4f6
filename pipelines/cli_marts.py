"""``streethub catalog lineage marts.<name>`` and the marts' part of ``streethub catalog
check``: the mart catalogue (``catalog/marts``), its SQL and their column lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from catalog.errors import shown
from catalog.model import Catalogue
from pipelines.cli_common import catalogue, console, err, or_exit

MartsDirOption = Annotated[
    Path | None,
    typer.Option("--marts", help="mart catalogue folder (default: the shipped catalog/marts)"),
]


def check_marts_or_exit(cat: Catalogue, marts_dir: Path | None = None) -> str:
    """The marts' check (YAML and SQL in pairs, columns, masking, level, cycles): a summary
    line, or every problem printed and exit 1."""
    from catalog.marts import MARTS_DIR, load_marts
    from marts.checks import check_marts

    marts = or_exit(load_marts, marts_dir or MARTS_DIR)
    problems = check_marts(cat, marts, yaml_dir=marts_dir)
    if problems:
        lines = "\n".join(f"  - {shown(str(p))}" for p in problems)
        err.print(Text(f"the marts have {len(problems)} problem(s):\n{lines}", style="red"))
        raise typer.Exit(1)
    columns = sum(len(m.columns) for m in marts.values())
    masked = sum(1 for m in marts.values() for c in m.columns if c.masking.value != "none")
    return (
        f"marts OK: {len(marts)} marts, {columns} columns ({masked} published through a "
        "masking rule), each SQL's columns, masking and level as its catalogue entry says"
    )


def catalog_lineage(
    ref: Annotated[str, typer.Argument(help="marts.<name> (or the mart's name)")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="catalogue folder (default: the shipped one)")
    ] = None,
    marts_dir: MartsDirOption = None,
) -> None:
    """A mart's column lineage: each column → the curated column it is computed from →
    the department fields behind it (dept.dataset.field and the raw header), with the rule
    the value leaves through."""
    from catalog.marts import MARTS_DIR, load_marts
    from marts.lineage import MartError, mart_dependencies, mart_lineage

    cat = catalogue(directory)
    marts = or_exit(load_marts, marts_dir or MARTS_DIR)
    name = ref.removeprefix("marts.")
    if name not in marts:
        err.print(f"no mart {shown(ref)!r} in the catalogue (catalog/marts/<mart>.yaml)")
        raise typer.Exit(1)
    try:
        lineage = mart_lineage(cat, marts, name)
        reads = sorted(mart_dependencies(marts, name))
    except MartError as exc:
        err.print(Text(shown(str(exc)), style="red"))
        raise typer.Exit(1) from None
    mart = marts[name]
    console.print(f"[bold]marts.{name}[/bold] {mart.name_zh} — level {mart.level.value}, "
                  f"reads {', '.join(reads) or 'no lake table'}")  # fmt: skip
    for column in mart.columns:
        rule = "" if column.masking.value == "none" else f", published as {column.masking.value}"
        console.print(Text(f"{column.name} ({column.label_zh}, {column.level.value}{rule})"))
        sources = _unique(lineage.get(column.name, []))
        if not sources:
            console.print(Text("  ← no lake column (a constant or an input frame)"))
        for src in sources:
            through = "" if src.applied.value == "none" else f" [through {src.applied.value}]"
            via = f" via {src.via}" if src.via else ""
            console.print(Text(f"  ← {src.ref}{via}{through}"))
            for f in src.fields:
                console.print(Text(f"      ← {f.ref} (raw header {f.header!r}, {f.level.value}, "
                                   f"rule {f.masking.value})"))  # fmt: skip
            if not src.fields:
                console.print(Text("      ← no department field (not a curated column)"))


def _unique(sources):
    seen, out = set(), []
    for s in sources:
        key = (s.ref, s.via, s.applied, tuple(f.ref for f in s.fields))
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out
