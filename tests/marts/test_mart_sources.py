"""Which department datasets feed a mart is catalogue configuration, never SQL: a mart YAML's
``sources`` (``curated.event: [dept.dataset, …]``) narrows the curated table's rows the SQL
sees and the fields its lineage (and so its masking and level checks) follows;
``streethub catalog check`` refuses a source the catalogue does not know or the table does
not hold; and no mart SQL file names a department or dataset code as a string literal."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot
from pydantic import ValidationError
from sqlglot import exp

from catalog.loader import load_catalogue
from catalog.marts import Mart, load_marts
from curated.lineage import curated_lineage
from lakehouse.lake import open_lake
from marts.build import build_mart
from marts.catalogue_tables import marts_for
from marts.checks import MartMaskingError, check_marts, check_masking
from marts.lineage import SQL_DIR, mart_lineage
from marts.sources import DIALECT, held_datasets
from pipelines.protection import Protection
from tests.mart_street import MartStreet
from tests.marts.test_build import col, plant
from tests.streets import copy_home
from tests.test_production_path import TOKEN, codes

CATALOGUE = load_catalogue()
COUNT_SQL = (
    "SELECT e.dept, e.dataset, count(*) AS events FROM curated.event AS e "
    "GROUP BY e.dept, e.dataset ORDER BY e.dept, e.dataset"
)
COUNT_COLUMNS = [col("dept"), col("dataset"), col("events", type_="integer")]


def fresh(tmp: Path, name: str) -> Path:
    (tmp / name).mkdir()
    return tmp / name


def sources_of(lineage, column: str) -> set[tuple[str, str]]:
    return {(f.dept, f.dataset) for s in lineage[column] for f in s.fields}


def test_a_yamls_sources_narrow_the_lineage_and_the_rows_read(
    mart_street: MartStreet, tmp_path: Path
):
    counted = mart_street.query(
        "SELECT dept, dataset, count(*) AS n FROM curated.event GROUP BY dept, dataset"
    )
    held = {(r["dept"], r["dataset"]): r["n"] for r in counted.iter_rows(named=True)}
    assert len(held) >= 3
    kept = sorted(held)[:2]  # two of the datasets the street's events come from
    refs = [f"{d}.{s}" for d, s in kept]
    sql_dir, marts = plant(tmp_path, "planted_sources", COUNT_SQL, COUNT_COLUMNS, level="L2",
                           sources={"curated.event": refs})  # fmt: skip
    lineage = mart_lineage(CATALOGUE, marts, "planted_sources", sql_dir=sql_dir)
    assert sources_of(lineage, "events") == set(kept)
    wide_dir, wide = plant(fresh(tmp_path, "wide"), "planted_wide", COUNT_SQL, COUNT_COLUMNS,
                           level="L4")  # fmt: skip
    assert sources_of(mart_lineage(CATALOGUE, wide, "planted_wide", sql_dir=wide_dir), "events") > (
        set(kept)
    )
    home = copy_home(mart_street.home, tmp_path / "home")
    with open_lake(home) as con:
        built = build_mart(con, mart_street.catalogue, marts, "planted_sources",
                           Protection.from_settings(home), sql_dir=sql_dir)  # fmt: skip
        rows = con.execute('SELECT dept, dataset, events FROM marts."planted_sources"').fetchall()
        left = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name LIKE '_mart_src_%'"
        ).fetchone()
    assert built.rows == len(kept) == len(rows)
    assert {(d, s): n for d, s, n in rows} == {k: held[k] for k in kept}
    assert left == (0,)  # the narrowed view is gone after the build


def test_sources_leaving_out_whereabouts_let_an_event_time_through(tmp_path: Path):
    """Door access times (a person's whereabouts, L3) make ``e.at`` unpublishable unmasked;
    a YAML whose sources leave those datasets out publishes the others' times."""
    fields = curated_lineage(CATALOGUE)[("event", "at")].fields
    sensitive = {(f.dept, f.dataset) for f in fields if f.level.sensitive}
    plain = sorted({(f.dept, f.dataset) for f in fields} - sensitive)
    assert sensitive and plain
    sql = "SELECT e.at AS at FROM curated.event AS e"
    wide_dir, wide = plant(fresh(tmp_path, "w"), "planted_at", sql, [col("at", "L2")], level="L4")
    with pytest.raises(MartMaskingError):
        check_masking(wide["planted_at"], mart_lineage(CATALOGUE, wide, "planted_at",
                                                       sql_dir=wide_dir))  # fmt: skip
    refs = [f"{d}.{s}" for d, s in plain]
    sql_dir, marts = plant(fresh(tmp_path, "n"), "planted_at", sql, [col("at", "L2")], level="L4",
                           sources={"curated.event": refs})  # fmt: skip
    lineage = mart_lineage(CATALOGUE, marts, "planted_at", sql_dir=sql_dir)
    check_masking(marts["planted_at"], lineage)
    assert sources_of(lineage, "at") == set(plain)


def problems_of(tmp_path: Path, name: str, sql: str, sources: dict) -> list[str]:
    sql_dir, marts = plant(
        fresh(tmp_path, name), name, sql, COUNT_COLUMNS, level="L4", sources=sources
    )
    return [str(p) for p in check_marts(CATALOGUE, marts, sql_dir=sql_dir)]


def test_catalog_check_refuses_a_source_unknown_or_of_another_entity(tmp_path: Path):
    events = sorted(held_datasets(CATALOGUE, "event"))
    things = sorted(held_datasets(CATALOGUE, "thing") - set(events))
    assert events and things
    d, s = events[0]
    assert problems_of(tmp_path, "good", COUNT_SQL, {"curated.event": [f"{d}.{s}"]}) == []
    unknown = problems_of(tmp_path, "unknown", COUNT_SQL, {"curated.event": [f"{d}.no_such"]})
    assert len(unknown) == 1 and f"no catalogue dataset {d}.no_such" in unknown[0]
    other = "{}.{}".format(*things[0])  # a dataset of things: curated.event holds none of it
    wrong = problems_of(tmp_path, "wrong", COUNT_SQL, {"curated.event": [other]})
    assert len(wrong) == 1 and f"holds no records of {other}" in wrong[0]
    unread = problems_of(tmp_path, "unread", COUNT_SQL, {"curated.thing": [other]})
    assert len(unread) == 1 and "does not read curated.thing" in unread[0]
    person = problems_of(
        tmp_path, "person",
        "SELECT p.person_id AS dept, p.person_id AS dataset, count(*) AS events "
        "FROM curated.person AS p GROUP BY p.person_id",
        {"curated.person": [f"{d}.{s}"]},
    )  # fmt: skip
    assert len(person) == 1 and "no dept / dataset columns" in person[0]


@pytest.mark.parametrize(
    "sources",
    [{"staged.event": ["a.b"]}, {"curated.event": ["appeals"]}, {"curated.event": []},
     {"curated.event": ["a.b", "a.b"]}],
)  # fmt: skip
def test_a_malformed_sources_entry_is_refused_by_the_yaml(sources: dict):
    entry = {
        "name": "m", "name_zh": "m", "summary": "m", "level": "L1", "share_type": "conditional",
        "owner": "team:t", "update_cycle": "daily", "consent_category": "none", "lawful_basis": "t", "consumers": ["t"],
        "columns": [col("x")], "sources": sources,
    }  # fmt: skip
    with pytest.raises(ValidationError, match="sources"):
        Mart.model_validate(entry)


def literal_codes(sql: str, known: set[str]) -> list[str]:
    """Department / dataset codes a string literal of the SQL names: a literal whose words are
    all codes (``'rx'``, ``'rx.appeals'``, ``'wg%'``) — what a filter on the source would
    use. Prose in a literal (a figure's basis: "appeals first answered …") and comments may
    use the words."""
    tree = sqlglot.parse_one(sql, read=DIALECT)
    found: set[str] = set()
    for lit in tree.find_all(exp.Literal):
        words = TOKEN.findall(lit.this.lower()) if lit.is_string else []
        if words and all(w in known for w in words):
            found.update(words)
    return sorted(found)


def test_the_literal_scan_finds_a_code():
    d, s = sorted(held_datasets(CATALOGUE, "event"))[0]
    sql = (
        f"-- {d}.{s} in a comment is fine\nSELECT 'all {s} of the street' AS x FROM t "
        f"WHERE t.a IN ('{d}', '{s}') OR t.b LIKE '{d}.{s}%'"
    )
    assert literal_codes(sql, codes()) == sorted({d, s})
    assert literal_codes(f"SELECT 'all {s} of the street' AS x", codes()) == []


@pytest.mark.parametrize("path", sorted(SQL_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_no_mart_sql_names_a_department_or_dataset(path: Path):
    assert literal_codes(path.read_text(encoding="utf-8"), codes()) == []


def test_a_hub_whose_catalogue_lacks_a_configured_source_does_not_build_that_mart() -> None:

    full = load_catalogue()
    marts = load_marts()
    configured = {n for n, m in marts.items() if m.sources}
    assert configured  # the shipped marts configure their sources
    assert set(marts_for(full, marts)) == set(marts)
    # a hub without the department of one configured source: its marts (and their readers)
    # are left out, the others still build
    dept = next(iter(marts[sorted(configured)[0]].sources.values()))[0].partition(".")[0]
    smaller = full.model_copy(
        update={"departments": {k: v for k, v in full.departments.items() if k != dept}}
    )
    built = set(marts_for(smaller, marts))
    lacking = {
        n for n, m in marts.items()
        if any(r.partition(".")[0] == dept for refs in m.sources.values() for r in refs)
    }  # fmt: skip
    assert lacking and not lacking & built
    assert built  # marts that do not read that department still build
