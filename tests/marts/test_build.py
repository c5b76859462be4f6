"""The marts' build: masking enforced from the lineage, decryption limited and audited, the
strictest rule where sources combine, dependency order, one transaction."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from catalog.authority import authority
from catalog.marts import Mart, load_mart
from catalog.model import MaskingRule
from curated.households import HOUSEHOLD_KEY
from curated.houses import staged_name
from curated.lineage import curated_lineage
from lakehouse.lake import has_table, open_lake
from marts.build import (
    PURPOSE,
    TEMP_PREFIX,
    MartError,
    MartMaskingError,
    build_mart,
    build_order,
)
from masking.pseudonym import pseudonymise_series
from masking.sql import STRICTNESS, satisfies, strictest
from pipelines.protection import Protection
from tests.mart_street import MartStreet
from tests.streets import copy_home

EXAMPLE = "age_structure"


def plant(tmp: Path, name: str, sql: str, columns: list[dict], level: str = "L4", **more) -> tuple:
    """A mart of our own: its SQL file and YAML under ``tmp``; (sql_dir, {name: Mart})."""
    sql_dir, yaml_dir = tmp / "sql", tmp / "yaml"
    sql_dir.mkdir(exist_ok=True)
    yaml_dir.mkdir(exist_ok=True)
    (sql_dir / f"{name}.sql").write_text(f"-- planted by a test\n{sql}\n", encoding="utf-8")
    entry = {
        "name": name, "name_zh": "测试", "summary": "planted", "level": level,
        "share_type": "conditional", "owner": "team:test", "update_cycle": "daily",
        "consent_category": "none", "lawful_basis": "test", "consumers": ["tests"], "columns": columns, **more,
    }  # fmt: skip
    path = yaml_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(entry, allow_unicode=True), encoding="utf-8")
    mart, problems = load_mart(path)
    assert not problems and mart is not None
    return sql_dir, {name: mart}


def col(name: str, level: str = "L1", masking: str = "none", type_: str = "string") -> dict:
    return {"name": name, "label_zh": name, "type": type_, "level": level, "masking": masking}


def field_behind(street: MartStreet, table: str, column: str):
    """The department field the curated column comes from (one, for a golden attribute)."""
    (f,) = curated_lineage(street.catalogue)[(table, column)].fields
    return f


@pytest.fixture
def copy(mart_street: MartStreet, tmp_path: Path):
    """A copy of the street's home (for builds that write)."""
    return copy_home(mart_street.home, tmp_path)


def mart_build_audits(settings) -> list[dict]:
    from masking.audit import AuditLog
    from masking.keys import KeyRing

    log = AuditLog.from_settings(settings, KeyRing.from_settings(settings))
    return [r for r in log.records() if r.get("purpose") == PURPOSE]


def test_the_example_mart_publishes_age_bands_never_a_birth_date(mart_street: MartStreet):
    build = mart_street.build(EXAMPLE)
    table = mart_street.table(EXAMPLE)
    assert build.rows == table.height > 0
    assert build.columns == mart_street.marts[EXAMPLE].column_names == table.columns
    bands = table["age_band"].drop_nulls()
    assert bands.len() > 0 and bands.str.contains(r"^\d+-\d+$").all()
    assert not table["age_band"].cast(str).str.contains(r"\d{4}-\d{2}-\d{2}").any()
    # only the encrypted column the SQL reads was decrypted, and the decryption is audited
    assert build.decrypted == ["curated.person.birth_date"]
    audited = mart_build_audits(mart_street.settings)
    assert {r["column"] for r in audited} >= {"curated.person.birth_date"}
    assert all(r["column"].startswith("curated.") for r in audited)


def age_band(born: str, on: dt.date) -> str:
    """Ten-year band of the age on ``on`` (written out here, apart from masking.generalise)."""
    b = dt.date.fromisoformat(born[:10])
    age = on.year - b.year - ((on.month, on.day) < (b.month, b.day))
    low = age // 10 * 10
    return f"{low}-{low + 9}"


