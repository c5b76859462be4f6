"""The share service's command line (issue 14 items 8, 9): ``streethub admin init`` makes
the first two administrators once, audited; ``admin token`` replaces a lost token on the
server; ``openapi --check`` compares the committed spec; ``streethub serve`` serves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from catalog.settings import Settings
from pipelines.cli import app
from share_api.principals import authenticate_token, count_admins
from share_api.service import Service

runner = CliRunner()


def opened(settings: Settings) -> Service:
    return Service.open(Settings(home=settings.home))


def test_admin_init_makes_two_administrators_once(share_settings: Settings, tmp_path: Path):
    tokens = tmp_path / "tokens"
    same = runner.invoke(app, ["admin", "init", "--admin", "ann", "--admin", "ann"])
    assert same.exit_code == 1 and "two different" in same.output
    one = runner.invoke(app, ["admin", "init", "--admin", "ann"])
    assert one.exit_code == 1
    made = runner.invoke(
        app,
        ["admin", "init", "--admin", "ann:Ann", "--admin", "bob:Bob", "--token-dir", str(tokens)],
    )
    assert made.exit_code == 0, made.output
    files = sorted(tokens.iterdir())
    assert [f.name for f in files] == ["ann.token", "bob.token"]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    secrets = [f.read_text().strip() for f in files]
    assert not any(s in made.output for s in secrets)  # written, not printed
    again = runner.invoke(app, ["admin", "init", "--admin", "cy", "--admin", "dee"])
    assert again.exit_code == 1 and "once" in again.output
    service = opened(share_settings)
    try:
        principals = [authenticate_token(service, s) for s in secrets]
        assert [(p.user_id, p.org, p.roles) for p in principals] == [
            ("ann", "hub", frozenset({"admin"})),
            ("bob", "hub", frozenset({"admin"})),
        ]
        assert count_admins(service) == 2
        [init] = [r for r in service.audit.log.records() if r["action"] == "admin.init"]
        assert init["users"] == "ann,bob" and init["actor"].startswith("cli:")
        assert not any(s in str(list(service.audit.log.records())) for s in secrets)
    finally:
        service.close()


def test_admin_token_replaces_a_lost_token_on_the_server(share_settings: Settings):
    assert runner.invoke(app, ["admin", "init", "--admin", "ann", "--admin", "bob"]).exit_code == 0
    new = runner.invoke(app, ["admin", "token", "--user", "bob", "--ttl-hours", "1"])
    assert new.exit_code == 0, new.output
    token = next(w for w in new.output.split() if w.startswith("tok-") and "." in w)
    unknown = runner.invoke(app, ["admin", "token", "--user", "nobody"])
    assert unknown.exit_code == 1
    listed = runner.invoke(app, ["admin", "users", "--org", "hub"])
    assert "ann" in listed.output and "admin" in listed.output
    service = opened(share_settings)
    try:
        assert authenticate_token(service, token).user_id == "bob"
        issued = [
            r
            for r in service.audit.log.records()
            if r["action"] == "auth.token_issue" and r["user"] == "bob"
        ]
        assert [r["actor"].startswith("cli:") for r in issued] == [True, True]  # init, token
        issued = issued[-1]
        assert issued["token"] == token.split(".")[0]
    finally:
        service.close()


def test_openapi_check_compares_the_committed_spec():
    answer = runner.invoke(app, ["openapi", "--check"])
    assert answer.exit_code == 0, answer.output


@pytest.mark.parametrize(
    ("proxies", "client"),
    [(None, "127.0.0.1"), ("127.0.0.1", "203.0.113.9")],
    ids=["no-proxy", "behind-a-proxy"],
)
def test_streethub_serve_serves_on_loopback(share_settings: Settings, proxies, client):
    """``streethub serve`` answers on loopback; X-Forwarded-For is believed only from a
    proxy named in share_trusted_proxies (else the alerts' per-source count of failed
    sign-ins could be spread over made-up addresses)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "STREETHUB_HOME": str(share_settings.home)}
    env.pop("STREETHUB_SHARE_TRUSTED_PROXIES", None)
    if proxies:
        env["STREETHUB_SHARE_TRUSTED_PROXIES"] = proxies
    exe = Path(sys.executable).parent / "streethub"
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/me",
                    headers={"X-Forwarded-For": "203.0.113.9"},
                    timeout=5,
                )
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "streethub serve did not start"
                time.sleep(0.2)
        assert answer.status_code == 401
        assert "server" not in answer.headers
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    service = opened(share_settings)
    try:
        failed = [r for r in service.audit.log.records() if r["action"] == "auth.failed"]
        assert failed and failed[-1]["reason"] == "missing"
        assert {r["client"] for r in failed} == {client}
    finally:
        service.close()
