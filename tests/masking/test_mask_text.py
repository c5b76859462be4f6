"""Free-text scrubbing: each detector, the \\b trap, false positives."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from masking.names import COMPOUND_SURNAMES
from masking.text import scrub, scrub_series


@pytest.mark.parametrize(
    ("text", "kind", "masked"),
    [
        ("身份证号110101199003071237", "citizen_id", "身份证号110101********1237"),
        ("身份证号11010519491231002X。", "citizen_id", "身份证号110105********002X。"),
        ("证件１１０１０５１９４９１２３１００２Ｘ。", "citizen_id", "证件110105********002X。"),
        ("老证件号110105491231002。", "citizen_id", "老证件号110105*****1002。"),
        ("电话+86 138 1234 5678，", "mobile", "电话138****5678，"),
        ("手机138-1234-5678", "mobile", "手机138****5678"),
        ("座机010-12345678", "landline", "座机010****5678"),
        ("卡号6222021234567890128", "bank_card", "卡号***************0128"),
        ("车牌京A12345违停", "plate", "车牌京A·***45违停"),
        ("邮箱zhang.san@example.com", "email", "邮箱z***@example.com"),
        ("住秀水社区1号楼2单元502室", "address", "住秀水社区***"),
        ("市民韩瑞来电反映", "person_name", "市民韩*来电反映"),
        ("联系人：欧阳娜娜，", "person_name", "联系人：欧阳*，"),
        ("请王建国师傅处理", "person_name", "请王*师傅处理"),
        ("涉及住户樊婷婷，已现场拍照", "person_name", "涉及住户樊*，已现场拍照"),
    ],
)
def test_detects_and_masks(text: str, kind: str, masked: str) -> None:
    out, findings = scrub(text)
    assert out == masked
    assert [f.kind for f in findings] == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "井盖松动，晚上走路很危险",
        "楼上装修噪音很大，晚上十点以后还在施工",
        "李阿姨说物业不管，张先生也这么说",
        "银行卡号忘了，师傅说明天再来",
        "工单编号1234520251124000120，已持续14天",
        "秀水社区15号楼附近商户店外经营",
        # words that start with a surname: places, 张 as a measure word, a cue before a verb
        "市民来电：黄村路口红绿灯故障。",
        "反映白家庄附近的共享单车乱停放。",
        "张自忠路地铁站出口有黑车揽客。",
        "马家堡菜市场周边占道经营严重。",
        "有人冒用其名义办理了这张卡。",
        "南郎家园社区雨水篦子堵塞。",
        "商家称会退款，平台不处理。",
        "物业公司称已经维修，但仍有噪音。",
        "楼道里放了十几辆电动车。",
        "施工方称有许可证，石头砸到了车窗。",
        "于晚上8点停水。",
        "请相关部门尽快处理，联系方式：略。",
    ],
)
def test_no_false_positives(text: str) -> None:
    out, findings = scrub(text)
    assert findings == [] and out == text


def test_bad_check_digit_still_masked_unverified() -> None:
    out, (finding,) = scrub("身份证号110101199003071234不对")
    assert finding.kind == "citizen_id" and not finding.verified
    assert "1990030" not in out


def test_word_boundary_trap() -> None:
    """\\b would miss these: Han characters and digits are both word characters."""
    text = "报警人身份证号110105194912310020电话13812345678无"
    out, findings = scrub(text)
    found = [(f.kind, text[f.start : f.end], f.source, f.verified) for f in findings]
    assert found == [
        ("citizen_id", "110105194912310020", "regex", False),  # check digit should be X
        ("mobile", "13812345678", "regex", True),
    ]
    assert out == "报警人身份证号110105********0020电话138****5678无"


def test_known_names_and_series() -> None:
    s = pl.Series("t", ["邻居郭春梅家漏水", None, "邻居郭春梅家漏水", "无"])
    out = scrub_series(s, known_names={"郭春梅"})
    assert out.to_list() == ["邻居郭*家漏水", None, "邻居郭*家漏水", "无"]
    assert out.name == "t"


def test_findings_carry_no_values() -> None:
    _, findings = scrub("联系电话13812345678")
    assert "13812345678" not in repr(findings)


@given(
    st.lists(st.text("王李张秀英建国华", min_size=1, max_size=5), max_size=12),
    st.text("王李张秀英建国华，的了", max_size=40),
)
def test_known_name_spans_equal_searching_each_name(names: list[str], text: str) -> None:
    """The window search finds exactly what looking for every name in turn finds."""
    from masking.names import KnownNames

    want = set()
    for name in {n for n in names if len(n) >= 2}:
        start = text.find(name)
        while start >= 0:
            want.add((start, start + len(name)))
            start = text.find(name, start + 1)
    assert set(KnownNames(names).spans(text)) == want


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("请安萍联系楼门长领取门禁卡。", "安萍"),  # after 请, two characters
        ("户主慕容振华称暖气不热", "慕容振华"),  # compound surname
        ("燃气用户禤涛反映表具漏气", "禤涛"),  # a rare surname
        ("反映人：上官秀云；身份证：略", "上官秀云"),
        ("来电人叶娟要求回访", "叶娟"),
        ("胡佳投诉楼下餐馆油烟扰民。", "胡佳"),  # a sentence's start before 投诉
        ("今天下午马秀英来电，说家里停电了。", "马秀英"),
        ("苏宇航家的狗多次咬人。", "苏宇航"),  # before 家
        ("令狐欣怡的身份证号需核实。", "令狐欣怡"),  # before 的身份证
        ("独居老人周桂芳阿姨近三天未出门", "周桂芳"),  # before a title
        ("网格员叶立新上报：井盖塌陷。", "叶立新"),  # a cue, then a verb
        ("【来电】皇甫佳，反映小区内飞线充电。", "皇甫佳"),  # a clause's start
        ("补助发放账号（昝强），金额略", "昝强"),  # alone in brackets
        ("市民刘女士来电反映", "刘女士"),  # a surname and a title after a cue: 刘*
        # 生僻字 outside the basic block (CJK extension A, B): once left in the clear
        ("来电人刘䶮要求回访", "刘䶮"),
        ("燃气用户张𠮷反映表具漏气", "张𠮷"),
        ("刘䶮反映楼道堆物", "刘䶮"),
    ],
)
def test_names_where_hotline_texts_put_them(text: str, name: str) -> None:
    out, findings = scrub(text)
    surname = name[:2] if name[:2] in COMPOUND_SURNAMES else name[:1]
    assert [f.kind for f in findings] == ["person_name"]
    assert out == text.replace(name, surname + "*")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        # 少数民族 and transliterated foreign names: parts joined by the interpunct U+00B7 …
        ("来电人买买提·艾力反映噪音", "买买提·艾力"),  # once 来电人买买提·艾* (买买提 in the clear)
        ("患者阿卜杜勒·阿齐兹·买买提称头晕", "阿卜杜勒·阿齐兹·买买提"),
        ("约翰·史密斯投诉楼下餐馆油烟。", "约翰·史密斯"),  # a sentence's start
        ("阿里木江·吐尔逊", "阿里木江·吐尔逊"),  # 阿里 is a word of jieba's too
        ("我们小区买买提·艾力家漏水", "买买提·艾力"),  # common words before it, 家 after
        ("社区工作人员热依拉·买买提上门核实", "热依拉·买买提"),
        # … or a look-alike of it (• ・ ‧), or a full stop right after a cue word
        ("居民买买提•艾力要求回访", "买买提•艾力"),
        ("住户热依拉・买买提家漏水", "热依拉・买买提"),
        ("网格员迪丽热巴‧阿不都反映", "迪丽热巴‧阿不都"),
        # where no word ends it, the last part is cut at NAME_PART characters: a verb may go
        # with it (迪*), never a part of the name
        ("网格员迪丽热巴‧阿不都上报", "迪丽热巴‧阿不都上报"),
        ("联系人阿依古丽．吐尔逊，电话略", "阿依古丽．吐尔逊"),
        ("来电人古丽.艾合买提反映", "古丽.艾合买提"),
    ],
)
def test_names_in_parts(text: str, name: str) -> None:
    out, findings = scrub(text)
    assert [f.kind for f in findings] == ["person_name"]
    assert out == text.replace(name, name[0] + "*")


def test_full_stops_between_han_characters_are_no_name_without_a_cue() -> None:
    for text in ("已处理.谢谢", "已处理．谢谢配合", "价格2400.5元"):
        assert scrub(text) == (text, [])


def test_a_registry_name_in_parts_is_found_however_its_parts_are_joined() -> None:
    for text in ("请买买提•艾力回电", "请买买提.艾力回电", "请买买提·艾力回电"):
        out, findings = scrub(text, known_names={"买买提·艾力"})
        assert out == "请买*回电" and [f.source for f in findings] == ["known"]
    out, _ = scrub("请买买提·艾力回电", known_names={"买买提．艾力"})  # the registry's own
    assert out == "请买*回电"


@pytest.mark.parametrize(
    "text",
    ["来电人王\u3000芳反映楼道堆物", "联系人：王 芳，电话未留", "户主王  芳", "市民张\u3000伟称"],
)
def test_a_padded_two_character_name_copied_into_a_text_is_masked(text: str) -> None:
    # rosters pad 王芳 to a three-character width (王　芳); copied into a hotline text with its
    # padding, the name was left in the clear
    masked, findings = scrub(text)
    given_name = text.replace("\u3000", " ").split()[-1][0]  # the character after the padding
    assert [f.kind for f in findings] == ["person_name"]
    assert given_name not in masked[findings[0].start :]
    assert masked.startswith(text[: findings[0].start])


def test_a_space_inside_a_longer_name_or_before_a_word_is_no_padding() -> None:
    for text in ("来电人王 芳芳反映", "今天 天气好"):
        assert all(f.kind != "person_name" or f.source != "cue_before" for f in scrub(text)[1])


def test_a_registry_name_padded_in_a_text_is_masked_as_known() -> None:
    masked, findings = scrub("今天王　芳来过", known_names={"王芳"})
    assert masked == "今天王*来过" and [f.source for f in findings] == ["known"]