def test_the_example_marts_figures_equal_the_truths(mart_street: MartStreet):
    """Residents per age band and gender = the simulator's household register: its records
    that passed the row gate (their key's pseudonym is staged), one per true person, bands
    from the true birth dates on the build's date."""
    cat = mart_street.catalogue
    register = authority(cat, HOUSEHOLD_KEY)
    ds = register.dataset
    (key,) = [ds.field(k) for k in ds.key]
    truth = mart_street.truth(register.dept, ds.code)
    keyring = mart_street.protection().keyring
    pids = pseudonymise_series(truth["_key"], keyring, kind=key.pii.value)
    staged = mart_street.query(f'SELECT "_key_pid" FROM staged."{staged_name(register.dept, ds)}"')
    passed = truth.filter(pids.is_in(staged["_key_pid"].implode()))
    assert 0 < passed.height <= truth.height

    def source(concept: str) -> str:
        return next(f.source_name for f in ds.fields if f.concept == concept)

    members = passed.filter(
        pl.col(register.dataset.field(register.field).source_name).is_not_null()
    )
    people = members.unique("_person")
    on = mart_street.built_on
    expected = (
        people.select(
            pl.col(source("person.birth_date"))
            .map_elements(lambda b: age_band(b, on), return_dtype=pl.String)
            .alias("age_band"),
            pl.col(source("person.gender")).alias("gender"),
        )
        .group_by("age_band", "gender")
        .len("residents")
    )
    got = mart_street.table(EXAMPLE)

    def counts(frame: pl.DataFrame) -> dict:
        return {
            (b, g): n for b, g, n in frame.select("age_band", "gender", "residents").iter_rows()
        }

    assert counts(got) == counts(expected)
    assert got["residents"].sum() == people.height


def test_an_unmasked_l4_column_planted_in_a_mart_is_refused(
    mart_street: MartStreet, copy, tmp_path: Path
):
    behind = field_behind(mart_street, "person", "chronic_disease")
    assert behind.level.value == "L4"
    sql_dir, marts = plant(
        tmp_path, "planted_l4",
        "SELECT p.person_id, p.chronic_disease FROM curated.person AS p",
        [col("person_id", "L3", "pseudonymise"), col("chronic_disease", "L4", "encrypt")],
    )  # fmt: skip
    before = len(mart_build_audits(copy))
    with open_lake(copy) as con, pytest.raises(MartMaskingError) as refused:
        build_mart(con, mart_street.catalogue, marts, "planted_l4", Protection.from_settings(copy),
                   sql_dir=sql_dir)  # fmt: skip
    message = str(refused.value)
    assert "planted_l4" in message and "chronic_disease" in message
    assert "curated.person.chronic_disease" in message and behind.ref in message
    assert behind.header in message
    assert refused.value.field == "chronic_disease" and refused.value.dataset == "planted_l4"
    # refused before anything was decrypted or written
    assert len(mart_build_audits(copy)) == before
    with open_lake(copy, read_only=True) as con:
        assert not has_table(con, "marts", "planted_l4")


@pytest.mark.parametrize(
    "expression",
    [
        "p.chronic_disease",  # as it is
        "upper(p.chronic_disease)",  # a function that is no mask
        "mask_name(p.chronic_disease)",  # a mask weaker than the field's rule
        "(SELECT max(q.chronic_disease) FROM curated.person q WHERE q.person_id = p.person_id)",
    ],
)
def test_every_way_round_the_rule_is_refused(mart_street: MartStreet, tmp_path: Path, expression):
    sql_dir, marts = plant(
        tmp_path, "planted_way",
        f"WITH x AS (SELECT p.person_id, {expression} AS v FROM curated.person AS p) "
        "SELECT x.v FROM x",
        [col("v", "L4", "encrypt")],
    )  # fmt: skip
    with open_lake(mart_street.settings, read_only=True) as con, pytest.raises(MartMaskingError):
        build_mart(con, mart_street.catalogue, marts, "planted_way", mart_street.protection(),
                   sql_dir=sql_dir)  # fmt: skip


