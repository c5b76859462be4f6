"""Write ``hotline_texts.jsonl``: the labelled evaluation set of hotline-style texts.

Run once by hand (``.venv/bin/python tests/masking/data/make_hotline_texts.py``); the
JSONL it writes is the set the tests read, committed beside it. It is written apart from
the simulator's templates (``departments/``): the frames below are how 12345 operators,
grid workers and community staff write work orders — terse notes, 来电人/反映人 headers,
names at a sentence's start, names with 阿姨/大爷/师傅/老师, compound surnames, two-character
names, several people in one text — and the look-alikes a scrubber must leave alone: order,
waybill and work-order numbers (half of them passing Luhn, as one in ten does by chance),
manhole-cover (井盖) numbers, dates, amounts, building numbers and place names that start
with a surname.

Each line: ``{"id", "text", "pii": [{"kind", "value"}], "keep": [{"kind", "value"}]}``.
``pii`` values must be gone from the scrubbed text; ``keep`` values must still be there.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).with_name("hotline_texts.jsonl")

# surnames by how common they are (the first ~100 cover most residents), a few rare ones,
# and compound surnames
COMMON = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
    "龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞"
)
RARE = "禤笪昝佘郗訾逄隋仉邝麴"
COMPOUND = ["欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "令狐", "慕容", "司徒", "夏侯",
            "端木", "公孙"]  # fmt: skip
GIVEN_1 = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚辉鹏华玲飞斌宇浩凯健俊帆旭宁龙林欢阳建亮成佳婷"
    "雪琳倩萍慧颖红燕梅莉兰凤洁琴云莹晶丹蕾薇彬峰波鑫昊"
)
GIVEN_2 = [
    "秀英", "秀兰", "桂英", "建国", "建华", "志强", "国强", "淑珍", "桂芳", "玉兰", "秀珍", "丽华",
    "海燕", "子轩", "浩然", "梓涵", "欣怡", "雨桐", "宇航", "俊杰", "晓东", "春梅", "红梅", "文博",
    "德明", "永刚", "福生", "长顺", "金凤", "玉梅", "志刚", "海涛", "建军", "立新", "秀云", "凤英",
    "宝山", "振华", "卫东", "红霞", "晓燕", "丽娟", "国庆", "新民", "淑兰", "玉珍", "嘉怡", "思远",
    "明轩", "一诺", "若汐", "佳琪", "文静", "春生", "小红", "雅婷", "德胜", "桂香", "喜梅", "守义",
    "家豪", "梦瑶",
]  # fmt: skip

MOBILE_PREFIX = ["130", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
                 "158", "159", "166", "176", "177", "180", "182", "185", "186", "187", "188",
                 "189", "191", "199"]  # fmt: skip
AREA = ["010", "022", "021", "0311", "0316", "0755", "0571"]
REGIONS = ["110105", "110101", "110108", "110114", "130682", "371302", "410522", "512501",
           "230103", "420111", "131082", "120104"]  # fmt: skip
# issuer identification numbers of cards Chinese banks issue (UnionPay 62…, and Visa,
# Mastercard, JCB co-branded cards), and the card's length
CARD_BINS = [("622202", 19), ("621700", 19), ("622848", 19), ("621226", 19), ("623668", 19),
             ("622588", 16), ("621483", 16), ("625906", 16), ("622700", 19), ("621799", 19),
             ("436742", 16), ("518710", 16), ("356833", 16), ("622609", 16), ("628288", 16),
             ("621661", 19), ("622262", 19)]  # fmt: skip
CARD_CUES = ["银行卡号", "卡号", "银行卡", "账号", "工资卡卡号", "社保卡号", "收款账号", "银行账号"]
PLATE_HEAD = "京京京京津冀冀鲁豫晋蒙辽"
PLATE_LETTERS = "ABCEFGHJKLMNPQ"
COMMUNITIES = ["秀水", "建外", "光华里", "永安里", "金台", "郎家园", "大北窑", "北郎家园"]
LOOKALIKE_PLACES = ["王府井", "马甸桥", "黄村", "高碑店", "张自忠路", "石景山", "万寿路", "金台夕照",
                    "高楼金", "马家堡", "何各庄", "牛街", "常营", "杨庄", "白家庄", "钱粮胡同",
                    "胡家园", "朱辛庄", "史各庄", "汪家胡同"]  # fmt: skip


class Texts:
    """Fills a frame's slots; remembers the labels of what it put in."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used_names: set[str] = set()

    # -- personal information -----------------------------------------------------------

    def name(self, length: int | None = None) -> str:
        rng = self.rng
        while True:
            roll = rng.random()
            if roll < 0.12:
                surname = rng.choice(COMPOUND)
            elif roll < 0.17:
                surname = rng.choice(RARE)
            else:
                surname = rng.choice(COMMON[:60] if rng.random() < 0.7 else COMMON)
            n = length or rng.choice([1, 2, 2, 2] if len(surname) == 1 else [1, 2])
            given = rng.choice(GIVEN_1) if n == 1 else rng.choice(GIVEN_2)
            if n == 2 and rng.random() < 0.3:
                given = rng.choice(GIVEN_1) + rng.choice(GIVEN_1)
            full = surname + given
            if full not in self.used_names:
                self.used_names.add(full)
                return full

    def mobile(self) -> str:
        rng = self.rng
        m = rng.choice(MOBILE_PREFIX) + f"{rng.randrange(10**8):08d}"
        style = rng.random()
        if style < 0.55:
            return m
        if style < 0.7:
            return f"{m[:3]} {m[3:7]} {m[7:]}"
        if style < 0.85:
            return f"{m[:3]}-{m[3:7]}-{m[7:]}"
        return rng.choice(["+86", "+86 ", "0086"]) + m

    def landline(self) -> str:
        rng = self.rng
        area = rng.choice(AREA)
        local = f"{rng.randrange(2, 9)}{rng.randrange(10**6 if len(area) == 4 else 10**7):0{6 if len(area) == 4 else 7}d}"
        return rng.choice([f"{area}-{local}", f"({area}){local}", f"{area}-{local}"])

    def citizen_id(self) -> str:
        rng = self.rng
        born = f"{rng.randrange(1935, 2008)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        body = rng.choice(REGIONS) + born + f"{rng.randrange(1000):03d}"
        weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
        cid = body + check
        return cid.lower() if check == "X" and rng.random() < 0.3 else cid

    def card(self) -> str:
        rng = self.rng
        bin_, length = rng.choice(CARD_BINS)
        body = bin_ + "".join(str(rng.randrange(10)) for _ in range(length - len(bin_) - 1))
        number = body + luhn_digit(body)
        if rng.random() < 0.3:
            return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        return number

    def plate(self) -> str:
        rng = self.rng
        tail = [str(rng.randrange(10)) for _ in range(5)]
        for i in rng.sample(range(5), rng.choice([0, 1, 1, 2])):  # most hold 0–2 letters
            tail[i] = rng.choice(PLATE_LETTERS)
        tail = "".join(tail)
        if rng.random() < 0.2:
            tail = rng.choice("DF") + f"{rng.randrange(10**5):05d}"
        return rng.choice(PLATE_HEAD) + rng.choice(PLATE_LETTERS) + tail

    def email(self) -> str:
        rng = self.rng
        user = rng.choice(["zhang", "li.ming", "wangfang88", "liu_jie", "chenxy", "hz2019"])
        return (
            f"{user}{rng.randrange(100)}@{rng.choice(['qq.com', '163.com', 'sina.cn', '126.com'])}"
        )

    def address(self) -> str:
        rng = self.rng
        building, unit = rng.randrange(1, 30), rng.randrange(1, 7)
        room = f"{rng.randrange(1, 25)}{rng.randrange(1, 5):02d}"
        return rng.choice(
            [
                f"{building}号楼{unit}单元{room}室",
                f"{building}号楼{unit}单元{room}",
                f"{building}-{unit}-{room}",
                f"{building}栋{unit}单元{room}室",
                f"{building}号楼{room}室",
            ]
        )

    # -- look-alikes ----------------------------------------------------------------------

    def order(self) -> str:
        """A shop's or a platform's order number: 18–19 digits, a date or a platform's own
        prefix first; half of them pass Luhn."""
        rng = self.rng
        kind = rng.random()
        if kind < 0.4:  # an order number as the big platforms print them
            body = rng.choice("1234") + "".join(str(rng.randrange(10)) for _ in range(17))
        elif kind < 0.7:  # a date and a sequence
            body = f"2025{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}" + "".join(
                str(rng.randrange(10)) for _ in range(9)
            )
        else:  # a short-date form (yymmdd …)
            body = (
                f"{rng.randrange(23, 27)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
                + "".join(str(rng.randrange(10)) for _ in range(12))
            )
        if rng.random() < 0.5:
            return body + luhn_digit(body)
        return body + str((int(luhn_digit(body)) + rng.randrange(1, 10)) % 10)

    def waybill(self) -> str:
        rng = self.rng
        digits = lambda n: "".join(str(rng.randrange(10)) for _ in range(n))  # noqa: E731
        return rng.choice(
            [
                "SF" + digits(13),
                "YT" + digits(13),
                "JT" + digits(13),
                "75" + digits(12),
                "43" + digits(11),
                "9" + digits(12),
                "JDX" + digits(12),
                "7" + digits(14) + luhn_digit("7" + digits(14)),
            ]
        )

    def work_order(self) -> str:
        rng = self.rng
        digits = lambda n: "".join(str(rng.randrange(10)) for _ in range(n))  # noqa: E731
        day = f"2025{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        return rng.choice(
            [
                "12345" + day + digits(6),
                day + digits(8),
                "GD" + day + digits(4),
                "WG" + day + digits(5),
                day + digits(5),
                "12345" + day + digits(6),
            ]
        )

    def manhole(self) -> str:
        rng = self.rng
        return rng.choice(
            [
                f"YS-{rng.randrange(1000, 9999)}",
                f"WS{rng.randrange(100000, 999999)}",
                f"110105-DX-{rng.randrange(100, 999)}",
                f"RQ{rng.randrange(2018, 2026)}{rng.randrange(1000, 9999)}",
                f"{rng.randrange(1, 40)}-{rng.randrange(1, 30)}",
                f"TX0{rng.randrange(10000, 99999)}",
            ]
        )

    def date(self) -> str:
        rng = self.rng
        y, m, d = rng.randrange(2023, 2027), rng.randrange(1, 13), rng.randrange(1, 29)
        return rng.choice(
            [
                f"{y}年{m}月{d}日",
                f"{m}月{d}日",
                f"{m}月{d}号",
                f"{y}-{m:02d}-{d:02d}",
                f"{y}.{m}.{d}",
                f"{y}{m:02d}{d:02d}",
                f"{y}/{m:02d}/{d:02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}",
            ]
        )

    def amount(self) -> str:
        rng = self.rng
        n = rng.choice(
            [rng.randrange(20, 500), rng.randrange(500, 20000), rng.randrange(10**5, 10**7)]
        )
        return rng.choice(
            [
                f"{n}元",
                f"{n}.{rng.randrange(100):02d}元",
                f"{n:,}元",
                f"￥{n}",
                f"¥{n:,}.00",
                f"{n // 100 or 1}万元" if n > 10**4 else f"{n}块",
            ]
        )

    def building(self) -> str:
        rng = self.rng
        return rng.choice(
            [
                f"{rng.randrange(1, 40)}号楼",
                f"{rng.randrange(1, 20)}栋",
                f"{rng.randrange(1, 20)}号院",
                f"{rng.choice('ABCD')}座",
                f"{rng.randrange(1, 40)}号楼东侧",
                f"{rng.randrange(1, 12)}号楼和{rng.randrange(12, 30)}号楼之间",
            ]
        )

    def place(self) -> str:
        return self.rng.choice(LOOKALIKE_PLACES)

    def community(self) -> str:
        return self.rng.choice(COMMUNITIES)


