"""The request flow in a real browser (issue 18): a requester finds a dataset in the
catalogue (the same results as the API's search), opens its page, asks for it; the form's
errors are named in Chinese; two reviewers of the owner department — each in a browser of
their own — approve under the two-person rule, seeing what the requester would get; the
requester sees it granted. Then, with the keyboard alone (Tab, Enter, Space, typing, focus
visible at every stop), a requester searches, asks for unconditional data, is granted at
once, and its dataset page shows a masked sample read through that grant (audited)."""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.sync_api import Page

from catalog.model import Level, MaskingRule, ShareType
from share_api import catalogue as cat
from share_api import grants
from share_api.portal.pages_catalogue import HIDDEN, MASKING_ZH, departments
from share_api.portal.pages_requests import describe_scope, scope_of
from share_api.requests import list_requests
from share_api.rowfilter import compile_filter
from tests.share_api.portal.conftest import (
    assert_accessible,
    guarded_context,
    shot,
)


def _sensitive(entry: cat.Entry) -> list[str]:
    return [f.name for f in entry.fields if Level(f.level).sensitive]


def _pick(service, share_type: ShareType) -> cat.Entry:
    """A department dataset of ``share_type`` with a sensitive field (from the catalogue)."""
    return next(
        e
        for e in cat.entries(service)
        if e.kind == "dataset" and e.share_type is share_type and _sensitive(e)
    )


def _records(service, action: str) -> list[dict]:
    return [r for r in service.audit.log.records() if r["action"] == action]


