"""Golden records, their history, conflicts and the re-collection metric on a small street.

Person mentions are built here with the exact rule (same citizen-ID pseudonym = same
person) until the master resident index writes them."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from catalog.authority import authority, fields_of_concept, person_key, pid_column, pid_fields
from catalog.errors import StreethubError
from catalog.loader import load_catalogue
from catalog.model import Catalogue, Dataset, PiiKind
from curated import golden_refresh
from curated.golden import (
    CONFLICTS,
    HISTORY,
    PERSON,
    as_of_field,
    build_golden,
    golden_attributes,
    golden_checks,
    live_plans,
    person_as_of,
    reveal_history,
    reveal_persons,
)
from curated.golden_refresh import refresh_golden
from curated.persons import link_persons, merge, split
from curated.recollection import (
    build_recollection,
    duplicate_entry_avoidable,
    recollection_by_concept,
    recollection_by_department,
)
from lakehouse.lake import ensure_table, has_column, has_table, insert_frame, open_lake, transaction
from masking.crypto import CIPHERTEXT, decrypt_series
from masking.errors import DecryptionError
from masking.names import KnownNames
from masking.pseudonym import pseudonymise_series
from pipelines.leaks import registry_names, scan_tables
from pipelines.protection import Protection, key_pids
from quality.scores_authority import compare, comparisons
from tests.streets import copy_home

MENTION_COLUMNS = [
    ("dept", "VARCHAR"), ("dataset", "VARCHAR"), ("key_pid", "VARCHAR"),
    ("person_id", "VARCHAR"), ("method", "VARCHAR"), ("match_probability", "DOUBLE"),
    ("linked_at", "TIMESTAMPTZ"),
]  # fmt: skip


def _table(dept: str, ds: Dataset) -> str:
    return f'staged."{dept}__{ds.code}"'


def revealed(con, cat: Catalogue, protection: Protection, dept: str, ds: Dataset) -> pl.DataFrame:
    """A staged table decrypted, with each row's subject as ``person_id`` (exact rule)."""
    frame = protection.reveal(
        con.execute(f"SELECT * FROM {_table(dept, ds)}").pl(), ds, "master_index"
    )
    (key_field,) = fields_of_concept(ds, person_key(cat))
    pid = pseudonymise_series(frame[key_field], protection.keyring, kind=PiiKind.citizen_id)
    return frame.with_columns(pid.alias("person_id"))


def write_exact_mentions(con, cat: Catalogue, protection: Protection) -> int:
    """curated.person_mentions by the exact rule: a record's subject is the pseudonym of
    its one person-key field (the staged ``_pid_`` column when staging wrote it)."""
    frames = []
    for dept, ds in cat.datasets():
        keys = fields_of_concept(ds, person_key(cat))
        if len(keys) != 1 or not has_table(con, "staged", f"{dept.code}__{ds.code}"):
            continue
        if has_column(con, "staged", f"{dept.code}__{ds.code}", f"_pid_{keys[0]}"):
            frame = con.execute(
                f'SELECT _key_pid, "_pid_{keys[0]}" AS person_id FROM {_table(dept.code, ds)}'
            ).pl()
        else:
            frame = revealed(con, cat, protection, dept.code, ds).select("_key_pid", "person_id")
        frames.append(
            frame.filter(pl.col("person_id").is_not_null()).select(
                pl.lit(dept.code).alias("dept"),
                pl.lit(ds.code).alias("dataset"),
                pl.col("_key_pid").alias("key_pid"),
                "person_id",
                pl.lit("exact").alias("method"),
                pl.lit(None, pl.Float64).alias("match_probability"),
                pl.lit(dt.datetime(2026, 11, 30, tzinfo=dt.UTC)).alias("linked_at"),
            )
        )
    mentions = pl.concat(frames)
    with transaction(con):
        ensure_table(con, "curated", "person_mentions", MENTION_COLUMNS)
        con.execute("DELETE FROM curated.person_mentions")
        insert_frame(con, "curated", "person_mentions", mentions)
    return mentions.height