def luhn_digit(body: str) -> str:
    """The digit that makes ``body`` + it pass Luhn (written here, apart from the code
    under test)."""
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


# slot → (method, label: "pii" or "keep", kind)
SLOTS = {
    "N": ("name", "pii", "person_name"),
    "S": ("name2", "pii", "person_name"),  # a two-character name
    "M": ("mobile", "pii", "mobile"),
    "L": ("landline", "pii", "landline"),
    "I": ("citizen_id", "pii", "citizen_id"),
    "C": ("card", "pii", "bank_card"),
    "P": ("plate", "pii", "plate"),
    "E": ("email", "pii", "email"),
    "A": ("address", "pii", "address"),
    "O": ("order", "keep", "order_number"),
    "W": ("waybill", "keep", "waybill_number"),
    "G": ("work_order", "keep", "work_order_number"),
    "J": ("manhole", "keep", "manhole_number"),
    "D": ("date", "keep", "date"),
    "Y": ("amount", "keep", "amount"),
    "B": ("building", "keep", "building_number"),
    "K": ("place", "keep", "place"),
    "Q": ("community", None, None),
}
_SLOT = re.compile(r"\{([A-Z])\}")
_CUE = re.compile(r"\{卡\}")

# Frames: how the texts are written. {N} a name, {S} a two-character name, {M} mobile,
# {L} landline, {I} citizen ID, {卡}{C} a card cue and a card, {C} alone a card with no cue,
# {P} plate, {E} e-mail, {A} address below the building, {O} order number, {W} waybill,
# {G} work-order number, {J} 井盖 number, {D} date, {Y} amount, {B} building, {K} a place
# named like a person, {Q} the community.
FRAMES = [
    # 请 …
    "请{N}本人携带户口本到社区服务站补办材料。",
    "已电话通知，请{N}于{D}前到物业签字确认。",
    "麻烦社区请{N}回个电话，{M}。",
    "请{S}联系楼门长领取门禁卡。",
    "经协调，请{N}师傅明早上门检修暖气。",
    "请网格员转告{N}，不要再在{B}楼道堆放杂物。",
    "请{N}女士补充提供房产证复印件。",
    "诉求：请{S}尽快把占用的车位让出来。",
    # 户主 …
    "户主{N}称家中暖气不热，室温只有14度。",
    "该房屋户主为{N}，身份证号{I}，现出租给他人居住。",
    "户主：{S}，联系电话：{M}，诉求：小区{B}门口下水道堵塞。",
    "经核实户主{N}已于{D}办理过户。",
    "户主{N}家卫生间渗水，楼下{A}墙面发霉。",
    "低保户户主{S}反映本月保障金{Y}未到账。",
    # 用户 …
    "用户{N}反映燃气表读数异常，本月燃气费{Y}。",
    "燃气用户{S}来电，表具漏气，已派人处置。",
    "用户{N}（{M}）称宽带{D}起一直断网。",
    "供热用户{N}投诉，{B}整栋楼暖气温度不达标。",
    "自来水用户{N}反映水压太低，住址{Q}社区{A}。",
    "用户：{S} 手机：{M} 问题：电费多扣{Y}。",
    "该用户{N}的银行卡号{C}，要求退还多缴水费。",
    # 反映人 …
    "反映人：{N}，联系方式{M}。{B}北侧路灯不亮已一周。",
    "反映人{S}称，楼上住户每晚十二点后仍有噪音。",
    "反映人：{N}；身份证：{I}；反映事项：物业擅自涨价。",
    "反映人{N}要求回访，座机{L}。",
    "反映人：{S}（{M}），地址：{Q}社区{A}。",
    "反映人{N}表示，{K}附近的共享单车乱停放严重。",
    # 来电人 …
    "来电人{N}（{M}）称，{B}电梯多次困人。",
    "来电人：{S}，来电号码{M}，反映小区门口占道经营。",
    "来电人{N}反映，其在网上购买的商品订单号{O}至今未发货。",
    "来电人{N}的手机号为{M}，请承办单位回电。",
    "来电人：{N}  身份证号：{I}  诉求：补办居住证。",
    "来电人{S}投诉快递员，运单号{W}的包裹被放在门口丢失。",
    "来电人{N}称{D}在{K}附近被电动车撞伤，要求调取监控。",
    # sentence start before 反映/称/投诉/来电
    "{N}反映，{Q}社区{B}的垃圾桶三天没清运。",
    "{S}称其父亲{N}独居，近日联系不上，请社区上门查看。",
    "{N}投诉楼下餐馆油烟扰民，{D}已反映过一次。",
    "{N}来电询问老年卡办理流程。",
    "{S}来电：车牌{P}的车辆长期占用消防通道。",
    "{N}称在{K}一家店充值{Y}后商家关门跑路。",
    "{N}反映其银行卡{C}被冒用，已报警。",
    "{S}投诉称，外卖订单{O}送餐超时两个小时，平台不处理。",
    "上午十点，{N}来电反映{B}下水井盖{J}破损。",
    "今天下午{N}来电，说{A}家里停电了。",
    "{N}反映：工单{G}处理不满意，要求重新派单。",
    "经回访，{S}称问题已解决，满意。",
    "{N}再次来电，称原工单{G}仍未办结。",
    "{S}反映，{D}在小区门口摔倒，要求物业赔偿医药费{Y}。",
    # before 的身份证 / 的手机 / 家
    "{N}的身份证号是{I}，需核实其低保资格。",
    "核对后{S}的身份证{I}与户籍信息一致。",
    "老人{N}的手机{M}一直关机，其子女{S}很着急。",
    "请记录{N}的手机号码{M}，方便后续联系。",
    "{N}家门口的{J}号井盖丢失，夜间有安全隐患。",
    "{S}家住{Q}社区{A}，家中老人行动不便。",
    "{N}家的狗在{B}附近多次咬人。",
    "邻居{N}家空调外机滴水，砸在楼下{S}家的雨棚上。",
    "需联系{N}的家属，电话{M}。",
    "{N}的手机号已停机，改为座机{L}。",
    # surname + 阿姨 / 大爷 / 师傅 / 老师 (full names before the title)
    "独居老人{N}阿姨近三天未出门，请网格员上门查看。",
    "{N}大爷反映{B}的健身器材坏了。",
    "物业维修工{N}师傅已到场处理，{D}完工。",
    "{S}老师称学校门口早高峰拥堵严重。",
    "住在{A}的{N}大爷需要上门体检服务。",
    "{N}阿姨（{M}）反映楼道灯不亮。",
    "社区已安排{S}师傅更换{J}号井盖。",
    "幼儿园{N}老师来电，园区外有人摆摊卖烟花。",
    "{N}大爷的老伴{S}阿姨行动不便，申请助餐服务。",
    "开锁的{N}师傅电话{M}，收费{Y}偏高。",
    "{S}大爷（身份证{I}）申请高龄津贴。",
    "志愿者{N}老师组织清理了{B}的楼道。",
    # compound and other positions
    "联系人：{N}，{M}。",
    "市民{N}来电：{K}路口红绿灯故障。",
    "居民{S}反映{Q}社区{B}楼顶漏水。",
    "经与{N}本人沟通，同意调解。",
    "与{S}电话联系（{M}），其表示晚上在家。",
    "当事人{N}与{S}因停车发生纠纷，双方已调解。",
    "业主{N}、{S}联名投诉物业公司不作为。",
    "网格员{N}巡查发现{B}消防通道被占用，车牌{P}。",
    "申请人{N}，身份证号码{I}，申请临时救助{Y}。",
    "涉事车辆{P}，车主{S}，电话{M}。",
    "举报人{N}要求对其信息保密。",
    "{Q}社区居民{N}（{A}）反映楼上漏水。",
    "租户{S}称房东{N}不退押金{Y}。",
    "此事由{N}负责跟进，邮箱{E}。",
    "工作人员{S}已于{D}上门核实。",
    "患者{N}的家属{S}来电，要求转院。",
    "邻居{N}说，{B}有人往窗外扔垃圾。",
    "监护人{N}代老人{S}申请助残补贴，账号{C}。",
    "接{N}电话，{A}下水道反味。",
    "找到了{N}，她说{D}已经报修过。",
    "据{S}介绍，{K}菜市场周边占道经营严重。",
    "{N}，男，{I}，反映被拖欠工资{Y}。",
    "{S}，女，电话{M}，咨询医保报销。",
    "{N}（{I}）的残疾证年审材料已提交。",
    "回复{N}：您反映的问题已转交街道城管科。",
    "{N}同志反映{B}的化粪池外溢。",
    "经查，{S}与{N}系母子关系，共同居住在{A}。",
    "{N}老人在{K}走失，家属{S}请求协助寻找，电话{M}。",
    # identifiers with a card cue
    "退款请打到{卡}{C}，户名{N}。",
    "{N}提供的{卡}{C}已核实无误，补贴{Y}将于{D}发放。",
    "居民{S}称{卡}{C}被ATM吞卡。",
    "{卡}：{C}，开户人{N}，用于领取养老金。",
    "请核对{卡}{C}是否为{N}本人所有。",
    "补助发放{卡}{C}（{N}），金额{Y}。",
    # a card with no cue (an issuer prefix only)
    "{N}称有人冒用其名义办理了{C}这张卡。",
    "转账记录显示收款方为{C}，{S}怀疑被诈骗。",
    # identifiers only
    "电话{M}，住{Q}社区{A}，反映楼道堆物。",
    "联系电话：{L}，{B}北门外有积水。",
    "身份证{I}，要求查询社保缴费记录。",
    "车牌号{P}的白色轿车长期停在{B}门口。",
    "邮箱{E}，要求书面答复。",
    "来电号码{M}，咨询老旧小区改造进度。",
    "{A}住户家里天然气有异味，电话{M}。",
    "咨询电话{L}一直打不通。",
    # look-alikes only
    "订单号{O}的商品质量有问题，商家拒绝退款{Y}。",
    "网购订单（{O}）已付款{Y}，至今未收到货。",
    "快递单号{W}，快递员未经同意放在{B}快递柜。",
    "运单号：{W}，显示已签收但本人未收到。",
    "工单号{G}，{D}已派发至{Q}社区。",
    "原工单编号{G}，重复诉求，并入处理。",
    "{B}门口井盖编号{J}松动，车辆经过有响声。",
    "编号为{J}的雨水井盖缺失，已设置围挡。",
    "{D}晚上8点左右，{B}附近有人烧烤。",
    "{D}至今，{K}地铁站出口一直有黑车揽客。",
    "物业费每年{Y}，{D}突然涨到{Y}。",
    "维修基金使用{Y}，{B}电梯{D}更换完毕。",
    "{K}附近的{B}下水道反味，{D}已反映过。",
    "{Q}社区{B}和{B}之间的路灯不亮。",
    "停车费一次收{Y}，没有发票，订单号{O}。",
    "外卖订单{O}少送了一份，金额{Y}。",
    "{K}公交站台广告牌松动，工单{G}。",
    "充电桩扣费{Y}，交易单号{O}，未充上电。",
    "{B}施工噪音扰民，夜间施工许可证号{G}。",
    "井盖（{J}）下沉，位置在{K}{B}。",
    "{D}的快递{W}被送到了{K}，要求改派。",
    "{K}的商户收取押金{Y}后不退，订单{O}。",
    "{B}电梯年检日期{D}已过期。",
    "楼道里放了十几辆电动车，{B}{D}还起过火。",
]

