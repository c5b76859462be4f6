"""The API's own documentation in a real browser: ``/docs`` (Swagger UI) and ``/redoc``
render the whole spec from the vendored libraries — no CDN, no Google fonts, no favicon
from FastAPI's site, no validator badge: the ``context`` guard fails the test on any request
outside 127.0.0.1, and the pages' Content-Security-Policy would refuse one before it left
(a refusal shows as a console message: none).

The service here is a fresh home's (the pages need the app's spec, not a street)."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, Request

from catalog.settings import Settings
from share_api.app import create_app, openapi_spec
from share_api.service import Service
from tests.share_api.conftest import LiveServer, serve_in_thread, stop_server
from tests.share_api.portal.conftest import assert_accessible, is_local, shot

METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


@pytest.fixture
def docs_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    home = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    service = Service.open(Settings(home=home))
    live = serve_in_thread(create_app(service=service))
    yield live
    stop_server(live)
    service.close()


def operations() -> int:
    """How many operations the app's spec holds."""
    return sum(len(METHODS & set(ops)) for ops in openapi_spec()["paths"].values())


def watch(page: Page) -> tuple[list[str], list[str]]:
    """Every URL the page asks for, and its console's messages about refused content."""
    asked: list[str] = []
    refused: list[str] = []

    def on_request(request: Request) -> None:
        asked.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            refused.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    return asked, refused


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def referenced_urls(html: str) -> list[str]:
    """The ``src`` and ``href`` of the page's markup."""
    links = _Links()
    links.feed(html)
    return links.urls


@pytest.mark.parametrize(
    ("path", "library", "operation"),
    [
        ("/docs", "/static/vendor/swagger-ui/swagger-ui-bundle.js", ".opblock"),
        ("/redoc", "/redoc/redoc.standalone.js", "[data-section-id^='operation/']"),
    ],
)
def test_api_docs_are_served_from_the_vendored_libraries(
    docs_server: LiveServer, page: Page, path: str, library: str, operation: str
) -> None:
    answer = httpx.get(docs_server.url + path)
    assert answer.status_code == 200
    assert "Content-Security-Policy" in answer.headers
    urls = referenced_urls(answer.text)
    assert library in urls and all(u.startswith("/") for u in urls), urls

    asked, refused = watch(page)
    page.goto(docs_server.url + path)
    blocks = page.locator(operation)
    blocks.first.wait_for()
    page.wait_for_load_state("networkidle")
    assert blocks.count() == operations()  # the whole spec, rendered in the page
    assert page.get_by_text("街道数据共享服务").first.is_visible()
    assert docs_server.url + library in asked
    assert docs_server.url + "/openapi.json" in asked
    assert all(is_local(u) for u in asked), [u for u in asked if not is_local(u)]
    assert refused == []
    assert_accessible(page)
    shot(page, f"api{path.replace('/', '-')}")