def test_a_column_combining_two_departments_takes_the_strictest_rule(
    mart_street: MartStreet, copy, tmp_path: Path
):
    born = field_behind(mart_street, "person", "birth_date")
    health = field_behind(mart_street, "person", "health_check_conclusion")
    assert born.dept != health.dept  # two departments' attributes
    need = strictest([born.masking, health.masking])
    assert need is health.masking and need is not born.masking
    combined = "coalesce(p.birth_date, p.health_check_conclusion)"
    # the weaker department's rule is not enough: refused, naming the stricter field
    sql_dir, marts = plant(
        tmp_path, "planted_mix",
        f"SELECT generalise_year({combined}) AS v FROM curated.person AS p",
        [col("v", "L4", born.masking.value)],
    )  # fmt: skip
    with open_lake(copy) as con, pytest.raises(MartMaskingError) as refused:
        build_mart(con, mart_street.catalogue, marts, "planted_mix", Protection.from_settings(copy),
                   sql_dir=sql_dir)  # fmt: skip
    assert health.ref in str(refused.value) and need.value in str(refused.value)
    # a rule at least as strict as the strictest passes the SQL; the YAML must say so too
    flag = f"generalise_flag({combined})"
    for yaml_rule, ok in ((born.masking, False), (MaskingRule.generalise_flag, True)):
        sql_dir, marts = plant(
            tmp_path, "planted_mix", f"SELECT {flag} AS v FROM curated.person AS p",
            [col("v", "L4", yaml_rule.value, "boolean")],
        )  # fmt: skip
        with open_lake(copy) as con:
            if ok:
                build = build_mart(con, mart_street.catalogue, marts, "planted_mix",
                                   Protection.from_settings(copy), sql_dir=sql_dir)  # fmt: skip
                published = con.execute("SELECT v, count(*) FROM marts.planted_mix GROUP BY 1")
                assert set(dict(published.fetchall())) <= {True, False}
                assert (
                    build.rows
                    == mart_street.query("SELECT count(*) AS n FROM curated.person")["n"][0]
                )
            else:
                with pytest.raises(MartMaskingError, match="strictest rule is"):
                    build_mart(con, mart_street.catalogue, marts, "planted_mix",
                               Protection.from_settings(copy), sql_dir=sql_dir)  # fmt: skip


def plain_text_left(con) -> list:
    """The build's decrypted temporary tables or views still on the connection."""
    return con.execute(
        "SELECT view_name FROM duckdb_views() WHERE starts_with(view_name, ?) "
        "UNION ALL SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, ?)",
        [TEMP_PREFIX, TEMP_PREFIX],
    ).fetchall()


def test_the_decrypted_tables_are_gone_after_a_build_and_after_a_failure(
    mart_street: MartStreet, copy, tmp_path: Path
):
    """Built or failed after decrypting, the connection holds no plain text afterwards, and
    a failure that could quote a value (a conversion error) does not."""
    sql_dir, marts = plant(
        tmp_path, "planted_fail",
        "SELECT CAST(generalise_age(p.birth_date, DATE '2026-11-30') AS INTEGER) AS band "
        "FROM curated.person AS p",
        [col("band", "L3", "generalise_age", "integer")], level="L3",
    )  # fmt: skip
    before = len(mart_build_audits(copy))
    with open_lake(copy) as con:
        with pytest.raises(MartError) as failed:
            build_mart(con, mart_street.catalogue, marts, "planted_fail",
                       Protection.from_settings(copy), sql_dir=sql_dir)  # fmt: skip
        assert plain_text_left(con) == []
        build_mart(con, mart_street.catalogue, mart_street.marts, EXAMPLE,
                   Protection.from_settings(copy))  # fmt: skip
        assert plain_text_left(con) == []
    assert "withheld" in str(failed.value) and not re.search(r"\d+-\d+", str(failed.value))
    assert len(mart_build_audits(copy)) == before + 2  # birth dates opened twice, audited