# Frames written after the scrubber was tuned on the ones above; measured before any change
# for them (names 83 % recall), then tuned on too (``"part": "second"``).
FRAMES_B = [
    "【来电】{N}，{M}，反映小区内电动车飞线充电。",
    "诉求人{N}称，{D}交的物业费{Y}没有开收据。",
    "求助人：{S}。老人独自在家摔倒，需要社区帮忙。",
    "{Q}社区网格员{N}上报：{B}楼前井盖{J}塌陷。",
    "主叫号码{M}，{N}女士反映楼下烧烤店排烟。",
    "据居民{S}说，{K}一带晚上经常有人飙车。",
    "已联系{N}（{M}）确认，问题属实。",
    "此件由社区书记{N}牵头处理。",
    "{N}先生来电称其母亲{S}走失，身穿灰色外套。",
    "回访{N}，对处理结果不满意，要求重新处理。",
    "咨询人{N}想了解公租房申请条件。",
    "被投诉人{S}在{B}私搭乱建。",
    "{N}和{S}两户因漏水发生矛盾。",
    "转{Q}社区：{N}家孩子上学需开居住证明，身份证号{I}。",
    "{N}说自己的{卡}{C}被冻结了，要求帮助。",
    "小区住户{S}反映：{B}地下室长期积水。",
    "{N}（{I}）申请办理独生子女证明。",
    "楼长{N}反映本楼{A}长期无人居住，有异味。",
    "{D}，{N}到社区办理老年优待证。",
    "本人{N}，电话{L}，投诉外卖骑手逆行。",
    "{S}阿姨说{K}菜场门口积水没人管。",
    "租客{N}的手机{M}打不通，房东{S}着急。",
    "{N}大哥反映{B}车位被外来车辆占用，车牌{P}。",
    "请{Q}社区联系{N}，地址{A}。",
    "{N}在{D}反映过同样问题，工单{G}。",
    "姓名：{N}；电话：{M}；内容：噪音扰民。",
    "{S}的儿子{N}来电，称老人需要助餐。",
    "{N}女士，{M}，订单号{O}的家电送装延误。",
    "独居老人{N}，{I}，近期身体不好。",
    "维修人员{N}已联系{S}，约定{D}上门。",
    "快递员{N}把{W}号包裹放在{B}门口。",
    "{N}告诉网格员，楼道里的杂物是邻居{S}放的。",
    "经办人：{N}  办结时间：{D}",
    "{N}同学家长来电，反映校门口有流动摊贩。",
    "{N}称{D}在{K}附近丢失钱包，内有银行卡{C}。",
    "残疾人{N}申请无障碍改造，残疾证号{I}01。",
    "{S}与{N}系夫妻，共同居住于{Q}社区{A}。",
    "我是{N}，住{A}，楼上漏水。",
    "{N}：{M}，要求尽快维修{B}电梯。",
    "对接人{N}，联系电话{L}。",
    "{N}称自己是{Q}社区居民，{D}以来多次反映未果。",
    "{K}派出所民警{N}到场处置。",
    "{N}与物业经理{S}协商未果。",
    "{N}老人（{Y}养老金）申请临时救助。",
    "上周{N}来电，今天{S}又来电反映同一问题。",
    "{N}家楼下{B}有人占道卖菜。",
    "来访人员{N}，持身份证{I}，咨询低保政策。",
    "{N}父子二人反映{K}公交站牌缺失。",
    "投诉对象：{S}（商户店主），{B}。",
    "受理人{N}，工单号{G}。",
    "{O}号订单，{N}付款{Y}，商家未发货。",
    "井盖{J}丢失，{N}路过时险些掉下去。",
    "{N}，电话{M}，{D}{B}停水。",
    "{K}附近{B}的{N}师傅修车占道。",
    "{N}、{S}、{N}三户联名反映{B}下水道堵塞。",
]