def _tab_to(page: Page, selector: str, limit: int = 120) -> None:
    """Press Tab until ``selector`` has the focus; every stop on the way shows a focus
    outline (visible focus)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        here = page.evaluate(
            """(sel) => {
                const el = document.activeElement;
                const style = getComputedStyle(el);
                return {hit: el.matches(sel), outline: style.outlineStyle, id: el.id,
                        width: parseFloat(style.outlineWidth), tag: el.tagName};
            }""",
            selector,
        )
        if here["tag"] != "BODY":
            assert here["outline"] != "none" and here["width"] >= 2, f"focus not visible: {here}"
        if here["hit"]:
            return
    raise AssertionError(f"{selector} not reachable with Tab")


def test_request_review_grant_and_keyboard_flow(portal, page, browser, outside):
    service = portal.service
    entry = _pick(service, ShareType.conditional)
    owner = entry.owner_org
    asker_org = next(c for c, _ in departments(service) if c != owner)
    requester = portal.person(asker_org, "requester")
    first = portal.person(owner, "reviewer")
    second = portal.person(owner, "reviewer", "data_officer")

    # -- the requester finds the dataset: the page lists what the API's search answers
    portal.sign_in(page, requester, "/catalogue")
    assert_accessible(page)
    page.get_by_label("检索词").fill(entry.name_zh)
    page.get_by_label("提供部门").select_option(owner)
    page.get_by_role("button", name="检索").click()
    page.wait_for_url("**/portal/catalogue?*")
    api = httpx.get(
        portal.server.url + "/catalogue",
        params={"q": entry.name_zh, "owner_org": owner},
        headers=portal.people.make(asker_org, "requester").headers,
    ).json()
    listed = page.locator("table.results tbody th[scope=row] a").all_inner_texts()
    assert listed == [i["name_zh"] for i in api["items"]] and entry.name_zh in listed
    assert_accessible(page)
    shot(page, "portal-catalogue-search")

    page.get_by_role("link", name=entry.name_zh, exact=True).click()
    page.wait_for_url(f"**/portal/catalogue/{entry.resource}")
    fields = page.get_by_role("table", name="数据项")
    for f in entry.fields:
        assert fields.get_by_role("rowheader", name=f.label_zh, exact=True).count() == 1
    assert "需申请并经审核" in page.inner_text("main")  # no sample of conditional data
    assert_accessible(page)
    shot(page, "portal-dataset")

    # -- the form: errors named in Chinese, then a request for every field
    page.get_by_role("link", name="申请使用").click()
    page.wait_for_url("**/portal/requests/new?resource=*")
    assert_accessible(page)
    page.get_by_role("button", name="提交申请").click()
    alert = page.get_by_role("alert")
    assert "用途：请填写用途" in alert.inner_text()
    assert "法律依据或履职事项：请填写法律依据或履职事项" in alert.inner_text()
    assert page.get_by_label("用途（必填）").get_attribute("aria-invalid") == "true"
    assert_accessible(page)
    shot(page, "portal-request-form-errors")
    page.get_by_label("条件字段").select_option(entry.fields[0].name)
    page.get_by_label("条件", exact=True).select_option("not_null")
    page.get_by_label("用途（必填）").fill("核实辖区老人补贴发放情况")
    page.get_by_label("法律依据或履职事项（必填）").fill("街道民生保障履职事项清单第3项")
    page.get_by_role("button", name="提交申请").click()
    page.wait_for_url("**/portal/requests?msg=*")
    assert "申请已提交" in page.get_by_role("status").inner_text()
    [mine] = [r for r in _my_requests(service, requester) if r["resource"] == entry.resource]
    assert mine["status"] == "pending" and set(mine["columns"]) == {f.name for f in entry.fields}
    assert mine["row_filter"] == {"field": entry.fields[0].name, "op": "not_null"}
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=mine["id"]))
    assert "待审核" in row.inner_text()
    assert_accessible(page)
    shot(page, "portal-my-requests-pending")

    # -- the requester is not a reviewer
    page.goto(f"{portal.url}/reviews/{mine['id']}")
    assert "需要以下角色之一" in page.inner_text("main")

    # -- the first reviewer, in a browser of their own, sees what the requester would see
    ctx1 = guarded_context(browser, outside)
    p1 = ctx1.new_page()
    portal.sign_in(p1, first, "/reviews")
    queued = p1.get_by_role("row").filter(has=p1.get_by_role("link", name=mine["id"]))
    assert "待您审核" in queued.inner_text()
    assert_accessible(p1)
    shot(p1, "portal-review-queue")
    p1.get_by_role("link", name=mine["id"]).click()
    terms = p1.get_by_role("table", name="申请字段及授权后的脱敏方式（申请人看到的样子）")
    masking = grants.default_masking(service.catalogue, entry.resource)
    for name in _sensitive(entry):
        shown = terms.get_by_role("row").filter(has_text=name).inner_text()
        assert MASKING_ZH[masking[name]] in shown and masking[name] != MaskingRule.none.value
    assert "不为空" in p1.inner_text("main")  # the row scope in words
    assert_accessible(p1)
    shot(p1, "portal-review")
    p1.get_by_role("button", name="不予批准").click()  # a refusal needs its reason
    assert "不予批准时必须填写理由" in p1.get_by_role("alert").first.inner_text()
    assert _my_requests(service, requester)[0]["status"] == "pending"
    p1.get_by_role("button", name="批准", exact=True).click()
    p1.wait_for_url("**/portal/reviews?msg=*")
    assert "还需另一位审核人批准" in p1.get_by_role("status").inner_text()
    p1.goto(f"{portal.url}/reviews/{mine['id']}")  # one person approves once
    assert p1.get_by_role("button", name="批准", exact=True).count() == 0
    assert "第二次批准须由另一个人完成" in p1.inner_text("main")

    # -- the second reviewer (a data officer of the owner department) completes it
    ctx2 = guarded_context(browser, outside)
    p2 = ctx2.new_page()
    portal.sign_in(p2, second, f"/reviews/{mine['id']}")
    p2.get_by_role("button", name="批准", exact=True).click()
    p2.wait_for_url("**/portal/reviews?msg=*")
    assert "授权已生成" in p2.get_by_role("status").inner_text()
    ctx1.close()
    ctx2.close()

    # -- the requester sees it granted, with its history
    page.goto(f"{portal.url}/requests")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=mine["id"]))
    assert "已授权" in row.inner_text()
    assert row.get_by_role("link", name="查看授权").get_attribute("href") == "/portal/grants"
    page.get_by_role("link", name=mine["id"]).click()
    history = page.get_by_role("table", name="办理记录").inner_text()
    assert first.actor in history and second.actor in history and "已授权" in history
    [done] = _my_requests(service, requester)
    [grant] = [g for g in grants.list_grants(service, asker_org) if g.request_id == done["id"]]
    assert done["grant_id"] == grant.id and grant.masking == {
        c: p for c, p in masking.items() if c in grant.columns
    }
    assert_accessible(page)
    shot(page, "portal-request-granted")

    # -- the keyboard alone: unconditional data, granted at once, then its masked sample
    free = _pick(service, ShareType.unconditional)
    page.goto(f"{portal.url}/catalogue")
    _tab_to(page, "#q")
    page.keyboard.type(free.name_zh)
    page.keyboard.press("Enter")
    page.wait_for_url("**/portal/catalogue?q=*")
    _tab_to(page, f'table.results a[href="/portal/catalogue/{free.resource}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/portal/catalogue/{free.resource}")
    assert "尚未持有本资源的授权" in page.inner_text("main")
    _tab_to(page, "a.button")  # 申请使用
    page.keyboard.press("Enter")
    page.wait_for_url("**/portal/requests/new?resource=*")
    last = free.fields[-1]
    _tab_to(page, f"#col-{last.name}")
    page.keyboard.press("Space")  # one field fewer
    assert not page.is_checked(f"#col-{last.name}")
    _tab_to(page, "#purpose")
    page.keyboard.type("社区网格巡查安排")
    _tab_to(page, "#legal_basis")
    page.keyboard.type("网格化服务管理履职事项")
    _tab_to(page, 'form.request-form button[type="submit"]')
    page.keyboard.press("Enter")
    page.wait_for_url("**/portal/requests?msg=*")
    assert "已授权" in page.get_by_role("status").inner_text()
    [quick] = [r for r in _my_requests(service, requester) if r["resource"] == free.resource]
    assert quick["status"] == "granted" and last.name not in quick["columns"]
    shot(page, "portal-keyboard-granted")

    page.goto(f"{portal.url}/catalogue/{free.resource}")
    sample = page.get_by_role("table", name="样例")
    assert quick["grant_id"] in sample.locator("caption").inner_text()
    [read] = [r for r in _records(service, "data.read") if r.get("grant") == quick["grant_id"]]
    body_rows = sample.locator("tbody tr")
    assert body_rows.count() == read["rows"] > 0
    given = grants.get_grant(service, quick["grant_id"])
    for name in _sensitive(free):
        if name in given.columns:  # sensitive values leave masked, never in clear
            assert given.masking[name] != MaskingRule.none.value
    assert HIDDEN not in page.inner_text("main")
    assert_accessible(page)
    shot(page, "portal-dataset-sample")


def _my_requests(service, who) -> list[dict]:
    return list_requests(service, who.person.principal)


def _entry_of(*fields: tuple[str, str, str]) -> cat.Entry:
    from catalog.consent import ConsentCategory

    return cat.Entry(
        resource="x.y", kind="dataset", resource_code=None, name_zh="样", name_en=None,
        summary="", owner_org="x", provider_zh="部门", share_type=ShareType.conditional,
        share_conditions=None, legal_basis=None, consent_category=next(iter(ConsentCategory)),
        level=Level.L3, update_cycle="daily", grade="general", entity=None,
        fields=tuple(cat.FieldEntry(n, label, kind, "L1", "none") for n, label, kind in fields),
    )  # fmt: skip


def test_the_forms_row_scope_is_a_filter_the_api_accepts():
    """The request form's one condition becomes the API's structured row filter, typed by the
    field's catalogue type (the compiler of share_api.rowfilter accepts it); its errors are
    Chinese; the review page says it in words."""
    entry = _entry_of(
        ("n", "人数", "integer"), ("code", "社区代码", "string"), ("born", "出生日期", "date")
    )
    types = {f.name: f.type for f in entry.fields}
    cases = {
        ("n", "between", "60，80"): {"field": "n", "op": "between", "value": [60, 80]},
        ("code", "in", "110105001、110105002 110105003"): {
            "field": "code", "op": "in", "value": ["110105001", "110105002", "110105003"]},
        ("born", "age_ge", "60"): {"field": "born", "op": "age_ge", "value": 60},
        ("code", "not_null", ""): {"field": "code", "op": "not_null"},
        ("n", "ge", "2.5"): {"field": "n", "op": "ge", "value": 2.5},
    }  # fmt: skip
    for (name, op, value), expected in cases.items():
        made = scope_of({"scope_field": name, "scope_op": op, "scope_value": value}, entry)
        assert made == expected
        assert compile_filter(made, types) is not None
    assert scope_of({"scope_field": ""}, entry) is None
    both = {"and": [cases[("n", "ge", "2.5")], {"not": cases[("code", "not_null", "")]}]}
    assert scope_of({"scope_json": json.dumps(both), "scope_field": "n"}, entry) == both
    assert describe_scope(both, types | {"n": "人数", "code": "社区代码"}) == (
        "（人数 不小于 2.5 并且 并非社区代码不为空）"
    )
    for form, message in [
        ({"scope_field": "n", "scope_op": "between", "scope_value": "60"}, "两个值"),
        ({"scope_field": "n", "scope_op": "eq", "scope_value": "六十"}, "数字"),
        ({"scope_field": "born", "scope_op": "age_lt", "scope_value": "x"}, "整数周岁"),
        ({"scope_field": "zz", "scope_op": "eq", "scope_value": "1"}, "不属于这项资源"),
        ({"scope_json": "{not json"}, "JSON"),
    ]:
        with pytest.raises(ValueError, match=message):
            scope_of(form, entry)