@pytest.fixture(scope="module")
def street(staged_street, tmp_path_factory):
    """The session street with its golden records (on a copy)."""
    settings = copy_home(staged_street.home, tmp_path_factory.mktemp("golden"))
    cat = load_catalogue()
    protection = Protection.from_settings(settings)
    with open_lake(settings) as con:
        write_exact_mentions(con, cat, protection)
        build_golden(con, cat, protection)
        build_recollection(con, cat)
    return settings, cat, protection


@pytest.fixture
def changed_street(street, tmp_path):
    """A copy of the street for a test that changes it."""
    settings, cat, _ = street
    mine = copy_home(settings.home, tmp_path)
    return mine, cat, Protection.from_settings(mine)


def test_each_attribute_is_the_authoritys_latest_value(street):
    settings, cat, protection = street
    with open_lake(settings) as con:
        person = reveal_persons(con, cat, protection)
        assert person["person_id"].is_unique().all()
        assert (
            person["person_id"].n_unique()
            == con.execute(
                "SELECT count(DISTINCT person_id) FROM curated.person_mentions"
            ).fetchone()[0]
        )
        attrs = golden_attributes(cat)
        assert {"person.name", "person.care_level", "person.chronic_disease"} <= {
            a.concept for a in attrs
        }
        assert person_key(cat) not in {a.concept for a in attrs}
        for a in attrs:
            auth = a.authority
            frame = revealed(con, cat, protection, auth.dept, auth.dataset)
            dated = as_of_field(auth.dataset)
            order = [dated] if dated else []
            latest = (
                frame.filter(pl.col(auth.field).is_not_null() & pl.col("person_id").is_not_null())
                .sort([*order, "_loaded_at", "_key_pid"])
                .group_by("person_id")
                .agg(pl.col(auth.field).last().cast(pl.String).alias("expected"))
            )
            got = person.filter(pl.col(a.column).is_not_null())
            assert got.height == latest.height, a.concept
            both = got.join(latest, on="person_id", how="inner")
            assert both.height == latest.height, a.concept
            assert (both[a.column].cast(pl.String) == both["expected"]).all(), a.concept
            assert set(got[f"{a.column}_source"].unique()) <= {auth.ref}
            assert got[f"{a.column}_as_of"].null_count() == 0
        # a person in the register has its name; many persons carry several attributes
        assert person["name"].null_count() < person.height / 2


def test_no_plain_value_in_curated(street):
    settings, cat, protection = street
    with open_lake(settings) as con:
        stored = con.execute(f"SELECT * FROM curated.{PERSON}").pl()
        for a in golden_attributes(cat):
            values = stored[a.column].drop_nulls()
            if a.sensitive:
                assert values.len() > 0 and values.str.contains(CIPHERTEXT).all(), a.concept
        hist = con.execute(f"SELECT * FROM curated.{HISTORY} WHERE encrypted").pl()
        assert hist.height > 0 and hist["value"].str.contains(CIPHERTEXT).all()
        # bound to the row: a person's name under another person does not decrypt
        two = stored.filter(pl.col("name").is_not_null()).head(2)
        with pytest.raises(DecryptionError):
            decrypt_series(
                two["name"].reverse(), protection.keyring, column="curated.person.name",
                purpose="golden_record", actor="test", audit=protection.audit,
                rows=two["person_id"],
            )  # fmt: skip
        names = KnownNames(registry_names(con, cat, protection))
        assert len(names) > 100
        tables = [("curated", t) for t in ("person", "person_attribute_history",
                                           "attribute_checks", "attribute_conflicts",
                                           "recollection")]  # fmt: skip
        findings = scan_tables(con, tables, names)
        assert all(f.cells > 0 for f in findings)
        assert [f.place for f in findings if f.leaks] == []


