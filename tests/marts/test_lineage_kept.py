"""Shortcuts of a mart build that must not change its result: the lineage kept for the
process equals a fresh resolve (and follows a changed SQL file), the masks are
registered on a build's connection whenever its query calls one, and a decrypted
temporary table holding only the columns the query reads gives the same rows."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import sqlglot

from lakehouse.lake import open_lake
from marts import build as build_module
from marts import lineage as lineage_module
from marts.build import build_mart, calls_masks
from marts.lineage import (
    DIALECT,
    SQL_DIR,
    analyse_mart,
    mart_dependencies,
    mart_lineage,
    read_sql,
)
from masking.crypto import decrypt_series
from masking.kanon import enforce_k
from masking.sql import SQL_MASKS
from pipelines.protection import Protection
from tests.mart_street import MartStreet
from tests.marts.test_lineage import CATALOGUE, CURATED_BUILT, MARTS, plant
from tests.streets import copy_home


def test_a_kept_lineage_equals_a_fresh_resolve_and_is_the_callers_copy():
    for name in CURATED_BUILT:
        fresh = lineage_module._lineage(CATALOGUE, MARTS, name)
        first = mart_lineage(CATALOGUE, MARTS, name)
        assert first == fresh
        first.clear()  # the caller's copy: the kept one is untouched
        assert mart_lineage(CATALOGUE, MARTS, name) == fresh


def _uncached(monkeypatch) -> None:
    """Every mart a lineage reads resolved anew for it, as before analyses were kept."""
    monkeypatch.setattr(lineage_module, "_ANALYSES", {})
    monkeypatch.setattr(lineage_module, "_reaches", lambda *_: True)


def _fields(a: lineage_module.MartAnalysis) -> tuple:
    return a.lineage, a.reads, a.unresolved, a.hidden, a.tables, a.tree.sql(dialect=DIALECT)


def test_a_kept_analysis_equals_one_resolved_anew_through_every_mart_it_reads(monkeypatch):
    names = [n for n in sorted(MARTS) if (SQL_DIR / f"{n}.sql").exists()]
    assert any(t.startswith("marts.") for n in names for t in mart_dependencies(MARTS, n))
    monkeypatch.setattr(lineage_module, "_ANALYSES", {})
    kept = {n: _fields(analyse_mart(CATALOGUE, MARTS, n)) for n in names}
    with monkeypatch.context() as m:
        _uncached(m)
        anew = {n: _fields(lineage_module._analyse(CATALOGUE, MARTS, n, None)) for n in names}
    assert kept == anew


def test_marts_reading_each_other_in_a_cycle_resolve_as_before(tmp_path: Path, monkeypatch):
    sql_dir, marts = plant(tmp_path, "ring_a", "SELECT b.x FROM marts.ring_b b", ["x"])
    sql_dir, more = plant(tmp_path, "ring_b", "SELECT a.x FROM marts.ring_a a", ["x"])
    marts = {**marts, "ring_b": more["ring_b"]}
    monkeypatch.setattr(lineage_module, "_ANALYSES", {})
    kept = {n: mart_lineage(CATALOGUE, marts, n, sql_dir=sql_dir) for n in ("ring_a", "ring_b")}
    with monkeypatch.context() as m:
        _uncached(m)
        anew = {n: lineage_module._lineage(CATALOGUE, marts, n, (), sql_dir) for n in kept}
    assert kept == anew


def test_each_marts_sql_is_parsed_once_for_every_use_in_a_run(monkeypatch):
    """What a run asks (which marts the catalogue can build, twice; the catalogue's
    mart_sources table; each build's analysis; the dependencies) parses each SQL once."""
    from marts.catalogue_tables import mart_sources, marts_for

    monkeypatch.setattr(lineage_module, "_ANALYSES", {})
    parsed: list[str] = []
    real = lineage_module.parse_mart

    def counting(sql: str, name: str, schema: dict):
        parsed.append(name)
        return real(sql, name, schema)

    monkeypatch.setattr(lineage_module, "parse_mart", counting)
    buildable = marts_for(CATALOGUE, MARTS)
    buildable = marts_for(CATALOGUE, buildable)
    mart_sources(CATALOGUE, buildable)
    for name in buildable:
        analyse_mart(CATALOGUE, buildable, name)
        mart_lineage(CATALOGUE, buildable, name)
    assert len(buildable) > 5
    assert sorted(parsed) == sorted(set(parsed)) and set(buildable) <= set(parsed)


def test_a_changed_sql_file_is_resolved_again(tmp_path: Path):
    sql_dir, marts = plant(
        tmp_path, "on_top", "SELECT a.age_band, a.residents FROM marts.age_structure a",
        ["age_band", "residents"],
    )  # fmt: skip
    (sql_dir / "age_structure.sql").write_text(read_sql("age_structure"), "utf-8")
    (band,) = mart_lineage(CATALOGUE, marts, "on_top", sql_dir=sql_dir)["age_band"]
    assert band.ref == "curated.person.birth_date"
    # the mart it reads now takes its band from another column: on_top's lineage follows
    changed = read_sql("age_structure").replace("p.birth_date,", "p.birth_date_as_of,")
    assert changed != read_sql("age_structure")
    (sql_dir / "age_structure.sql").write_text(changed, "utf-8")
    again = mart_lineage(CATALOGUE, marts, "on_top", sql_dir=sql_dir)
    assert again == lineage_module._lineage(CATALOGUE, marts, "on_top", (), sql_dir)
    assert [s.ref for s in again["age_band"]] != [band.ref]


def test_the_masks_are_registered_when_the_query_calls_one(tmp_path: Path):
    for path in sorted(SQL_DIR.glob("*.sql")):
        tree = sqlglot.parse_one(path.read_text("utf-8"), read=DIALECT)
        named = {f.name.lower() for f in tree.find_all(sqlglot.exp.Anonymous)}
        assert calls_masks(tree) == bool(named & set(SQL_MASKS)), path.stem
    assert calls_masks(analyse_mart(CATALOGUE, MARTS, "age_structure").tree)
    sql_dir, marts = plant(
        tmp_path, "addresses", "SELECT mask_address(h.address) AS a FROM curated.house h", ["a"]
    )
    assert calls_masks(analyse_mart(CATALOGUE, marts, "addresses", sql_dir=sql_dir).tree)
    sql_dir, marts = plant(
        tmp_path, "plain", "SELECT h.house_id FROM curated.house h", ["house_id"]
    )
    assert not calls_masks(analyse_mart(CATALOGUE, marts, "plain", sql_dir=sql_dir).tree)


def test_a_decrypted_table_of_only_the_columns_read_builds_the_same_rows(
    mart_street: MartStreet, tmp_path: Path, monkeypatch
):
    """Each mart that decrypts curated columns: its rows with the temporary table narrowed
    to the columns the query reads equal its rows with the whole table (the way before)."""
    settings = copy_home(mart_street.home, tmp_path)
    cat, marts = mart_street.catalogue, mart_street.marts
    decrypting = [
        n for n in mart_street.builds
        if any(s.curated is not None and s.curated.encrypted
               for s in analyse_mart(cat, marts, n).reads)
    ]  # fmt: skip
    assert {"age_structure", "resident_profile", "elderly_care"} <= set(decrypting)
    protection = Protection.from_settings(settings)

    def rows(name: str) -> pl.DataFrame:
        with open_lake(settings) as con:
            built = build_mart(con, cat, marts, name, protection, publish=False)
        frame = pl.from_arrow(built.result)
        return frame.sort(frame.columns)

    for name in decrypting:
        narrowed = rows(name)
        with monkeypatch.context() as m:
            m.setattr(build_module, "columns_read", lambda *_: "*")
            whole = rows(name)
        assert narrowed.equals(whole), name


def test_the_tables_a_mart_reads_follow_its_sql_text(tmp_path: Path):
    sql_dir, marts = plant(
        tmp_path, "reads", "SELECT h.house_id FROM curated.house h", ["house_id"]
    )
    assert mart_dependencies(marts, "reads", sql_dir=sql_dir) == {"curated.house"}
    (sql_dir / "reads.sql").write_text("SELECT e.event_id AS house_id FROM curated.event e")
    assert mart_dependencies(marts, "reads", sql_dir=sql_dir) == {"curated.event"}


def test_a_mart_read_through_another_decrypts_nothing_behind_it(
    mart_street: MartStreet, tmp_path: Path, monkeypatch
):
    """A mart reading another mart's masked columns (elderly_care reads resident_profile's
    flags, elderly_alert elderly_care's age band) decrypts only the curated columns its own
    query reads, and its rows equal those of the way before (every encrypted curated column
    behind its lineage decrypted)."""
    settings = copy_home(mart_street.home, tmp_path)
    cat, marts = mart_street.catalogue, mart_street.marts
    protection = Protection.from_settings(settings)
    stacked = [
        n for n in mart_street.builds
        if any(s.via is not None and s.curated is not None and s.curated.encrypted
               for s in analyse_mart(cat, marts, n).reads)
    ]  # fmt: skip
    assert {"elderly_care", "elderly_alert"} <= set(stacked)

    def built(name: str) -> tuple[pl.DataFrame, list[str]]:
        with open_lake(settings) as con:
            b = build_mart(con, cat, marts, name, protection, publish=False)
        frame = pl.from_arrow(b.result)
        return frame.sort(frame.columns), b.decrypted

    for name in stacked:
        reads = analyse_mart(cat, marts, name).reads
        direct = {s.curated.ref for s in reads
                  if s.via is None and s.curated is not None and s.curated.encrypted}  # fmt: skip
        rows, decrypted = built(name)
        with monkeypatch.context() as m:
            m.setattr(build_module, "read_directly", lambda reads: reads)
            rows_before, decrypted_before = built(name)
        assert rows.equals(rows_before), name
        assert set(decrypted) == direct, name
        assert set(decrypted) < set(decrypted_before), name


def test_a_table_decrypted_in_place_holds_each_rows_plain_text(
    mart_street: MartStreet, tmp_path: Path
):
    """The temporary table a build decrypts a column at a time inside DuckDB holds, row by
    row id, what decrypting the curated column whole in polars gives (the way before), and
    the columns it does not decrypt as the curated table holds them."""
    settings = copy_home(mart_street.home, tmp_path)
    cat, marts = mart_street.catalogue, mart_street.marts
    protection = Protection.from_settings(settings)
    name = "resident_profile"
    reads = analyse_mart(cat, marts, name).reads
    temps: dict[str, str] = {}
    with open_lake(settings) as con:
        try:
            opened = build_module._decrypt_sources(con, marts[name], reads, protection, temps)
            got = con.execute(f'SELECT * FROM temp.main."{temps["person"]}"').pl()
        finally:
            build_module._drop_temps(con, temps, {})
        stored = con.execute(f"SELECT {', '.join(got.columns)} FROM curated.person").pl()
    assert len(opened) >= 2 and got.height == stored.height
    for ref in opened:
        column = ref.rpartition(".")[2]
        want = decrypt_series(
            stored[column],
            protection.keyring,
            column=ref,
            purpose=build_module.PURPOSE,
            actor=protection.actor,
            audit=protection.audit,
            rows=stored["person_id"],
        )
        assert not want.drop_nulls().equals(stored[column].drop_nulls()), ref  # opened
        stored = stored.with_columns(want)
    assert got.sort("person_id").equals(stored.sort("person_id"))


def test_a_result_kept_in_duckdb_is_made_k_anonymous_and_published_as_read_whole(
    mart_street: MartStreet, tmp_path: Path
):
    """The result stays in a temporary table and k-anonymity sees only the
    quasi-identifiers: the rows equal ``enforce_k`` over the whole result read into polars
    (the way before), in order, and the published table holds them."""
    settings = copy_home(mart_street.home, tmp_path)
    cat, marts = mart_street.catalogue, mart_street.marts
    protection = Protection.from_settings(settings)
    name = "resident_profile"
    mart = marts[name]
    assert mart.k_anonymity is not None
    whole = {**marts, name: mart.model_copy(update={"k_anonymity": None, "quasi_identifiers": []})}
    with open_lake(settings) as con:
        raw = pl.from_arrow(build_mart(con, cat, whole, name, protection, publish=False).result)
        built = build_mart(con, cat, marts, name, protection)
        published = con.execute(f"SELECT * FROM marts.{name}").pl()
    want, report = enforce_k(
        raw, mart.quasi_identifiers, mart.k_anonymity, max_suppression=build_module.MAX_SUPPRESSION
    )
    assert report.steps and built.kanon is not None and built.kanon.steps == report.steps
    assert published.equals(want) and built.rows == want.height <= raw.height
