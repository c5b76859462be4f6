"""The portal's session, forms and layout.

**Sign-in** (``/portal/login``): a person's id and portal password
(:mod:`share_api.portal.accounts`). A good one issues the person a token of
``portal_session_hours`` (the same tokens as the API: revocable, expiring, audited), kept
in the ``streethub_session`` cookie (HttpOnly, SameSite=Strict, Secure when
``portal_secure_cookie``); signing out revokes it. Each page signs its request in with
that token as the API signs a bearer token in (``auth.ok`` / ``auth.failed`` audited); a
page without a good session redirects to the sign-in page.

**Forms**: every POST carries ``csrf``, an HMAC of the session's secret (another site can
neither read the cookie nor compute it) — :func:`form_of` checks it.

**Layout**: :func:`render` fills ``templates/base.html``: the signed-in person, the
navigation their roles open (:data:`NAV`), a flash message, and the page. Chinese text,
large type, high contrast, a skip link, visible focus.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from catalog.days import BEIJING
from share_api import principals as pr
from share_api.db import aware, utc_now
from share_api.deps import Principal, ServiceDep
from share_api.portal.accounts import check_password
from share_api.service import Service

log = logging.getLogger("streethub.portal")

COOKIE = "streethub_session"
PREFIX = "/portal"
TEMPLATES_DIR = Path(__file__).with_name("templates")
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@dataclass(frozen=True)
class NavItem:
    path: str  # under /portal
    label: str  # Chinese
    roles: tuple[str, ...]  # who sees it (empty: everyone signed in)


# the portal's navigation, in order; a page module owns the path it serves
NAV: tuple[NavItem, ...] = (
    NavItem("/", "待办事项", ()),
    NavItem("/catalogue", "数据目录", ()),
    NavItem("/requests", "我的申请", ("requester",)),
    NavItem("/reviews", "审核队列", ("reviewer",)),
    NavItem("/grants", "我的授权", ("requester",)),
    NavItem("/feedback", "反馈与纠错", ()),
    NavItem("/worklist", "走访清单", ("community_worker",)),
    NavItem("/consent", "居民授权登记", ("community_worker",)),
    NavItem("/dashboards", "治理看板", ("leader", "data_officer", "auditor", "admin")),
    NavItem("/audit", "审计日志", ("auditor",)),
)

ROLE_LABELS_ZH = {
    "requester": "申请人",
    "reviewer": "审核人",
    "data_officer": "数据专员",
    "auditor": "审计员",
    "admin": "管理员",
    "community_worker": "社区工作者",
    "leader": "街道领导",
}


# every page: scripts and styles only from the service itself (no inline script: a page's
# data for its charts travels in <script type="application/json">, which never runs);
# ECharts' SVG sets inline style attributes, hence 'unsafe-inline' for styles only
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No good session: the page redirects to the sign-in page, then back."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path


def _secret_of(token: str) -> str:
    return token.partition(".")[2]


def csrf_token(token: str) -> str:
    """The CSRF value of the session ``token`` (an HMAC of its secret: only its holder, the
    browser with the HttpOnly cookie and the page the service rendered, knows it)."""
    return hmac.new(
        _secret_of(token).encode(), b"streethub-portal-csrf", hashlib.sha256
    ).hexdigest()


def _safe_next(path: str | None) -> str:
    """Where to go after signing in: only a path of the portal (no open redirect)."""
    if not path or not path.startswith(PREFIX) or path.startswith("//"):
        return PREFIX + "/"
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return PREFIX + "/"
    return path


def portal_principal(request: Request, service: ServiceDep) -> Principal:
    """The signed-in person of a portal page (by the session cookie), audited as the API
    audits a bearer token; :class:`SignInRequired` without a good session."""
    known = getattr(request.state, "principal", None)
    if known is not None:
        return known
    token = request.cookies.get(COOKIE)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not token:
        raise SignInRequired(target)
    try:
        principal = pr.sign_in_request(service, request, token)
    except pr.AuthFailure:
        raise SignInRequired(target) from None
    request.state.session_token = token
    return principal


PortalUser = Annotated[Principal, Depends(portal_principal)]


def needs(*roles: str):
    """A dependency: the signed-in person, who must hold one of ``roles`` (403 page,
    audited ``auth.forbidden``, otherwise)."""

    def _check(request: Request, principal: PortalUser, service: ServiceDep) -> Principal:
        if not principal.has(*roles):
            service.audit.record(
                "auth.forbidden",
                principal.actor,
                path=request.url.path,
                method=request.method,
                needs=",".join(roles),
            )
            request.state.refusal_audited = True
            raise HTTPException(
                403,
                "这个页面需要以下角色之一：" + "、".join(ROLE_LABELS_ZH.get(r, r) for r in roles),
            )
        return principal

    return _check


async def form_of(request: Request) -> FormData:
    """The POSTed form, its ``csrf`` checked against the session (403 otherwise)."""
    form = await request.form()
    token = getattr(request.state, "session_token", None) or request.cookies.get(COOKIE, "")
    sent = form.get("csrf")
    if not token or not isinstance(sent, str) or not hmac.compare_digest(sent, csrf_token(token)):
        raise HTTPException(403, "表单已失效，请刷新页面后重试（CSRF 校验未通过）")
    return form


def moment(value: Any) -> dt.datetime | None:
    """A time as the services give it (an aware or naive-UTC datetime, or ISO text) as an
    aware datetime; None for none or what is not a time."""
    if isinstance(value, str) and value:
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return aware(value) if isinstance(value, dt.datetime) else None


def local_time(value: Any) -> str:
    """A time (datetime or ISO text) as Beijing time ``YYYY-MM-DD HH:MM`` ('' for none)."""
    when = moment(value)
    return when.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if when else ""


def nav_for(principal: Principal | None) -> list[NavItem]:
    if principal is None:
        return []
    return [item for item in NAV if not item.roles or principal.has(*item.roles)]


def render(
    request: Request,
    template: str,
    principal: Principal | None = None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``template`` in the portal's layout, for ``principal`` (None: the sign-in page)."""
    service: Service = request.app.state.service
    token = getattr(request.state, "session_token", None)
    user = None
    if principal is not None:
        person = pr.get_user(service, principal.user_id)
        org = pr.get_org(service, principal.org)
        user = {
            "id": principal.user_id,
            "name": person["name"] if person else principal.user_id,
            "org": principal.org,
            "org_name": org["name"] if org else principal.org,
            "roles": [ROLE_LABELS_ZH.get(r, r) for r in sorted(principal.roles)],
        }
    ctx = {
        "user": user,
        "principal": principal,
        "nav": nav_for(principal),
        "current": request.url.path,
        "prefix": PREFIX,
        "csrf": csrf_token(token) if token else "",
        "flash": request.query_params.get("msg"),
        "dagster_ui_url": (
            service.settings.dagster_ui_url
            if principal is not None and principal.has("data_officer")
            else None
        ),
        **context,
    }
    response = templates.TemplateResponse(request, template, ctx, status_code=status_code)
    response.headers.update(PAGE_HEADERS)
    return response