def test_conflicts_agree_with_the_consistency_score(street):
    settings, cat, protection = street
    with open_lake(settings) as con:
        counted = con.execute(f"SELECT * FROM curated.{CONFLICTS}").pl()
        checks = golden_checks(cat)
        assert counted.height == len(checks) and counted.height > len(comparisons(cat)) / 2
        mine = {(c.dept, c.dataset, c.field) for c in checks}
        for cmp in comparisons(cat):
            if (cmp.dept, cmp.dataset, cmp.field) not in mine:
                continue
            frame = revealed(
                con, cat, protection, cmp.dept, cat.dataset(f"{cmp.dept}.{cmp.dataset}")[1]
            )
            auth_ds = cat.dataset(cmp.auth_ref)[1]
            auth = revealed(con, cat, protection, cmp.auth_dept, auth_ds)
            outcome = compare(cmp, frame, auth)
            row = counted.filter(
                (pl.col("dept") == cmp.dept) & (pl.col("dataset") == cmp.dataset)
                & (pl.col("field") == cmp.field)
            )  # fmt: skip
            assert row["compared"][0] == outcome["compared"].sum(), cmp
            conflicting = (outcome["compared"] & ~outcome["agrees"]).sum()
            assert row["conflicting"][0] == conflicting, cmp
        assert counted["compared"].sum() > 0


def test_recollection_counts_what_each_department_types_again(street):
    settings, cat, _ = street
    with open_lake(settings) as con:
        table = con.execute("SELECT * FROM curated.recollection").pl()
        person = con.execute(f"SELECT person_id, name FROM curated.{PERSON}").pl()
        named = set(person.filter(pl.col("name").is_not_null())["person_id"])
        name_auth = authority(cat, "person.name")
        for dept, ds in cat.datasets():
            fields = fields_of_concept(ds, "person.name")
            if dept.code == name_auth.dept or len(fields) != 1:
                continue
            row = table.filter((pl.col("concept") == "person.name") & (pl.col("dept") == dept.code))
            frame = con.execute(
                f'SELECT _key_pid, "{fields[0]}" AS v FROM {_table(dept.code, ds)}'
            ).pl()
            mentions = con.execute(
                "SELECT key_pid AS _key_pid, person_id FROM curated.person_mentions "
                "WHERE dept = ? AND dataset = ?", [dept.code, ds.code],
            ).pl()  # fmt: skip
            filled = frame.filter(pl.col("v").is_not_null()).join(
                mentions, on="_key_pid", how="left"
            )
            readable = filled.filter(pl.col("person_id").is_in(list(named))).height
            if row["datasets"][0] == 1:
                assert row["rows_collected"][0] == filled.height, ds.code
                assert row["rows_readable"][0] == readable, ds.code
        assert (table["rows_readable"] <= table["rows_collected"]).all()
        assert (table.filter(pl.col("is_authority"))["rows_readable"] == 0).all()
        by_dept = recollection_by_department(con)
        assert by_dept["readable_share"].dtype == pl.Float64
        shares = by_dept.select(pl.col("rows_readable") / pl.col("rows_collected")).to_series()
        assert (by_dept["readable_share"] == shares).all()
        assert ((shares > 0) & (shares < 1)).any()  # some departments read part of theirs
        others = table.filter(~pl.col("is_authority"))
        assert by_dept["rows_collected"].sum() == others["rows_collected"].sum()
        assert by_dept["rows_readable"].sum() == others["rows_readable"].sum()
        share = duplicate_entry_avoidable(con)
        assert share is not None and 0.5 < share <= 1.0
        by_concept = recollection_by_concept(con)
        name = by_concept.filter(pl.col("concept") == "person.name")
        assert name["departments_collecting"][0] >= 5
        assert name["departments_could_read"][0] >= 5


