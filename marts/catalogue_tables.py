"""The catalogue as lake tables, so metrics marts read it in SQL (目录资源表).

Two tables in the ``marts`` schema, replaced from the catalogue (department YAMLs and
``catalog/marts/*.yaml``) before the metrics marts are built:

- ``marts.catalogue_resources``: one row per department dataset and per mart — kind
  (``dataset`` | ``mart``), resource (``dept.dataset`` | ``marts.<name>``), provider (the
  department's code, or the mart's owner), Chinese name, level (the strictest of its
  fields or columns), share type, update cycle, grade, and the consumers the catalogue
  plans for it (a mart's ``consumers``; a dataset has none of its own: who reads it is
  worked out in SQL from the marts that read it).
- ``marts.catalogue_mart_sources``: one row per mart column and department field it comes
  from (``marts.lineage.mart_lineage``), with the column's level and published masking
  rule; a column with no department source (a count of rows, a metric over the catalogue)
  has one row with the source left null.

Neither holds a value of a record: names, codes and levels from the catalogue only.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import polars as pl

from catalog.marts import Mart
from catalog.model import Catalogue
from lakehouse.lake import replace_with_frame, transaction
from marts.lineage import MartError, mart_dependencies, mart_lineage

RESOURCES_TABLE = "catalogue_resources"
MART_SOURCES_TABLE = "catalogue_mart_sources"

RESOURCE_SCHEMA = {
    "kind": pl.String,
    "resource": pl.String,
    "provider": pl.String,
    "name_zh": pl.String,
    "level": pl.String,
    "share_type": pl.String,
    "update_cycle": pl.String,
    "grade": pl.String,
    "consumers": pl.List(pl.String),
}
MART_SOURCE_SCHEMA = {
    "mart": pl.String,
    "column": pl.String,
    "level": pl.String,
    "masking": pl.String,
    "source_dept": pl.String,
    "source_dataset": pl.String,
    "source_field": pl.String,
}


def _value(v: object) -> str:
    return str(getattr(v, "value", v))


def marts_for(catalogue: Catalogue, marts: Mapping[str, Mart]) -> dict[str, Mart]:
    """The marts this catalogue can build: those whose SQL resolves against the curated
    tables its departments make (a hub without the departments behind a column has no
    such column), whose ``sources`` are all datasets of the catalogue (a heatmap without
    the appeals it is configured for would mislead, not merely be smaller), and which read
    only marts it can build. The shipped catalogue builds every mart (``streethub catalog
    check`` refuses one that does not resolve or names an unknown source)."""
    known = {f"{d.code}.{ds.code}" for d, ds in catalogue.datasets()}
    resolved = {}
    for name in marts:
        if any(ref not in known for refs in marts[name].sources.values() for ref in refs):
            continue
        try:
            mart_lineage(catalogue, dict(marts), name)
        except MartError:
            continue
        resolved[name] = marts[name]
    while True:
        readers = {
            n
            for n in resolved
            if any(
                t.startswith("marts.") and t.split(".", 1)[1] in marts
                and t.split(".", 1)[1] not in resolved
                for t in mart_dependencies(dict(marts), n)
            )
        }  # fmt: skip
        if not readers:
            return resolved
        for n in readers:
            del resolved[n]


def catalogue_resources(catalogue: Catalogue, marts: Mapping[str, Mart]) -> pl.DataFrame:
    """One row per department dataset and per mart (see the module doc)."""
    rows = [
        {
            "kind": "dataset",
            "resource": f"{dept.code}.{ds.code}",
            "provider": dept.code,
            "name_zh": ds.name_zh,
            "level": ds.max_level.value,
            "share_type": ds.share_type.value,
            "update_cycle": ds.update_cycle.value,
            "grade": ds.grade.value,
            "consumers": [],
        }
        for dept, ds in catalogue.datasets()
    ]
    rows += [
        {
            "kind": "mart",
            "resource": f"marts.{name}",
            "provider": mart.owner,
            "name_zh": mart.name_zh,
            "level": _value(mart.level),
            "share_type": _value(mart.share_type),
            "update_cycle": _value(mart.update_cycle),
            "grade": _value(mart.grade),
            "consumers": sorted(mart.consumers),
        }
        for name, mart in sorted(marts.items())
    ]
    return pl.DataFrame(rows, schema=RESOURCE_SCHEMA)


def mart_sources(catalogue: Catalogue, marts: Mapping[str, Mart]) -> pl.DataFrame:
    """One row per mart column and department field it comes from (see the module doc);
    ``marts``: those the catalogue can build (:func:`marts_for`)."""
    rows: list[dict] = []
    for name, mart in sorted(marts.items()):
        lineage = mart_lineage(catalogue, dict(marts), name)
        for col in mart.columns:
            base = {
                "mart": name,
                "column": col.name,
                "level": _value(col.level),
                "masking": _value(col.masking),
            }
            fields = {
                (f.dept, f.dataset, f.field) for s in lineage.get(col.name, []) for f in s.fields
            }
            if not fields:
                rows.append({**base, "source_dept": None, "source_dataset": None,
                             "source_field": None})  # fmt: skip
            for dept, dataset, field in sorted(fields):
                rows.append(
                    {**base, "source_dept": dept, "source_dataset": dataset, "source_field": field}
                )
    return pl.DataFrame(rows, schema=MART_SOURCE_SCHEMA)


def replace_tables(con: duckdb.DuckDBPyConnection, frames: Mapping[str, pl.DataFrame]) -> None:
    """Replace ``marts.<table>``'s rows with each frame, all in one lake transaction (in
    place where the columns are the same: :func:`lakehouse.lake.replace_table`)."""
    with transaction(con):
        for table, frame in frames.items():
            replace_with_frame(con, "marts", table, frame)


def write_catalogue_tables(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, marts: Mapping[str, Mart]
) -> dict[str, int]:
    """Replace both tables in one transaction; their row counts by table name."""
    frames = {
        RESOURCES_TABLE: catalogue_resources(catalogue, marts),
        MART_SOURCES_TABLE: mart_sources(catalogue, marts),
    }
    replace_tables(con, frames)
    return {table: frame.height for table, frame in frames.items()}
