"""The need outcomes as the departments record them (issue 16): civil affairs' home-care and
meal-aid enrolments and temporary assistance, health's events needing follow-up, emergency
management's calls for help. Each record is one event of the latent need process
(``departments.needs``) on the day it happened; the details (service, event type, amount,
channel …) come from a random stream of the dataset's own (``<seed>:needs:<dept>.<code>``).
"""

from __future__ import annotations

import datetime as dt
import random

from departments.spec import D, Spec, T, cols
from departments.world import Person, World

STATIONS = ("建外养老驿站", "光华里养老驿站", "永安里养老驿站", "秀水社区养老服务中心")
HOME_CARE = (("助餐", 5), ("助洁", 2), ("助浴", 1), ("上门照护", 2), ("日间照料", 1))
HEALTH_EVENTS = (("跌倒", 3), ("急性心脑血管事件", 2), ("血压控制不佳", 3), ("血糖异常", 2),
                 ("急诊就诊", 2), ("住院", 1))  # fmt: skip
REPORTERS = ("建外社区卫生服务中心", "光华里社区卫生服务站", "永安里社区卫生服务站",
             "朝阳医院急诊科")  # fmt: skip
ASSISTANCE = (("急难型", "因病", 3), ("急难型", "因意外事故", 1), ("急难型", "因灾", 0.3),
              ("支出型", "医疗支出突增", 2), ("支出型", "教育支出突增", 1),
              ("支出型", "生活必需支出突增", 2))  # fmt: skip
HELP_TYPES = (("跌倒", 4), ("突发疾病", 4), ("独居失联", 1), ("被困", 1), ("火情", 0.3),
              ("其他", 1))  # fmt: skip
CALL_CHANNELS = (("一键呼叫", 4), ("电话", 3), ("110转接", 1))


def _stream(w: World, ref: str) -> random.Random:
    return random.Random(f"{w.seed}:needs:{ref}")


def _events(w: World, need: str) -> list[tuple[Person, dt.date]]:
    proc = w.needs
    if proc is None:
        return []
    return [(proc.persons[r], proc.date(t)) for r, t in proc.events[need]]


def _pick(rng: random.Random, choices: tuple) -> tuple | str:
    """One of ``choices`` (tuples whose last item is the weight), without its weight."""
    c = rng.choices(choices, [x[-1] for x in choices])[0]
    return c[0] if len(c) == 2 else c[:-1]


def home_care_enrolments(w: World) -> list[dict]:
    rng, out = _stream(w, "mzj.home_care_enrolments"), []
    for p, day in _events(w, "home_care"):
        out.append({
            "登记编号": f"JJ{day:%Y%m%d}{len(out) + 1:05d}", "姓名": p.name, "性别": p.gender,
            "身份证号码": p.cid, "出生日期": D(p.birth), "联系电话": p.mobile,
            "所属社区": f"{p.household.community.name}社区", "服务类型": _pick(rng, HOME_CARE),
            "服务机构": rng.choice(STATIONS), "登记日期": D(day), "_person": p.cid,
        })  # fmt: skip
    return out


def health_events(w: World) -> list[dict]:
    rng, out = _stream(w, "wjw.health_events"), []
    for p, day in _events(w, "health_event"):
        out.append({
            "事件编号": f"JK{day:%Y%m%d}{len(out) + 1:05d}", "身份证号": p.cid, "姓名": p.name,
            "性别": p.gender, "出生日期": D(p.birth), "事件日期": D(day),
            "事件类型": _pick(rng, HEALTH_EVENTS), "报告机构": rng.choice(REPORTERS),
            "随访期限": D(day + dt.timedelta(days=rng.choice((7, 14, 14, 30)))),
            "联系电话": p.mobile, "_person": p.cid,
        })  # fmt: skip
    return out


def temporary_assistance(w: World) -> list[dict]:
    rng, out = _stream(w, "mzj.temporary_assistance"), []
    for p, day in _events(w, "financial_assistance"):
        kind, reason = _pick(rng, ASSISTANCE)
        amount = rng.randrange(10, 61) * 100 if kind == "急难型" else rng.randrange(20, 121) * 100
        out.append({
            "救助编号": f"LS{day:%Y%m%d}{len(out) + 1:05d}", "姓名": p.name,
            "身份证号码": p.cid, "性别": p.gender, "联系电话": p.mobile,
            "所属社区": f"{p.household.community.name}社区", "救助类型": kind,
            "救助事由": reason, "救助金额（元）": amount, "审批日期": D(day), "_person": p.cid,
        })  # fmt: skip
    return out


def emergency_calls(w: World) -> list[dict]:
    rng, out = _stream(w, "yjj.emergency_calls"), []
    for p, day in _events(w, "emergency_help"):
        at = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rng.randrange(86400))
        kind = _pick(rng, HELP_TYPES)
        out.append({
            "call_id": f"JJQZ{at:%Y%m%d}{len(out) + 1:05d}", "call_time": T(at),
            "citizen_id": p.cid, "caller_name": p.name, "caller_phone": p.mobile,
            "help_type": kind, "channel": _pick(rng, CALL_CHANNELS),
            "address": p.household.unit.address,
            "community_code": p.household.community.code,
            "status": "已处置" if day < w.today or rng.random() < 0.7 else "处置中",
            "_person": p.cid, "_unit": p.household.unit.id,
        })  # fmt: skip
    return out


OUTCOME_SPECS = (
    Spec("mzj", "home_care_enrolments", "excel", cols(
        "登记编号:fixed!", "姓名:name!", "性别:gender!", "身份证号码:cid!", "出生日期:birth",
        "联系电话:mobile", "所属社区:str!", "服务类型:str!", "服务机构:str", "登记日期:date!"),
        key=("登记编号",), build=home_care_enrolments,
        title="{street}居家养老服务与助餐登记表（{y}年{m}月）", sheet="居家养老服务"),
    Spec("wjw", "health_events", "csv", cols(
        "事件编号:fixed!", "身份证号:cid!", "姓名:name!", "性别:gender!", "出生日期:birth",
        "事件日期:date!", "事件类型:str!", "报告机构:str!", "随访期限:date", "联系电话:mobile"),
        key=("事件编号",), build=health_events, encoding="gbk"),
    Spec("mzj", "temporary_assistance", "excel", cols(
        "救助编号:fixed!", "姓名:name!", "身份证号码:cid!", "性别:gender!", "联系电话:mobile",
        "所属社区:str!", "救助类型:str!", "救助事由:str!", "救助金额（元）:money!",
        "审批日期:date!"),
        key=("救助编号",), build=temporary_assistance,
        title="{street}临时救助审批台账（{y}年{m}月）", sheet="临时救助"),
    Spec("yjj", "emergency_calls", "jsonl", cols(
        "call_id:fixed!", "call_time:datetime!", "citizen_id:cid", "caller_name:name",
        "caller_phone:mobile", "help_type:str!", "channel:str", "address:str!",
        "community_code:fixed!", "status:str"),
        key=("call_id",), build=emergency_calls),
)  # fmt: skip