# Texts with no name, full of words that start with a surname (高空, 马路, 白天, 平台, 师傅,
# 宋庄 …), written with the second frames: what the name detectors must not touch.
FRAMES_C = [
    "高空抛物砸坏了{B}楼下的车，物业称找不到责任人。",
    "马路对面的商家每天早上六点就开始卸货，噪音很大。",
    "白天施工还可以理解，晚上十一点还在打钻。",
    "常年有人在{K}附近遛狗不牵绳，于是孩子们都不敢下楼。",
    "方便的话请物业尽快修一下{B}的单元门。",
    "安全出口被堆放的纸箱堵住了，存在消防隐患。",
    "平台客服说会处理，但至今没有回复。",
    "钱包丢在了出租车上，司机说没看到。",
    "毛坯房装修噪音扰民，施工方称有许可证。",
    "金额不对，多扣了{Y}，商家拒不退还。",
    "石头砸到了车窗，车主要求赔偿。",
    "江边步道的路灯坏了一半，晚上很黑。",
    "房间里有霉味，房东说是楼上漏水导致的。",
    "车辆乱停乱放，城管称已经贴了罚单。",
    "师傅说零件要从厂家调货，需要等三天。",
    "老师反映学校门口的斑马线已经看不清了。",
    "阿姨们在{B}前的空地跳广场舞，音响声音过大。",
    "向东走二百米有个垃圾站，夏天臭味很重。",
    "万一发生火灾，老人根本跑不出来。",
    "于{D}开始停暖，居民家中温度很低。",
    "黄色的共享单车堆在{K}地铁口，行人无法通过。",
    "水电费上涨，居民称未接到任何通知。",
    "周边商户反映，夜市摊贩占道经营影响生意。",
    "双方各执一词，社区将再次组织调解。",
    "管道破裂导致{B}地下室进水，请相关部门处理。",
    "邻居家的空调外机噪音很大，晚上睡不着。",
    "楼上住户称装修已经结束，但仍有敲击声。",
    "商家称充值卡余额可以转让，但不给退款。",
    "高层住户反映二次供水水压不足。",
    "城管执法人员已到现场，责令其限期整改。",
    "业主委员会称维修资金使用需要业主投票。",
    "宋庄路口的信号灯时间太短，老人过不去。",
    "关于{B}停车难的问题，物业表示正在协调。",
    "常营地区的公交站没有遮雨棚。",
    "包裹被快递柜吞了，客服称需要三个工作日。",
    "孔明灯落在了{B}的屋顶上，有火灾隐患。",
    "和平里社区的老旧管网改造何时启动？",
    "温度只有十六度，供暖公司称管道需要排气。",
    "金台夕照站出口的扶梯停运一周了。",
    "程序上需要先到社区开具证明。",
]

