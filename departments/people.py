"""Person-bearing datasets (人): police registry, civil affairs, health, HR & social security, education."""

from __future__ import annotations

import datetime as dt
import random

from departments import addresses, ids
from departments.spec import D, Spec, T, cols
from departments.world import World


def _ago(w: World, max_days: int, min_days: int = 0) -> dt.datetime:
    base = dt.datetime.combine(w.today, dt.time(18))
    return base - dt.timedelta(seconds=w.rng.randrange(min_days * 86400, max_days * 86400))


def _day_ago(w: World, max_days: int, min_days: int = 0) -> dt.date:
    return w.today - dt.timedelta(days=w.rng.randint(min_days, max_days))


def hukou(w: World) -> list[dict]:
    return [
        {"gmsfhm": p.cid, "xm": p.name, "xb": p.gender, "csrq": D(p.birth), "mz": p.ethnicity,
         "hjdz": p.household.unit.address, "sqdm": p.household.community.code,
         "lxdh": p.mobile, "hh": p.household.id, "yhzgx": p.relation, "gxsj": T(p.updated_at),
         "_person": p.cid, "_unit": p.household.unit.id}
        for p in w.people if p.hukou
    ]  # fmt: skip


def juzhuzheng(w: World) -> list[dict]:
    out = []
    for p in w.people:
        if p.hukou:
            continue
        issued = _day_ago(w, 3 * 365, 10)
        out.append({
            "jzzbh": f"{p.household.community.code[:6]}{issued:%Y}{len(out) + 1:06d}",
            "gmsfhm": p.cid, "xm": p.name, "hjdqh": p.region,
            "jzdz": p.household.unit.address, "qfrq": D(issued),
            "yxqz": D(issued.replace(year=issued.year + 1) if issued.month != 2 or issued.day != 29
                      else issued + dt.timedelta(days=365)),
            "gxsj": T(dt.datetime.combine(issued, dt.time(9)) + dt.timedelta(
                seconds=w.rng.randrange(8 * 3600))),
            "_person": p.cid, "_unit": p.household.unit.id,
        })  # fmt: skip
    return out


def _elderly_alone(w: World) -> list:
    return [hh.members[0] for hh in w.households
            if hh.hukou and len(hh.members) == 1 and hh.members[0].age(w.today) >= 65]  # fmt: skip


def elderly_alone(w: World) -> list[dict]:
    out = []
    spelling = addresses.address_rng(w, "mzj.elderly_alone")
    for p in _elderly_alone(w):
        out.append({
            "姓名": p.name, "性别": p.gender, "身份证号码": p.cid, "出生日期": D(p.birth),
            "联系电话": p.mobile, "所属社区": f"{p.household.community.name}社区",
            "居住地址": addresses.spelled(spelling, "mzj.elderly_alone", p.household.unit),
            "紧急联系人电话": w.rng.choice(("13", "15", "18")) + f"{w.rng.randrange(10**9):09d}",
            "关爱等级": w.rng.choices(("一级", "二级", "三级"), (2, 3, 5))[0],
            "登记日期": D(_day_ago(w, 2000, 30)),
            "_person": p.cid, "_unit": p.household.unit.id,
        })  # fmt: skip
    return out


def old_age_allowance(w: World) -> list[dict]:
    out = []
    for p in w.people:
        age = p.age(w.today)
        if not p.hukou or age < 80:
            continue
        out.append({
            "姓名": p.name, "身份证号码": p.cid, "性别": p.gender, "年龄": age,
            "补贴标准（元/月）": 100 if age < 90 else 500 if age < 100 else 800,
            "发放月份": f"{w.today:%Y-%m}",
            "社保卡号": ids.luhn_complete("621700" + f"{w.rng.randrange(10**12):012d}"),
            "所属社区": f"{p.household.community.name}社区", "_person": p.cid,
        })  # fmt: skip
    return out


def minimum_living(w: World) -> list[dict]:
    out = []
    for hh in w.households:
        if not hh.hukou or w.rng.random() >= 0.03:
            continue
        head = hh.members[0]
        kind = w.rng.choices(("城市低保", "低保边缘"), (4, 1))[0]
        out.append({
            "低保证号": f"DB{hh.community.code[-6:]}{len(out) + 1:05d}",
            "户主姓名": head.name, "户主身份证号码": head.cid, "家庭人口数": len(hh.members),
            "保障类型": kind,
            "月保障金额（元）": (1420 if kind == "城市低保" else 710) * len(hh.members),
            "联系电话": head.mobile, "所属社区": f"{hh.community.name}社区",
            "认定日期": D(_day_ago(w, 1500, 20)), "_person": head.cid,
        })  # fmt: skip
    return out