def _restage(con, protection: Protection, dept: str, ds: Dataset, plain: pl.DataFrame) -> None:
    """Replace staged rows (by key) with ``plain`` (decrypted, changed) as staging would."""
    cols = [c for c in plain.columns if c in {f.name for f in ds.fields}]
    frame = plain.with_columns(key_pids(plain, ds, protection.keyring).alias("_key_pid"))
    frame = frame.with_columns(protection.row_digest(frame, ds).alias("_row_digest"))
    pids = [
        pseudonymise_series(plain[f.name], protection.keyring, kind=f.pii).alias(pid_column(f.name))
        for f in pid_fields(ds)
    ]
    frame = protection.protect(frame.select("_delivery_id", "_source_row", "_loaded_at",
                                            "_staged_at", "_key_pid", "_row_digest", *cols), ds)  # fmt: skip
    frame = frame.with_columns(pids)
    con.register("_new", frame.select("_key_pid").to_arrow())
    con.execute(f"DELETE FROM {_table(dept, ds)} WHERE _key_pid IN (SELECT _key_pid FROM _new)")
    con.unregister("_new")
    insert_frame(con, "staged", f"{dept}__{ds.code}", frame)


def _snapshot(con, cat: Catalogue, protection: Protection) -> dict[str, pl.DataFrame]:
    sort = lambda f: f.sort(f.columns)  # noqa: E731
    return {
        "person": sort(reveal_persons(con, cat, protection)),
        "history": sort(reveal_history(con, protection)),
        "checks": sort(con.execute("SELECT * FROM curated.attribute_checks").pl()),
        "conflicts": sort(con.execute("SELECT * FROM curated.attribute_conflicts").pl()),
        "recollection": sort(con.execute("SELECT * FROM curated.recollection").pl()),
    }