def test_strictness_orders_every_rule_and_a_rule_meets_itself():
    assert set(STRICTNESS) == set(MaskingRule)
    for rule in MaskingRule:
        assert satisfies(rule, rule)
        assert satisfies(MaskingRule.suppress, rule)
    assert not satisfies(MaskingRule.none, MaskingRule.mask_name)
    assert not satisfies(MaskingRule.mask_mobile, MaskingRule.mask_name)  # same rank, other kind
    assert satisfies(MaskingRule.generalise_age, MaskingRule.generalise_year)
    assert not satisfies(MaskingRule.generalise_year, MaskingRule.generalise_age)
    assert satisfies(MaskingRule.generalise_flag, MaskingRule.encrypt)
    assert not satisfies(MaskingRule.generalise_flag, MaskingRule.suppress)


def test_the_output_columns_must_be_the_yamls(mart_street: MartStreet, tmp_path: Path):
    sql_dir, marts = plant(
        tmp_path, "planted_cols", "SELECT h.household_id, h.member_count FROM curated.household h",
        [col("household_id", "L2", "pseudonymise"), col("members", "L1", type_="integer")],
    )  # fmt: skip
    with (
        open_lake(mart_street.settings, read_only=True) as con,
        pytest.raises(MartError, match="member_count") as refused,
    ):
        build_mart(con, mart_street.catalogue, marts, "planted_cols",
                   mart_street.protection(), sql_dir=sql_dir)  # fmt: skip
    assert not isinstance(refused.value, MartMaskingError)


def test_a_mart_below_the_level_it_reads_is_refused(mart_street: MartStreet, tmp_path: Path):
    sql_dir, marts = plant(
        tmp_path, "planted_level",
        "SELECT generalise_age(p.birth_date, DATE '2026-11-30') AS band, count(*) AS n "
        "FROM curated.person p GROUP BY 1",
        [col("band", "L2", "generalise_age"), col("n", "L1", type_="integer")], level="L2",
    )  # fmt: skip
    with (
        open_lake(mart_street.settings, read_only=True) as con,
        pytest.raises(MartError, match="below the L3 source"),
    ):
        build_mart(con, mart_street.catalogue, marts, "planted_level",
                   mart_street.protection(), sql_dir=sql_dir)  # fmt: skip


def test_marts_build_after_the_marts_they_read(tmp_path: Path):
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    texts = {
        "a": "SELECT h.household_id FROM curated.household h",
        "b": "WITH x AS (SELECT * FROM marts.a) SELECT x.household_id FROM x",
        "c": "SELECT b.household_id FROM marts.b AS b JOIN marts.a AS a USING (household_id)",
    }
    for name, sql in texts.items():
        (sql_dir / f"{name}.sql").write_text(sql, encoding="utf-8")
    one = {"name": "household_id", "label_zh": "户", "type": "string", "level": "L2",
           "masking": "pseudonymise"}  # fmt: skip
    base = {"level": "L2", "share_type": "conditional", "owner": "team:t",
            "update_cycle": "daily", "consent_category": "none", "lawful_basis": "t", "consumers": ["t"]}  # fmt: skip
    marts = {
        n: Mart.model_validate(base | {"name": n, "name_zh": n, "summary": n, "columns": [one]})
        for n in texts
    }
    assert build_order(marts, ["c"], sql_dir=sql_dir) == ["a", "b", "c"]
    assert build_order(marts, sql_dir=sql_dir) == ["a", "b", "c"]
    (sql_dir / "a.sql").write_text("SELECT c.household_id FROM marts.c AS c", encoding="utf-8")
    with pytest.raises(MartError, match="cycle"):
        build_order(marts, sql_dir=sql_dir)