DISABILITY = ("视力", "听力", "言语", "肢体", "智力", "精神", "多重")


def disability_allowance(w: World) -> list[dict]:
    out = []
    for p in w.people:
        if not p.hukou or w.rng.random() >= 0.015:
            continue
        kind, grade = w.rng.randrange(7), w.rng.randint(1, 4)
        out.append({
            "姓名": p.name, "身份证号码": p.cid, "残疾人证号": f"{p.cid}{kind + 1}{grade}",
            "残疾类别": DISABILITY[kind], "残疾等级": "一二三四"[grade - 1] + "级",
            "补贴类型": "重度残疾人护理补贴" if grade <= 2 else "困难残疾人生活补贴",
            "补贴金额（元/月）": 300 if grade <= 2 else 200, "联系电话": p.mobile,
            "所属社区": f"{p.household.community.name}社区", "_person": p.cid,
        })  # fmt: skip
    return out


CLINICS = ("建外社区卫生服务中心", "光华里社区卫生服务站", "永安里社区卫生服务站")


def elderly_health_checks(w: World) -> list[dict]:
    out = []
    for p in w.people:
        if p.age(w.today) < 65 or w.rng.random() >= 0.7:
            continue
        out.append({
            "体检编号": f"TJ{w.today:%Y}{len(out) + 1:06d}", "姓名": p.name, "身份证号": p.cid,
            "性别": p.gender, "出生日期": D(p.birth), "体检日期": D(_day_ago(w, 300, 1)),
            "收缩压": w.rng.randint(100, 175), "舒张压": w.rng.randint(60, 105),
            "空腹血糖": round(w.rng.uniform(4.2, 11.5), 1),
            "体检结论": w.rng.choices(("未见异常", "血压偏高", "血糖偏高", "建议复查"), (5, 3, 2, 1))[0],
            "联系电话": p.mobile, "体检机构": w.rng.choice(CLINICS), "_person": p.cid,
        })  # fmt: skip
    return out


def chronic_followups(w: World) -> list[dict]:
    out = []
    doctors = [w.fake.name() for _ in range(12)]
    for p in w.people:
        if p.age(w.today) < 35 or w.rng.random() >= 0.18:
            continue
        disease = w.rng.choices(("高血压", "2型糖尿病"), (3, 2))[0]
        doctor = w.rng.choice(doctors)
        for _ in range(w.rng.randint(1, 4)):
            day = _day_ago(w, 360, 1)
            out.append({
                "随访编号": f"SF{len(out) + 1:07d}", "身份证号": p.cid, "姓名": p.name,
                "病种": disease, "随访日期": D(day),
                "随访方式": w.rng.choice(("门诊", "家庭", "电话")),
                "收缩压": w.rng.randint(110, 180), "舒张压": w.rng.randint(65, 110),
                "空腹血糖": round(w.rng.uniform(4.5, 13.0), 1) if disease != "高血压" else None,
                "下次随访日期": D(day + dt.timedelta(days=90)), "责任医生": doctor,
                "_person": p.cid,
            })  # fmt: skip
    return out


def family_doctor_contracts(w: World) -> list[dict]:
    out = []
    for p in w.people:
        age = p.age(w.today)
        if w.rng.random() >= (0.75 if age >= 65 else 0.3):
            continue
        signed = _day_ago(w, 700, 1)
        out.append({
            "签约编号": f"QY{len(out) + 1:07d}", "身份证号": p.cid, "姓名": p.name,
            "性别": p.gender, "出生日期": D(p.birth), "联系电话": p.mobile,
            "签约团队": f"{w.rng.choice(CLINICS)}第{w.rng.randint(1, 6)}团队",
            "签约类型": "老年人包" if age >= 65 else "儿童包" if age < 7 else
                        w.rng.choice(("基础包", "慢病包")),
            "签约日期": D(signed), "到期日期": D(signed + dt.timedelta(days=365)),
            "_person": p.cid,
        })  # fmt: skip
    return out


INSURANCE = ("城镇职工基本养老保险", "城镇职工基本医疗保险", "失业保险", "工伤保险")


def _employer(w: World) -> tuple[str, str]:
    m = w.rng.choice(w.merchants)
    return m.name, m.credit_code


def social_insurance(w: World) -> list[dict]:
    out = []
    for p in w.people:
        age = p.age(w.today)
        if not 18 <= age < 60 or w.rng.random() >= 0.7:
            continue
        employer, code = _employer(w)
        start = _day_ago(w, 7000, 30)
        for kind in INSURANCE[: w.rng.randint(1, 4)]:
            out.append({
                "record_id": f"SB{len(out) + 1:08d}", "citizen_id": p.cid, "name": p.name,
                "insurance_type": kind,
                "status": w.rng.choices(("参保缴费", "暂停缴费", "终止"), (8, 1, 1))[0],
                "employer_name": employer, "employer_credit_code": code,
                "start_month": f"{start:%Y-%m}", "monthly_base": w.rng.randrange(6326, 33891),
                "update_time": T(_ago(w, 720)), "_person": p.cid, "_merchant": code,
            })  # fmt: skip
    return out


