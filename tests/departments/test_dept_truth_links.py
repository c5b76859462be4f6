"""The truth of who each record is about (``_person``, ``_unit``, ``_merchant``), and the
12345 callers and incident reporters that make a fallback linkage necessary."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from stdnum.cn import ric

from catalog.authority import fields_of_concept
from catalog.loader import load_catalogue
from departments import addresses, callers, ids
from departments.simulate import sim_dir_for, truth_dir
from departments.world import build_world

MOBILE = re.compile(r"^1[3-9]\d{9}$")
REPORTED = {"rx.appeals": ("caller_name", "caller_phone"),
            "yjj.incidents": ("reporter_name", "reporter_phone")}  # fmt: skip


def truth(home: Path, ref: str) -> pl.DataFrame:
    dept, code = ref.split(".")
    return pl.read_parquet(truth_dir(sim_dir_for(home)) / dept / code / "clean.parquet")


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="module")
def registry(home) -> pl.DataFrame:
    """Every resident: citizen ID, name, mobile, household, unit (from the police truth)."""
    hukou = truth(home, "gaj.registered_residents").select(
        pl.col("gmsfhm").alias("cid"), pl.col("xm").alias("name"),
        pl.col("lxdh").alias("mobile"), pl.col("hh").alias("household"), "_unit",
    )  # fmt: skip
    permits = truth(home, "gaj.residence_permits").select(
        pl.col("gmsfhm").alias("cid"), pl.col("xm").alias("name"), "_unit"
    )
    return pl.concat([hukou, permits], how="diagonal")


def test_every_record_with_a_subject_names_its_person(home, catalogue, registry):
    """``_person`` is in every dataset with person concepts; where the record carries the
    subject's citizen ID it is that ID's true value, else (callers, reporters) a resident
    or null; a dataset without person concepts has no ``_person``."""
    residents = set(registry["cid"])
    with_subject = 0
    for dept, ds in catalogue.datasets():
        clean = truth(home, f"{dept.code}.{ds.code}")
        concepts = {f.concept for f in ds.fields if f.concept and f.concept.startswith("person.")}
        if not concepts:
            assert "_person" not in clean.columns, ds.code
            continue
        with_subject += 1
        people = clean["_person"].drop_nulls()
        assert people.len() > 0 and set(people) <= residents, ds.code
        ids = fields_of_concept(ds, "person.citizen_id")
        if ids:
            source = ds.field(ids[0]).source_name
            assert clean[source].eq_missing(clean["_person"]).all(), ds.code
    assert with_subject == 22  # 18 + the four need outcomes (issue 16)


def test_a_door_opened_by_a_visitor_concerns_no_resident(home):
    doors = truth(home, "iot.door_access_events")
    visitors = doors.filter(pl.col("citizen_id").is_null())
    assert visitors.height > 0 and visitors["_person"].is_null().all()
    assert doors["_person"].eq_missing(doors["citizen_id"]).all()


def test_units_are_the_units_the_addresses_name(home, registry):
    units = truth(home, "zjj.housing_units").select(
        pl.col("unit_id").alias("_unit"), pl.col("address").alias("unit_address")
    )
    assert truth(home, "zjj.housing_units")["_unit"].equals(
        truth(home, "zjj.housing_units")["unit_id"]
    )
    for ref, column in (("gaj.registered_residents", "hjdz"), ("gaj.residence_permits", "jzdz"),
                        ("mzj.elderly_alone", "居住地址"), ("rx.appeals", "address")):  # fmt: skip
        clean = truth(home, ref)
        named = clean.filter(pl.col("_unit").is_not_null()).join(units, on="_unit", how="left")
        assert named.height > 0 and named["unit_address"].is_not_null().all(), ref
        same = (named[column] == named["unit_address"]).mean()
        # the police write the register's address; a ledger or an operator spells it
        rate = addresses.ADDRESS_RATES.get(ref, 0.0)
        assert same == 1.0 if not rate else rate - 0.2 < 1 - same < rate + 0.2, (ref, same)
    # the registry's unit of each resident is the unit of their household
    hukou = truth(home, "gaj.registered_residents")
    assert hukou.group_by("hh").agg(pl.col("_unit").n_unique())["_unit"].max() == 1
    # an outsider's appeal is about a place, not a home
    appeals = truth(home, "rx.appeals")
    assert appeals.filter(pl.col("_person").is_null())["_unit"].is_null().all()
    resident = appeals.filter(pl.col("_person").is_not_null())
    home_unit = resident.join(registry.select("cid", "_unit"), left_on="_person", right_on="cid")
    assert (home_unit["_unit"] == home_unit["_unit_right"]).all()


def test_merchants_are_named_by_their_credit_code(home):
    codes = set(truth(home, "scjg.merchants")["_merchant"])
    assert codes == set(truth(home, "scjg.merchants")["credit_code"])
    for ref, column in (("scjg.service_points", "credit_code"),
                        ("rsj.social_insurance", "employer_credit_code"),
                        ("rsj.employment_registration", "employer_credit_code")):  # fmt: skip
        clean = truth(home, ref)
        assert clean[column].eq_missing(clean["_merchant"]).all(), ref
        assert set(clean["_merchant"].drop_nulls()) <= codes, ref


@pytest.mark.parametrize("ref", sorted(REPORTED))
def test_reported_names_and_mobiles_are_what_their_variant_says(home, registry, ref):
    """Against the registry: a registered name or mobile is the registry's, a homophone
    differs in one character by :data:`callers.HOMOPHONES`, a title is surname + 先生 /
    女士, another own number is a valid mobile that is not theirs in the registry, a
    family member's is the registered mobile of someone else of the household."""
    name_col, mobile_col = REPORTED[ref]
    clean = truth(home, ref).join(registry, left_on="_person", right_on="cid", how="left")
    residents = clean.filter(pl.col("_person").is_not_null())
    assert residents.height > 0
    mobiles = dict(zip(registry["cid"], registry["mobile"], strict=True))
    household = registry.filter(pl.col("household").is_not_null())
    family = household.group_by("household").agg("mobile", "cid")
    for r in residents.iter_rows(named=True):
        given, name, kind = r[name_col], r["name"], r["_name_variant"]
        if kind == "registered":
            assert given == name
        elif kind == "homophone":
            diff = [(a, b) for a, b in zip(name, given, strict=True) if a != b]
            assert len(diff) == 1 and callers.HOMOPHONES[diff[0][0]] == diff[0][1]
        elif kind == "title":
            title = "先生" if ids.id_gender(r["_person"]) == "男" else "女士"
            assert given == callers.surname_of(name) + title
        elif kind == "nickname":
            assert given[0] in "小老" and given[1:] in name
        else:
            assert kind == "typo" and given != name and Counter(given) <= Counter(name)
        # a residence-permit holder's mobile is not in the permits (the household
        # registry's holders are checked)
        given_mobile, kind, registered = r[mobile_col], r["_mobile_variant"], r["household"]
        if kind == "registered":
            assert registered is None or given_mobile == mobiles[r["_person"]] is not None
        elif kind == "none":
            assert given_mobile is None
        elif kind == "other_own":
            assert MOBILE.match(given_mobile) and given_mobile != mobiles[r["_person"]]
        elif registered is not None:
            assert kind == "family"
            members = family.filter(pl.col("household") == registered).row(0, named=True)
            others = {m for m, c in zip(members["mobile"], members["cid"], strict=True)
                      if c != r["_person"]}  # fmt: skip
            assert given_mobile in others
    outsiders = clean.filter(pl.col("_person").is_null())
    assert outsiders.height > 0
    assert outsiders["_name_variant"].is_null().all()
    assert outsiders["_mobile_variant"].is_null().all()
    known = set(zip(registry["name"], registry["mobile"], strict=True))
    assert not any(pair in known for pair in zip(outsiders[name_col], outsiders[mobile_col],
                                                 strict=True))  # fmt: skip
    assert not set(outsiders[mobile_col].drop_nulls()) & set(registry["mobile"].drop_nulls())


