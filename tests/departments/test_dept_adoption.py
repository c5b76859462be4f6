"""The not-shareable (不予共享) dataset is real: civil affairs delivers its adoption register,
drawn from the street's households, without disturbing any other dataset's records."""

from __future__ import annotations

import datetime as dt

import polars as pl

from catalog.loader import load_catalogue
from catalog.model import ShareType
from departments import people
from departments.simulate import sim_dir_for, truth_dir
from departments.world import build_world

REF = ("mzj", "adoption_registrations")


def _truth(home, dept: str, code: str) -> pl.DataFrame:
    return pl.read_parquet(truth_dir(sim_dir_for(home)) / dept / code / "clean.parquet")


def test_the_adoption_register_is_delivered_and_catalogued_not_shareable(home, manifest):
    entry = manifest["departments"]["mzj"]["adoption_registrations"]
    assert entry["kind"] == "excel" and sum(entry["records"].values()) > 0
    for file in entry["files"]:
        assert (home / "inbox" / "mzj" / file).exists()
    _, ds = load_catalogue().dataset("mzj.adoption_registrations")
    assert ds.share_type is ShareType.not_shareable and "民法典" in ds.legal_basis


def test_adopters_are_household_heads_of_registered_children(home):
    adoptions = _truth(home, *REF)
    hukou = _truth(home, "gaj", "registered_residents")
    heads = hukou.filter(pl.col("yhzgx") == "户主").select("gmsfhm", "hh")
    children = hukou.filter(pl.col("yhzgx") == "子女").select("xm", "csrq", "hh")
    joined = adoptions.join(heads, left_on="收养人身份证号码", right_on="gmsfhm")
    assert joined.height == adoptions.height  # every adopter heads a registered household
    matched = joined.join(
        children,
        left_on=["hh", "被收养人姓名", "被收养人出生日期"],
        right_on=["hh", "xm", "csrq"],
    )
    assert matched["收养登记证号"].n_unique() == adoptions.height  # the child is in it
    born = adoptions["被收养人出生日期"].str.to_date()
    registered = adoptions["登记日期"].str.to_date()
    assert (born < registered).all()


def test_its_records_come_from_a_stream_of_their_own():
    """Drawing the register leaves the world's shared random state as it was, so adding the
    dataset changed no other dataset's records."""
    w = build_world(300, 5, dt.date(2026, 11, 24))
    before = w.rng.getstate()
    first = people.adoption_registrations(w)
    assert w.rng.getstate() == before
    assert people.adoption_registrations(w) == first