# Frames written after the second ones were tuned on; measured before any change for them
# (names 92 % recall), then tuned on too (``"part": "third"``).
FRAMES_D = [
    "市民来电：我姓{N}，不对，我叫{N}，{M}。",
    "反映楼上{A}漏水，联系人{N}。",
    "登记：{N}/{M}/{Q}社区{A}",
    "接群众{N}举报，{K}有人非法改装车辆，车牌{P}。",
    "{D}上午，{N}、{S}两位老人到社区反映养老驿站收费{Y}过高。",
    "核实情况：{N}系{Q}社区居民，身份证{I}，情况属实。",
    "“{N}”自称是物业经理，收取了{Y}停车费。",
    "由{N}同志负责督办，{D}前反馈。",
    "小区保安{N}称{D}夜间{B}有可疑人员。",
    "{N}老师：{M}（班主任）",
    "诉求人{N}表示不认可答复，坚持要求赔偿{Y}。",
    "{S}，{L}，{Q}社区{B}，暖气不热。",
    "网格员巡查发现{B}有群租现象，房主{N}。",
    "报修人：{N}　电话：{M}　地址：{A}",
    "社区已协调{N}家与楼下{S}家达成一致。",
    "{N}奶奶九十岁了，申请上门理发服务。",
    "今早七点{N}在{K}站台被撞，肇事车辆{P}逃逸。",
    "{D}{N}通过APP反映{B}水管爆裂。",
    "烦请联系{N}女士核实，{M}。",
    "附：{N}身份证号{I}，手机{M}。",
    "该户人员：{N}（户主）、{S}（妻）。",
    "{N}反馈运单{W}显示已签收，实际未收到。",
    "{N}在{K}开的小卖部无证经营。",
    "{N}诉：{D}在小区门口被狗咬伤，花费{Y}。",
    "{N}要求退还押金{Y}，订单号{O}。",
    "经协调，{N}同意{D}前清理杂物。",
    "居民{N}家的下水道返水，住址{A}。",
    "{N}的女儿{S}代为反映，母亲长期卧床。",
    "听{N}说{K}那边晚上有人偷井盖，编号{J}。",
    "{N}大姐反映楼下小饭馆油烟大。",
    "工单{G}：{N}来电催办。",
    "{N}等五户居民反映{B}楼道灯坏了。",
    "{N}于{D}提交了低保申请，身份证号{I}。",
    "{N}称，本人银行卡{C}近期收到不明转账。",
    "请{N}携带身份证原件到{Q}社区居委会。",
    "关于{N}反映的问题，街道已答复。",
    "{N}拨打{L}无人接听。",
    "{N}爷爷走失，家属电话{M}。",
    "受害人{N}，被骗金额{Y}，涉案账号{C}。",
    "{N}是{B}的楼门长，电话{M}。",
    "{N}一家三口住在{A}。",
    "{N}同{S}发生口角后报警。",
    "据了解，{N}已多次向{Q}社区反映。",
    "外卖员{N}的电动车停在消防通道，车牌{P}。",
    "{D}，{N}通过市长信箱（{E}）反映问题。",
    "{N}女士称{K}附近的共享充电宝扣费{Y}。",
    "社区干部{N}、{S}上门走访。",
    "建议由{N}所在单位出具证明。",
    "{N}母亲{S}独居于{A}。",
    "以上情况{N}本人签字确认。",
]