def test_incremental_update_equals_a_full_rebuild_and_history_rebuilds_the_past(changed_street):
    settings, cat, protection = changed_street
    conclusion = authority(cat, "person.health_check_conclusion")
    care = authority(cat, "person.care_level")
    with open_lake(settings) as con:
        assert refresh_golden(con, cat, protection) == set()  # nothing changed
        checks = revealed(con, cat, protection, conclusion.dept, conclusion.dataset)
        dated = as_of_field(conclusion.dataset)
        # (a) a later health check of one person with another conclusion
        first = checks.filter(pl.col(conclusion.field).is_not_null()).sort("_key_pid").head(1)
        p_check = first["person_id"][0]
        golden = reveal_persons(con, cat, protection).filter(pl.col("person_id") == p_check)
        old_value = golden["health_check_conclusion"][0]  # its latest check's
        others = [v for v in checks[conclusion.field].unique().drop_nulls() if v != old_value]
        later = checks[dated].max() + dt.timedelta(days=400)
        new_row = first.with_columns(
            pl.lit(others[0]).alias(conclusion.field),
            pl.lit(later).alias(dated),
            (pl.col(conclusion.dataset.key[0]) + "X").alias(conclusion.dataset.key[0]),
        ).drop("person_id")
        # (b) another record of a person whose name now differs from the register
        name_cmp = next(c for c in golden_checks(cat) if c.concept == "person.name"
                        and c.dept != authority(cat, "person.name").dept)  # fmt: skip
        name_ds = cat.dataset(f"{name_cmp.dept}.{name_cmp.dataset}")[1]
        named = revealed(con, cat, protection, name_cmp.dept, name_ds)
        agreeing = con.execute(
            "SELECT key_pid FROM curated.attribute_checks WHERE dept = ? AND dataset = ? AND "
            "field = ? AND compared AND NOT conflicting AND person_id <> ? ORDER BY key_pid",
            [name_cmp.dept, name_cmp.dataset, name_cmp.field, p_check],
        ).fetchone()[0]
        victim = named.filter(pl.col("_key_pid") == agreeing)
        p_name = victim["person_id"][0]
        before = con.execute(
            "SELECT conflicting FROM curated.attribute_conflicts WHERE dept=? AND dataset=? "
            "AND field=?", [name_cmp.dept, name_cmp.dataset, name_cmp.field],
        ).fetchone()[0]  # fmt: skip
        care_rows = revealed(con, cat, protection, care.dept, care.dataset)
        p_gone = care_rows.filter(~pl.col("person_id").is_in([p_check, p_name])).sort(
            "person_id")["person_id"][0]  # fmt: skip
        gone_key = care_rows.filter(pl.col("person_id") == p_gone)["_key_pid"][0]
        # (d) a record re-linked to another person: not one of the renamed record's dataset,
        # whose re-linked name would be a second conflict there (key_pid order is the run's key's)
        mention = con.execute(
            "SELECT dept, dataset, key_pid, person_id FROM curated.person_mentions m "
            "WHERE person_id NOT IN (?, ?, ?) AND (dept, dataset) IN "
            "(SELECT dept, dataset FROM curated.attribute_checks) "
            "AND NOT (dept = ? AND dataset = ?) ORDER BY key_pid LIMIT 1",
            [p_check, p_name, p_gone, name_cmp.dept, name_cmp.dataset],
        ).fetchone()
        p_from = mention[3]
        p_to = con.execute(
            "SELECT min(person_id) FROM curated.person WHERE person_id NOT IN (?, ?, ?, ?)",
            [p_check, p_name, p_gone, p_from],
        ).fetchone()[0]
        # (e) the register's record of another person replaced by a newer version: moved
        reg = authority(cat, "person.registered_address")
        residents = revealed(con, cat, protection, reg.dept, reg.dataset)
        taken = [p_check, p_name, p_gone, p_from, p_to]
        moved = (
            residents.filter(~pl.col("person_id").is_in(taken) & pl.col(reg.field).is_not_null())
            .sort("_key_pid")
            .head(1)
        )
        p_moved, old_address = moved["person_id"][0], moved[reg.field][0]
        reg_dated = as_of_field(reg.dataset)
        moved_on = moved[reg_dated][0] + dt.timedelta(days=10)
        with transaction(con):
            _restage(con, protection, reg.dept, reg.dataset, moved.with_columns(
                pl.lit(old_address + "1号").alias(reg.field), pl.lit(moved_on).alias(reg_dated),
                pl.lit(dt.datetime.now(dt.UTC)).cast(moved["_loaded_at"].dtype).alias("_loaded_at"),
            ).drop("person_id"))  # fmt: skip
            _restage(con, protection, conclusion.dept, conclusion.dataset,
                     new_row.select([c for c in checks.columns if c != "person_id"]))  # fmt: skip
            con.execute(
                "INSERT INTO curated.person_mentions SELECT ?, ?, _key_pid, ?, 'exact', NULL, "
                f"now() FROM {_table(conclusion.dept, conclusion.dataset)} "
                "WHERE _key_pid NOT IN (SELECT key_pid FROM curated.person_mentions "
                "WHERE dept = ? AND dataset = ?)",
                [conclusion.dept, conclusion.dataset.code, p_check, conclusion.dept,
                 conclusion.dataset.code],
            )  # fmt: skip
            renamed = victim.with_columns((pl.col(name_cmp.field) + "甲").alias(name_cmp.field))
            _restage(con, protection, name_cmp.dept, name_ds, renamed.drop("person_id"))
            con.execute(f"DELETE FROM {_table(care.dept, care.dataset)} WHERE _key_pid = ?",
                        [gone_key])  # fmt: skip
            con.execute(  # the index drops the withdrawn record's mention
                "DELETE FROM curated.person_mentions WHERE dept = ? AND dataset = ? "
                "AND key_pid = ?", [care.dept, care.dataset.code, gone_key],
            )  # fmt: skip
            con.execute(
                "UPDATE curated.person_mentions SET person_id = ? WHERE dept = ? AND "
                "dataset = ? AND key_pid = ?", [p_to, *mention[:3]],
            )  # fmt: skip
        rebuilt = refresh_golden(con, cat, protection)
        build_recollection(con, cat)
        assert rebuilt == {p_check, p_name, p_gone, p_from, p_to, p_moved}
        incremental = _snapshot(con, cat, protection)
        build_golden(con, cat, protection)
        build_recollection(con, cat)
        full = _snapshot(con, cat, protection)
        for table, frame in full.items():
            assert frame.equals(incremental[table]), table
        person = full["person"].filter(pl.col("person_id") == p_check)
        column = "health_check_conclusion"
        assert person[column][0] == others[0] and person[f"{column}_as_of"][0] == later
        assert full["person"].filter(pl.col("person_id") == p_gone)["care_level"][0] is None
        after = full["conflicts"].filter(
            (pl.col("dept") == name_cmp.dept) & (pl.col("dataset") == name_cmp.dataset)
            & (pl.col("field") == name_cmp.field)
        )["conflicting"][0]  # fmt: skip
        assert after == before + 1
        # the past is rebuilt from the history: before the new check, the old conclusion
        past = person_as_of(con, later - dt.timedelta(days=1), protection)
        mine = past.filter((pl.col("person_id") == p_check)
                           & (pl.col("concept") == "person.health_check_conclusion"))  # fmt: skip
        assert mine["value"].to_list() == [old_value]
        now = person_as_of(con, later, protection)
        mine = now.filter((pl.col("person_id") == p_check)
                          & (pl.col("concept") == "person.health_check_conclusion"))  # fmt: skip
        assert mine["value"].to_list() == [others[0]]
        assert person_as_of(con, dt.date(1900, 1, 1)).height == 0
        # a replaced record's older version stays in the history (the lake keeps it)
        address = [pl.col("person_id") == p_moved, pl.col("concept") == reg.concept]
        day = moved_on.date()
        then = person_as_of(con, day - dt.timedelta(days=1), protection).filter(address)
        assert then["value"].to_list() == [old_address]
        now = person_as_of(con, day, protection).filter(address)
        assert now["value"].to_list() == [old_address + "1号"]
        assert now["known_at"][0] > then["known_at"][0]
        # today's state from the history is the golden record
        today = person_as_of(con, dt.date(2100, 1, 1), protection)
        golden = full["person"]
        for a in golden_attributes(cat):
            held = today.filter(pl.col("concept") == a.concept)
            expect = golden.filter(pl.col(a.column).is_not_null())
            assert held.height == expect.height, a.concept
            joined = held.join(expect, on="person_id")
            assert (joined["value"] == joined[a.column].cast(pl.String)).all(), a.concept


