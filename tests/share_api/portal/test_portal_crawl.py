"""Every page of the portal, walked in a real browser by one person who holds every role:
each entry of the navigation (``web.NAV``) answers 200, every link those pages show that
stays under /portal answers neither 404 nor a server error (a few pages of each kind, at
most :data:`MAX_PAGES`), axe-core finds no serious or critical violation on any of them,
no page's own script or style is refused by its Content-Security-Policy, and the
``context`` guard proves nothing left 127.0.0.1.

The person's password is given as an administrator gives it: ``streethub admin
set-password`` (typed twice at a hidden prompt, or on stdin — never an argument). Only data
officers see the link to the Dagster UI."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Page
from typer.testing import CliRunner

from catalog.model import ShareType
from pipelines.cli import app
from share_api import requests as rq
from share_api import worklist
from share_api.deps import ROLES
from share_api.portal.accounts import MIN_LENGTH, check_password
from share_api.portal.web import NAV, PREFIX
from tests.share_api.portal.conftest import PortalPerson, assert_accessible
from tests.share_api.test_requests_http import ASK, another_department, dataset
from tests.share_api.test_worklist import street  # noqa: F401 (the fixture)

MAX_PAGES = 36
PER_KIND = 2  # pages of one kind (the same first segment and depth) visited from links
DOWNLOADS = (".csv", ".parquet", ".json", ".share")
DAGSTER_LINK = "数据运维（Dagster）"

runner = CliRunner()


def set_password_by_cli(user_id: str, password: str) -> None:
    """``streethub admin set-password`` at its prompt: a mistyped confirmation is asked
    again; the password is never echoed."""
    typed = f"{password}\n{password}x\n{password}\n{password}\n"
    done = runner.invoke(app, ["admin", "set-password", user_id], input=typed)
    assert done.exit_code == 0, done.output
    assert password not in done.output


def kind_of(path: str) -> tuple[str, int]:
    parts = path.rstrip("/").split("/")
    return (parts[2] if len(parts) > 2 else "", len(parts))


def portal_links(page: Page, origin: str) -> list[str]:
    """The page's links that stay under /portal (no downloads, no flash messages)."""
    found = []
    for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)"):
        parts = urlsplit(href)
        if f"{parts.scheme}://{parts.netloc}" != origin or not parts.path.startswith(PREFIX):
            continue
        if parts.path.endswith(DOWNLOADS) or "msg=" in parts.query:
            continue
        found.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


def test_every_page_of_the_portal_for_a_person_with_every_role(street, portal, page):  # noqa: F811
    service = portal.service
    community, ours, _ = street  # residents of a community on the elderly alert
    # of the department owning a conditional dataset, which another one asks for: a review
    # waits for the person; their own request of another department's open data is granted
    resource, field, _ = dataset(service, ShareType.conditional)
    owner = resource.split(".")[0]
    everyone = portal.people.make(owner, *ROLES)
    worklist.assign_community(service, everyone.user_id, community, actor="test/admin")
    asker = portal.people.make(another_department(service, resource), "requester")
    rq.create_request(service, asker.principal, resource=resource, columns=[field], **ASK)
    dept, open_ds = next(
        (d, o)
        for d, o in service.catalogue.datasets()
        if o.share_type is ShareType.unconditional and d.code != owner
    )
    columns = [f.name for f in open_ds.fields[:2]]
    mine = rq.create_request(
        service, everyone.principal, resource=f"{dept.code}.{open_ds.code}", columns=columns, **ASK
    )

    short = runner.invoke(
        app, ["admin", "set-password", everyone.user_id, "--stdin"], input="x" * (MIN_LENGTH - 1)
    )
    assert short.exit_code == 1 and f"at least {MIN_LENGTH}" in short.output
    password = "门户密码-" + everyone.user_id[-8:] + "-2026"
    set_password_by_cli(everyone.user_id, password)
    assert check_password(service, everyone.user_id, password)
    [record] = [r for r in service.audit.log.records() if r["action"] == "auth.password_set"]
    assert record["user"] == everyone.user_id and record["actor"].startswith("cli:")
    assert password not in str(record)

    refused: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    portal.sign_in(page, PortalPerson(everyone, password), "/")
    nav = page.get_by_role("navigation", name="主导航")
    dagster = nav.get_by_role("link", name=DAGSTER_LINK)
    assert dagster.get_attribute("href") == service.settings.dagster_ui_url

    origin = portal.server.url
    navigation = [PREFIX + item.path for item in NAV]
    queue = list(navigation)
    seen = set(queue)
    kinds: dict[tuple[str, int], int] = {}
    visited: dict[str, int] = {}
    while queue and len(visited) < MAX_PAGES:
        path = queue.pop(0)
        answer = page.goto(origin + path)
        assert answer is not None
        visited[path] = answer.status
        if path in navigation:
            assert answer.status == 200, f"{path}: {answer.status} (a navigation entry)"
        assert answer.status != 404 and answer.status < 500, f"{path}: {answer.status}"
        if answer.status != 200:
            continue
        assert "/portal/login" not in page.url, f"{path}: signed out"
        assert_accessible(page)
        for link in portal_links(page, origin):
            kind = kind_of(urlsplit(link).path)
            if link in seen or kinds.get(kind, 0) >= PER_KIND:
                continue
            seen.add(link)
            kinds[kind] = kinds.get(kind, 0) + 1
            queue.append(link)
    assert set(navigation) <= set(visited)
    assert f"{PREFIX}/requests/{mine['id']}" in visited
    assert f"{PREFIX}/worklist/{ours[0]}" in visited
    assert len(visited) > len(navigation), visited  # the pages' own links were followed too
    assert refused == []

    # a person without the data officer's role gets no link to the Dagster UI
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/portal/login")
    requester = portal.person("wjw", "requester")
    portal.sign_in(page, requester, "/")
    assert page.get_by_role("link", name=DAGSTER_LINK).count() == 0