def test_exact_name_and_mobile_finds_most_callers_but_not_all(home, registry):
    """Why the fallback is needed: on the registry's own name and mobile only part of the
    resident callers are found, and some callers are nobody on the street."""
    appeals = truth(home, "rx.appeals")
    exact = appeals.join(
        registry.select("name", "mobile", "cid"),
        left_on=["caller_name", "caller_phone"],
        right_on=["name", "mobile"],
        how="left",
    )
    # the household registry's residents (it holds their mobiles; the permits do not)
    hukou = registry.filter(pl.col("household").is_not_null())["cid"]
    residents = exact.filter(pl.col("_person").is_in(hukou.implode()))
    found = (residents["cid"] == residents["_person"]).fill_null(False).mean()
    assert residents.height > 50 and 0.55 < found < 0.9
    assert 0.03 < appeals["_person"].is_null().mean() < 0.2


@pytest.fixture(scope="module")
def drawn() -> dict[str, list[dict]]:
    """Reporters drawn many times from one small street, per dataset (the rates' sample):
    the truth columns of each."""
    w = build_world(1_500, seed=5, today=dt.date(2026, 11, 20))
    adults = [p for p in w.people if p.age(w.today) >= 18 and p.mobile]
    out = {}
    for ref in callers.REPORTING:
        rng, pick = random.Random(f"test:{ref}"), random.Random(0)
        out[ref] = [callers.reported(rng, ref, pick.choice(adults), w).truth for _ in range(20_000)]
    return out