def test_changes_where_no_attribute_is_authoritative_only_recheck(changed_street, monkeypatch):
    """A delivery to a dataset authoritative for no attribute (a record renamed so that it
    conflicts with its person's golden name, a new record, a record withdrawn): those
    persons' checks there and their digests are rewritten — no history is read or written
    — and the result equals a full rebuild."""
    settings, cat, protection = changed_street
    with open_lake(settings) as con:
        plan = next(
            p for p in live_plans(con, cat)
            if p.checks and not p.attributes and fields_of_concept(p.dataset, person_key(cat))
            and any(c.concept == "person.name" for c in p.checks)
        )  # fmt: skip
        ds, (key,) = plan.dataset, plan.dataset.key
        (field,) = [c.field for c in plan.checks if c.concept == "person.name"]
        rows = revealed(con, cat, protection, plan.dept, ds)
        held = con.execute(  # persons with another record and a golden name
            "SELECT person_id FROM curated.person_mentions WHERE person_id IN (SELECT "
            "person_id FROM curated.person WHERE name IS NOT NULL) GROUP BY ALL "
            "HAVING count(*) >= 2"
        ).pl()
        rows = rows.join(held, on="person_id").filter(pl.col(field).is_not_null()).sort(key)
        renamed, copied, gone = rows[0], rows[1], rows[2]
        persons = {r["person_id"][0] for r in (renamed, copied, gone)}
        before = con.execute("SELECT count(*) FROM curated.attribute_conflicts").fetchone()
        with transaction(con):
            _restage(
                con,
                protection,
                plan.dept,
                ds,
                renamed.with_columns((pl.col(field) + "甲").alias(field)).drop("person_id"),
            )
            new = copied.with_columns((pl.col(key) + "N").alias(key)).drop("person_id")
            _restage(con, protection, plan.dept, ds, new)
            new_key = key_pids(new, ds, protection.keyring)[0]
            con.execute(
                "INSERT INTO curated.person_mentions SELECT dept, dataset, ?, person_id, method, "
                "match_probability, linked_at FROM curated.person_mentions WHERE dept = ? "
                "AND dataset = ? AND key_pid = ?",
                [new_key, plan.dept, ds.code, copied["_key_pid"][0]],
            )
            for sql in (f"DELETE FROM {_table(plan.dept, ds)} WHERE _key_pid = ?",
                        "DELETE FROM curated.person_mentions WHERE key_pid = ?"):  # fmt: skip
                con.execute(sql, [gone["_key_pid"][0]])

        def rebuilt(*args, **kwargs):
            raise AssertionError("a person's golden record was rebuilt")

        monkeypatch.setattr(golden_refresh, "write_golden", rebuilt)
        candidates = {p: {(plan.dept, ds.code)} for p in persons}
        assert refresh_golden(con, cat, protection, candidates) == persons
        monkeypatch.undo()
        build_recollection(con, cat)
        incremental = _snapshot(con, cat, protection)
        build_golden(con, cat, protection)
        build_recollection(con, cat)
        full = _snapshot(con, cat, protection)
    assert before and len(persons) == 3
    for table, frame in full.items():
        assert frame.equals(incremental[table]), table
    mine = full["checks"].filter(
        (pl.col("dataset") == ds.code) & (pl.col("field") == field)
        & pl.col("key_pid").is_in([renamed["_key_pid"][0], new_key, gone["_key_pid"][0]])
    )  # fmt: skip
    renamed_check = mine.filter(pl.col("key_pid") == renamed["_key_pid"][0])
    assert renamed_check["compared"].to_list() == [True]
    assert renamed_check["conflicting"].to_list() == [True]  # 甲 added: not the golden name
    assert mine.filter(pl.col("key_pid") == new_key).height == 1
    assert mine.filter(pl.col("key_pid") == gone["_key_pid"][0]).height == 0


