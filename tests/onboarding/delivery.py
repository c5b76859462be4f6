"""A 残联 delivery written the way the department's export writes it, dirt included.

Generated here, not by ``departments/`` (the simulator does not know this department):
clean certificate holders, then one row per kind of dirt, each with what the hub must make
of it — repaired and staged, skipped, or quarantined for a named field and check. Citizen
IDs are built with python-stdnum (an oracle independent of our validators).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from dataclasses import dataclass, field

from stdnum.cn import ric

REGION = "110105"  # 朝阳区
HEADER = [
    "残疾人证号",
    "姓名",
    "身份证号",
    "性别",
    "出生日期",
    "残疾类别",
    "残疾等级",
    "发证日期",
    "更新日期",
    "联系电话",
    "所属社区",
]
CATEGORIES = ["视力", "听力", "言语", "肢体", "智力", "精神", "多重"]  # codes 1–7
GRADES = ["一级", "二级", "三级", "四级"]  # codes 1–4
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["建国", "秀英", "志强", "桂兰", "海燕", "明", "静", "伟", "丽娟", "国华", "淑珍", "子涵"]
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
FOOTER_NAME, FOOTER_MOBILE = "钱晓东", "13911112222"  # the clerk a ledger's footer names
# a footer row names no holder: every required field of a holder fails, the certificate
# number's cell holds words (合计, 填表人：…), the issue date's cell a 填报日期
_NO_HOLDER = {("citizen_id", "required"), ("gender", "required"), ("updated_on", "required"),
              ("disability_category", "required"), ("disability_grade", "required"),
              ("certificate_no", "pattern")}  # fmt: skip


@dataclass(frozen=True)
class Expected:
    """What the hub must make of one delivered row."""

    outcome: str  # staged | skipped | quarantined | not_record (quarantined as it is read)
    failures: frozenset[tuple[str | None, str]] = frozenset()  # (field, check) when quarantined
    staged: dict[str, object] = field(default_factory=dict)  # field → standardised value
    repairs: frozenset[tuple[str, str]] = frozenset()  # (field, repair kind) counted
    dirt: str = "clean"


@dataclass
class Delivery:
    text: str  # the CSV as delivered (UTF-8, header + one line per row)
    rows: list[dict[str, str]]  # delivered cells by header, in file order
    expected: dict[int, Expected]  # source row (line number, header = 1) → outcome
    truth: dict[int, dict[str, str]]  # source row → the holder's cells as they really are
    sensitive: set[str]  # every distinctive L3/L4 value delivered, to search for in files


def citizen_id(birth: dt.date, seq: int) -> str:
    body = f"{REGION}{birth:%Y%m%d}{seq:03d}"
    return body + ric.calc_check_digit(body + "?")  # it reads the first 17 of 18


def wrong_check(cid: str) -> str:
    digits = "0123456789X"
    return cid[:17] + digits[(digits.index(cid[17]) + 3) % 11]


def certificate_no(cid: str, category: str, grade: str) -> str:
    return f"{cid}{CATEGORIES.index(category) + 1}{GRADES.index(grade) + 1}"


def holder(birth: dt.date, seq: int, category: str, grade: str) -> dict[str, str]:
    """The identity cells of a holder with a given birth date, sequence number and grade."""
    cid = citizen_id(birth, seq)
    return {
        "身份证号": cid,
        "性别": "男" if seq % 2 else "女",
        "出生日期": birth.isoformat(),
        "残疾类别": category,
        "残疾等级": grade,
        "残疾人证号": certificate_no(cid, category, grade),
    }


def _person(rng: random.Random, communities: list[str], n: int) -> dict[str, str]:
    birth = dt.date(1935, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 70))
    seq = 100 + 2 * n + rng.randrange(2)  # unique per person; parity = gender
    cid = citizen_id(birth, seq)
    category, grade = rng.choice(CATEGORIES), rng.choice(GRADES)
    issued = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 6))
    return {
        "残疾人证号": certificate_no(cid, category, grade),
        "姓名": rng.choice(SURNAMES) + rng.choice(GIVEN),
        "身份证号": cid,
        "性别": "男" if seq % 2 else "女",
        "出生日期": birth.isoformat(),
        "残疾类别": category,
        "残疾等级": grade,
        "发证日期": issued.isoformat(),
        "更新日期": "2026-11-02",
        "联系电话": f"1{rng.choice('3589')}{rng.randrange(10**9):09d}",
        "所属社区": rng.choice(communities),
    }


def build_delivery(communities: list[str], *, clean: int = 60, seed: int = 10) -> Delivery:
    """``clean`` good rows, then the dirty rows; every row's expected outcome."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    expected: list[Expected] = []
    truth: list[dict[str, str]] = []
    n = 0

    def person() -> dict[str, str]:
        nonlocal n
        n += 1
        return _person(rng, communities, n)

    def add(row: dict[str, str], exp: Expected, true: dict[str, str] | None = None) -> None:
        rows.append(row)
        expected.append(exp)
        truth.append(true or row)

    for _ in range(clean):
        add(person(), Expected("staged"))

    def dirty(
        change: dict[str, object], base: dict[str, str] | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """A fresh holder (``base`` overriding its cells), and the row as delivered with
        ``change`` (each a value or fn(holder))."""
        p = {**person(), **(base or {})}
        return p, {**p, **{k: v(p) if callable(v) else v for k, v in change.items()}}

    def repaired(
        dirt: str,
        change: dict[str, object],
        staged: dict[str, object],
        repair: tuple[str, str],
        base: dict[str, str] | None = None,
    ) -> None:
        p, row = dirty(change, base)
        exp = Expected("staged", staged=_resolve(staged, p), repairs=frozenset({repair}), dirt=dirt)
        add(row, exp, p)

    def quarantined(dirt: str, change: dict[str, object], *failures: tuple[str, str]) -> None:
        p, row = dirty(change)
        add(row, Expected("quarantined", frozenset(failures), dirt=dirt), p)

    # repaired by the catalogue's standardisers (each repair counted by its kind), then staged
    repaired(
        "full-width citizen ID",
        {"身份证号": lambda p: p["身份证号"].translate(FULL_WIDTH)},
        {"citizen_id": "身份证号"},
        ("citizen_id", "fullwidth"),
    )
    repaired(
        "full-width certificate number",
        {"残疾人证号": lambda p: p["残疾人证号"].translate(FULL_WIDTH)},
        {"certificate_no": "残疾人证号"},
        ("certificate_no", "fullwidth"),
    )
    born_1948 = holder(dt.date(1948, 6, 30), 603, "视力", "一级")
    repaired(
        "15-digit citizen ID",
        {"身份证号": lambda p: p["身份证号"][:6] + p["身份证号"][8:17]},
        {"citizen_id": "身份证号"},
        ("citizen_id", "id_15_to_18"),
        base=born_1948,
    )
    repaired(
        "citizen ID with dashes",
        {"身份证号": lambda p: f"{p['身份证号'][:6]}-{p['身份证号'][6:14]}-{p['身份证号'][14:]}"},
        {"citizen_id": "身份证号"},
        ("citizen_id", "id_separators"),
    )
    repaired(
        "zero-width space inside the citizen ID",
        {"身份证号": lambda p: p["身份证号"][:9] + "\u200b" + p["身份证号"][9:]},
        {"citizen_id": "身份证号"},
        ("citizen_id", "zero_width"),
    )
    repaired(
        "mobile with +86 and spaces",
        {"联系电话": lambda p: f"+86 {p['联系电话'][:3]} {p['联系电话'][3:7]} {p['联系电话'][7:]}"},
        {"mobile": "联系电话"},
        ("mobile", "phone_format"),
    )
    repaired(
        "mobile with an extension",
        {"联系电话": lambda p: p["联系电话"] + "转8001"},
        {"mobile": "联系电话"},
        ("mobile", "phone_extension"),
    )
    repaired(
        "no mobile, written 无", {"联系电话": "无"}, {"mobile": None}, ("mobile", "placeholder")
    )
    # the department's system writes gender as GB/T 2261.1 codes or their names
    repaired(
        "gender as its GB/T 2261.1 code",
        {"性别": lambda p: "1" if p["性别"] == "男" else "2"},
        {"gender": "性别"},
        ("gender", "coded_value"),
    )
    repaired(
        "gender as the standard's name",
        {"性别": lambda p: p["性别"] + "性"},
        {"gender": "性别"},
        ("gender", "coded_value"),
    )
    d = dt.date(2023, 1, 5)
    for spelling in ("{y}/{m}/{d}", "{y}年{m}月{d}日", "{y}{m:02d}{d:02d}", "{y}.{m:02d}.{d:02d}"):
        repaired(
            f"issue date spelt {spelling}",
            {"发证日期": spelling.format(y=d.year, m=d.month, d=d.day)},
            {"issued_on": d},
            ("issued_on", "date_format"),
        )
    repaired("issue date spelt 5/1/2023", {"发证日期": "5/1/2023"}, {"issued_on": d},
             ("issued_on", "dmy_date"))  # fmt: skip
    repaired(
        "issue date of month precision",
        {"发证日期": "2023年1月"},
        {"issued_on": dt.date(2023, 1, 1)},
        ("issued_on", "month_precision"),
    )
    repaired(
        "birth date spelt 1950年3月9日",
        {"出生日期": "1950年3月9日"},
        {"birth_date": dt.date(1950, 3, 9)},
        ("birth_date", "date_format"),
        base=holder(dt.date(1950, 3, 9), 601, "肢体", "二级"),
    )
    repaired(
        "birth date 1900-01-01 meaning unknown",
        {"出生日期": "1900-01-01"},
        {"birth_date": None},
        ("birth_date", "unknown_date"),
    )

    # skipped: an exact copy, and an older version of a record in the same file
    add(dict(rows[0]), Expected("skipped", dirt="exact duplicate"), truth[0])
    # before its re-assessment (复评) the person had another grade, so another number
    grade = GRADES[(GRADES.index(rows[1]["残疾等级"]) + 1) % 4]
    older = {**rows[1], "更新日期": "2026-10-05", "残疾等级": grade}
    older["残疾人证号"] = certificate_no(older["身份证号"], older["残疾类别"], grade)
    add(older, Expected("skipped", dirt="older version of a record (upsert by 更新日期)"), truth[1])

    # quarantined, each for its field and check
    quarantined(
        "bad check digit", {"身份证号": lambda p: wrong_check(p["身份证号"])},
        ("citizen_id", "citizen_id_checksum"),
    )  # fmt: skip
    quarantined("blank name", {"姓名": ""}, ("name", "required"))
    quarantined("name written 不详 (unknown)", {"姓名": "不详"}, ("name", "required"))
    quarantined("blank disability grade", {"残疾等级": "  "}, ("disability_grade", "required"))
    quarantined("blank issue date", {"发证日期": ""}, ("issued_on", "required"))
    quarantined(
        "gender against the ID", {"性别": lambda p: "女" if p["性别"] == "男" else "男"},
        ("gender", "gender_matches_citizen_id"),
    )  # fmt: skip
    quarantined(
        "birth date against the ID", {"出生日期": "1999-12-31"},
        ("birth_date", "birth_date_matches_citizen_id"),
    )  # fmt: skip
    quarantined("impossible date", {"发证日期": "2023-02-30"}, ("issued_on", "unparseable"))
    quarantined("gender coded 0, unknown (GB/T 2261.1)", {"性别": "0"}, ("gender", "required"))
    quarantined(
        "grade not in the list", {"残疾等级": "五级"}, ("disability_grade", "allowed_values")
    )
    quarantined(
        "certificate number one digit short", {"残疾人证号": lambda p: p["残疾人证号"][:-1]},
        ("certificate_no", "pattern"),
    )  # fmt: skip
    quarantined(
        "unknown community", {"所属社区": "不存在社区"}, ("community_name", "community_name")
    )
    # two different rows for one person, one number and one update date: both held back
    conflict = frozenset({("citizen_id", "conflicting_key"), ("certificate_no", "conflicting_key")})
    twin = person()
    add(twin, Expected("quarantined", conflict, dirt="two versions, one update date"))
    other = {**twin, "联系电话": f"139{rng.randrange(10**8):08d}"}
    add(other, Expected("quarantined", conflict, dirt="two versions, one update date"))

    # a hand-kept ledger's footer under the data: a total, and who filled it in, with a phone,
    # written in whatever cells were at hand (an L1 column among them); rows of no holder,
    # told as what they are before the gate (one reason; nothing of them in the lake)
    blank = dict.fromkeys(HEADER, "")
    ledger = frozenset({(None, "ledger_row")})
    add({**blank, "残疾人证号": "合计", "姓名": f"{clean}人"},
        Expected("not_record", ledger, dirt="a footer: the total"))  # fmt: skip
    add({**blank, "残疾人证号": f"填表人：{FOOTER_NAME}", "发证日期": "填报日期：2026年11月30日",
         "所属社区": f"联系电话：{FOOTER_MOBILE}"},
        Expected("not_record", ledger, dirt="a footer: who filled it in"))  # fmt: skip

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    sensitive = {
        r[c]
        for r in rows
        for c in ("残疾人证号", "姓名", "身份证号", "联系电话")
        if len(r[c].strip()) >= 2
    } | {FOOTER_NAME, FOOTER_MOBILE}
    return Delivery(
        text=buf.getvalue(),
        rows=rows,
        expected={i + 2: e for i, e in enumerate(expected)},
        truth={i + 2: t for i, t in enumerate(truth)},
        sensitive=sensitive,
    )


def _resolve(staged: dict[str, object], person: dict[str, str]) -> dict[str, object]:
    """Expected standardised values: a header name stands for the clean person's value."""
    return {k: person[v] if isinstance(v, str) and v in person else v for k, v in staged.items()}