def redirect(path: str, message: str | None = None) -> RedirectResponse:
    """303 to a portal ``path`` (after a POST), with a flash ``message``."""
    target = PREFIX + path
    if message:
        target += ("&" if "?" in target else "?") + "msg=" + quote(message)
    return RedirectResponse(target, status_code=303)


# -- sign-in ---------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request, service: ServiceDep) -> Response:
    form = await request.form()
    user_id = str(form.get("user_id") or "").strip()
    password = str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or ""))
    ok = await run_in_threadpool(_sign_in, service, request, user_id, password)
    if ok is None:
        request.state.refusal_audited = True  # auth.failed is its record
        return render(
            request,
            "login.html",
            next=target,
            error=f"账号或密码不正确，或账号已停用。连续输错{MAX_FAILURES}次，账号将锁定{LOCK_MINUTES}分钟。",
            user_id=user_id if pr.USER_RE.fullmatch(user_id) else "",
            status_code=401,
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        ok.token,
        max_age=int(service.settings.portal_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=service.settings.portal_secure_cookie,
        path="/",
    )
    return response


# guessing passwords: after MAX_FAILURES wrong ones for an account within LOCK_WINDOW, the
# account signs in to nothing (right password or not) until the oldest of them is that old
MAX_FAILURES = 5
LOCK_MINUTES = 15
LOCK_WINDOW = dt.timedelta(minutes=LOCK_MINUTES)


def _recent_failures(service: Service, account: str, now: dt.datetime) -> list[dt.datetime]:
    """The account's wrong passwords within :data:`LOCK_WINDOW` (kept per process)."""
    failures = service.kept("portal.sign_in_failures", dict)
    kept = [t for t in failures.get(account, ()) if now - t < LOCK_WINDOW]
    failures[account] = kept
    return kept


def _sign_in(service: Service, request: Request, user_id: str, password: str):
    """A session token for ``user_id`` if the password is theirs and they may sign in;
    audited either way (``auth.portal_sign_in`` / ``auth.failed``), never the password.
    An account with :data:`MAX_FAILURES` wrong passwords in :data:`LOCK_WINDOW` is locked
    for the rest of it (``auth.failed`` reason ``portal_locked``)."""
    known = bool(pr.USER_RE.fullmatch(user_id))
    account = user_id if known else ""
    now = utc_now()
    failures = _recent_failures(service, account, now)
    locked = len(failures) >= MAX_FAILURES
    good = check_password(service, account, password) and known and not locked
    person = pr.get_user(service, user_id) if good else None
    if person is None or person.get("disabled_at"):
        if not locked and known:
            failures.append(now)
        service.audit.record(
            "auth.failed",
            pr.ANONYMOUS,
            reason="portal_locked" if locked else "portal_password",
            client=pr.client_of(request),
            method=request.method,
            path=request.url.path,
        )
        return None
    failures.clear()
    issued = pr.issue_token(
        service,
        user_id,
        ttl=dt.timedelta(hours=service.settings.portal_session_hours),
        label="portal session",
        actor=f"{person['org']}/{user_id}",
    )
    service.audit.record(
        "auth.portal_sign_in",
        f"{person['org']}/{user_id}",
        token=issued.token_id,
        client=pr.client_of(request),
    )
    return issued


@router.post("/logout")
async def logout(request: Request, service: ServiceDep, principal: PortalUser) -> Response:
    await form_of(request)
    await run_in_threadpool(pr.revoke_token, service, principal.token_id, actor=principal.actor)
    response = RedirectResponse(PREFIX + "/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- errors as pages -----------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """The portal's handlers on ``app``: a page without a session goes to the sign-in page;
    an HTTP error of a portal page is shown as a page (the API keeps its JSON)."""
    from fastapi.exception_handlers import http_exception_handler
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def _sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return RedirectResponse(f"{PREFIX}/login?next={quote(exc.next_path)}", status_code=303)

    def _portal_page(request: Request) -> bool:
        return request.url.path.startswith(PREFIX + "/") or request.url.path == PREFIX

    def _error_page(request: Request, status: int, detail: str) -> Response:
        principal = getattr(request.state, "principal", None)
        return render(
            request, "error.html", principal, status_code=status, status=status, detail=detail
        )

    async def _http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not _portal_page(request):
            return await http_exception_handler(request, exc)
        detail = exc.detail if isinstance(exc.detail, str) else "请求有误"
        return _error_page(request, exc.status_code, detail)

    api_invalid = app.exception_handlers.get(RequestValidationError)

    async def _invalid(request: Request, exc: Exception) -> Response:
        """A portal page's malformed input as a page naming the fields (never the values);
        the API keeps its own 422 JSON."""
        if not _portal_page(request) and api_invalid is not None:
            return await api_invalid(request, exc)
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        where = "、".join(str(e.get("loc", ("?",))[-1]) for e in errors if e.get("loc")) or "输入"
        return _error_page(request, 422, f"以下输入有误：{where}")

    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)


@router.get("")
def portal_root() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=307)