def employment_registration(w: World) -> list[dict]:
    out = []
    for p in w.people:
        if not 18 <= p.age(w.today) < 60 or w.rng.random() >= 0.2:
            continue
        kind = w.rng.choices(("就业登记", "失业登记"), (5, 1))[0]
        employer, code = _employer(w) if kind == "就业登记" else (None, None)
        out.append({
            "reg_id": f"JY{len(out) + 1:08d}", "citizen_id": p.cid, "name": p.name,
            "gender": p.gender, "mobile": p.mobile, "reg_type": kind,
            "employer_name": employer, "employer_credit_code": code,
            "reg_date": D(_day_ago(w, 1500, 1)), "update_time": T(_ago(w, 720)),
            "_person": p.cid, "_merchant": code,
        })  # fmt: skip
    return out


SCHOOLS = {"小学": ("建外第一小学", "光华路小学"), "初中": ("建外中学", "朝阳外国语学校")}


def school_enrolment(w: World) -> list[dict]:
    out = []
    for p in w.people:
        age = p.age(w.today)
        if not p.hukou or not 6 <= age <= 14:
            continue
        stage = "小学" if age <= 11 else "初中"
        grade = age - 5 if stage == "小学" else age - 11
        guardian = p.household.members[0]
        enrol = dt.date(w.today.year - grade + (1 if w.today.month < 9 else 0), 9, 1)
        out.append({
            "学籍号": f"G{p.cid}", "学生姓名": p.name, "性别": p.gender, "身份证号": p.cid,
            "出生日期": D(p.birth), "学校名称": w.rng.choice(SCHOOLS[stage]), "学段": stage,
            "年级": f"{'一二三四五六'[grade - 1]}年级", "入学日期": D(enrol),
            "监护人姓名": guardian.name, "监护人身份证号": guardian.cid,
            "监护人电话": guardian.mobile, "户籍性质": "本市户籍", "_person": p.cid,
        })  # fmt: skip
    return out


ADOPTION = ("生父母送养", "社会福利机构送养", "继父母收养", "监护人送养")


def adoption_registrations(w: World) -> list[dict]:
    """收养登记: a few registered children were adopted by their household's head. Not
    shareable (民法典 art. 1110: adoption secrecy), so it is delivered and catalogued but never
    granted; drawn from a stream of its own so the other datasets stay as they were."""
    rng = random.Random(f"{w.seed}:mzj.adoption_registrations")
    out = []
    for hh in w.households:
        head = hh.members[0]
        for child in hh.members[1:]:
            if not hh.hukou or child.relation != "子女" or rng.random() >= 0.04:
                continue
            day = min(child.birth + dt.timedelta(days=rng.randint(30, 6 * 365)), w.today)
            out.append({
                "收养登记证号": f"SY{day:%Y}{len(out) + 1:05d}", "收养人姓名": head.name,
                "收养人身份证号码": head.cid, "被收养人姓名": child.name,
                "被收养人性别": child.gender, "被收养人出生日期": D(child.birth),
                "收养类型": rng.choice(ADOPTION), "登记日期": D(day),
                "所属社区": f"{hh.community.name}社区",
            })  # fmt: skip
    return out


