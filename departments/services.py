"""Government-service handling records (政务服务办件) of the street's service centre (rx).

A resident applies for an item (事项) at a window, online or at a self-service terminal;
the centre's system records who applied (name, citizen ID, mobile), the item, the window
and the department that handles it, when the application was received and finished, the
promised time limit in working days (1: handled on the spot, 即办) and how many times the
applicant had to come in person (跑动次数: 0 for an application handled wholly online).

Drawn from a random stream of its own (``<seed>:services:rx.service_records``): adding the
dataset left every other dataset of a street as it was.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass

from departments.spec import Spec, T, cols
from departments.world import Person, World

CHANNELS = ("窗口", "网上办理", "自助终端")
STATUSES = ("办理中", "已办结", "不予受理")
REFUSED = 0.02  # applications refused on receipt (材料不符合要求), decided the same day
WORK_START, WORK_END = dt.time(9), dt.time(17)


@dataclass(frozen=True)
class ServiceItem:
    """An item of the street's government-service list (政务服务事项清单)."""

    code: str  # 事项编码
    name: str  # 事项名称
    dept: str  # 承办部门
    window: str  # 受理窗口
    limit_days: int  # 承诺时限, working days (1: 即办)
    online: float  # share applied for online
    weight: float  # how often it is applied for, relative to the others
    eligible: Callable[[Person, dt.date], bool]


ITEMS: tuple[ServiceItem, ...] = (
    ServiceItem("JDZW001", "居住证申领", "街道流动人口和出租房屋管理服务站", "流动人口服务窗口",
                15, 0.3, 3, lambda p, d: not p.hukou and p.age(d) >= 16),
    ServiceItem("JDZW002", "老年人优待卡申办", "街道民生保障办公室", "民政窗口", 10, 0.2, 2,
                lambda p, d: p.age(d) >= 60),
    ServiceItem("JDZW003", "高龄津贴申领", "街道民生保障办公室", "民政窗口", 20, 0.1, 1,
                lambda p, d: p.hukou and p.age(d) >= 80),
    ServiceItem("JDZW004", "最低生活保障申请", "街道民生保障办公室", "民政窗口", 30, 0.05, 0.5,
                lambda p, d: p.hukou and p.age(d) >= 18),
    ServiceItem("JDZW005", "残疾人两项补贴申请", "街道残疾人联合会", "残联窗口", 20, 0.1, 0.5,
                lambda p, d: p.hukou and p.age(d) >= 16),
    ServiceItem("JDZW006", "城乡居民基本医疗保险参保登记", "街道社会保障事务所", "社保窗口", 1,
                0.5, 3, lambda p, d: p.hukou and p.age(d) >= 16),
    ServiceItem("JDZW007", "就业失业登记", "街道社会保障事务所", "社保窗口", 5, 0.6, 3,
                lambda p, d: 18 <= p.age(d) < 60),
    ServiceItem("JDZW008", "社会保障卡补换", "街道社会保障事务所", "社保窗口", 10, 0.4, 2,
                lambda p, d: p.age(d) >= 16),
    ServiceItem("JDZW009", "生育服务登记", "街道卫生健康办公室", "综合受理窗口", 1, 0.7, 1.5,
                lambda p, d: 20 <= p.age(d) <= 45),
    ServiceItem("JDZW010", "社区证明开具", "社区居委会", "综合受理窗口", 1, 0.3, 2,
                lambda p, d: p.age(d) >= 18),
)  # fmt: skip


def services_rng(w: World) -> random.Random:
    """The service centre's own random stream."""
    return random.Random(f"{w.seed}:services:rx.service_records")


def add_working_days(start: dt.date, days: int) -> dt.date:
    """The date ``days`` working days (Monday–Friday) after ``start``."""
    d = start
    while days > 0:
        d += dt.timedelta(days=1)
        if d.weekday() < 5:
            days -= 1
    return d


def _received(rng: random.Random, w: World, online: bool) -> dt.datetime:
    """When an application was received within the last year: online at any hour; at a
    window or terminal on a working day in office hours."""
    while True:
        day = w.today - dt.timedelta(days=rng.randint(0, 364))
        if online:
            return dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rng.randrange(86400))
        if day.weekday() < 5:
            start = dt.datetime.combine(day, WORK_START)
            span = (WORK_END.hour - WORK_START.hour) * 3600 - 1800
            return start + dt.timedelta(seconds=rng.randrange(span))


def _finished(
    rng: random.Random, item: ServiceItem, received: dt.datetime, online: bool
) -> dt.datetime:
    """When the item was finished: on the spot (即办) within two hours at a window, within
    a day online; otherwise after 20 %–115 % of its limit in working days (some late)."""
    if item.limit_days <= 1:
        hours = rng.uniform(2, 30) if online else rng.uniform(0.25, 2)
        return received + dt.timedelta(hours=hours)
    days = max(1, round(item.limit_days * rng.uniform(0.2, 1.15)))
    day = add_working_days(received.date(), days)
    return dt.datetime.combine(day, WORK_START) + dt.timedelta(seconds=rng.randrange(8 * 3600))


def _visits(rng: random.Random, online: bool) -> int:
    """跑动次数: an online application mostly none (a fifth come once to show originals);
    in person once, twice or three times (materials missing)."""
    if online:
        return rng.choices((0, 1), (4, 1))[0]
    return rng.choices((1, 2, 3), (70, 22, 8))[0]


def service_records(w: World) -> list[dict]:
    rng = services_rng(w)
    now = dt.datetime.combine(w.today, dt.time(18))
    eligible = {it.code: [p for p in w.people if it.eligible(p, w.today)] for it in ITEMS}
    items = [it for it in ITEMS if eligible[it.code]]
    out = []
    for i in range(max(20, len(w.people) // 10)):
        item = rng.choices(items, [it.weight for it in items])[0]
        person = rng.choice(eligible[item.code])
        online = rng.random() < item.online
        channel = "网上办理" if online else rng.choices(("窗口", "自助终端"), (85, 15))[0]
        received = _received(rng, w, online)
        if rng.random() < REFUSED:
            status = "不予受理"
            finished = received + dt.timedelta(minutes=rng.randint(10, 240))
        else:
            finished = _finished(rng, item, received, online)
            status = "已办结"
        if finished > now:
            finished, status = None, "办理中"
        visits = _visits(rng, online)
        out.append({
            "record_id": f"ZW{received:%Y%m%d}{i + 1:06d}", "item_code": item.code,
            "item_name": item.name, "channel": channel, "applicant_name": person.name,
            "applicant_citizen_id": person.cid, "applicant_mobile": person.mobile,
            "window": None if online else item.window, "handling_dept": item.dept,
            "received_at": T(received), "finished_at": T(finished),
            "time_limit_days": item.limit_days, "visits": visits, "status": status,
            "update_time": T((finished or received) + dt.timedelta(minutes=rng.randint(0, 120))),
            "_person": person.cid,
        })  # fmt: skip
    return out


SERVICE_SPECS = (
    Spec("rx", "service_records", "http_api", cols(
        "record_id:fixed!", "item_code:fixed!", "item_name:str!", "channel:str!",
        "applicant_name:name!", "applicant_citizen_id:cid!", "applicant_mobile:mobile",
        "window:str", "handling_dept:str!", "received_at:datetime!", "finished_at:datetime",
        "time_limit_days:num!", "visits:num!", "status:str!", "update_time:fixed!"),
        key=("record_id",), build=service_records, cursor="update_time"),
)  # fmt: skip
