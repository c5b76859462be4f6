"""One street's consistent ground truth: places, households, residents, merchants, devices.

Every department's records are drawn from this one world, so the same resident
shows up in the police registry, at the health centre and on the 12345 hotline.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from faker import Faker

from departments import ids

STREET_CODE = "110105001"
STREET_NAME = "建外街道"
DISTRICT_CODE = "110105"
CITY_DISTRICT = "北京市朝阳区"
# lon_min, lat_min, lon_max, lat_max of the street (WGS-84)
STREET_BBOX = (116.430, 39.900, 116.470, 39.925)
COMMUNITY_NAMES = ("建外", "光华里", "永安里", "北郎家园", "南郎家园", "秀水", "大北窑", "灵通观")
# (region code, weight) for people born elsewhere since 1990; 110103 (崇文区, retired in 2010)
# appears on IDs of older people only (OLD_REGIONS and the local branch).
OTHER_REGIONS = (
    ("110101", 3), ("110102", 3), ("110108", 3), ("130102", 3), ("410102", 3),
    ("510104", 2), ("320102", 2), ("370102", 2), ("420102", 2), ("230102", 2), ("610102", 1),
)  # fmt: skip
RETIRED_REGIONS = ("110103",)
# Codes of other provinces created after 1982 are, by python-stdnum's birthplace table, not valid
# for people born before them; older people born elsewhere get codes that existed then.
OLD_REGIONS = (("110101", 3), ("110102", 3), ("110108", 3), ("110103", 2), ("310101", 2),
               ("120101", 2))  # fmt: skip
ETHNICITIES = (("汉族", 92), ("回族", 3), ("满族", 3), ("蒙古族", 1), ("朝鲜族", 1))
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "157", "158", "159", "166", "176", "177", "180", "181", "183", "185", "186", "187", "188", "189", "191", "198", "199"]  # fmt: skip


@dataclass
class Community:
    code: str
    name: str
    bbox: tuple[float, float, float, float]


@dataclass
class Grid:
    code: str
    name: str
    community: Community
    bbox: tuple[float, float, float, float]
    worker: str = ""
    worker_mobile: str = ""


@dataclass
class Building:
    id: str
    community: Community
    no: int
    floors: int
    lon: float
    lat: float
    build_year: int
    structure: str
    usage: str
    units: list[Unit] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{CITY_DISTRICT}{STREET_NAME}{self.community.name}社区{self.no}号楼"


@dataclass
class Unit:
    id: str
    building: Building
    entrance: int
    floor: int
    room: str
    area: float
    property_type: str
    owner: Person | None = None
    occupancy: str = "空置"

    @property
    def address(self) -> str:
        return f"{self.building.address}{self.entrance}单元{self.room}室"


@dataclass
class Person:
    pid: int
    cid: str
    name: str
    gender: str
    birth: dt.date
    ethnicity: str
    region: str
    hukou: bool  # registered resident (户籍) vs residence-permit holder (居住证)
    household: Household
    relation: str
    mobile: str | None
    updated_at: dt.datetime

    def age(self, on: dt.date) -> int:
        return on.year - self.birth.year - ((on.month, on.day) < (self.birth.month, self.birth.day))


@dataclass
class Household:
    id: str
    unit: Unit
    hukou: bool
    members: list[Person] = field(default_factory=list)

    @property
    def community(self) -> Community:
        return self.unit.building.community


@dataclass
class Merchant:
    credit_code: str
    name: str
    legal_rep: str
    category: str
    community: Community
    address: str
    lon: float
    lat: float
    registered_on: dt.date
    status: str
    phone: str


@dataclass
class Device:
    id: str
    kind: str  # env_sensor, door_access, smoke, water_level
    metric: str | None
    community: Community
    location: str
    lon: float
    lat: float
    installed_on: dt.date


@dataclass
class World:
    today: dt.date
    communities: list[Community]
    grids: list[Grid]
    buildings: list[Building]
    units: list[Unit]
    households: list[Household]
    people: list[Person]
    merchants: list[Merchant]
    devices: list[Device]
    fake: Faker
    rng: random.Random
    seed: int = 0  # the street's seed (streams of their own derive from it)
    needs: object = None  # the latent need process's draw (departments.needs.NeedProcess)

    def __repr__(self) -> str:  # the generated one walks every person and household
        return f"World({len(self.people)} people, seed {self.seed}, today {self.today})"

    def point_in(self, bbox: tuple[float, float, float, float]) -> tuple[float, float]:
        lon = round(self.rng.uniform(bbox[0], bbox[2]), 6)
        lat = round(self.rng.uniform(bbox[1], bbox[3]), 6)
        return lon, lat

    def grid_at(self, lon: float, lat: float) -> Grid:
        """The grid cell a point lies in (the first whose box holds it; the nearest centre
        for a point outside the street)."""
        for g in self.grids:
            if g.bbox[0] <= lon <= g.bbox[2] and g.bbox[1] <= lat <= g.bbox[3]:
                return g
        return min(self.grids, key=lambda g: ((g.bbox[0] + g.bbox[2]) / 2 - lon) ** 2
                   + ((g.bbox[1] + g.bbox[3]) / 2 - lat) ** 2)  # fmt: skip


def _gbk_safe(make) -> str:
    while True:
        value = make()
        try:
            value.encode("gbk")
            return value
        except UnicodeEncodeError:
            continue


# residents whose name is in parts (少数民族 names transliterated, foreign names), written as
# the resident ID card prints them: given name · father's name, joined by U+00B7 (GBK A1A4)
NAME_IN_PARTS_SHARE = 0.01
_PARTS_MALE = ("买买提", "艾力", "阿不都", "吐尔逊", "热合曼", "艾合买提", "玉素甫", "尼加提",
               "阿里木江", "努尔", "依明", "阿布力孜", "约翰", "伊力哈木")  # fmt: skip
_PARTS_FEMALE = ("阿依古丽", "古丽", "热依拉", "帕提古丽", "迪丽热巴", "努尔古丽", "阿依努尔",
                 "米热古丽", "玛丽亚")  # fmt: skip


class _Factory:
    def __init__(self, rng: random.Random, fake: Faker, today: dt.date, seed: int = 0) -> None:
        self.rng, self.fake, self.today = rng, fake, today
        self.cids: set[str] = set()
        # names in parts draw from a stream of their own, and the name they replace is drawn
        # still: the world's people, homes and records are drawn as before they were
        # simulated (the dirt and the callers' words drawn after the first such name differ)
        self.parts_rng = random.Random(f"{seed}:names in parts")

    def mobile(self) -> str:
        return self.rng.choice(MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"

    def name(self, gender: str | None = None) -> str:
        make = {"男": self.fake.name_male, "女": self.fake.name_female}.get(gender, self.fake.name)
        name = _gbk_safe(make)  # drawn always: Faker's stream stays as it was
        if self.parts_rng.random() < NAME_IN_PARTS_SHARE:
            own = _PARTS_FEMALE if gender == "女" else _PARTS_MALE
            return self.parts_rng.choice(own) + "\u00b7" + self.parts_rng.choice(_PARTS_MALE)
        return name

    def birth(self, age_min: int, age_max: int) -> dt.date:
        start = self.today.replace(year=self.today.year - age_max - 1) + dt.timedelta(days=1)
        end = self.today.replace(year=self.today.year - age_min)
        return start + dt.timedelta(days=self.rng.randrange((end - start).days + 1))

    def region(self, local: bool, birth: dt.date) -> str:
        if local and self.rng.random() < 0.85:
            return DISTRICT_CODE if birth.year >= 1975 or self.rng.random() < 0.8 else "110103"
        codes, weights = zip(*(OTHER_REGIONS if birth.year >= 1990 else OLD_REGIONS), strict=True)
        return self.rng.choices(codes, weights)[0]

    def cid(self, region: str, birth: dt.date, gender: str) -> str:
        while True:
            seq = self.rng.randrange(500) * 2 + (1 if gender == "男" else 0)
            cid = ids.citizen_id(region, birth, seq)
            if cid not in self.cids:
                self.cids.add(cid)
                return cid


def _communities() -> list[Community]:
    lon0, lat0, lon1, lat1 = STREET_BBOX
    out = []
    for i, name in enumerate(COMMUNITY_NAMES):
        col, row = i % 4, i // 4
        w, h = (lon1 - lon0) / 4, (lat1 - lat0) / 2
        bbox = (lon0 + col * w, lat0 + row * h, lon0 + (col + 1) * w, lat0 + (row + 1) * h)
        out.append(Community(f"{STREET_CODE}{i + 1:03d}", name, tuple(round(x, 6) for x in bbox)))
    return out


def _grids(communities: list[Community], f: _Factory) -> list[Grid]:
    grids = []
    for c in communities:
        w, h = (c.bbox[2] - c.bbox[0]) / 3, (c.bbox[3] - c.bbox[1]) / 2
        for j in range(6):
            col, row = j % 3, j // 3
            bbox = (c.bbox[0] + col * w, c.bbox[1] + row * h,
                    c.bbox[0] + (col + 1) * w, c.bbox[1] + (row + 1) * h)  # fmt: skip
            g = Grid(f"{c.code}{j + 1:02d}", f"{c.name}社区第{j + 1}网格", c,
                     tuple(round(x, 6) for x in bbox))  # fmt: skip
            g.worker, g.worker_mobile = f.name(), f.mobile()
            grids.append(g)
    return grids


def _buildings(communities: list[Community], n_units: int, f: _Factory, w_rng) -> list[Building]:
    rng = f.rng
    buildings: list[Building] = []
    per_comm = n_units // len(communities) + 1
    for c in communities:
        capacity, no = 0, 0
        while capacity < per_comm:
            no += 1
            floors = rng.choice((6, 6, 6, 12, 18, 24))
            lon, lat = w_rng(c.bbox)
            b = Building(
                id=f"{c.code}B{no:03d}", community=c, no=no, floors=floors, lon=lon, lat=lat,
                build_year=rng.randint(1958, 2018),
                structure="砖混" if floors <= 6 and rng.random() < 0.6 else "钢混",
                usage="商住" if rng.random() < 0.1 else "住宅",
            )  # fmt: skip
            entrances = 3 if floors <= 6 else 2
            for e in range(1, entrances + 1):
                for fl in range(1, floors + 1):
                    for r in range(1, 3):
                        room = f"{fl}{r:02d}"
                        b.units.append(Unit(
                            id=f"{b.id}-{e}-{room}", building=b, entrance=e, floor=fl, room=room,
                            area=round(rng.uniform(38, 145), 1),
                            property_type=rng.choices(("商品房", "房改房", "公租房", "自建房"),
                                                      (5, 4, 1, 0.3))[0],
                        ))  # fmt: skip
            capacity += len(b.units)
            buildings.append(b)
    return buildings


def build_world(residents: int, seed: int, today: dt.date) -> World:
    rng = random.Random(seed)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    f = _Factory(rng, fake, today, seed)

    def in_bbox(bbox):
        return round(rng.uniform(bbox[0], bbox[2]), 6), round(rng.uniform(bbox[1], bbox[3]), 6)

    communities = _communities()
    grids = _grids(communities, f)
    est_households = int(residents / 2.4) + 10
    buildings = _buildings(communities, int(est_households * 1.12), f, in_bbox)
    units = [u for b in buildings for u in b.units]
    free_units = units[:]
    rng.shuffle(free_units)

    people: list[Person] = []
    households: list[Household] = []

    def add(hh: Household, gender: str, birth: dt.date, relation: str, local: bool) -> Person:
        region = f.region(local, birth)
        age = today.year - birth.year
        upd = dt.datetime.combine(today, dt.time()) - dt.timedelta(
            seconds=rng.randrange(3 * 365 * 86400))  # fmt: skip
        p = Person(
            pid=len(people), cid=f.cid(region, birth, gender), name=f.name(gender), gender=gender,
            birth=birth, ethnicity=rng.choices(*zip(*ETHNICITIES, strict=True))[0], region=region,
            hukou=hh.hukou, household=hh, relation=relation,
            mobile=f.mobile() if age >= 16 and rng.random() < 0.93 else None, updated_at=upd,
        )  # fmt: skip
        people.append(p)
        hh.members.append(p)
        return p

    def other(g: str) -> str:
        return "女" if g == "男" else "男"

    while len(people) < residents:
        unit = free_units.pop()
        r = rng.random()
        hukou = r >= 0.17
        hh = Household(f"{unit.building.community.code[-6:]}{len(households) + 1:06d}", unit, hukou)
        households.append(hh)
        g = rng.choice(("男", "女"))
        if not hukou:  # floating: 1–3 adults renting
            add(hh, g, f.birth(19, 52), "本人", False)
            for _ in range(rng.choice((0, 0, 1, 2))):
                add(hh, rng.choice(("男", "女")), f.birth(19, 52), "同住人", False)
            unit.occupancy = "出租"
        elif r < 0.25:  # elderly living alone
            add(hh, g, f.birth(65, 96), "户主", True)
            unit.occupancy = "自住"
        else:
            head = add(hh, g, f.birth(26, 88), "户主", True)
            head_age = head.age(today)
            if rng.random() < 0.75:
                add(
                    hh,
                    other(g),
                    f.birth(max(20, head_age - 6), min(95, head_age + 4)),
                    "配偶",
                    True,
                )
            if head_age < 62:
                for _ in range(rng.choices((0, 1, 2, 3), (3, 5, 3, 0.5))[0]):
                    add(hh, rng.choice(("男", "女")), f.birth(0, max(0, min(30, head_age - 23))),
                        "子女", True)  # fmt: skip
                if rng.random() < 0.12:
                    add(hh, rng.choice(("男", "女")), f.birth(max(head_age + 22, 60), 98),
                        "父母", True)  # fmt: skip
            elif rng.random() < 0.25:
                add(hh, rng.choice(("男", "女")), f.birth(25, max(25, head_age - 22)), "子女", True)
            unit.occupancy = "自住"
    del people[residents:]
    for hh in households:
        hh.members = [p for p in hh.members if p.pid < residents]
    households = [hh for hh in households if hh.members]

    owners = [hh.members[0] for hh in households if hh.hukou]
    for hh in households:
        hh.unit.owner = hh.members[0] if hh.hukou else rng.choice(owners)
    for u in free_units:
        if rng.random() < 0.6:
            u.owner = rng.choice(owners)
    merchants = _merchants(communities, residents, f, in_bbox)
    devices = _devices(communities, grids, residents, f, in_bbox)
    return World(today, communities, grids, buildings, units, households, people, merchants,
                 devices, fake, rng, seed)  # fmt: skip


MERCHANT_CATEGORIES = (
    "餐饮",
    "零售",
    "便利店",
    "美容美发",
    "维修",
    "家政",
    "药店",
    "菜市场",
    "快递",
)


def _merchants(communities, residents: int, f: _Factory, in_bbox) -> list[Merchant]:
    rng, out, seen = f.rng, [], set()
    n = max(30, residents // 60)
    for i in range(n):
        c = rng.choice(communities)
        org = "92" if rng.random() < 0.55 else "91"  # 92 个体工商户, 91 企业
        while True:
            body = "".join(rng.choice(ids.USCC_ALPHABET) for _ in range(9))
            code = ids.credit_code(org, DISTRICT_CODE, body)
            if code not in seen:
                seen.add(code)
                break
        cat = rng.choice(MERCHANT_CATEGORIES)
        lon, lat = in_bbox(c.bbox)
        name = _gbk_safe(f.fake.last_name) + rng.choice(("记", "氏", "家", "兴", "福")) + cat
        if org == "91":
            name = f"北京{_gbk_safe(f.fake.company_prefix)}{cat}有限公司"
        out.append(Merchant(
            credit_code=code, name=name, legal_rep=f.name(), category=cat, community=c,
            address=f"{CITY_DISTRICT}{STREET_NAME}{c.name}社区底商{i + 1}号", lon=lon, lat=lat,
            registered_on=f.today - dt.timedelta(days=rng.randrange(60, 6000)),
            status=rng.choices(("存续", "注销", "吊销"), (90, 7, 3))[0],
            phone=f.mobile() if rng.random() < 0.8 else f"010-{rng.randrange(10**7, 10**8)}",
        ))  # fmt: skip
    return out


SENSOR_METRICS = {
    "pm25": ("μg/m³", 5, 180),
    "pm10": ("μg/m³", 10, 260),
    "noise_db": ("dB", 35, 85),
    "temperature": ("℃", -12, 38),
    "humidity": ("%", 15, 95),
    "water_level": ("cm", 0, 40),
    "smoke": ("ppm", 0, 5),
}


def _devices(communities, grids, residents: int, f: _Factory, in_bbox) -> list[Device]:
    rng, out = f.rng, []
    n_sensors = max(14, residents // 100)
    metrics = list(SENSOR_METRICS)
    for i in range(n_sensors):
        g = rng.choice(grids)
        metric = metrics[i % len(metrics)]
        kind = {"water_level": "water_level", "smoke": "smoke"}.get(metric, "env_sensor")
        lon, lat = in_bbox(g.bbox)
        out.append(Device(f"SN{i + 1:05d}", kind, metric, g.community, g.name, lon, lat,
                          f.today - dt.timedelta(days=rng.randrange(30, 1500))))  # fmt: skip
    for i, c in enumerate(communities):
        for j in range(4):
            lon, lat = in_bbox(c.bbox)
            out.append(Device(f"MJ{i + 1:02d}{j + 1:02d}", "door_access", None, c,
                              f"{c.name}社区{j + 1}号门", lon, lat,
                              f.today - dt.timedelta(days=rng.randrange(30, 1500))))  # fmt: skip
    return out
