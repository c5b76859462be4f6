"""The API's own documentation, ``/docs`` (Swagger UI) and ``/redoc`` (Redoc), served from
the vendored copies under ``static/vendor/`` (``VENDORED.md``) — FastAPI's defaults load
both from a CDN, its favicon from its own site and Redoc's fonts from Google, so the app
turns them off (``docs_url=None, redoc_url=None``) and these routes serve them instead.

Both pages answer with a Content-Security-Policy that lets them reach nothing but the
service: should a library ever try (a validator badge, fonts, usage data), the browser
refuses before anything leaves. Swagger UI's online validator is off
(``validatorUrl: null``), and so are its deep links (an ``<a>`` inside each operation's
button: nested controls a keyboard or screen reader cannot tell apart); the page's language
is set and ``static/docs.css`` darkens what was too light to read. Redoc 2.5.4 draws the Redocly logo of its menu from
``cdn.redoc.ly`` whatever its options say: ``/redoc`` loads the vendored bundle (kept as
published, hashes in ``VENDORED.md``) through :func:`redoc_bundle`, which swaps that one
address for an empty local image. Neither page is in the spec.
"""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from share_api.portal import STATIC_DIR

VENDOR = "/static/vendor"
FAVICON = f"{VENDOR}/swagger-ui/favicon-32x32.png"
REDOC_FILE = STATIC_DIR / "vendor" / "redoc" / "redoc.standalone.js"
REDOC_URL = "/redoc/redoc.standalone.js"
# the one address outside the service the bundle loads by itself (its menu's logo)
REDOC_LOGO = 'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"'
EMPTY_IMAGE = "src:\"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E\""

# the two generated pages carry one small inline script (Swagger UI's start) and inline
# styles; everything they fetch — scripts, the spec, images, Redoc's worker — is ours
DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


def _title(request: Request) -> str:
    return request.app.title


def _spec_url(request: Request) -> str:
    return request.app.openapi_url or "/openapi.json"


def _finished(page: HTMLResponse, head: str = "") -> HTMLResponse:
    """FastAPI's generated page with its language (Chinese, as the spec's text) and
    ``head`` added, answered with :data:`DOCS_HEADERS`."""
    html = bytes(page.body).decode("utf-8")
    html = html.replace("<html>", '<html lang="zh-CN">', 1).replace("</head>", head + "</head>", 1)
    return HTMLResponse(html, headers=DOCS_HEADERS)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """The spec in Swagger UI (swagger-ui-dist, vendored)."""
    page = get_swagger_ui_html(
        openapi_url=_spec_url(request),
        title=f"{_title(request)} — Swagger UI",
        swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=FAVICON,
        swagger_ui_parameters={"validatorUrl": None, "deepLinking": False},
    )
    return _finished(page, '<link rel="stylesheet" href="/static/docs.css">')


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """The spec in Redoc (2.x, vendored; no Google fonts)."""
    page = get_redoc_html(
        openapi_url=_spec_url(request),
        title=f"{_title(request)} — ReDoc",
        redoc_js_url=REDOC_URL,
        redoc_favicon_url=FAVICON,
        with_google_fonts=False,
    )
    return _finished(page)


@cache
def redoc_bundle() -> bytes:
    """The vendored Redoc bundle with its menu's logo taken from no one (the address must
    be there exactly once: a new version that moved it is noticed, not served as is)."""
    text = REDOC_FILE.read_text(encoding="utf-8")
    if text.count(REDOC_LOGO) != 1:
        raise RuntimeError(f"{REDOC_FILE.name}: the Redocly logo's address is not where it was")
    return text.replace(REDOC_LOGO, EMPTY_IMAGE).encode("utf-8")


@router.get(REDOC_URL)
def redoc_script() -> Response:
    return Response(
        redoc_bundle(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
