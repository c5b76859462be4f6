"""The ``streethub`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from catalog.errors import CatalogError, StreethubError
from catalog.export import to_dcat, to_json
from catalog.loader import load_catalogue
from catalog.settings import get_settings

app = typer.Typer(help="streethub: the street data hub (街道数据中台).", no_args_is_help=True)
catalog_app = typer.Typer(help="The street data resource catalogue (街道数据资源目录).")
lake_app = typer.Typer(help="The lake (DuckLake over Parquet).")
app.add_typer(catalog_app, name="catalog")
app.add_typer(lake_app, name="lake")

console = Console()
err = Console(stderr=True)


def _catalogue(directory: Path | None):
    try:
        return load_catalogue(directory or get_settings().catalog_dir)
    except CatalogError as exc:
        err.print(f"[red]{exc}[/red]", markup=True, highlight=False)
        raise typer.Exit(1) from None


DirOption = Annotated[
    Path | None, typer.Option("--dir", help="catalogue folder (default: the shipped one)")
]


@catalog_app.command("check")
def catalog_check(directory: DirOption = None) -> None:
    """Validate the catalogue; exit non-zero listing every problem."""
    cat = _catalogue(directory)
    n_fields = sum(len(ds.fields) for _, ds in cat.datasets())
    console.print(
        f"catalogue OK: {len(cat.departments)} departments, {len(cat.datasets())} datasets, "
        f"{n_fields} fields"
    )


@catalog_app.command("list")
def catalog_list(directory: DirOption = None) -> None:
    """A table of every dataset: code, name, provider, share type, level, fields."""
    cat = _catalogue(directory)
    table = Table(title="街道数据资源目录 street data resource catalogue")
    for col in ("resource code", "dataset", "name", "provider", "share type", "level", "fields"):
        table.add_column(col)
    for d, ds in cat.datasets():
        table.add_row(
            ds.resource_code,
            f"{d.code}.{ds.code}",
            f"{ds.name_zh} {ds.name_en}",
            d.name_zh,
            ds.share_type.value,
            ds.max_level.value,
            str(len(ds.fields)),
        )
    console.print(table)


@catalog_app.command("show")
def catalog_show(code: str, directory: DirOption = None) -> None:
    """One dataset in full, by resource code or dept.dataset."""
    cat = _catalogue(directory)
    try:
        d, ds = cat.dataset(code)
    except KeyError:
        err.print(f"no dataset {code!r} in the catalogue (try `streethub catalog list`)")
        raise typer.Exit(1) from None
    console.print(f"[bold]{ds.resource_code} {ds.name_zh} / {ds.name_en}[/bold]")
    console.print(f"provider: {d.name_zh} ({d.code}, {d.provider_code})  owner: {d.owner}")
    console.print(f"entity: {ds.entity.value}  grade: {ds.grade.value}  format: {ds.format}")
    console.print(
        f"update cycle: {ds.update_cycle.value}  share: {ds.share_type.value}  "
        f"open: {ds.open_attribute.value}  released: {ds.release_date}"
    )
    if ds.share_conditions:
        console.print(f"conditions: {ds.share_conditions}")
    if ds.legal_basis:
        console.print(f"legal basis: {ds.legal_basis}")
    console.print(f"summary: {ds.summary}")
    delivery = ds.delivery.model_dump(exclude_none=True, mode="json")
    console.print(f"delivery: {json.dumps(delivery, ensure_ascii=False)}")
    table = Table()
    for col in ("field", "label", "source", "type", "req", "level", "pii", "masking", "QI"):
        table.add_column(col)
    for f in ds.fields:
        table.add_row(
            f.name,
            f.label_zh,
            f.source_name,
            f.type.value,
            "yes" if f.required else "",
            f.level.value,
            "" if f.pii.value == "none" else f.pii.value,
            "" if f.masking.value == "none" else f.masking.value,
            "yes" if f.quasi_identifier else "",
        )
    console.print(table)


@catalog_app.command("export")
def catalog_export(
    fmt: Annotated[str, typer.Option("--format", help="json or dcat")] = "json",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    directory: DirOption = None,
) -> None:
    """Export as JSON, or as DCAT JSON-LD for other catalogue tools."""
    cat = _catalogue(directory)
    if fmt not in ("json", "dcat"):
        err.print(f"unknown format {fmt!r}: use json or dcat")
        raise typer.Exit(2)
    doc = to_json(cat) if fmt == "json" else to_dcat(cat)
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


@lake_app.command("init")
def lake_init() -> None:
    """Create the lake (metadata, data folder, zones) if it does not exist."""
    from lakehouse.lake import init_lake

    settings = get_settings()
    init_lake(settings)
    console.print(f"lake ready: metadata {settings.lake_metadata}, data {settings.lake_data_dir}")


@lake_app.command("info")
def lake_info() -> None:
    """The zones, tables and row counts, and the latest snapshots."""
    from pipelines.summary import print_lake

    print_lake(console, get_settings())


@app.command("run")
def run() -> None:
    """The main job on the embedded default, with a summary."""
    from pipelines.main_job import run_main

    try:
        run_main(get_settings(), console)
    except StreethubError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
