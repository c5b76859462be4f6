"""Free text as residents and grid workers write it, with the PII it hides recorded."""

from __future__ import annotations

import random

from departments.world import Person

ISSUES = {
    "噪音扰民": ("楼上装修噪音很大，晚上十点以后还在施工", "楼下广场舞音响太吵，影响老人休息"),
    "物业管理": ("物业不处理楼道堆放的杂物", "电梯经常坏，物业一直拖着不修"),
    "环境卫生": ("小区垃圾桶满了好几天没人清运", "楼道里有人乱扔垃圾，气味很大"),
    "市政设施": ("路灯不亮已经一周了", "井盖松动，晚上走路很危险"),
    "占道经营": ("小区门口有人摆摊卖菜，堵住了消防通道", "早点摊占用人行道"),
    "供暖": ("家里暖气不热，室温只有十四度", "暖气漏水，把楼下淹了"),
    "邻里纠纷": ("邻居在楼道里养狗，狗经常叫", "邻居空调外机滴水到我家窗台"),
    "养老服务": ("想咨询老人助餐服务怎么申请", "家里老人独居，希望社区能定期上门看看"),
    "其他": ("咨询居住证续签需要什么材料", "小区门禁卡丢了，怎么补办"),
}
GRID_EVENTS = {
    "环境卫生": ("绿化带内有积存垃圾", "道路有油污需要清理"),
    "市政设施": ("人行道地砖破损", "雨水篦子堵塞"),
    "安全隐患": ("楼道内电动车充电", "消防通道被车辆占用"),
    "违法建设": ("楼顶私搭乱建彩钢板房", "一层住户私自扩建院墙"),
    "占道经营": ("商户店外经营", "流动商贩占道"),
}


def appeal_text(
    rng: random.Random, category: str, caller: Person, address: str
) -> tuple[str, list[tuple[str, str]]]:
    """A 12345 work-order text; returns the text and the (kind, value) PII it contains."""
    issue = rng.choice(ISSUES[category])
    pii: list[tuple[str, str]] = []
    parts = []
    if rng.random() < 0.5:
        parts.append(f"市民{caller.name}来电反映：")
        pii.append(("person_name", caller.name))
    else:
        parts.append("来电人反映：")
    if rng.random() < 0.6:
        parts.append(f"{address}，{issue}。")
        pii.append(("address", address))
    else:
        parts.append(f"{issue}。")
    parts.append(f"已持续{rng.randint(2, 30)}天，希望有关部门尽快处理。")
    if caller.mobile and rng.random() < 0.35:
        parts.append(f"联系电话{caller.mobile}。")
        pii.append(("mobile", caller.mobile))
    if rng.random() < 0.08:
        parts.append(f"来电人身份证号{caller.cid}。")
        pii.append(("citizen_id", caller.cid))
    return "".join(parts), pii


def event_text(
    rng: random.Random, category: str, place: str, people: list[Person]
) -> tuple[str, list[tuple[str, str]]]:
    """A grid worker's or inspector's note; sometimes names the party involved."""
    issue = rng.choice(GRID_EVENTS.get(category, GRID_EVENTS["环境卫生"]))
    text, pii = f"{place}{issue}", []
    if people and rng.random() < 0.25:
        p = rng.choice(people)
        text += f"，涉及住户{p.name}"
        pii.append(("person_name", p.name))
        if p.mobile and rng.random() < 0.5:
            text += f"（电话{p.mobile}）"
            pii.append(("mobile", p.mobile))
    return text + "，已现场拍照上报。", pii
