"""Fixtures of the portal's browser tests: Debian's chromium driven by Playwright, the share
service on a real uvicorn (``server`` of ``tests/share_api/conftest.py``, on a copy of the
session's mart street), people with portal passwords, and checks every page gets.

- ``browser`` (session): chromium headless, through ``executable_path`` (Playwright's own
  browser download is out of reach; ``.ci/run`` installs Debian's ``chromium`` and
  ``fonts-noto-cjk``).
- ``page``: a fresh context and page per test. Every request to a host other than
  127.0.0.1 / localhost is blocked and recorded, and the test fails at teardown if there
  was one: no page may load anything from outside.
- ``portal``: :class:`Portal` — ``portal.person("wjw", "requester")`` makes a person with
  roles and a portal password; ``portal.sign_in(page, person)`` signs in through the form.
- :func:`assert_accessible`: axe-core (vendored, ``vendor/axe.min.js``) run over the page:
  no serious or critical violation. :func:`shot`: a screenshot under ``test-artifacts/``.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from share_api.portal.accounts import set_password
from share_api.service import Service
from tests.share_api.conftest import LiveServer, People, Person

HERE = Path(__file__).parent
AXE = HERE / "vendor" / "axe.min.js"
ARTIFACTS = HERE.parents[2] / "test-artifacts"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
BLOCKING_IMPACTS = ("serious", "critical")


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")  # not the session's: while Playwright's sync API is started,
# its event loop runs in the main thread, so a later test's asyncio.run fails ("cannot be
# called from a running event loop": test_audit_log, test_notebooks) and a second module's
# import of this fixture (test_ui_browser.py) could not start Playwright again
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            # as root (CI) chromium needs --no-sandbox; /dev/shm may be small in containers
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield launched
        launched.close()


@dataclass
class Outside:
    """Requests a page tried to make outside this machine (blocked)."""

    urls: list[str] = field(default_factory=list)


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return (parts.hostname or "") in LOCAL_HOSTS


@pytest.fixture
def outside() -> Outside:
    return Outside()


def guarded_context(browser: Browser, outside: Outside) -> BrowserContext:
    """A browser context of its own (a person's own cookies) whose requests outside this
    machine are blocked and recorded in ``outside``."""
    ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(20_000)

    def guard(route: Route) -> None:
        url = route.request.url
        if is_local(url):
            route.continue_()
        else:
            outside.urls.append(url)
            route.abort()

    ctx.route("**/*", guard)
    return ctx


@pytest.fixture
def context(browser: Browser, outside: Outside) -> Iterator[BrowserContext]:
    """The test's browser context (``guarded_context``): the test fails if any request
    left this machine — in it or in another context made with the same ``outside``."""
    ctx = guarded_context(browser, outside)
    yield ctx
    ctx.close()
    assert not outside.urls, f"pages asked for something outside 127.0.0.1: {outside.urls}"


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@dataclass
class PortalPerson:
    person: Person
    password: str

    @property
    def user_id(self) -> str:
        return self.person.user_id

    @property
    def actor(self) -> str:
        return self.person.actor


@dataclass
class Portal:
    """The live share service with its portal, and who may sign in to it."""

    server: LiveServer
    service: Service
    people: People

    @property
    def url(self) -> str:
        return self.server.url + "/portal"

    def person(
        self, org: str, *roles: str, kind: str = "department", user_id: str | None = None
    ) -> PortalPerson:
        """A new person of ``org`` (made with ``kind`` if missing) with ``roles`` and a
        portal password of their own."""
        made = self.people.make(org, *roles, kind=kind, user_id=user_id)
        password = secrets.token_urlsafe(12)
        set_password(self.service, made.user_id, password, actor="test/admin")
        return PortalPerson(made, password)

    def sign_in(self, page: Page, who: PortalPerson, next_path: str = "/") -> None:
        """Sign in through the form (by keyboard-usable controls only: fill and Enter)."""
        page.goto(f"{self.url}/login?next=/portal{next_path}")
        page.get_by_label("账号").fill(who.user_id)
        page.get_by_label("密码").fill(who.password)
        with page.expect_navigation():
            page.get_by_label("密码").press("Enter")
        assert "/portal/login" not in page.url, "sign-in failed"


@pytest.fixture
def portal(server: LiveServer, service: Service, people: People) -> Portal:
    return Portal(server, service, people)


def axe_violations(page: Page) -> list[dict]:
    """axe-core's violations on the page as it is now (id, impact, help, nodes)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))  # evaluated by the driver: no CSP
    return page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
        }"""
    )


def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core violation on the page."""
    bad = [v for v in axe_violations(page) if v["impact"] in BLOCKING_IMPACTS]
    assert not bad, f"{page.url}: accessibility violations {bad}"


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