def test_refusals_never_carry_a_value(mart_street: MartStreet, tmp_path: Path):
    """Whatever is refused, the message names places, never a decrypted or raw value."""
    sql_dir, marts = plant(
        tmp_path, "planted_msg", "SELECT p.name, p.mobile FROM curated.person AS p",
        [col("name", "L3", "mask_name"), col("mobile", "L3", "mask_mobile")],
    )  # fmt: skip
    with (
        open_lake(mart_street.settings, read_only=True) as con,
        pytest.raises(MartMaskingError) as e,
    ):
        build_mart(con, mart_street.catalogue, marts, "planted_msg", mart_street.protection(),
                   sql_dir=sql_dir)  # fmt: skip
    assert not re.search(r"\d{11}|[\u4e00-\u9fff]\*", str(e.value))


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        # a curated table the lineage does not describe (the history holds ciphertexts)
        ("SELECT h.value FROM curated.person_attribute_history AS h", "does not describe"),
        # beside it, an unqualified column no known table holds
        ("SELECT p.person_id, value FROM curated.person AS p "
         "CROSS JOIN curated.person_attribute_history AS h", "cannot tell which table"),
        # DuckDB's COLUMNS(…) and a star the parser cannot expand hide what is read
        ("SELECT COLUMNS('chronic_.*') AS value FROM curated.person AS p", "hide"),
        ("SELECT * FROM curated.person AS p, landing.deliveries AS value", "hide"),
    ],
)  # fmt: skip
def test_a_column_the_masking_check_cannot_follow_is_refused(
    mart_street: MartStreet, tmp_path: Path, sql: str, reason: str
):
    names = re.findall(r"SELECT (.*?) FROM", sql)[0].split(", ")
    columns = [col(n.split(".")[-1].split(" AS ")[-1].strip("*") or "value", "L4", "encrypt")
               for n in names]  # fmt: skip
    sql_dir, marts = plant(tmp_path, "planted_vague", sql, columns)
    with (
        open_lake(mart_street.settings, read_only=True) as con,
        pytest.raises(MartError, match=reason) as refused,
    ):
        build_mart(con, mart_street.catalogue, marts, "planted_vague", mart_street.protection(),
                   sql_dir=sql_dir)  # fmt: skip
    assert refused.value.dataset == "planted_vague"


def test_the_sql_masks_are_the_masking_modules_over_many_vectors():
    """Each SQL mask gives what its one implementation gives, row for row, over more rows
    than a DuckDB vector holds, nulls included (the Arrow UDFs keep order and alignment)."""
    import duckdb

    from masking import generalise as gen
    from masking.masks import DISPLAY_MASKS
    from masking.sql import register_masks

    samples = ["张三丰", "欧阳修文", "13812345678", "+86 139 1234 5678", "11010519491231002X",
               "北京市朝阳区建外街道建外社区3号楼2单元501室", "1954-03-02", "2026-11-30 08:15:00",
               "", " 糖尿病 ", "a@example.com", "京A12345", "6222021234567890123", None]  # fmt: skip
    values = pl.Series("v", [samples[(i * 5) % len(samples)] for i in range(5_000)], pl.String)
    con = duckdb.connect()
    register_masks(con)
    con.register("t", values.to_frame().with_row_index("i").to_arrow())
    expected = {rule.value: mask for rule, mask in DISPLAY_MASKS.items()}
    expected |= {"generalise_year": gen.to_year, "generalise_month": gen.to_month,
                 "generalise_flag": gen.holds_value}  # fmt: skip
    for name, mask in expected.items():
        got = con.execute(f"SELECT {name}(v) AS m FROM t ORDER BY i").pl()["m"]
        want = values.to_frame().select(mask(pl.col("v"))).to_series()
        assert got.cast(want.dtype).to_list() == want.to_list(), name
    births = con.execute(
        "SELECT generalise_age(v, DATE '2026-11-30') AS m FROM t WHERE v = '1954-03-02'"
    ).pl()["m"]
    assert set(births) == {age_band("1954-03-02", dt.date(2026, 11, 30))} == {"70-79"}
    flags = con.execute("SELECT generalise_flag(v) AS f, count(*) FROM t GROUP BY 1").fetchall()
    assert {f for f, _ in flags} == {True, False}


