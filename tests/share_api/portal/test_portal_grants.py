"""我的授权 and 反馈与纠错 in a real browser (issue 18's must-show: the requester downloads
the granted file and its content is masked as the grant says; a revoked grant disappears).

A request for a conditional dataset with an L3 field is made and approved twice through the
service's functions; the requester downloads the grant as CSV and Parquet (the same rows,
no clear value of a field the grant hides — checked against the simulator's truth —, the
CSV with a BOM, both reads audited) and a Delta Sharing profile that signs in; rates the
data and files a correction on the feedback page, which the owner department's reviewer
sees and answers; a reviewer of the grantee's department revokes the grant after the
confirmation form (the requester alone is offered no revocation), and it leaves the list.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pyarrow.parquet as pq
from playwright.sync_api import Locator, Page

from catalog.model import Level, MaskingRule
from share_api import grants
from share_api import requests as share_requests
from share_api.catalogue import lookup
from tests.share_api.portal.conftest import assert_accessible, shot
from tests.share_api.test_e2e import HIDING, conditional_with_l3

BOM = "\ufeff"


def _granted(service, people: tuple, resource: str, ds) -> str:
    """A request of every field of ``ds`` by ``asker`` approved by the owner's reviewer and a
    data officer (``people``, in that order): its grant."""
    asker, reviewer, officer = people
    req = share_requests.create_request(
        service, asker.person.principal, resource=resource, columns=[f.name for f in ds.fields],
        purpose="核对辖区对象的服务台账", legal_basis="履职事项：街道基层治理",
    )  # fmt: skip
    share_requests.review(service, reviewer.person.principal, req["id"], "approve")
    done = share_requests.review(service, officer.principal, req["id"], "approve")
    assert done["status"] == "granted" and done["grant_id"], done
    return done["grant_id"]


def _download(page: Page, where: Locator, name: str) -> Path:
    with page.expect_download() as info:
        where.get_by_role("link", name=name).click()
    return Path(info.value.path())


def _sign_out(page: Page) -> None:
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/portal/login")


def _reads(service, grant_id: str) -> list[str]:
    return [
        r["format"]
        for r in service.audit.log.records()
        if r["action"] == "data.read" and r.get("grant") == grant_id
    ]


def test_my_grants_downloads_feedback_and_revoke(portal, page, people, mart_street):
    service = portal.service
    resource, ds, _ = conditional_with_l3(service)
    owner, _, _ = resource.partition(".")
    asker_org = next(c for c in service.catalogue.departments if c != owner)
    asker, owner_reviewer = portal.person(asker_org, "requester"), portal.person(owner, "reviewer")
    officer = people.make("street_office", "data_officer")
    grant_id = _granted(service, (asker, owner_reviewer, officer), resource, ds)
    grant = grants.get_grant(service, grant_id)
    profile = {c: MaskingRule(r) for c, r in grant.masking.items()}
    hidden = [f for f in ds.fields if f.level.sensitive and profile[f.name] in HIDING]
    assert any(f.level is Level.L3 for f in hidden), "the grant hides an L3 field"
    name = lookup(service, resource).name_zh

    # 我的授权: the grant with its terms; a requester alone may not revoke it
    portal.sign_in(page, asker, "/grants")
    section = page.get_by_role("region", name=name)
    assert grant_id in section.inner_text()
    assert section.get_by_role("link", name="撤销授权").count() == 0
    assert_accessible(page)
    shot(page, "portal-grants")

    # the CSV: a BOM, CRLF rows, the grant's columns, no clear value of a hidden field
    raw = _download(page, section, "下载 CSV").read_bytes()
    text = raw.decode("utf-8")
    assert text.startswith(BOM) and "\r\n" in text
    table = list(csv.DictReader(io.StringIO(text[1:], newline="")))
    assert table and list(table[0]) == list(grant.columns)
    # the Parquet: the same rows
    parquet = pq.read_table(_download(page, section, "下载 Parquet")).to_pylist()
    assert len(parquet) == len(table)
    truth = mart_street.truth(*resource.split("."))
    for f in hidden:
        clear = {str(v) for v in truth[f.source_name].drop_nulls().to_list()}
        in_csv = {row[f.name].removeprefix("'") for row in table if row[f.name]}
        in_parquet = {str(row[f.name]) for row in parquet if row[f.name] is not None}
        assert not clear & (in_csv | in_parquet), f"{f.name} carries clear values"
    pseudonymised = next(c for c in grant.columns if profile[c] is MaskingRule.pseudonymise)
    assert sorted(r[pseudonymised] for r in table) == sorted(
        str(r[pseudonymised] or "") for r in parquet
    )
    assert sorted(_reads(service, grant_id)) == ["csv", "parquet"]  # each read audited

    # the Delta Sharing profile: version 1, on this machine, and it signs in
    with page.expect_download() as info:
        page.get_by_role("button", name="下载 Delta Sharing 配置文件").click()
    share = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert share["shareCredentialsVersion"] == 1
    assert share["endpoint"].startswith("http://127.0.0.1:")
    listed = httpx.get(share["endpoint"].rstrip("/") + "/shares",
                       headers={"Authorization": f"Bearer {share['bearerToken']}"})  # fmt: skip
    assert listed.status_code == 200 and listed.json()["items"], listed.text

    # feedback: a rating and a correction on one record, named by its pseudonym
    section.get_by_role("link", name="反馈与纠错").click()
    page.wait_for_url(f"**/portal/feedback?grant={grant_id}")
    page.get_by_label("评分").select_option("4")
    page.get_by_role("button", name="提交评价").click()
    page.wait_for_url("**/portal/feedback?grant=*")
    assert page.get_by_role("table", name="本单位对这项授权的评价").count() == 1
    record = next(r[pseudonymised] for r in table if r[pseudonymised])
    field = hidden[0].name
    # a display-masked value names no one record: refused on the form, with the reason
    shown_masked = next(f.name for f in hidden if profile[f.name] is not MaskingRule.pseudonymise)
    page.get_by_label("用哪个字段指明记录").select_option(shown_masked)
    page.get_by_label("该字段在这条记录中的值").fill(
        next(r[shown_masked] for r in table if r[shown_masked])
    )
    page.get_by_role("button", name="提交纠错申请").click()
    assert "record_column" in page.get_by_role("alert").inner_text()
    page.get_by_label("用哪个字段指明记录").select_option(pseudonymised)
    page.get_by_label("该字段在这条记录中的值").fill(record)
    page.get_by_label("有疑问的字段").select_option(field)
    page.get_by_label("问题类型").select_option("outdated")
    page.get_by_label("说明（选填）").last.fill("该记录已过期，请核实")
    page.get_by_role("button", name="提交纠错申请").click()
    page.wait_for_url("**/portal/feedback?grant=*")
    filed = page.get_by_role("table", name="本单位提出的纠错申请").inner_text()
    assert "数据过期" in filed and "待答复" in filed and field in filed
    assert_accessible(page)
    shot(page, "portal-feedback")
    _sign_out(page)

    # the owner department's reviewer sees it and answers
    portal.sign_in(page, owner_reviewer, "/feedback")
    [correction] = page.locator("section.correction").all()
    assert record in correction.inner_text() and asker_org in correction.inner_text()
    assert_accessible(page)
    correction.get_by_label("接受（将在下次交付中更正）").check()
    correction.get_by_label("答复说明（不予采纳时必填）").fill("已核实，下次交付更正")
    correction.get_by_role("button", name="提交答复").click()
    page.wait_for_url("**/portal/feedback?msg=*")
    assert "已答复" in page.locator("section.correction").inner_text()
    shot(page, "portal-feedback-owner")
    _sign_out(page)

    # a reviewer of the grantee's department revokes it, after confirming
    colleague = portal.person(asker_org, "reviewer")
    portal.sign_in(page, colleague, "/grants")
    page.get_by_role("region", name=name).get_by_role("link", name="撤销授权").click()
    page.wait_for_url(f"**/portal/grants/{grant_id}/revoke")
    assert_accessible(page)
    shot(page, "portal-grant-revoke")
    page.get_by_label("撤销原因（选填，最多 400 字）").fill("项目结束")
    page.get_by_role("button", name="确认撤销").click()
    page.wait_for_url("**/portal/grants?msg=*")
    assert page.get_by_role("region", name=name).count() == 0
    assert grants.get_grant(service, grant_id).status() == "revoked"
    refused = page.goto(f"{portal.url}/grants/{grant_id}/download.csv")
    assert refused is not None and refused.status == 403
    assert_accessible(page)