# Frames written last and never tuned on: the held-out part (``"part": "held_out"``).
FRAMES_E = [
    "【网格上报】{Q}社区{B}东侧堆放建筑垃圾，责任人{N}，已督促清理。",
    "来电人自述名叫{N}，今年七十二岁，独居在{A}。",
    "{N}（户主）申请危房改造，联系电话{M}。",
    "工作人员回复：已转{K}城管队处理，{N}表示认可。",
    "{D}晚九点左右，{N}听到楼下有争吵声，随即报警。",
    "经调查，{B}违建属{N}所建，已下达整改通知书。",
    "{N}，{Q}社区{A}住户，反映电梯停运三天。",
    "住户：{S}（{M}）；问题：暖气漏水；地址：{A}。",
    "张贴公告后，{N}主动联系社区说明情况。",
    "{N}说前几天给{S}打过电话，对方没接。",
    "派单对象：{K}物业，联系人{N}，{L}。",
    "{N}夫妇反映儿子{S}长期不回家，老人无人照顾。",
    "回访时{N}不在家，其爱人{S}接听电话。",
    "{N}来社区开证明，需要提供户口本和身份证{I}。",
    "根据{N}提供的线索，{K}附近找到了走失老人。",
    "投诉人（{N}）要求对{B}的违规装修进行查处。",
    "{N}目前住院，由其女儿{S}代为办理。",
    "{S}，女，{D}出生，身份证{I}，现住{A}。",
    "经{N}同意，物业已进入其房屋检查管道。",
    "{N}和邻居因为楼道堆物的问题吵了起来。",
    "电话{M}的机主{N}称从未办理过该业务。",
    "{N}家中有一名残疾人，申请补贴，银行卡号{C}。",
    "网格员{N}（{M}）负责{B}的巡查。",
    "商户{N}经营的早餐店占道，订单{O}为其外卖单号。",
    "据{N}描述，肇事车辆为白色轿车，车牌{P}。",
    "{N}向12345反映，{K}公交车经常不进站。",
    "{N}的老伴{S}上周刚做完手术。",
    "{N}阿姨又来了，还是说{B}楼道的灯。",
    "{N}同志，您好，您反映的问题已办结。",
    "{N}拒绝提供身份信息，只留了电话{M}。",
    "当班民警{N}于{D}到场调解。",
    "{N}提出要对{G}号工单的处理结果进行复核。",
    "{N}本人及其家属均不同意调解方案。",
    "社区为{N}办理了居家养老服务，每月补贴{Y}。",
    "{N}从外地回来后发现家里被盗。",
    "快递{W}的收件人是{N}，电话{M}。",
    "{N}所在的{B}单元门禁坏了一个月。",
    "居民反映，{N}在{K}摆摊卖菜，城管多次劝离无效。",
    "{N}（{I}）系低保户，申请临时救助。",
    "{N}、{S}夫妇在{A}经营小旅馆，未登记住客信息。",
    "{D}{N}在{K}遭遇电信诈骗，转出{Y}。",
    "{N}想给母亲{S}办理高龄津贴。",
    "物业公司的{N}经理答应{D}前解决。",
    "{N}来电时情绪激动，反复强调已经反映了五次。",
    "{N}女儿在外地，{N}一个人住在{A}。",
    "{K}的{N}诊所未取得执业许可。",
    "{N}表示如不解决将继续投诉。",
    "{N}（网格员）核实后回复：情况不属实。",
    "维修费用{Y}由{N}和{S}两家均摊。",
    "{N}：已收到，谢谢社区。",
]


