"""The portal's start page, community worklist, consent page and auditor's view in a real
browser (pages_home / pages_worklist / pages_consent / pages_audit): a reviewer's start page
lists the request waiting for them and links to its review; a community worker reads their
community's alert with its reasons, reveals one resident (audited) and records a visit; a
worker of another community sees none of them; an automated-assessment opt-out recorded on
the consent page takes the resident off the worklist, and a citizen ID typed there is never
shown back; the auditor sees the trail verified, a good receipt checks and a tampered one
fails."""

from __future__ import annotations

import datetime as dt
import json

from catalog.model import ShareType
from lakehouse.lake import open_lake
from share_api import requests as rq
from share_api import worklist as wl
from share_api.db import utc_now
from share_api.portal.pages_audit import PAGE_SIZE
from tests.share_api.portal.conftest import assert_accessible, shot
from tests.share_api.test_requests_http import ASK, another_department, dataset
from tests.share_api.test_worklist import PHRASES, street  # noqa: F401 (the fixture)

DASHBOARDS = "查看治理看板（共享率、数据质量、诉求时效、需求热力图）"
FULL_CHECK = "完整校验（从第 1 条记录起，与 streethub audit verify 相同）"
CITIZEN_ID = "11010519491231002X"  # GB 11643-1999's example: no resident of the street


def _records(service, action: str) -> list[dict]:
    return [r for r in service.audit.log.records() if r["action"] == action]


def _sign_out(page) -> None:
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/portal/login")