def test_no_mentions_is_an_error(settings):
    cat = load_catalogue()
    protection = Protection.from_settings(settings)
    with open_lake(settings) as con, pytest.raises(StreethubError, match="person_mentions"):
        build_golden(con, cat, protection)


def test_golden_records_follow_the_master_index_merge_and_split(changed_street):
    """With the index's own links (exact and probabilistic), a wrong merge and its split
    each rebuild exactly the two persons, and after the split every table is as before."""
    settings, cat, protection = changed_street
    with open_lake(settings) as con:
        link_persons(con, cat, protection)
        build_golden(con, cat, protection)
        build_recollection(con, cat)
        before = _snapshot(con, cat, protection)
        assert (
            before["person"]["person_id"].n_unique()
            == con.execute(
                "SELECT count(DISTINCT person_id) FROM curated.person_mentions"
            ).fetchone()[0]
        )
        # callers known without a citizen ID are linked: their names count as readable
        no_id = {
            dept.code
            for dept, ds in cat.datasets()
            if fields_of_concept(ds, "person.name") and not fields_of_concept(ds, person_key(cat))
        }
        assert no_id
        readable = before["recollection"].filter(pl.col("dept").is_in(list(no_id)))
        assert readable["rows_readable"].sum() > 0
        assert readable["rows_readable"].sum() <= readable["rows_collected"].sum()
        named = before["person"].filter(pl.col("name").is_not_null()).sort("person_id")
        keep, wrong = named["person_id"][0], named["person_id"][1]
        merge(con, cat, protection, into=keep, person=wrong, actor="test", reason="planted")
        assert refresh_golden(con, cat, protection) == {keep, wrong}
        merged = reveal_persons(con, cat, protection)
        assert wrong not in set(merged["person_id"])
        assert (
            con.execute(
                "SELECT count(*) FROM curated.attribute_checks WHERE person_id = ?", [wrong]
            ).fetchone()[0]
            == 0
        )
        split(con, cat, protection, person=keep, restore=wrong, actor="test", reason="undo")
        assert refresh_golden(con, cat, protection) == {keep, wrong}
        build_recollection(con, cat)
        after = _snapshot(con, cat, protection)
        for table, frame in before.items():
            assert frame.equals(after[table]), table


