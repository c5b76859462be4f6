"""People who report without an ID: 12345 callers and incident reporters (报警人).

A hotline operator or a dispatcher types what the person on the phone says: no citizen ID,
a name as heard and a number to call back. Most of them live on the street, some do not
(commuters, landlords living elsewhere, passers-by), and a resident's name and number as
reported differ from the police registry's at the seeded rates of :data:`REPORTING`:

- name: ``homophone`` (one character typed through the pinyin input method as another of
  the same sound: 王秀英 → 王绣英), ``typo`` (two given-name characters swapped or the last
  one dropped: 王秀英 → 王英秀 / 王秀), ``nickname`` (小英 for a younger person, 老王 for
  an older one), ``title`` (surname + 先生 / 女士: the caller gave no given name);
- mobile: ``other_own`` (a number of their own the registry does not have: every resident
  without a registered mobile who gives one), ``family`` (a household member's registered
  mobile, when one has it), ``none`` (no number given).

The reported name and number are the record's true values (what was said), not defects:
they stay in ``clean.parquet``, with ``_person`` (the true citizen ID, null for an
outsider), ``_name_variant`` and ``_mobile_variant`` (how the report differs from the
registry; null for an outsider). Each outsider is a one-off person matching no resident.
Variants are drawn from a random stream of their own (seeded per dataset), so the rest
of the street is drawn as before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from dataclasses import dataclass, field

from faker.providers.person.zh_CN import Provider as _Names

from departments import ids
from departments.world import MOBILE_PREFIXES, OLD_REGIONS, OTHER_REGIONS, Person, World

REGISTERED = "registered"  # as in the registry


@dataclass(frozen=True)
class Reporting:
    """Rates of one source: outsiders among reporters, then per resident the name and
    mobile variants (each a share of residents; the rest is :data:`REGISTERED`)."""

    outsider: float
    names: dict[str, float]
    mobiles: dict[str, float]

    def as_dict(self) -> dict:
        return {"outsider": self.outsider, "names": self.names, "mobiles": self.mobiles}


# dataset → its rates (documented in departments/README.md; written to the manifest)
REPORTING: dict[str, Reporting] = {
    "rx.appeals": Reporting(
        outsider=0.10,
        names={"homophone": 0.06, "typo": 0.02, "nickname": 0.03, "title": 0.07},
        mobiles={"other_own": 0.07, "family": 0.03, "none": 0.04},
    ),
    "yjj.incidents": Reporting(
        outsider=0.20,
        names={"homophone": 0.05, "typo": 0.02, "title": 0.10},
        mobiles={"other_own": 0.06, "family": 0.03},
    ),
}

# same-sound characters a pinyin input method offers for the characters of the simulated
# names (GBK-safe, all used in names)
HOMOPHONES = {
    "秀": "绣", "桂": "贵", "英": "瑛", "梅": "玫", "华": "桦", "兰": "岚", "玉": "钰",
    "建": "剑", "丽": "莉", "红": "宏", "珍": "贞", "淑": "舒", "芳": "方", "婷": "亭",
    "凤": "奉", "荣": "蓉", "强": "墙", "军": "君", "平": "萍", "霞": "侠", "娟": "鹃",
    "燕": "艳", "雪": "薛", "云": "芸", "伟": "玮", "磊": "蕾", "洋": "阳", "勇": "永",
    "杰": "洁", "涛": "韬", "超": "朝", "明": "铭", "刚": "钢", "辉": "晖", "鹏": "朋",
    "飞": "菲", "鑫": "欣", "波": "博", "斌": "彬", "宇": "雨", "浩": "皓", "凯": "恺",
    "健": "建", "俊": "骏", "帆": "凡", "旭": "序", "宁": "凝", "龙": "隆", "林": "琳",
    "佳": "嘉", "阳": "扬", "亮": "靓", "成": "诚", "峰": "锋", "国": "帼", "晨": "辰",
    "瑞": "睿", "志": "智", "兵": "冰", "雷": "蕾", "东": "冬", "博": "波", "彬": "斌",
    "坤": "昆", "岩": "妍", "杨": "扬", "文": "雯", "利": "莉", "楠": "南", "娜": "那",
    "敏": "旻", "静": "婧", "艳": "燕", "玲": "铃", "萍": "平", "莉": "丽", "晶": "京",
    "颖": "莹", "慧": "惠", "倩": "茜", "琴": "勤", "洁": "杰", "冬": "东", "莹": "颖",
    "琳": "林", "欣": "新", "香": "湘", "芝": "枝", "瑜": "渝", "璐": "露", "丹": "郸",
    "想": "湘", "畅": "昌", "欢": "焕", "帅": "率", "柳": "留", "春": "纯",
    "金": "今", "花": "华", "小": "晓",
}  # fmt: skip
_SURNAMES = tuple(_Names.last_names)
_SURNAME_WEIGHTS = tuple(_Names.last_names.values())
_GIVEN = tuple(_Names.first_names_male) + tuple(_Names.first_names_female)


def surname_of(name: str) -> str:
    """The surname of a simulated name (a two-character surname when the name starts with
    one the name generator knows, else the first character)."""
    return name[:2] if len(name) > 2 and name[:2] in _Names.last_names else name[:1]


def name_variant(rng: random.Random, p: Person, kind: str, today: dt.date) -> tuple[str, str]:
    """``p``'s name as reported, with the kind actually applied (a kind that cannot apply
    to this name falls back to ``homophone``, then to :data:`REGISTERED`)."""
    surname = surname_of(p.name)
    given = p.name[len(surname) :]
    if kind == REGISTERED or not given or "\u00b7" in p.name:  # a name in parts: as it is
        return p.name, REGISTERED
    if kind == "title":
        return surname + ("先生" if p.gender == "男" else "女士"), kind
    if kind == "nickname":
        if p.age(today) < 45:
            return "小" + given[-1], kind
        return "老" + surname, kind
    if kind == "typo" and len(given) >= 2:
        if given[0] != given[1] and rng.random() < 0.5:
            return surname + given[1] + given[0] + given[2:], kind
        return surname + given[:-1], kind
    at = [i for i, c in enumerate(given) if c in HOMOPHONES]
    if at:
        i = rng.choice(at)
        return surname + given[:i] + HOMOPHONES[given[i]] + given[i + 1 :], "homophone"
    return p.name, REGISTERED


def _mobile(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def mobile_variant(rng: random.Random, p: Person, kind: str) -> tuple[str | None, str]:
    """``p``'s number as reported, with the kind actually applied: a resident without a
    registered mobile who gives one gives ``other_own``; ``family`` without a household
    member with a mobile falls back to ``other_own``."""
    if kind == "none":
        return None, kind
    if kind == "family":
        others = [m for m in p.household.members if m is not p and m.mobile]
        if others:
            return rng.choice(others).mobile, kind
        kind = "other_own"
    if kind == REGISTERED and p.mobile:
        return p.mobile, kind
    while True:
        number = _mobile(rng)
        if number != p.mobile:
            return number, "other_own"


def _pick(rng: random.Random, shares: dict[str, float]) -> str:
    r, acc = rng.random(), 0.0
    for kind, share in shares.items():
        acc += share
        if r < acc:
            return kind
    return REGISTERED


def outsider(rng: random.Random, today: dt.date) -> Person:
    """A one-off reporter who lives elsewhere: a valid citizen ID of another region, a
    name and a mobile of their own (matching no resident but by chance)."""
    gender = rng.choice(("男", "女"))
    birth = today - dt.timedelta(days=rng.randint(18 * 365 + 5, 75 * 365))
    # codes that existed at birth (as the street's own people get them)
    region = rng.choices(*zip(*(OTHER_REGIONS if birth.year >= 1990 else OLD_REGIONS),
                              strict=True))[0]  # fmt: skip
    seq = rng.randrange(500) * 2 + (1 if gender == "男" else 0)
    name = rng.choices(_SURNAMES, _SURNAME_WEIGHTS)[0] + rng.choice(_GIVEN)
    return dataclasses.replace(
        _OUTSIDER,
        cid=ids.citizen_id(region, birth, seq),
        name=name,
        gender=gender,
        birth=birth,
        region=region,
        mobile=_mobile(rng) if rng.random() < 0.97 else None,
    )


@dataclass(frozen=True)
class Reported:
    """Who a report is about as the source recorded them (``person``: name and mobile as
    given, the household of the resident) and the truth columns of the record."""

    person: Person = field(repr=False)  # a resident's repr walks the whole street
    truth: dict[str, str | None] = field(default_factory=dict)


def reported(rng: random.Random, dataset: str, resident: Person, w: World) -> Reported:
    """The reporter of one record of ``dataset``: ``resident`` as reported, or an outsider."""
    rates = REPORTING[dataset]
    if rng.random() < rates.outsider:
        return Reported(
            outsider(rng, w.today),
            {"_person": None, "_name_variant": None, "_mobile_variant": None},
        )
    name, name_kind = name_variant(rng, resident, _pick(rng, rates.names), w.today)
    mobile, mobile_kind = mobile_variant(rng, resident, _pick(rng, rates.mobiles))
    given = dataclasses.replace(resident, name=name, mobile=mobile)
    return Reported(
        given,
        {"_person": resident.cid, "_name_variant": name_kind, "_mobile_variant": mobile_kind},
    )


def reporting_rng(w: World, dataset: str) -> random.Random:
    """The variants' own random stream for ``dataset`` (the street's seed and its name)."""
    return random.Random(f"{w.seed}:reporting:{dataset}")


_OUTSIDER = Person(
    pid=-1, cid="", name="", gender="", birth=dt.date(1970, 1, 1), ethnicity="汉族",
    region="", hukou=False, household=None, relation="", mobile=None,  # type: ignore[arg-type]
    updated_at=dt.datetime(1970, 1, 1),
)  # fmt: skip
