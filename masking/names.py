"""Chinese surnames (百家姓 and the most common modern ones) and name cues in text.

Used by the name mask (compound surnames such as 欧阳 keep both characters) and by
free-text name detection (a candidate name must start with a surname).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from catalog.identifiers import name_dots_str, name_unpadded_str, padded_pairs

COMPOUND_SURNAMES = frozenset(
    [
        "欧阳",
        "司马",
        "上官",
        "诸葛",
        "东方",
        "皇甫",
        "尉迟",
        "公孙",
        "慕容",
        "长孙",
        "宇文",
        "司徒",
        "夏侯",
        "轩辕",
        "令狐",
        "钟离",
        "独孤",
        "南宫",
        "西门",
        "端木",
        "百里",
        "呼延",
        "申屠",
        "太史",
        "澹台",
        "公冶",
        "宗政",
        "濮阳",
        "淳于",
        "单于",
        "太叔",
        "仲孙",
        "闻人",
        "东郭",
        "赫连",
        "皇甫",
        "拓跋",
        "万俟",
        "司空",
        "乐正",
        "漆雕",
        "壤驷",
        "公良",
        "梁丘",
        "左丘",
        "东门",
        "谷梁",
        "第五",
        "夹谷",
        "公西",
        "巫马",
        "子车",
        "颛孙",
        "羊舌",
    ]
)

SINGLE_SURNAMES = frozenset(
    """
    王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程
    苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝
    龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左
    柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶
    解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬
    边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原
    栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计
    索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕
    危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉植衡富尧闭由钮洪鞠锁慎牧
    郗酆鲁韶郦雷贝毋糜钭滑荀羿储汲邴松井段富巫乌焦巴弓牧隗山谷车侯宓蓬全郗班仰秋仲伊宫宁仇栾暴
    甘钭厉戎祖武符刘景詹束龙叶幸司韶郜黎蓟薄印宿白怀蒲邰从鄂索咸籍赖卓蔺屠蒙池乔阴胥能苍双闻莘
    党翟谭贡劳逄姬申扶堵冉宰郦雍却璩桑桂濮牛寿通边扈燕冀郏浦尚农温别庄晏柴瞿阎充慕连茹习宦艾鱼
    容向古易慎戈廖庾终暨居衡步都耿满弘匡国文寇广禄阙东欧殳沃利蔚越夔隆师巩厍聂晁勾敖融冷訾辛阚
    那简饶空曾毋沙乜养鞠须丰巢关蒯相查后荆红游竺权逯盖益桓公傅萧禤笪仉麴芈琚
    """.replace("\n", "").replace(" ", "")
)

SURNAMES = SINGLE_SURNAMES | COMPOUND_SURNAMES

# words before a name: 市民张三来电, 联系人：李四, 我叫王五, 涉及住户赵六, 报警人钱七
NAME_BEFORE = (
    "市民|居民|住户|业主|租户|房东|商户|店主|摊主|当事人|报警人|举报人|投诉人|来电人|来访人|申请人|"
    "联系人|负责人|责任人|监护人|户主|老人|患者|孕妇|网格员|志愿者|工作人员|"
    "我叫|名叫|叫做|姓名|本人|"
    "用户|反映人|诉求人|求助人|咨询人|被投诉人|户名|开户人|持卡人|收款人|车主|委托人|代理人|"
    "经办人|承办人|家属|邻居|老伴|丈夫|妻子|儿子|女儿|父亲|母亲|楼门长|楼长|社工|维修工|保洁员|"
    "受理人|对接人|报修人|登记人|发现人|快递员|外卖员|骑手|维修人员|物业人员|民警|书记|经理|"
    "店长|老板|司机|保安|同学|我姓|受害人|嫌疑人|肇事者|报案人|伤者|"
    # who filled in, checked or handed over a form (a ledger's footer: 填表人：王芳)
    "填表人|制表人|填报人|审核人|统计人|核对人|经手人"
)
# words that may stand before a name, and before many other things: a candidate after them
# must look like a name (``text_names``: not a common word of another kind, no title)
NAME_BEFORE_WEAK = "请|与|和|跟|给|让|叫|接|找到了|找到|回复|回访|告知|通知|转告|据|由|联系|为|我是"
# what follows a name in a sentence that starts with it (张三反映…, 李四称…, 王五家漏水,
# 赵六的身份证…, 钱七，男，…): a candidate before them must start a sentence or a word
NAME_VERB_AFTER = (
    r"再次来电|来电|致电|反映|反应|投诉|举报|咨询|询问|求助|报称|称|表示|说|"
    r"家(?![属具电长政务园居])|的(?:身份证|证件|手机|电话|联系|家|儿子|女儿|老伴|丈夫|妻子|银行卡|"
    r"户口|房|残疾证|低保|车)|[，,]\s*[男女](?=[，,、。\s])|[（(][男女]|本人|"
    r"母亲|父亲|儿子|女儿|妻子|丈夫|老伴"
)
# words after a surname or name: 张先生, 李女士, 王阿姨, 赵大爷, 刘师傅, 陈老师
NAME_AFTER = (
    "先生|女士|小姐|阿姨|大爷|大妈|大娘|大姐|大哥|师傅|老师|同志|奶奶|爷爷|老人|医生|经理|主任"
)
# what may follow a name (lazy match stops at the first of these)
NAME_END = (
    r"来电|来访|反映|反应|投诉|举报|称|说|表示|报称|家(?![园居具])|的|在|于|及|和|与|等|同志|"
    r"先生|女士|"
    r"电话|手机|联系|身份证|住|现|已|因|对|向|要求|希望|本人|负责|巡查|介绍|代|申请|办理|"
    r"签字|领取|上门|回电|同意|系|怀疑|请求|再次|一直|多次|联名|共同|老人|阿姨|大爷|大妈|"
    r"大娘|师傅|老师|她|他|$|[\s，,。；;：:、（()）！!？?\d二两三四五六七八九十]"
)
# a last character that makes a candidate a place or a thing (黄村, 朱辛庄, 万寿路, 马家堡, 牛街,
# 毛坯房, 孔明灯; 冯二户, 两人: a count)
PLACE_ENDS = "路街村庄桥堡营屯巷园院楼站店场区镇乡道坊湾沟峪井府房灯户位个人"
# characters that are surnames and, far more often, words before a name (和王芳, 于是)
FUNCTION_SURNAMES = "和于向从由经同及对把将给让叫跟找接为是有也都还又再才说称请据时能来但"

# words jieba tags as names (nr) that are not names in these texts
NOT_NAMES = frozenset(
    [
        "井盖",
        "高空",
        "路灯",
        "雨水",
        "华里",
        "金台",
        "建外",
        "秀水",
        "光华",
        "永安",
        "大北窑",
        "郎家园",
        "北郎家园",
        "朝阳",
        "海淀",
        "东城",
        "西城",
        "丰台",
        "通州",
        "石景山",
        "昌平",
        "顺义",
        "大兴",
        "门头沟",
        "房山",
        "平谷",
        "怀柔",
        "密云",
        "延庆",
        "社区",
        "物业",
        "城管",
        "网格",
        "市民",
        "居民",
        "老人",
        "林荫",
        "白天",
        "晚上",
        "常年",
        "高层",
        "江边",
        "黄土",
        "金属",
        "石材",
        "马路",
        "施工",
        "包装",
        "温度",
        "文明",
        "明显",
        "安全",
        "平安",
        "钟点",
        "红绿灯",
        "银行卡",
    ]
)


def _folded(name: str) -> str:
    """A name as the registry holds it: parts joined by U+00B7, no roster padding."""
    return name_unpadded_str(name_dots_str(name))


class KnownNames(frozenset):
    """Names from a registry (two characters or more), searchable inside text.

    ``spans`` slides a window of each name length present over the text and looks each
    window up in the set: len(text) × (lengths) lookups, whatever the registry's size
    (searching for each of 20,000 names in turn costs 20,000 scans a text).

    A name in parts is held and looked for with its parts joined by U+00B7
    (``catalog.identifiers.name_dots_str``): 买买提•艾力 and 买买提.艾力 in a text are the
    registry's 买买提·艾力. A two-character name padded to a roster's width (王　芳, 王 芳)
    is the registry's 王芳, in a cell and in a text.
    """

    lengths: tuple[int, ...]

    def __new__(cls, names: Iterable[str] = ()) -> KnownNames:
        self = super().__new__(
            cls, (_folded(n) for n in names if isinstance(n, str) and len(n) >= 2)
        )
        self.lengths = tuple(sorted({len(n) for n in self}))
        return self

    def __contains__(self, name: object) -> bool:
        return frozenset.__contains__(self, _folded(name) if isinstance(name, str) else name)

    @classmethod
    def of(cls, names: Iterable[str] | None) -> KnownNames:
        return names if isinstance(names, cls) else cls(names or ())

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        """(start, end) of every occurrence of a known name, overlapping ones included."""
        text, n, known = name_dots_str(text), len(text), frozenset.__contains__
        for length in self.lengths:
            for i in range(n - length + 1):
                if known(self, text[i : i + length]):
                    yield i, i + length
        yield from self.padded_spans(text)

    def padded_spans(self, text: str) -> Iterator[tuple[int, int]]:
        """(start, end) of every known two-character name padded to a roster's width."""
        if 2 in self.lengths:
            known = frozenset.__contains__
            for start, end, pair in padded_pairs(text):
                if known(self, pair):
                    yield start, end

    def occurs_in(self, text: str) -> bool:
        return next(self.spans(text), None) is not None