def _counted(fn, calls: list):
    def wrapper(*args, **kw):
        calls.append(args[1:])
        return fn(*args, **kw)

    return wrapper


def test_a_full_build_in_blocks_of_persons_equals_one_block(changed_street, monkeypatch):
    """A full build reads, makes and writes the golden records a block of persons at a
    time (the memory of a 200,000-resident street): with blocks of a tenth of the street
    it writes what one block of every person wrote — records, history, checks, conflicts."""
    from curated import golden

    settings, cat, protection = changed_street
    with open_lake(settings) as con:
        whole = _snapshot(con, cat, protection)
        persons = whole["person"].height
        monkeypatch.setattr(golden, "GOLDEN_BLOCK", persons // 10 + 1)
        reads = []
        monkeypatch.setattr(golden, "block_datasets", _counted(golden.block_datasets, reads))
        built = build_golden(con, cat, protection)
        assert len(reads) == 10 and built.persons == persons
        again = _snapshot(con, cat, protection)
    for name, frame in whole.items():
        assert again[name].equals(frame, null_equal=True), name


def test_a_small_street_s_full_build_reads_a_copy_of_its_mentions(changed_street, monkeypatch):
    """A full build of a street whose index holds at most ``MENTIONS_COPY_ROWS`` mentions
    copies them once and builds from the copy (no read of the index by a block of persons);
    it writes what a build from the index writes — records, history, checks, conflicts."""
    from curated import golden

    settings, cat, protection = changed_street
    reads = []
    monkeypatch.setattr(golden, "block_datasets", _counted(golden.block_datasets, reads))
    with open_lake(settings) as con:
        assert golden.few_mentions(con) is not None
        from_copy = build_golden(con, cat, protection)
        copied = _snapshot(con, cat, protection)
        assert reads == []
        monkeypatch.setattr(golden, "MENTIONS_COPY_ROWS", 0)
        assert golden.few_mentions(con) is None
        from_index = build_golden(con, cat, protection)
        indexed = _snapshot(con, cat, protection)
        assert len(reads) == 1
    assert from_copy == from_index and from_copy.persons > 100
    for name, frame in copied.items():
        assert indexed[name].equals(frame, null_equal=True), name


def test_the_recollection_counts_from_a_copy_of_the_mentions_equal_those_from_the_index(
    changed_street, monkeypatch
):
    """``curated.recollection`` counts each dataset against the index's mentions: read from
    a temporary copy when they are few (``mentions_to_read``), from the index otherwise,
    the rows are the same."""
    from curated import golden
    from curated.recollection import recollection_frame

    settings, cat, _ = changed_street
    with open_lake(settings, read_only=True) as con:
        with golden.mentions_to_read(con, "_probe") as relation:
            assert relation == "temp.main._probe"
            [[copied]] = con.execute(f"SELECT count(*) FROM {relation}").fetchall()
        from_copy = recollection_frame(con, cat)
        monkeypatch.setattr(golden, "MENTIONS_COPY_ROWS", copied - 1)
        with golden.mentions_to_read(con, "_probe") as relation:
            assert relation == "curated.person_mentions"
        from_index = recollection_frame(con, cat)
    assert from_copy.height > 10 and from_copy["rows_collected"].sum() > 1000
    assert from_copy.equals(from_index)
