"""House (房), event (事) and thing (物) datasets: housing, merchants, emergencies, hotline, grid."""

from __future__ import annotations

import datetime as dt
import random

from departments import addresses, callers, texts
from departments.people import _ago, _day_ago
from departments.spec import D, Spec, T, cols
from departments.world import CITY_DISTRICT, STREET_NAME, Community, Grid, Unit, World


def _pii(record: dict, field: str, found: list[tuple[str, str]]) -> dict:
    record["_pii"] = [(field, kind, value) for kind, value in found]
    return record


VIOLATIONS = ("违法建设", "占道经营", "乱堆物料", "户外广告", "渣土遗撒")


def violation_cases(w: World) -> list[dict]:
    out = []
    residents = [p for p in w.people if p.age(w.today) >= 18]
    for i in range(max(20, len(w.people) // 20)):
        kind = w.rng.choice(VIOLATIONS)
        g = w.rng.choice(w.grids)
        lon, lat = w.point_in(g.bbox)
        found = w.rng.choices((None, "now", "closed"), (1, 1, 3))[0]
        at = _ago(w, 365)
        party = w.rng.choice(residents) if w.rng.random() < 0.6 else None
        place = f"{g.community.name}社区{w.rng.randint(1, 30)}号楼附近"
        text, pii = texts.event_text(
            w.rng, "违法建设" if kind == "违法建设" else "占道经营", place, [party] if party else []
        )
        closed = at + dt.timedelta(hours=w.rng.randint(2, 400)) if found == "closed" else None
        out.append(_pii({
            "案件编号": f"CG{at:%Y%m%d}{i + 1:05d}", "案件类型": kind, "发现时间": T(at),
            "所属社区": g.community.code, "地址": place, "经度": lon, "纬度": lat,
            "当事人": party.name if party else None, "当事人身份证号": party.cid if party else None,
            "当事人电话": party.mobile if party else None, "案件描述": text,
            "处理状态": "已结案" if closed else "处理中", "结案时间": T(closed),
            "_person": party.cid if party else None,
        }, "案件描述", pii))  # fmt: skip
    return out


def buildings(w: World) -> list[dict]:
    return [
        {"building_id": b.id, "community_code": b.community.code, "address": b.address,
         "lon": b.lon, "lat": b.lat, "floors": b.floors, "build_year": b.build_year,
         "structure": b.structure, "usage": b.usage, "unit_count": len(b.units)}
        for b in w.buildings
    ]  # fmt: skip


def housing_units(w: World) -> list[dict]:
    return [
        {"unit_id": u.id, "building_id": u.building.id, "entrance": u.entrance, "floor": u.floor,
         "room_no": u.room, "area_m2": u.area, "property_type": u.property_type,
         "owner_name": u.owner.name if u.owner else None,
         "owner_citizen_id": u.owner.cid if u.owner else None, "occupancy": u.occupancy,
         "address": u.address, "_person": u.owner.cid if u.owner else None, "_unit": u.id}
        for u in w.units
    ]  # fmt: skip


def merchants(w: World) -> list[dict]:
    return [
        {"credit_code": m.credit_code, "name": m.name, "legal_rep": m.legal_rep,
         "category": m.category, "address": m.address, "community_code": m.community.code,
         "lon": m.lon, "lat": m.lat, "phone": m.phone, "registered_on": D(m.registered_on),
         "status": m.status, "_merchant": m.credit_code}
        for m in w.merchants
    ]  # fmt: skip


SERVICE_CATEGORIES = ("便利店", "菜市场", "早餐店", "社区食堂", "养老驿站", "卫生服务站",
                      "快递点", "家政服务", "维修点", "药店")  # fmt: skip


def service_points(w: World) -> list[dict]:
    out = []
    live = [m for m in w.merchants if m.status == "存续"]
    for i in range(len(w.communities) * 12):
        c = w.communities[i % len(w.communities)]
        m = w.rng.choice(live) if w.rng.random() < 0.6 else None
        lon, lat = (m.lon, m.lat) if m else w.point_in(c.bbox)
        cat = w.rng.choice(SERVICE_CATEGORIES)
        out.append({
            "point_id": f"FW{c.code[-3:]}{i + 1:04d}", "name": m.name if m else f"{c.name}{cat}",
            "category": cat, "credit_code": m.credit_code if m else None,
            "address": m.address if m else f"{c.name}社区服务中心", "community_code": c.code,
            "lon": lon, "lat": lat, "open_hours": w.rng.choice(("07:00-21:00", "08:00-20:00",
                                                              "00:00-24:00")),
            "walk_minutes": w.rng.randint(2, 15), "updated_at": T(_ago(w, 200)),
            "_merchant": m.credit_code if m else None,
        })  # fmt: skip
    return out


HAZARDS = ("燃气", "消防", "危化品", "积水点", "高空坠物", "地下空间")


def hazard_points(w: World) -> list[dict]:
    out = []
    for i in range(len(w.communities) * 8):
        g = w.rng.choice(w.grids)
        lon, lat = w.point_in(g.bbox)
        cat = w.rng.choice(HAZARDS)
        out.append({
            "hazard_id": f"YH{i + 1:05d}", "name": f"{g.community.name}社区{cat}隐患点{i + 1}",
            "category": cat, "risk_level": w.rng.choices(("重大", "较大", "一般", "低"),
                                                        (1, 3, 8, 6))[0],
            "address": f"{g.community.name}社区{w.rng.randint(1, 30)}号楼",
            "community_code": g.community.code, "lon": lon, "lat": lat,
            "responsible_person": g.worker, "responsible_phone": g.worker_mobile,
            "last_inspection": D(_day_ago(w, 120)),
            "status": w.rng.choice(("整改中", "已整改", "监控中")),
        })  # fmt: skip
    return out


INCIDENTS = ("火灾", "燃气泄漏", "交通事故", "内涝", "高空坠物", "其他")


def incidents(w: World) -> list[dict]:
    out = []
    adults = [p for p in w.people if p.mobile]
    variants = callers.reporting_rng(w, "yjj.incidents")
    for i in range(max(10, len(w.people) // 200)):
        g = w.rng.choice(w.grids)
        lon, lat = w.point_in(g.bbox)
        at = _ago(w, 365)
        report = callers.reported(variants, "yjj.incidents", w.rng.choice(adults), w)
        reporter = report.person
        kind = w.rng.choice(INCIDENTS)
        place = f"{g.community.name}社区{w.rng.randint(1, 30)}号楼"
        text = f"{place}发生{kind}，报警人{reporter.name}，现场已处置。"
        out.append(_pii({
            "incident_id": f"SJ{at:%Y%m%d}{i + 1:04d}", "type": kind, "occurred_at": T(at),
            "reported_at": T(at + dt.timedelta(minutes=w.rng.randint(1, 40))),
            "address": place, "community_code": g.community.code, "lon": lon, "lat": lat,
            "casualties": w.rng.choices((0, 1, 2), (20, 2, 1))[0],
            "reporter_name": reporter.name, "reporter_phone": reporter.mobile,
            "description": text, "status": w.rng.choice(("已处置", "处置中")), **report.truth,
        }, "description", [("person_name", reporter.name)]))  # fmt: skip
    return out


CHANNELS = ("电话", "网站", "微信", "APP")
# 承办单位: the offices a 12345 work order is dispatched to, by category (the first is the
# usual one, three times as often as the second)
HANDLERS = {
    "噪音扰民": ("街道城市管理办公室", "建外派出所"),
    "物业管理": ("街道物业管理科", "物业服务企业"),
    "环境卫生": ("街道城市管理办公室", "街道环境卫生所"),
    "市政设施": ("区市政市容管理委员会", "街道城市管理办公室"),
    "占道经营": ("街道综合行政执法队", "街道城市管理办公室"),
    "供暖": ("区供热管理办公室", "物业服务企业"),
    "邻里纠纷": ("社区居委会", "街道综治中心"),
    "养老服务": ("街道民生保障办公室", "社区居委会"),
    "其他": ("街道政务服务中心", "社区居委会"),
}
# work orders first answered (dispatched) after their limit, 2 h for emergencies, 24 h
# otherwise: dispatched between one and three limits after acceptance
LATE_DISPATCH = {"emergency": 0.10, "ordinary": 0.08}
UNGEOCODED = 0.15  # of phone appeals: the operator left the place without coordinates


def handling_rng(w: World, tag: str = "") -> random.Random:
    """The 12345 centre's own random stream (handler, late dispatch, place): drawn apart
    from the street's, so adding it left every earlier draw as it was."""
    return random.Random(f"{w.seed}:handling:rx.appeals{tag}")


def _appeal_place(
    w: World, rng: random.Random, community: Community, unit: Unit | None, no: int, channel: str
) -> tuple[float | None, float | None, str]:
    """lon, lat and grid cell of an appeal: its caller's building (a resident), else the
    building its address names or a point in its community (an outsider). A phone appeal
    is at times left without coordinates; the grid cell is always assigned."""
    if unit is not None:
        lon, lat = unit.building.lon, unit.building.lat
    else:
        named = [b for b in w.buildings if b.community is community and b.no == no]
        lon, lat = (named[0].lon, named[0].lat) if named else (
            round(rng.uniform(community.bbox[0], community.bbox[2]), 6),
            round(rng.uniform(community.bbox[1], community.bbox[3]), 6),
        )  # fmt: skip
    grid = w.grid_at(lon, lat).code
    if channel == "电话" and rng.random() < UNGEOCODED:
        return None, None, grid
    return lon, lat, grid


def appeals(w: World) -> list[dict]:
    out = []
    adults = [p for p in w.people if p.age(w.today) >= 18]
    streams = AppealStreams(w)
    for i in range(max(20, len(w.people) // 8)):
        report = callers.reported(streams.variants, "rx.appeals", w.rng.choice(adults), w)
        cat = w.rng.choice(tuple(texts.ISSUES))
        urgency = "emergency" if w.rng.random() < 0.08 else "ordinary"
        out.append(appeal(w, w.rng, streams, i, report, cat, urgency, _ago(w, 365)))
    return out


class AppealStreams:
    """The 12345 centre's streams of its own: callers as reported, addresses as spelled,
    handling (:func:`handling_rng`)."""

    def __init__(self, w: World, tag: str = "") -> None:
        self.variants = callers.reporting_rng(w, "rx.appeals" + tag)
        self.spelling = addresses.address_rng(w, "rx.appeals" + tag)
        self.handling = handling_rng(w, tag)


def appeal(
    w: World,
    rng: random.Random,
    streams: AppealStreams,
    i: int,
    report: callers.Reported,
    cat: str,
    urgency: str,
    accepted: dt.datetime,
    cell: Grid | None = None,
) -> dict:
    """One 12345 work order: its caller as reported, category, urgency and acceptance time
    given; handling, text and place drawn (``cell``: an outsider's appeal lies in it)."""
    caller, variants, handling = report.person, streams.variants, streams.handling
    dispatched = accepted + dt.timedelta(minutes=rng.randint(3, 90))
    limit = 2 if urgency == "emergency" else 24
    resolved = dispatched + dt.timedelta(minutes=rng.randint(20, int(limit * 60 * 1.3)))
    if resolved.date() > w.today or rng.random() < 0.05:
        resolved = None
    if report.truth["_person"] is None:  # an outsider: about a place, not a home
        community = cell.community if cell else variants.choice(w.communities)
        no = variants.randint(1, 30)
        address = f"{CITY_DISTRICT}{STREET_NAME}{community.name}社区{no}号楼附近"
        unit = None
    else:
        community, unit, no = caller.household.community, caller.household.unit, 0
        address = addresses.spelled(streams.spelling, "rx.appeals", unit)
    content, pii = texts.appeal_text(rng, cat, caller, address)
    channel = rng.choice(CHANNELS)
    satisfaction = rng.choice(("满意", "基本满意", "不满意")) if resolved else None
    lag = dt.timedelta(minutes=rng.randint(0, 600))
    # the 12345 centre's own draws (handling_rng): late first answers, handler, place
    if handling.random() < LATE_DISPATCH[urgency]:
        late = accepted + dt.timedelta(minutes=handling.randint(limit * 60 + 1, limit * 180))
        resolved = resolved + (late - dispatched) if resolved else None
        dispatched = late
        if resolved is not None and resolved.date() > w.today:
            resolved = None
        if dispatched.date() > w.today:  # not dispatched yet
            dispatched = None
    satisfaction = satisfaction if resolved else None
    handler = handling.choices(HANDLERS[cat], (3, 1))[0] if dispatched else None
    if cell is not None and unit is None:
        lon = round(handling.uniform(cell.bbox[0], cell.bbox[2]), 6)
        lat = round(handling.uniform(cell.bbox[1], cell.bbox[3]), 6)
        grid = cell.code
        if channel == "电话" and handling.random() < UNGEOCODED:
            lon = lat = None
    else:
        lon, lat, grid = _appeal_place(w, handling, community, unit, no, channel)
    status = "已办结" if resolved else "已派单" if dispatched else "已受理"
    return _pii({
        "appeal_id": f"12345{accepted:%Y%m%d}{i + 1:06d}",
        "channel": channel, "accepted_at": T(accepted),
        "dispatched_at": T(dispatched), "resolved_at": T(resolved), "urgency": urgency,
        "category": cat, "caller_name": caller.name, "caller_phone": caller.mobile,
        "address": address, "community_code": community.code, "grid_code": grid,
        "lon": lon, "lat": lat, "handling_dept": handler,
        "content": content, "status": status, "satisfaction": satisfaction,
        "update_time": T((resolved or dispatched or accepted) + lag),
        **report.truth, "_unit": unit.id if unit else None,
    }, "content", pii)  # fmt: skip


def grid_cells(w: World) -> list[dict]:
    households: dict[str, int] = {}
    population: dict[str, int] = {}
    for hh in w.households:
        g = hh.community.code
        households[g] = households.get(g, 0) + 1
        population[g] = population.get(g, 0) + len(hh.members)
    return [
        {"网格编码": g.code, "网格名称": g.name, "社区代码": g.community.code,
         "社区名称": f"{g.community.name}社区", "网格员": g.worker, "网格员电话": g.worker_mobile,
         "户数": households.get(g.community.code, 0) // 6,
         "人口数": population.get(g.community.code, 0) // 6,
         "中心经度": round((g.bbox[0] + g.bbox[2]) / 2, 6),
         "中心纬度": round((g.bbox[1] + g.bbox[3]) / 2, 6)}
        for g in w.grids
    ]  # fmt: skip


def grid_events(w: World) -> list[dict]:
    out = []
    for i in range(max(20, len(w.people) // 25)):
        g = w.rng.choice(w.grids)
        lon, lat = w.point_in(g.bbox)
        at = _ago(w, 180)
        cat = w.rng.choice(tuple(texts.GRID_EVENTS))
        members = [p for hh in w.rng.sample(w.households, 2) for p in hh.members]
        text, pii = texts.event_text(w.rng, cat, f"{g.community.name}社区", members)
        closed = at + dt.timedelta(hours=w.rng.randint(1, 200)) if w.rng.random() < 0.8 else None
        out.append(_pii({
            "事件编号": f"WG{at:%Y%m%d}{i + 1:05d}", "网格编码": g.code, "上报时间": T(at),
            "上报人": g.worker, "事件类型": cat, "事件描述": text, "经度": lon, "纬度": lat,
            "照片数": w.rng.randint(0, 4), "处置状态": "已办结" if closed else "处置中",
            "办结时间": T(closed),
        }, "事件描述", pii))  # fmt: skip
    return out


def devices(w: World) -> list[dict]:
    return [
        {"device_id": d.id, "device_type": d.kind, "metric": d.metric,
         "community_code": d.community.code, "location": d.location, "lon": d.lon, "lat": d.lat,
         "installed_on": D(d.installed_on), "status": "online"}
        for d in w.devices
    ]  # fmt: skip


PLACE_SPECS = (
    Spec("cgj", "violation_cases", "csv", cols(
        "案件编号:fixed!", "案件类型:str!", "发现时间:datetime!", "所属社区:fixed!", "地址:str!",
        "经度:num!", "纬度:num!", "当事人:name", "当事人身份证号:cid", "当事人电话:mobile",
        "案件描述:text!", "处理状态:str!", "结案时间:datetime"),
        key=("案件编号",), build=violation_cases, encoding="utf-8-sig"),
    Spec("zjj", "buildings", "parquet", cols(
        "building_id:fixed!", "community_code:fixed!", "address:str!", "lon:num!", "lat:num!",
        "floors:num!", "build_year:num", "structure:str", "usage:str!", "unit_count:num"),
        key=("building_id",), build=buildings),
    Spec("zjj", "housing_units", "parquet", cols(
        "unit_id:fixed!", "building_id:fixed!", "entrance:num!", "floor:num!", "room_no:fixed!",
        "area_m2:num", "property_type:str", "owner_name:name", "owner_citizen_id:cid",
        "occupancy:str", "address:str!"),
        key=("unit_id",), build=housing_units),
    Spec("scjg", "merchants", "json", cols(
        "credit_code:fixed!", "name:str!", "legal_rep:name!", "category:str!", "address:str!",
        "community_code:fixed!", "lon:num", "lat:num", "phone:phone", "registered_on:date!",
        "status:str!"),
        key=("credit_code",), build=merchants, records_path="data"),
    Spec("scjg", "service_points", "json", cols(
        "point_id:fixed!", "name:str!", "category:str!", "credit_code:fixed", "address:str!",
        "community_code:fixed!", "lon:num!", "lat:num!", "open_hours:str", "walk_minutes:num",
        "updated_at:datetime"),
        key=("point_id",), build=service_points, records_path="data"),
    Spec("yjj", "hazard_points", "jsonl", cols(
        "hazard_id:fixed!", "name:str!", "category:str!", "risk_level:str!", "address:str!",
        "community_code:fixed!", "lon:num!", "lat:num!", "responsible_person:name",
        "responsible_phone:phone", "last_inspection:date", "status:str"),
        key=("hazard_id",), build=hazard_points),
    Spec("yjj", "incidents", "jsonl", cols(
        "incident_id:fixed!", "type:str!", "occurred_at:datetime!", "reported_at:datetime!",
        "address:str!", "community_code:fixed!", "lon:num", "lat:num", "casualties:num",
        "reporter_name:name", "reporter_phone:mobile", "description:text", "status:str"),
        key=("incident_id",), build=incidents),
    Spec("rx", "appeals", "http_api", cols(
        "appeal_id:fixed!", "channel:str!", "accepted_at:datetime!", "dispatched_at:datetime",
        "resolved_at:datetime", "urgency:fixed!", "category:str!", "caller_name:name",
        "caller_phone:mobile", "address:str", "community_code:fixed", "grid_code:fixed!",
        "lon:num", "lat:num", "handling_dept:str", "content:text!", "status:str!",
        "satisfaction:str", "update_time:fixed!"),
        key=("appeal_id",), build=appeals, cursor="update_time"),
    Spec("wg", "grid_cells", "csv", cols(
        "网格编码:fixed!", "网格名称:str!", "社区代码:fixed!", "社区名称:str!", "网格员:name",
        "网格员电话:phone", "户数:num", "人口数:num", "中心经度:num", "中心纬度:num"),
        key=("网格编码",), build=grid_cells, encoding="utf-8"),
    Spec("wg", "grid_events", "csv", cols(
        "事件编号:fixed!", "网格编码:fixed!", "上报时间:datetime!", "上报人:name", "事件类型:str!",
        "事件描述:text!", "经度:num", "纬度:num", "照片数:num", "处置状态:str!",
        "办结时间:datetime"),
        key=("事件编号",), build=grid_events, encoding="utf-8"),
    Spec("iot", "devices", "jsonl", cols(
        "device_id:fixed!", "device_type:fixed!", "metric:fixed", "community_code:fixed!",
        "location:str", "lon:num", "lat:num", "installed_on:date", "status:fixed"),
        key=("device_id",), build=devices),
)  # fmt: skip
