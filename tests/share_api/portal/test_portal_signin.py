"""The portal's sign-in in a real browser: a personal password opens a session (an
HttpOnly cookie holding a short-lived token of the person), a wrong one does not and is
audited, a page without a session redirects to the sign-in page and back, forms without the
session's CSRF value are refused, and signing out revokes the session's token."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from share_api.principals import get_token, tokens
from tests.share_api.portal.conftest import assert_accessible, shot


def _records(service, action: str) -> list[dict]:
    return [r for r in service.audit.log.records() if r["action"] == action]


def test_sign_in_session_and_sign_out(portal, page, context):
    who = portal.person("wjw", "requester", "auditor")
    page.goto(portal.url + "/?tab=1")
    assert "/portal/login?next=/portal/%3Ftab%3D1" in page.url  # no session: sign in first
    assert_accessible(page)
    shot(page, "portal-login")

    page.get_by_label("账号").fill(who.user_id)
    page.get_by_label("密码").fill(who.password + "x")
    page.get_by_role("button", name="登录").click()
    assert page.get_by_role("alert").inner_text().startswith("账号或密码不正确")
    [failed] = [
        r for r in _records(portal.service, "auth.failed") if r.get("reason") == "portal_password"
    ]
    assert who.password not in str(failed)

    page.get_by_label("密码").fill(who.password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/portal/?tab=1")  # back where the person was going
    cookie = next(c for c in context.cookies() if c["name"] == "streethub_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    token_id = cookie["value"].partition(".")[0]
    assert [r["actor"] for r in _records(portal.service, "auth.portal_sign_in")] == [who.actor]
    assert get_token(portal.service, token_id)["label"] == "portal session"
    assert (
        page.get_by_role("navigation", name="主导航").get_by_role("link", name="我的申请").count()
        == 1
    )
    assert (
        page.get_by_role("navigation", name="主导航").get_by_role("link", name="审核队列").count()
        == 0
    )
    assert_accessible(page)

    # a portal page's malformed input is a page naming the field, never the value sent
    invalid = httpx.get(
        portal.url + "/audit?before=x1y2z3",
        cookies={"streethub_session": cookie["value"]},
    )
    assert invalid.status_code == 422 and "text/html" in invalid.headers["content-type"]
    assert "以下输入有误：before" in invalid.text and "x1y2z3" not in invalid.text

    # a form posted without the session's CSRF value is refused
    refused = httpx.post(
        portal.url + "/logout", cookies={"streethub_session": cookie["value"]}, data={}
    )
    assert refused.status_code == 403

    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url("**/portal/login")
    with portal.service.engine.connect() as con:
        revoked = con.execute(
            sa.select(tokens.c.revoked_at).where(tokens.c.id == token_id)
        ).scalar()
    assert revoked is not None
    page.goto(portal.url + "/")
    assert "/portal/login" in page.url  # the old session no longer signs in


def test_guessing_a_password_locks_the_account(portal):
    """Five wrong passwords within the window lock the account: the right one then signs in
    to nothing (audited ``portal_locked``) — another person is not affected."""
    from share_api.portal.web import MAX_FAILURES

    guessed, other = portal.person("wjw", "requester"), portal.person("wjw", "requester")
    with httpx.Client(base_url=portal.url, follow_redirects=False) as client:

        def attempt(who, password: str) -> int:
            form = {"user_id": who.user_id, "password": password, "next": "/portal/"}
            return client.post("/login", data=form).status_code

        assert [attempt(guessed, f"wrong-{i}") for i in range(MAX_FAILURES)] == [401] * 5
        assert attempt(guessed, guessed.password) == 401  # locked, though right
        assert attempt(other, other.password) == 303  # signed in
    reasons = [r["reason"] for r in _records(portal.service, "auth.failed")]
    assert reasons.count("portal_password") == MAX_FAILURES and "portal_locked" in reasons