def _tab_to(page, text: str, presses: int = 60) -> None:
    """Move the focus with Tab alone until it is on the control reading ``text``."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent.trim()") == text:
            return
    raise AssertionError(f"{text!r} is not reached by Tab")


def _community_of(service, person_id: str) -> str:
    with open_lake(service.settings, read_only=True) as con:
        return con.execute(
            "SELECT community_code FROM marts.resident_profile WHERE person_id = ?", [person_id]
        ).fetchone()[0]


def test_start_page_worklist_consent_and_audit(street, portal, page):  # noqa: F811
    service = portal.service
    community, ours, theirs = street

    # -- a reviewer's start page: the requests waiting for them, overdue first, linked -----
    resource, field, ds = dataset(service, ShareType.conditional)
    asker = portal.people.make(another_department(service, resource), "requester")
    ask = {"resource": resource, "columns": [field, ds.key[0]], **ASK}
    fresh = rq.create_request(service, asker.principal, **ask)
    late = rq.create_request(service, asker.principal, **ask)
    with service.engine.begin() as con:  # its answer deadline has passed
        con.execute(rq.requests_table.update().where(rq.requests_table.c.id == late["id"])
                    .values(due_at=utc_now() - dt.timedelta(days=1)))  # fmt: skip
    reviewer = portal.person(resource.split(".")[0], "reviewer")
    portal.sign_in(page, reviewer, "/")
    waiting = page.get_by_role("region", name="等待您审核的申请（2）")
    rows = waiting.locator("tbody tr")
    assert "已逾期" in rows.nth(0).inner_text() and "已逾期" not in rows.nth(1).inner_text()
    for row, req in zip(rows.all(), (late, fresh), strict=True):
        link = row.get_by_role("link", name=f"处理 数据申请 {req['id']}")
        assert link.get_attribute("href") == f"/portal/reviews/{req['id']}"
        assert resource in row.inner_text()
    overdue = page.get_by_role("region", name="已超过答复期限的申请（1）")
    assert overdue.get_by_role("link").get_attribute("href") == f"/portal/reviews/{late['id']}"
    assert_accessible(page)
    shot(page, "portal-home-reviewer")
    _sign_out(page)

    # -- a street leader: the dashboards from the start page --------------------------------
    leader = portal.person("street", "leader", kind="street")
    portal.sign_in(page, leader, "/")
    assert page.get_by_role("link", name=DASHBOARDS).get_attribute("href") == "/portal/dashboards"
    assert_accessible(page)
    shot(page, "portal-home-leader")
    _sign_out(page)

    # -- a community worker: the worklist of their community, with reasons -----------------
    worker = portal.person("sq01", "community_worker", kind="community")
    wl.assign_community(service, worker.user_id, community, actor="test/admin")
    portal.sign_in(page, worker, "/")
    assert page.locator("#worklist-count").inner_text() == str(len(ours))
    assert_accessible(page)
    shot(page, "portal-home-worker")
    page.get_by_role("link", name="打开走访清单").click()
    page.wait_for_url("**/portal/worklist")
    table = page.get_by_role("table", name="需要走访的居民，出入次数下降多的在前")
    assert sorted(table.locator("tbody th code").all_inner_texts()) == sorted(ours)
    assert table.get_by_text("近30天门禁出入次数下降62%").count() == len(ours)
    assert theirs[0] not in page.content()
    assert_accessible(page)
    shot(page, "portal-worklist")

    # the resident's page: the need model's reasons; reveal, audited, never in a URL
    page.get_by_role("link", name=f"查看并登记走访：居民 {ours[0]}").click()
    page.wait_for_url(f"**/portal/worklist/{ours[0]}")
    scores = page.get_by_role("table", name="需求评分（模型给出的参考，不是决定）")
    assert scores.get_by_text(PHRASES.split("；")[1]).count() >= 1
    assert_accessible(page)
    before = len(_records(service, "worklist.reveal"))
    _tab_to(page, "显示联系方式")  # by keyboard alone
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/portal/worklist/{ours[0]}/reveal")
    [revealed] = _records(service, "worklist.reveal")[before:]
    assert (revealed["actor"], revealed["person"]) == (worker.actor, ours[0])
    shown = page.locator("#contact dd").all_inner_texts()
    assert len(shown) == 3 and "name" in revealed["fields"] and shown[0] != "（档案中无）"
    assert shown[0] not in page.url
    assert_accessible(page)
    shot(page, "portal-worklist-reveal")

    # a visit's outcome
    page.get_by_label("未遇").check()
    page.get_by_role("button", name="登记走访结果").click()
    page.wait_for_url(f"**/portal/worklist/{ours[0]}?msg=*")
    assert page.get_by_role("status").inner_text() == "已记录走访结果：未遇"
    [visit] = wl.visits(service, community)
    assert (visit["person_id"], visit["outcome"], visit["recorded_by"]) == (
        ours[0], "not_home", worker.actor)  # fmt: skip
    assert (
        page.get_by_role("table", name="该居民的走访记录，最早的在前").get_by_text("未遇").count()
    )
    assert_accessible(page)

    # -- the consent page: an automated-assessment opt-out takes the resident off the list --
    page.get_by_role("link", name="与居民一起登记授权选择").click()
    page.wait_for_url(f"**/portal/consent/{ours[0]}")
    assert "尚未登记任何选择" in page.get_by_role("main").inner_text()
    page.goto(portal.url + "/consent")
    assert_accessible(page)
    shot(page, "portal-consent")
    record = page.get_by_role("region", name="登记一项选择")
    record.get_by_label("居民编号（与身份证号码二选一）").fill(ours[0])
    record.get_by_label("信息类别").select_option("automated_assessment")
    record.get_by_label("不同意共享（对“自动化评估”：拒绝）").check()
    record.get_by_role("button", name="登记选择").click()
    page.wait_for_url(f"**/portal/consent/{ours[0]}?msg=*")
    current = page.locator("#current-choices").inner_text()
    assert "自动化评估" in current and "拒绝自动化评估" in current
    [chosen] = [r for r in _records(service, "consent.set") if r["pseudonym"] == ours[0]][:1]
    assert (chosen["category"], chosen["choice"], chosen["actor"]) == (
        "automated_assessment", "declined", worker.actor)  # fmt: skip
    assert_accessible(page)
    shot(page, "portal-consent-resident")
    page.goto(portal.url + "/worklist")
    listed = page.get_by_role("table", name="需要走访的居民，出入次数下降多的在前")
    assert sorted(listed.locator("tbody th code").all_inner_texts()) == sorted(ours[1:])

    # a citizen ID is pseudonymised, never shown back nor put in a URL (no such resident)
    page.goto(portal.url + "/consent")
    find = page.get_by_role("region", name="查找居民")
    find.get_by_label("身份证号码（只用于换算居民编号，不保存、不显示）").fill(CITIZEN_ID)
    find.get_by_role("button", name="查看该居民的选择").click()
    assert page.get_by_role("alert").inner_text() == "该居民不在您负责的社区，无权查看或登记。"
    assert CITIZEN_ID not in page.content() and CITIZEN_ID not in page.url
    assert all(CITIZEN_ID not in json.dumps(r) for r in service.audit.log.records())
    assert_accessible(page)
    _sign_out(page)

    # -- a worker of another community sees none of them ------------------------------------
    other = portal.person("sq02", "community_worker", kind="community")
    wl.assign_community(service, other.user_id, _community_of(service, theirs[0]), actor="t/a")
    portal.sign_in(page, other, "/worklist")
    listed = page.get_by_role("table", name="需要走访的居民，出入次数下降多的在前")
    assert listed.locator("tbody th code").all_inner_texts() == theirs
    assert not any(p in page.content() for p in ours)
    page.goto(f"{portal.url}/worklist/{ours[1]}")
    assert page.get_by_role("alert").inner_text() == "该居民不在您负责的社区，无权查看或登记。"
    assert_accessible(page)
    page.goto(f"{portal.url}/worklist/not-a-pseudonym")  # a page, not the API's JSON
    assert page.get_by_role("alert").inner_text() == "居民编号格式不正确。"
    _sign_out(page)

    # -- the auditor: the trail verified, filtered; a good receipt checks, a tampered fails --
    auditor = portal.person("street", "auditor", kind="street")
    portal.sign_in(page, auditor, "/audit")
    assert page.locator("#verify-status").inner_text().startswith("校验通过")
    assert_accessible(page)
    shot(page, "portal-audit")
    page.get_by_role(
        "button", name="完整校验（从第 1 条记录起，与 streethub audit verify 相同）"
    ).click()
    page.wait_for_url("**/portal/audit/verify")
    assert "校验通过" in page.locator("#verify-status").inner_text()
    assert "从第 1 条起逐条校验" in page.locator("#verify-status").inner_text()
    assert _records(service, "audit.verify")[-1]["from_record"] == 1
    newest = [int(s) for s in page.locator("#trail tbody tr td:first-child").all_inner_texts()]
    assert len(newest) == PAGE_SIZE and newest == sorted(newest, reverse=True)
    page.get_by_role("navigation", name="分页").get_by_role("link", name="更早的记录").click()
    page.wait_for_url(f"**/portal/audit?before={newest[-1]}")
    older = [int(s) for s in page.locator("#trail tbody tr td:first-child").all_inner_texts()]
    assert older == list(range(newest[-1] - 1, newest[-1] - 1 - PAGE_SIZE, -1))
    page.get_by_label("操作（如 worklist 或 worklist.reveal）").fill("worklist.reveal")
    page.get_by_role("button", name="筛选").click()
    page.wait_for_url("**/portal/audit?action=worklist.reveal*")
    rows = page.locator("#trail tbody tr")
    assert rows.count() == 1 and worker.actor in rows.first.inner_text()
    assert rows.first.locator("td").first.inner_text() == str(revealed["seq"])

    good = service.audit.receipt(revealed)
    page.get_by_label("回执（JSON，整段粘贴）").fill(json.dumps(good))
    page.get_by_role("button", name="核验回执").click()
    page.wait_for_url("**/portal/audit/receipt")
    assert page.locator("#receipt-result").inner_text().startswith("回执核验通过")
    assert_accessible(page)
    shot(page, "portal-audit-receipt")
    tampered = {**good, "record": {**good["record"], "actor": "sq01/someone-else"}}
    page.get_by_label("回执（JSON，整段粘贴）").fill(json.dumps(tampered))
    page.get_by_role("button", name="核验回执").click()
    result = page.locator("#receipt-result").inner_text()
    assert result.startswith("回执核验未通过") and "记录已被改动" in result
    assert [r["ok"] for r in _records(service, "audit.receipt_check")] == [True, False]

    # a record changed in the log afterwards: the whole verification names it
    path = service.audit.log.path
    raw = path.read_bytes()
    was = b'"action":"worklist.reveal"'
    at = raw.index(was)  # the one reveal of the test
    assert raw[at:].split(b"\n", 1)[0].count(f'"seq":{revealed["seq"]},'.encode()) == 1
    with path.open("r+b") as fh:  # the same length: the file is only altered, not cut
        fh.seek(at)
        fh.write(b'"action":"worklist.revea1"')
    page.goto(portal.url + "/audit")
    page.get_by_role("button", name=FULL_CHECK).click()
    status = page.locator("#verify-status").inner_text()
    assert status.startswith("校验未通过") and f"第 {revealed['seq']} 条" in status
    assert_accessible(page)
    shot(page, "portal-audit-tampered")