def fill(texts: Texts, frame: str) -> dict:
    pii: list[dict] = []
    keep: list[dict] = []
    out = _CUE.sub(lambda m: texts.rng.choice(CARD_CUES), frame)

    def slot(m: re.Match) -> str:
        method, label, kind = SLOTS[m.group(1)]
        if method == "name2":
            value = texts.name(length=1)
            while len(value) != 2:
                value = texts.name(length=1)
        else:
            value = getattr(texts, method)()
        if label == "pii":
            pii.append({"kind": kind, "value": value})
        elif label == "keep":
            keep.append({"kind": kind, "value": value})
        return value

    text = _SLOT.sub(slot, out)
    return {"text": text, "pii": pii, "keep": keep}


def main() -> None:
    texts = Texts(seed=13)
    rows = [{"part": "tuning", **fill(texts, f)} for f in FRAMES + FRAMES]
    # a third pass over the frames that hold names, so names weigh as they do in practice
    rows += [{"part": "tuning", **fill(texts, f)} for f in FRAMES if "{N}" in f or "{S}" in f]
    rows += [{"part": "second", **fill(texts, f)} for f in FRAMES_B + FRAMES_B + FRAMES_C]
    rows += [{"part": "third", **fill(texts, f)} for f in FRAMES_D + FRAMES_D]
    rows += [{"part": "held_out", **fill(texts, f)} for f in FRAMES_E + FRAMES_E]
    with OUT.open("w", encoding="utf-8") as fh:
        for i, row in enumerate(rows, start=1):
            fh.write(json.dumps({"id": i, **row}, ensure_ascii=False) + "\n")
    print(f"{len(rows)} texts → {OUT}")


if __name__ == "__main__":
    main()