PERSON_SPECS = (
    Spec("gaj", "registered_residents", "sql_db", cols(
        "gmsfhm:cid!", "xm:name!", "xb:gender!", "csrq:birth!", "mz:str", "hjdz:str!",
        "sqdm:fixed!", "lxdh:mobile", "hh:fixed!", "yhzgx:str", "gxsj:fixed!"),
        key=("gmsfhm",), build=hukou, cursor="gxsj", table="hukou", authoritative=True),
    Spec("gaj", "residence_permits", "sql_db", cols(
        "jzzbh:fixed!", "gmsfhm:cid!", "xm:name!", "hjdqh:fixed", "jzdz:str!", "qfrq:date!",
        "yxqz:date", "gxsj:fixed!"),
        key=("jzzbh",), build=juzhuzheng, cursor="gxsj", table="juzhuzheng", authoritative=True),
    Spec("mzj", "elderly_alone", "excel", cols(
        "姓名:name!", "性别:gender!", "身份证号码:cid!", "出生日期:birth!", "联系电话:mobile",
        "所属社区:str!", "居住地址:str!", "紧急联系人电话:phone", "关爱等级:str", "登记日期:date"),
        key=("身份证号码",), build=elderly_alone, title="{street}独居老人台账（{y}年{m}月）",
        sheet="独居老人"),
    Spec("mzj", "old_age_allowance", "excel", cols(
        "姓名:name!", "身份证号码:cid!", "性别:gender!", "年龄:num!", "补贴标准（元/月）:money!",
        "发放月份:fixed!", "社保卡号:fixed!", "所属社区:str!"),
        key=("身份证号码", "发放月份"), build=old_age_allowance,
        title="{street}高龄津贴发放花名册（{y}年{m}月）", sheet="高龄津贴"),
    Spec("mzj", "minimum_living", "excel", cols(
        "低保证号:fixed!", "户主姓名:name!", "户主身份证号码:cid!", "家庭人口数:num!",
        "保障类型:str!", "月保障金额（元）:money!", "联系电话:mobile", "所属社区:str!",
        "认定日期:date!"),
        key=("低保证号",), build=minimum_living, title="{street}城乡低保对象名册（{y}年{m}月）",
        sheet="低保"),
    Spec("mzj", "disability_allowance", "excel", cols(
        "姓名:name!", "身份证号码:cid!", "残疾人证号:fixed!", "残疾类别:str!", "残疾等级:str!",
        "补贴类型:str!", "补贴金额（元/月）:money!", "联系电话:mobile", "所属社区:str!"),
        key=("残疾人证号",), build=disability_allowance,
        title="{street}残疾人两项补贴发放名册（{y}年{m}月）", sheet="两项补贴"),
    Spec("wjw", "elderly_health_checks", "csv", cols(
        "体检编号:fixed!", "姓名:name!", "身份证号:cid!", "性别:gender!", "出生日期:birth",
        "体检日期:date!", "收缩压:num", "舒张压:num", "空腹血糖:num", "体检结论:str",
        "联系电话:mobile", "体检机构:str!"),
        key=("体检编号",), build=elderly_health_checks, encoding="gbk"),
    Spec("wjw", "chronic_followups", "csv", cols(
        "随访编号:fixed!", "身份证号:cid!", "姓名:name!", "病种:str!", "随访日期:date!",
        "随访方式:str", "收缩压:num", "舒张压:num", "空腹血糖:num", "下次随访日期:date",
        "责任医生:str"),
        key=("随访编号",), build=chronic_followups, encoding="gbk"),
    Spec("wjw", "family_doctor_contracts", "csv", cols(
        "签约编号:fixed!", "身份证号:cid!", "姓名:name!", "性别:gender!", "出生日期:birth",
        "联系电话:mobile", "签约团队:str!", "签约类型:str!", "签约日期:date!", "到期日期:date"),
        key=("签约编号",), build=family_doctor_contracts, encoding="gbk"),
    Spec("rsj", "social_insurance", "http_api", cols(
        "record_id:fixed!", "citizen_id:cid!", "name:name!", "insurance_type:str!", "status:str!",
        "employer_name:str", "employer_credit_code:fixed", "start_month:fixed!",
        "monthly_base:num", "update_time:fixed!"),
        key=("record_id",), build=social_insurance, cursor="update_time"),
    Spec("rsj", "employment_registration", "http_api", cols(
        "reg_id:fixed!", "citizen_id:cid!", "name:name!", "gender:gender!", "mobile:mobile",
        "reg_type:str!", "employer_name:str", "employer_credit_code:fixed", "reg_date:date!",
        "update_time:fixed!"),
        key=("reg_id",), build=employment_registration, cursor="update_time"),
    Spec("jyj", "school_enrolment", "excel", cols(
        "学籍号:fixed!", "学生姓名:name!", "性别:gender!", "身份证号:cid!", "出生日期:birth!",
        "学校名称:str!", "学段:str!", "年级:str!", "入学日期:date", "监护人姓名:str",
        "监护人身份证号:cid", "监护人电话:phone", "户籍性质:str"),
        key=("学籍号",), build=school_enrolment, title="{street}适龄儿童入学登记表（{y}年{m}月）",
        sheet="学籍"),
    Spec("mzj", "adoption_registrations", "excel", cols(
        "收养登记证号:fixed!", "收养人姓名:name!", "收养人身份证号码:cid!", "被收养人姓名:name!",
        "被收养人性别:str!", "被收养人出生日期:date!", "收养类型:str!", "登记日期:date!",
        "所属社区:str!"),
        key=("收养登记证号",), build=adoption_registrations,
        title="{street}收养登记名册（{y}年{m}月）", sheet="收养登记"),
)  # fmt: skip
