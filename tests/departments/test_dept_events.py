"""What the marts need of events (issue 13 item 7): 12345 appeals with their grid cell,
coordinates, handling office and first-answer times; the service centre's handling records
(政务服务办件) with their items, applicants, times and visits — checked on the truth."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest
from faker.providers.person.zh_CN import Provider

from catalog.loader import load_catalogue
from departments import texts
from departments.places import CHANNELS, HANDLERS, LATE_DISPATCH, UNGEOCODED, appeals
from departments.services import ITEMS, add_working_days, service_records
from departments.simulate import sim_dir_for
from departments.world import build_world
from tests.departments.street import RESIDENTS, SEED


def truth(home, dept: str, code: str) -> pl.DataFrame:
    return pl.read_parquet(sim_dir_for(home) / "truth" / dept / code / "clean.parquet")


def times(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).str.to_datetime("%Y-%m-%d %H:%M:%S") for c in columns)


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="module")
def big_world():
    """A larger street, for rates (its records built directly, not delivered)."""
    return build_world(6_000, SEED, dt.date(2026, 11, 25))


def test_an_appeal_is_in_the_grid_cell_of_its_place(home):
    """The assigned cell is the one whose centre is nearest the appeal's coordinates (on the
    street's regular grid: the cell holding the point) and lies in the appeal's community;
    a resident's appeal is at the caller's building."""
    cells = truth(home, "wg", "grid_cells").select(
        pl.col("网格编码").alias("cell"),
        pl.col("中心经度").cast(pl.Float64).alias("clon"),
        pl.col("中心纬度").cast(pl.Float64).alias("clat"),
    )
    found = truth(home, "rx", "appeals")
    assert found["grid_code"].null_count() == 0
    assert (found["grid_code"].str.slice(0, 12) == found["community_code"]).all()
    placed = found.drop_nulls("lon").with_columns(pl.col("lon", "lat").cast(pl.Float64))
    scale = math.cos(math.radians(39.9125))
    nearest = (
        placed.select("appeal_id", "lon", "lat")
        .join(cells, how="cross")
        .with_columns(
            (
                ((pl.col("lon") - pl.col("clon")) * scale) ** 2
                + (pl.col("lat") - pl.col("clat")) ** 2
            ).alias("d")
        )
        .sort("d")
        .group_by("appeal_id")
        .first()
    )
    got = placed.join(nearest.select("appeal_id", "cell"), on="appeal_id")
    assert got.height == placed.height > 50 and (got["cell"] == got["grid_code"]).all()
    units = truth(home, "zjj", "housing_units").select(
        pl.col("unit_id").alias("_unit"), "building_id"
    )
    buildings = truth(home, "zjj", "buildings").select(
        "building_id", pl.col("lon").alias("b_lon"), pl.col("lat").alias("b_lat")
    )
    homes = (
        found.drop_nulls(["_unit", "lon"]).join(units, on="_unit").join(buildings, on="building_id")
    )
    assert homes.height > 30
    assert (homes["lon"] == homes["b_lon"]).all() and (homes["lat"] == homes["b_lat"]).all()


def test_only_phone_appeals_lack_coordinates(big_world):
    found = pl.DataFrame(appeals(big_world))
    missing = found.filter(pl.col("lon").is_null())
    assert missing.height > 0 and (missing["channel"] == "电话").all()
    assert missing["lat"].null_count() == missing.height
    phone = found.filter(pl.col("channel") == "电话").height
    assert UNGEOCODED / 2 < missing.height / phone < UNGEOCODED * 1.5


def test_an_appeal_is_dispatched_to_an_office_for_its_category(home, catalogue):
    found = truth(home, "rx", "appeals")
    dispatched = found.filter(pl.col("dispatched_at").is_not_null())
    for cat, office in zip(dispatched["category"], dispatched["handling_dept"], strict=True):
        assert office in HANDLERS[cat]
    waiting = found.filter(pl.col("dispatched_at").is_null())
    assert waiting["handling_dept"].null_count() == waiting.height
    assert (waiting["status"] == "已受理").all()
    assert (found.filter(pl.col("status") == "已办结")["resolved_at"].null_count()) == 0
    _, ds = catalogue.dataset("rx.appeals")
    offices = {o for pair in HANDLERS.values() for o in pair}
    assert set(ds.field("handling_dept").allowed_values) == offices
    assert set(found["status"]) <= set(ds.field("status").allowed_values)


def test_some_first_answers_are_late_at_their_rates(big_world):
    """Dispatched after 2 h (emergencies) or 24 h (ordinary) at the rates of LATE_DISPATCH;
    the times stay in order, and a late order still waiting is accepted, not dispatched."""
    found = times(pl.DataFrame(appeals(big_world)), "accepted_at", "dispatched_at",
                  "resolved_at", "update_time")  # fmt: skip
    waited = pl.col("dispatched_at") - pl.col("accepted_at")
    limit = pl.when(pl.col("urgency") == "emergency").then(pl.duration(hours=2))
    late = found.with_columns(
        (
            pl.col("dispatched_at").is_null() | (waited > limit.otherwise(pl.duration(hours=24)))
        ).alias("late")
    )
    for urgency, rate in LATE_DISPATCH.items():
        mine = late.filter(pl.col("urgency") == urgency)
        share = mine["late"].mean()
        assert rate / 2 < share < rate * 1.6, (urgency, share, mine.height)
    assert (
        (found.drop_nulls("dispatched_at").select(waited >= pl.duration(minutes=3)))
        .to_series()
        .all()
    )
    done = found.drop_nulls("resolved_at")
    assert (done["resolved_at"] > done["dispatched_at"]).all()
    last = pl.coalesce("resolved_at", "dispatched_at", "accepted_at")
    assert found.select(pl.col("update_time") >= last).to_series().all()


def test_service_records_items_and_applicants(home, catalogue):
    """Each item's applicants are eligible for it (居住证: a permit holder; 高龄津贴: 80 or
    older …), the catalogue lists exactly the simulator's items and offices, and the
    applicant is the record's subject."""
    found = truth(home, "rx", "service_records")
    assert found.height == max(20, RESIDENTS // 10)
    by_code = {it.code: it for it in ITEMS}
    assert (found["item_name"] == found["item_code"].replace_strict(
        {c: it.name for c, it in by_code.items()})).all()  # fmt: skip
    assert (found["handling_dept"] == found["item_code"].replace_strict(
        {c: it.dept for c, it in by_code.items()})).all()  # fmt: skip
    assert (found["_person"] == found["applicant_citizen_id"]).all()
    permits = set(truth(home, "gaj", "residence_permits")["gmsfhm"])
    hukou = set(truth(home, "gaj", "registered_residents")["gmsfhm"])
    end = dt.date(2026, 11, 25)
    for code, cid in zip(found["item_code"], found["applicant_citizen_id"], strict=True):
        born = dt.date(int(cid[6:10]), int(cid[10:12]), int(cid[12:14]))
        age = end.year - born.year - ((end.month, end.day) < (born.month, born.day))
        if code == "JDZW001":
            assert cid in permits
        elif code == "JDZW003":
            assert cid in hukou and age >= 80
        elif code == "JDZW002":
            assert age >= 60
    _, ds = catalogue.dataset("rx.service_records")
    assert set(ds.field("item_name").allowed_values) == {it.name for it in ITEMS}
    assert set(ds.field("handling_dept").allowed_values) == {it.dept for it in ITEMS}
    assert {int(v) for v in found["time_limit_days"]} <= {it.limit_days for it in ITEMS}


def test_service_records_times_visits_and_status(big_world):
    found = times(pl.DataFrame(service_records(big_world)), "received_at", "finished_at",
                  "update_time")  # fmt: skip
    online = found.filter(pl.col("channel") == "网上办理")
    in_person = found.filter(pl.col("channel") != "网上办理")
    assert online["window"].null_count() == online.height
    assert in_person["window"].null_count() == 0
    assert set(online["visits"]) == {0, 1} and set(in_person["visits"]) == {1, 2, 3}
    assert online["visits"].mean() < 0.35 and 1.2 < in_person["visits"].mean() < 1.6
    # a window is open on working days, 9:00 to 17:00
    assert (in_person["received_at"].dt.weekday() <= 5).all()
    assert in_person["received_at"].dt.hour().is_between(9, 16).all()
    done = found.drop_nulls("finished_at")
    assert (done["finished_at"] > done["received_at"]).all()
    assert set(done["status"]) == {"已办结", "不予受理"}
    assert (found.filter(pl.col("finished_at").is_null())["status"] == "办理中").all()
    assert found.select(pl.col("update_time") >= pl.coalesce("finished_at", "received_at")
                        ).to_series().all()  # fmt: skip
    # 即办 at a window: within two hours; the others mostly within their limit, some late
    done = done.filter(pl.col("status") == "已办结")
    spot = done.filter((pl.col("time_limit_days") == 1) & (pl.col("channel") != "网上办理"))
    assert ((spot["finished_at"] - spot["received_at"]) <= dt.timedelta(hours=2)).all()
    longer = done.filter(pl.col("time_limit_days") > 1)
    due = [
        add_working_days(r, n)
        for r, n in zip(longer["received_at"].dt.date(), longer["time_limit_days"], strict=True)
    ]
    late = (longer["finished_at"].dt.date() > pl.Series(due)).mean()
    assert 0.03 < late < 0.3, late


def test_working_days_skip_weekends():
    friday = dt.date(2026, 11, 27)
    assert add_working_days(friday, 1) == dt.date(2026, 11, 30)
    assert add_working_days(friday, 5) == dt.date(2026, 12, 4)
    assert add_working_days(friday, 0) == friday


def test_no_office_item_or_category_holds_a_name_the_simulator_can_give():
    """The published words of events (offices, items, windows, categories) are no place for a
    resident's name: the leak scanner would count a name inside them in a mart. Every name
    the simulator can give (Faker's zh_CN surname + given name) is checked, not one street's."""
    words = {o for pair in HANDLERS.values() for o in pair} | set(texts.ISSUES)
    words |= {w for it in ITEMS for w in (it.name, it.dept, it.window)} | set(texts.GRID_EVENTS)
    words |= set(CHANNELS) | {"街道平安建设办公室"}  # the last one holds 安建: the check works
    names = {last + first for last in Provider.last_names for first in Provider.first_names}
    assert len(names) > 40_000
    found = {w: sorted(n for n in names if n in w) for w in words}
    assert {w: n for w, n in found.items() if n} == {"街道平安建设办公室": ["安建"]}