@pytest.mark.parametrize("ref", sorted(callers.REPORTING))
def test_variants_are_drawn_at_their_documented_rates(drawn, ref):
    """Shares within four standard errors of :data:`callers.REPORTING` (a name kind that
    cannot apply to a name falls back: ``typo`` needs a two-character given name)."""
    rates, reports = callers.REPORTING[ref], drawn[ref]
    n = len(reports)

    def near(count: int, of: int, rate: float, slack: float = 0.0) -> bool:
        se = (rate * (1 - rate) / of) ** 0.5
        return abs(count / of - rate) <= 4 * se + slack

    outsiders = sum(t["_person"] is None for t in reports)
    assert near(outsiders, n, rates.outsider)
    residents = [t for t in reports if t["_person"] is not None]
    names = Counter(t["_name_variant"] for t in residents)
    mobiles = Counter(t["_mobile_variant"] for t in residents)
    for kind, rate in rates.names.items():
        if kind not in ("typo", "homophone"):
            assert near(names[kind], len(residents), rate), (kind, names)
    # a typo of a one-character given name (王伟) is a homophone instead
    spelled = rates.names["typo"] + rates.names["homophone"]
    assert near(names["typo"] + names["homophone"], len(residents), spelled, 0.005), names
    assert 0 < names["typo"] / len(residents) <= rates.names["typo"]
    if "none" in rates.mobiles:
        assert near(mobiles["none"], len(residents), rates.mobiles["none"]), mobiles
    # family falls back to another own number when no one else of the household has one
    assert 0 < mobiles["family"] / len(residents) <= rates.mobiles["family"] + 0.005
    assert mobiles["family"] + mobiles["other_own"] == pytest.approx(
        len(residents) * (rates.mobiles["family"] + rates.mobiles["other_own"]), rel=0.15
    )
    assert names["registered"] / len(residents) > 0.75


def test_an_outsider_is_a_valid_one_off_person():
    rng = random.Random(3)
    seen = [callers.outsider(rng, dt.date(2026, 11, 20)) for _ in range(2_000)]
    assert all(ric.is_valid(p.cid) for p in seen)
    assert len({p.cid for p in seen}) > 1_990
    assert all(MOBILE.match(p.mobile) for p in seen if p.mobile)
    assert sum(p.mobile is None for p in seen) < 150


def test_every_spelling_names_the_unit_otherwise():
    """Each spelling differs from the register's address and from the others, and keeps
    the building, entrance and room (as digits, Chinese numerals or full-width)."""
    w = build_world(300, seed=2, today=dt.date(2026, 11, 20))
    for u in w.units[::7]:
        spelled = {name: spell(u) for name, spell in addresses.SPELLINGS.items()}
        assert u.address not in spelled.values()
        assert len(set(spelled.values())) == len(spelled)
        for name, text in spelled.items():
            plain = text.translate(str.maketrans("０１２３４５６７８９", "0123456789"))
            assert u.room in plain, name
            building = str(u.building.no) if name != "numerals" else (
                addresses.chinese_number(u.building.no))  # fmt: skip
            assert building in plain, name
    assert [addresses.chinese_number(n) for n in (3, 10, 12, 20, 23)] == [
        "三", "十", "十二", "二十", "二十三"]  # fmt: skip
    assert [addresses.chinese_number(n) for n in (100, 105, 112, 120, 999)] == [
        "一百", "一百零五", "一百一十二", "一百二十", "九百九十九"]  # fmt: skip


def test_every_building_number_a_large_street_has_reads_back_as_the_hub_reads_it():
    # a street of 200,000 residents has buildings past 99: the simulator once failed there
    from curated.address import clean_address

    for n in range(1, 1000):
        assert clean_address(f"{addresses.chinese_number(n)}号楼") == f"{n}号楼", n


def test_the_manifest_states_the_rates(manifest):
    assert manifest["reporting"] == {ref: r.as_dict() for ref, r in callers.REPORTING.items()}
    assert manifest["addresses"] == addresses.ADDRESS_RATES
