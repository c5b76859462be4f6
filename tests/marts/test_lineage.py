"""Column lineage: every column of a mart built from curated tables resolves to department
fields (with their raw headers); lineage follows CTEs, unions, UNNEST, scalar subqueries and
other marts, narrows to the datasets the mart's YAML ``sources`` names, and is shown by the
CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.loader import load_catalogue
from catalog.marts import MARTS_DIR, Mart, load_mart
from catalog.model import MaskingRule
from curated.lineage import curated_lineage, curated_schema
from marts.checks import MartMaskingError, check_level, check_marts, check_masking
from marts.lineage import SQL_DIR, MartError, analyse_mart, mart_dependencies, mart_lineage
from tests.cli_text import one_line
from tests.mart_street import MartStreet

CATALOGUE = load_catalogue()


def shipped_marts() -> dict[str, Mart]:
    """Every mart whose YAML loads (a broken one is the YAML test's failure, not this one's)."""
    out = {}
    for path in sorted(MARTS_DIR.glob("*.yaml")):
        mart, problems = load_mart(path)
        if mart is not None and not problems:
            out[mart.name] = mart
    return out


MARTS = shipped_marts()


def reads_curated(name: str, seen: tuple[str, ...] = ()) -> bool:
    """The mart reads a curated table, itself or through the marts it reads."""
    if name in seen or not (SQL_DIR / f"{name}.sql").exists():
        return False
    deps = mart_dependencies(MARTS, name)
    return any(d.startswith("curated.") for d in deps) or any(
        reads_curated(d.split(".", 1)[1], (*seen, name))
        for d in deps
        if d.startswith("marts.") and d.split(".", 1)[1] in MARTS
    )


CURATED_BUILT = sorted(n for n in MARTS if reads_curated(n))


def test_the_shipped_marts_are_covered():
    sql = {p.stem for p in SQL_DIR.glob("*.sql")}
    assert "age_structure" in CURATED_BUILT
    assert set(CURATED_BUILT) <= sql


@pytest.mark.parametrize("name", CURATED_BUILT)
def test_every_column_of_a_curated_built_mart_resolves_to_a_department_field(name: str):
    lineage = mart_lineage(CATALOGUE, MARTS, name)
    assert list(lineage) == MARTS[name].column_names
    fields = {
        (d.code, ds.code, f.name): f.source_name
        for d, ds in CATALOGUE.datasets()
        for f in ds.fields
    }
    unresolved = []
    for column, sources in lineage.items():
        found = [f for s in sources for f in s.fields]
        if not found:
            unresolved.append(f"{column} ← {', '.join(s.ref for s in sources) or 'nothing'}")
        for f in found:  # each a real field of the catalogue, with its raw header
            assert fields[(f.dept, f.dataset, f.field)] == f.header
    assert unresolved == []


def test_the_curated_lineage_covers_every_column_the_lake_holds(mart_street: MartStreet):
    """The curated tables the lineage declares have exactly the lake's columns (a column a
    curated module adds is found), each with at least one department field."""
    schema = curated_schema(mart_street.catalogue)
    for table, columns in schema.items():
        lake = mart_street.query(f'SELECT * FROM curated."{table}" LIMIT 0').columns
        assert set(lake) == set(columns), table
    empty = [c.ref for c in curated_lineage(mart_street.catalogue).values() if not c.fields]
    assert empty == []


def test_encrypted_curated_columns_are_exactly_those_holding_ciphertext(mart_street: MartStreet):
    """What the lineage calls encrypted (and a build decrypts) is what the lake holds as
    ciphertext: checked on the values, not on the declaration."""
    from lakehouse.lake import open_lake
    from masking.crypto import CIPHERTEXT

    columns = [
        c for c in curated_lineage(mart_street.catalogue).values() if c.sql_type == "VARCHAR"
    ]
    with open_lake(mart_street.settings, read_only=True) as con:
        for c in columns:
            values = con.execute(
                f'SELECT "{c.column}" AS v FROM curated."{c.table}" WHERE "{c.column}" IS NOT NULL '
                "LIMIT 200"
            ).pl()["v"]
            if values.len() == 0:
                continue
            sealed = bool(values.str.contains(CIPHERTEXT).all())
            assert sealed == c.encrypted, c.ref
    assert any(c.encrypted for c in columns)


def test_mart_dependencies_are_the_tables_the_sql_names():
    """Parsed dependencies equal an independent reading of each SQL file: the zone-qualified
    names in it, CTE names aside."""
    for name in sorted(MARTS):
        path = SQL_DIR / f"{name}.sql"
        if not path.exists():
            continue
        text = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))
        named = {
            f"{z}.{t}"
            for z, t in re.findall(r"\b(curated|marts)\s*\.\s*\"?([a-z_][a-z0-9_]*)", text)
        }
        assert mart_dependencies(MARTS, name) == named, name


def plant(
    tmp: Path, name: str, sql: str, columns: list[str], **more
) -> tuple[Path, dict[str, Mart]]:
    (tmp / f"{name}.sql").write_text(sql, encoding="utf-8")
    mart = Mart.model_validate(
        {"name": name, "name_zh": name, "summary": name, "level": "L4",
         "share_type": "conditional", "owner": "team:t", "update_cycle": "daily",
         "consent_category": "none", "lawful_basis": "t", "consumers": ["t"],
         "columns": [{"name": c, "label_zh": c, "type": "string", "level": "L1"}
                     for c in columns], **more}
    )  # fmt: skip
    return tmp, {**MARTS, name: mart}


def refs(sources) -> set[str]:
    return {s.ref for s in sources}


def test_lineage_follows_ctes_unions_unnest_and_scalar_subqueries(tmp_path: Path):
    sql_dir, marts = plant(
        tmp_path, "shapes",
        """
        WITH m AS (
            SELECT u.m.person_id AS pid, h.house_id FROM curated.household h, unnest(h.members) AS u(m)
        ), both_ AS (
            SELECT m.pid AS who FROM m
            UNION ALL
            SELECT e.person_id FROM curated.event e
        )
        SELECT
            b.who,
            (SELECT mask_address(ho.address) FROM curated.house ho
              JOIN m ON m.house_id = ho.house_id WHERE m.pid = b.who LIMIT 1) AS home,
            count(*) OVER () AS n
        FROM both_ b
        """,
        ["who", "home", "n"],
    )  # fmt: skip
    lineage = mart_lineage(CATALOGUE, marts, "shapes", sql_dir=sql_dir)
    assert refs(lineage["who"]) == {"curated.household.members", "curated.event.person_id"}
    home = [s for s in lineage["home"] if s.ref == "curated.house.address"]
    assert home and all(s.applied is MaskingRule.mask_address for s in home)
    assert home[0].masks == ("mask_address",)
    assert {f.concept for s in home for f in s.fields} == {"house.address"}
    assert refs(lineage["n"]) >= {"curated.household.household_id", "curated.event.event_id"}


def test_the_yamls_sources_keep_only_their_datasets_fields(tmp_path: Path):
    events = curated_lineage(CATALOGUE)[("event", "at")].fields
    one = events[0]
    sql_dir, marts = plant(
        tmp_path, "narrow", "SELECT e.at FROM curated.event e WHERE e.at IS NOT NULL", ["at"],
        sources={"curated.event": [f"{one.dept}.{one.dataset}"]},
    )  # fmt: skip
    (source,) = mart_lineage(CATALOGUE, marts, "narrow", sql_dir=sql_dir)["at"]
    assert [f.ref for f in source.fields] == [one.ref]
    # a filter in the SQL narrows nothing: the catalogue says which datasets are read
    sql_dir, marts = plant(
        tmp_path, "filtered",
        f"SELECT e.at FROM curated.event e WHERE e.dept = '{one.dept}' "
        f"AND e.dataset = '{one.dataset}'",
        ["at"],
    )  # fmt: skip
    (source,) = mart_lineage(CATALOGUE, marts, "filtered", sql_dir=sql_dir)["at"]
    assert {f.ref for f in source.fields} == {f.ref for f in events}
    sql_dir, marts = plant(tmp_path, "wide", "SELECT e.at FROM curated.event e", ["at"])
    (source,) = mart_lineage(CATALOGUE, marts, "wide", sql_dir=sql_dir)["at"]
    assert {f.ref for f in source.fields} == {f.ref for f in events} and len(events) > 1


def test_lineage_goes_through_the_marts_a_mart_reads(tmp_path: Path):
    sql_dir, marts = plant(
        tmp_path, "on_top", "SELECT a.age_band, a.residents FROM marts.age_structure a",
        ["age_band", "residents"],
    )  # fmt: skip
    (sql_dir / "age_structure.sql").write_text(
        (SQL_DIR / "age_structure.sql").read_text("utf-8"), "utf-8"
    )
    lineage = mart_lineage(CATALOGUE, marts, "on_top", sql_dir=sql_dir)
    (band,) = lineage["age_band"]
    assert band.ref == "curated.person.birth_date"
    assert band.applied is MaskingRule.generalise_age
    assert [f.concept for f in band.fields] == ["person.birth_date"]
    assert band.via == "marts.age_structure.age_band"
    assert band.published_level == MARTS["age_structure"].column("age_band").level


def test_catalog_check_reports_sql_without_yaml_and_columns_that_differ(tmp_path: Path):
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    (sql_dir / "lonely.sql").write_text("SELECT h.household_id FROM curated.household h")
    (sql_dir / "age_structure.sql").write_text(
        "SELECT h.household_id FROM curated.household h", encoding="utf-8"
    )
    marts = {"age_structure": MARTS["age_structure"]}
    problems = [str(p) for p in check_marts(CATALOGUE, marts, sql_dir=sql_dir)]
    assert any("lonely" in p and "no catalogue entry" in p for p in problems)
    assert any("age_structure" in p and "household_id" in p for p in problems)
    assert any("age_structure" in p and "-- comment" in p for p in problems)
    good = tmp_path / "good"
    good.mkdir()
    (good / "age_structure.sql").write_text((SQL_DIR / "age_structure.sql").read_text("utf-8"))
    assert check_marts(CATALOGUE, marts, sql_dir=good) == []


def test_the_cli_shows_column_to_curated_to_department_field():
    from pipelines.cli import app

    result = CliRunner().invoke(app, ["catalog", "lineage", "marts.age_structure"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    band = lines.index(next(line for line in lines if line.startswith("age_band")))
    assert "generalise_age" in lines[band]
    assert lines[band + 1].strip() == "← curated.person.birth_date [through generalise_age]"
    born = next(f for f in mart_lineage(CATALOGUE, MARTS, "age_structure")["age_band"][0].fields)
    assert f"← {born.ref} (raw header {born.header!r}" in lines[band + 2]
    unknown = CliRunner().invoke(app, ["catalog", "lineage", "marts.no_such_mart"])
    assert unknown.exit_code == 1


def test_what_a_count_reads_is_published_as_no_value(tmp_path: Path):
    """count(x), count(DISTINCT x), count(CASE …) and count(*) FILTER (WHERE x …) publish how
    many, no value of x; sum(…) of the same publishes values."""
    sql_dir, marts = plant(
        tmp_path, "counted",
        "SELECT count(DISTINCT p.chronic_disease) AS a,"
        " count(CASE WHEN p.chronic_disease = 'x' THEN 1 END) AS b,"
        " count(*) FILTER (WHERE p.chronic_disease IS NOT NULL) AS c,"
        " sum(CASE WHEN p.chronic_disease = 'x' THEN 1 ELSE 0 END) AS d"
        " FROM curated.person AS p",
        ["a", "b", "c", "d"],
    )  # fmt: skip
    lineage = mart_lineage(CATALOGUE, marts, "counted", sql_dir=sql_dir)

    def rule(column: str) -> MaskingRule:
        (src,) = [s for s in lineage[column] if s.ref == "curated.person.chronic_disease"]
        return src.applied

    assert [rule(c) for c in "abc"] == [MaskingRule.suppress] * 3
    assert rule("d") is MaskingRule.none


def test_a_yaml_rule_stricter_than_the_sql_applies_is_refused(tmp_path: Path):
    """The YAML's masking is the rule the column is published with: a YAML claiming age
    bands over SQL that publishes years is refused (a mart reading it would trust it)."""
    sql_dir, marts = plant(
        tmp_path, "claims", "SELECT generalise_year(p.birth_date) AS born FROM curated.person p",
        ["born"],
    )  # fmt: skip
    column = {"name": "born", "label_zh": "出生年", "type": "string", "level": "L2"}
    for rule, ok in (("generalise_age", False), ("generalise_year", True)):
        mart = Mart.model_validate(
            marts["claims"].model_dump() | {"columns": [column | {"masking": rule}]}
        )
        lineage = analyse_mart(
            CATALOGUE, {**marts, "claims": mart}, "claims", sql_dir=sql_dir
        ).lineage
        if ok:
            check_masking(mart, lineage)
        else:
            with pytest.raises(MartMaskingError, match="YAML says generalise_age"):
                check_masking(mart, lineage)


def test_a_column_read_through_a_mart_counts_at_the_level_that_mart_publishes(tmp_path: Path):
    (tmp_path / "age_structure.sql").write_text((SQL_DIR / "age_structure.sql").read_text("utf-8"))
    sql_dir, marts = plant(
        tmp_path, "reader", "SELECT a.age_band FROM marts.age_structure AS a", ["age_band"]
    )
    published = MARTS["age_structure"].column("age_band").level
    assert published.value == "L2"  # an age band, from an L3 birth date
    reads = analyse_mart(CATALOGUE, marts, "reader", sql_dir=sql_dir).reads
    for level, ok in (("L2", True), ("L1", False)):
        mart = Mart.model_validate(
            marts["reader"].model_dump()
            | {"level": level, "columns": [{"name": "age_band", "label_zh": "年龄段",
                                            "type": "string", "level": level}]}
        )  # fmt: skip
        if ok:
            check_level(mart, reads)
        else:
            with pytest.raises(MartError, match="marts column"):
                check_level(mart, reads)


def test_catalog_check_lists_the_marts_problems_and_exits_1(tmp_path: Path):
    """`streethub catalog check --marts <dir>`: a mart catalogue missing the others' YAML
    and holding one whose columns differ from its SQL is refused, each problem listed."""
    from pipelines.cli import app

    yaml_dir = tmp_path / "marts"
    yaml_dir.mkdir()
    text = (MARTS_DIR / "age_structure.yaml").read_text("utf-8")
    (yaml_dir / "age_structure.yaml").write_text(text.replace("name: gender,", "name: sex,"))
    result = CliRunner().invoke(app, ["catalog", "check", "--marts", str(yaml_dir)])
    assert result.exit_code == 1
    out = one_line(result)
    assert "the SQL's output columns differ from the YAML's" in out and "sex" in out
    others = sorted(p.stem for p in SQL_DIR.glob("*.sql") if p.stem != "age_structure")
    assert others and all(f"marts/sql/{n}.sql has no catalogue entry" in out for n in others)
