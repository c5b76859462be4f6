"""The lake's metadata keeps each column's smallest and largest value: the leak scanner
reads those statistics under the rules of the column they describe. A registry name
inside a structured value (a company's name) is no leak there, as in the lake's table;
in free text, or as a structured column's whole value, it is found."""

from __future__ import annotations

from catalog.settings import Settings
from lakehouse.lake import close_idle, open_lake
from pipelines.leak_files import scan_plain_file

NAME = "凌云"
SHOP = f"北京{NAME}家政有限公司"


def _scan(settings: Settings, structured):
    counts, kind = scan_plain_file(
        settings.lake_dir / "metadata.sqlite", {NAME}, structured=structured
    )
    assert kind == "sqlite"
    return counts


def test_stats_are_read_as_their_columns(settings: Settings) -> None:
    close_idle()
    with open_lake(settings) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS curated")
        con.execute("CREATE TABLE curated.shops (name VARCHAR, note VARCHAR)")
        con.execute("INSERT INTO curated.shops VALUES (?, ?)", [SHOP, "街道走访记录"])
    close_idle()
    structured = {("curated", "shops"): frozenset({"name"})}

    # the company's name, a structured value: its statistics are no leak
    assert _scan(settings, structured).by_kind.get("person_name", 0) == 0
    # without the rules, the name inside it is found (min and max, file and table stats)
    plain = _scan(settings, None)
    assert plain.by_kind["person_name"] == 4
    assert set(plain.by_column) == {
        "ducklake_file_column_stats.min_value",
        "ducklake_file_column_stats.max_value",
        "ducklake_table_column_stats.min_value",
        "ducklake_table_column_stats.max_value",
    }

    with open_lake(settings) as con:
        # the name in free text, and as the whole value of a structured column
        con.execute("INSERT INTO curated.shops VALUES (?, ?)", [NAME, f"市民{NAME}来电"])
    close_idle()
    found = _scan(settings, structured)
    # file stats: the new file's name (whole) and note (free text), min = max in each;
    # table stats: the smallest name is now the whole name (凌 < 北), the smallest note
    # the free text (市 < 街)
    assert found.by_kind["person_name"] == 6
    assert {column for _, column, _ in found.samples} == {
        "ducklake_file_column_stats.min_value",
        "ducklake_file_column_stats.max_value",
        "ducklake_table_column_stats.min_value",
    }
