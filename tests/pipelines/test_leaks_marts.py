"""The leak scanner over the marts zone: a published mart's columns and the catalogue's own
tables hold catalogue text, where a registry name counts only as a whole value; a column
published scrubbed (free text) and any other table keep the substring search."""

from __future__ import annotations

import polars as pl

from catalog.loader import load_catalogue
from catalog.marts import load_marts
from catalog.model import MaskingRule
from catalog.settings import Settings
from lakehouse.lake import ensure_table, init_lake, insert_frame, open_lake, transaction
from marts.catalogue_tables import RESOURCES_TABLE
from masking.names import KnownNames
from pipelines.leaks import mart_text_columns, scan_tables, structured_columns

NAME = "区建"  # a resident's name the registry could hold
OFFICE = "街道社区建设办公室"  # catalogue text that holds it by chance


def _findings(settings: Settings, tables: dict[str, pl.DataFrame], cat) -> dict[str, int]:
    init_lake(settings)
    with open_lake(settings) as con:
        with transaction(con):
            for table, frame in tables.items():
                ensure_table(con, "marts", table, [(c, "VARCHAR") for c in frame.columns])
                insert_frame(con, "marts", table, frame)
        found = scan_tables(
            con, [("marts", t) for t in tables], KnownNames({NAME}), structured_columns(cat)
        )
    return {f.place: f.counts.total for f in found}


def test_catalogue_text_in_marts_is_no_leak_but_a_name_alone_or_in_free_text_is(
    settings: Settings,
) -> None:
    cat = load_catalogue()
    mart_name, mart = next(iter(sorted(load_marts().items())))
    column = next(c.name for c in mart.columns if c.masking is not MaskingRule.scrub_text)
    found = _findings(
        settings,
        {
            RESOURCES_TABLE: pl.DataFrame({"name_zh": [OFFICE], "provider": ["team:x"]}),
            mart_name: pl.DataFrame({column: [f"{OFFICE}", NAME]}),
            "not_a_mart": pl.DataFrame({"detail": [f"来电人{NAME}反映"]}),
        },
        cat,
    )
    assert found[f"marts.{RESOURCES_TABLE}"] == 0  # inside catalogue text: chance
    assert found[f"marts.{mart_name}"] == 1  # the whole value is a name: found
    assert found["marts.not_a_mart"] == 1  # free text keeps the substring search


def test_a_column_published_scrubbed_is_free_text() -> None:
    whole = mart_text_columns()
    for name, mart in load_marts().items():
        for c in mart.columns:
            assert (c.name in whole[("marts", name)]) is (c.masking is not MaskingRule.scrub_text)