def test_k_anonymity_is_enforced_on_what_is_published(
    mart_street: MartStreet, copy, tmp_path: Path
):
    """A YAML naming quasi-identifiers gets a published table in which every class of them
    holds at least k rows, at most 5 % of the rows suppressed; a quasi-identifier the
    enforcement would turn to text must be a text column."""
    from masking.kanon import check_k

    sql_dir, marts = plant(
        tmp_path, "planted_k",
        "SELECT p.person_id, generalise_age(p.birth_date, DATE '2026-11-30') AS age_band, "
        "p.gender FROM curated.person AS p WHERE p.birth_date IS NOT NULL",
        [col("person_id", "L4", "pseudonymise"), col("age_band", "L2", "generalise_age"),
         col("gender", "L2")],
        k_anonymity=25, quasi_identifiers=["age_band", "gender"],
    )  # fmt: skip
    with open_lake(copy) as con:
        build = build_mart(con, mart_street.catalogue, marts, "planted_k",
                           Protection.from_settings(copy), sql_dir=sql_dir)  # fmt: skip
        published = con.execute("SELECT * FROM marts.planted_k").pl()
    assert build.kanon is not None and build.rows == published.height
    report = check_k(published, ["age_band", "gender"], 25)
    assert report.ok and report.smallest_class >= 25
    assert build.kanon.suppressed_rows <= 0.05 * build.kanon.rows_before
    assert build.kanon.rows_before - build.kanon.suppressed_rows == published.height

    sql_dir, marts = plant(
        tmp_path, "planted_k_int",
        "SELECT h.household_id, h.member_count FROM curated.household AS h",
        [col("household_id", "L2", "pseudonymise"), col("member_count", "L1", type_="integer")],
        k_anonymity=400, quasi_identifiers=["member_count"],
    )  # fmt: skip
    with (
        open_lake(copy) as con,
        pytest.raises(MartError, match="generalised 'member_count' to text") as refused,
    ):
        build_mart(con, mart_street.catalogue, marts, "planted_k_int",
                   Protection.from_settings(copy), sql_dir=sql_dir)  # fmt: skip
    assert refused.value.field == "member_count"


def test_a_result_type_other_than_the_yamls_is_refused(mart_street: MartStreet, tmp_path: Path):
    sql_dir, marts = plant(
        tmp_path, "planted_type", "SELECT count(*) AS n FROM curated.household AS h",
        [col("n", "L1", type_="string")],
    )  # fmt: skip
    with (
        open_lake(mart_street.settings, read_only=True) as con,
        pytest.raises(MartError, match="'n' is BIGINT in the result; the YAML says string"),
    ):
        build_mart(con, mart_street.catalogue, marts, "planted_type", mart_street.protection(),
                   sql_dir=sql_dir)  # fmt: skip


@given(st.lists(st.sampled_from(list(MaskingRule)), min_size=1, max_size=6))
def test_the_strictest_of_any_rules_meets_each_of_them(rules: list[MaskingRule]):
    """Where sources combine, the strictest rule meets every source's rule; meeting is
    transitive, so a rule stricter than the strictest meets them all too."""
    top = strictest(rules)
    assert all(satisfies(top, r) for r in rules)
    for stronger in MaskingRule:
        if satisfies(stronger, top):
            assert all(satisfies(stronger, r) for r in rules)


def test_no_published_mart_holds_personal_information_in_the_clear(mart_street: MartStreet):
    """The leak scanner (the one `streethub leaks scan` runs, with the registers' names)
    finds nothing in any table of the marts zone, every mart built."""
    from lakehouse.lake import tables_in
    from masking.names import KnownNames
    from pipelines.leaks import card_columns, registry_names, scan_tables, structured_columns

    cat = mart_street.catalogue
    with open_lake(mart_street.settings, read_only=True) as con:
        registered = registry_names(con, cat, mart_street.protection())
        names = KnownNames(registered)
        tables = tables_in(con, "marts")
        findings = scan_tables(con, tables, names, structured_columns(cat), card_columns(cat))
    built = {f"marts.{n}" for n in mart_street.builds}
    assert len(registered) > 100  # the scanner knows the street's names
    assert built and built <= {f.place for f in findings}
    assert sum(f.cells for f in findings) > 0
    assert {f.place: dict(f.counts.by_kind) for f in findings if f.leaks} == {}
