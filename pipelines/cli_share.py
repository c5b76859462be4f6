"""``streethub serve``, ``streethub openapi`` and ``streethub admin …``: the share service
from the server's own command line.

``admin init`` makes the first two administrators once (audited ``admin.init``); after
that every role is given under the two-person rule through the API. ``admin token``
replaces a person's lost token on the server (audited, the operator at the keyboard named).
A token is shown once: printed, or written to a 0600 file with ``--token-dir``.
``admin set-password`` gives a person their portal password (``/portal``): typed twice at a
hidden prompt, or one line on stdin (``--stdin``) — never an argument, which the shell's
history and the process list would keep.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from catalog.settings import get_settings
from pipelines.cli_common import cli_actor, console, err

if TYPE_CHECKING:
    from share_api.service import Service

admin_app = typer.Typer(help="Administrators, people and tokens of the share service.")

DEFAULT_ADMIN_ORG = "hub"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default share_host, 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (default share_port)")] = None,
) -> None:
    """Serve the share service (FastAPI, uvicorn) until Ctrl-C. Its state lives in
    share_db_url, else SQLite under the home; every call is audited."""
    import uvicorn

    from share_api.app import create_app

    settings = get_settings()
    host = host or settings.share_host
    port = port or settings.share_port
    if not _is_loopback(host):
        err.print(
            f"[yellow]listening on {escape(host)}: put TLS in front of it (tokens travel in "
            "every request)[/yellow]"
        )
    app = create_app(settings, prepare=True)
    console.print(
        f"share service on http://{host}:{port}: portal /portal, API docs /docs and /redoc "
        "(Ctrl-C stops)"
    )
    # no access log: the audit log records every call, and a query string is the caller's.
    # Proxy headers only from the proxies named (share_trusted_proxies): uvicorn believes
    # X-Forwarded-For from 127.0.0.1 by default, so a local caller could name any client
    # address and spread failed sign-ins over made-up sources (the alerts count them per
    # source); behind a proxy, naming it gives each caller's own address back.
    proxies = settings.share_trusted_proxies
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        server_header=False,
    )


def openapi(
    write: Annotated[
        bool, typer.Option("--write", help="write share_api/openapi.json (the committed spec)")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 when the committed spec differs")
    ] = False,
) -> None:
    """The share service's OpenAPI spec: printed, written, or checked against the
    committed one."""
    from share_api.app import SPEC_FILE, openapi_spec, spec_text

    spec = openapi_spec()
    if check:
        committed = json.loads(SPEC_FILE.read_text()) if SPEC_FILE.exists() else None
        if committed != spec:
            err.print(f"[red]{SPEC_FILE} differs from the app's spec: streethub openapi --write")
            raise typer.Exit(1)
        console.print(f"{SPEC_FILE.name} is the app's spec")
        return
    if write:
        SPEC_FILE.write_text(spec_text(spec))
        console.print(f"wrote {SPEC_FILE} ({len(spec.get('paths', {}))} paths)")
        return
    typer.echo(spec_text(spec), nl=False)


def _admin_pair(value: str) -> tuple[str, str]:
    user_id, _, name = value.partition(":")
    return user_id.strip(), (name or user_id).strip()


def _hand_over(issued, token_dir: Path | None) -> None:
    """Show a new token once: a 0600 file under ``token_dir``, else printed."""
    if token_dir is None:
        console.print(
            f"{escape(issued.user_id)}: {escape(issued.token)}  (expires "
            f"{issued.expires_at:%Y-%m-%d %H:%M} UTC; shown once)",
            highlight=False,
        )
        return
    token_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = token_dir / f"{issued.user_id}.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(issued.token + "\n")
    console.print(f"{escape(issued.user_id)}: token {issued.token_id} written to {path}")


TokenDir = Annotated[
    Path | None,
    typer.Option("--token-dir", help="write each token to <dir>/<user>.token (0600), not stdout"),
]
TtlHours = Annotated[
    float | None,
    typer.Option("--ttl-hours", help="the token's life (default share_token_ttl_hours)"),
]


def _open_service():
    from share_api.principals import sync_departments
    from share_api.service import Service

    service = Service.open(get_settings())
    sync_departments(service, actor=cli_actor())
    return service


@contextmanager
def _admin_service(command: str) -> Iterator[Service]:
    """The service for ``admin <command>``, closed after; a refusal (PrincipalError) is
    printed as the command's and exits 1."""
    from share_api.principals import PrincipalError

    service = _open_service()
    try:
        yield service
    except PrincipalError as exc:
        err.print(f"[red]admin {command}: {escape(exc.message)}[/red]")
        raise typer.Exit(1) from None
    finally:
        service.close()


@admin_app.command("init")
def admin_init(
    admins: Annotated[
        list[str],
        typer.Option(
            "--admin", help="user_id[:name] of an administrator; give it twice (two people)"
        ),
    ],
    org: Annotated[
        str, typer.Option(help="their organisation (made if missing: the hub's operators)")
    ] = DEFAULT_ADMIN_ORG,
    org_name: Annotated[
        str | None, typer.Option(help="its name when made (default: <street> 数据中台)")
    ] = None,
    token_dir: TokenDir = None,
    ttl_hours: TtlHours = None,
) -> None:
    """Make the first two administrators, once in the service's life (audited). After
    this a role is given only with a second administrator's approval."""
    from catalog.street import load_street
    from share_api.principals import create_org, get_org, init_admins

    actor = cli_actor()
    with _admin_service("init") as service:
        if get_org(service, org) is None:
            name = org_name or f"{load_street(service.settings.street_file).name}数据中台"
            create_org(service, org, name, "department", actor=actor)
        ttl = dt.timedelta(hours=ttl_hours) if ttl_hours else None
        issued = init_admins(service, org, [_admin_pair(a) for a in admins], actor=actor, ttl=ttl)
    console.print(f"two administrators of {escape(org)} made (audited admin.init)")
    for token in issued:
        _hand_over(token, token_dir)


@admin_app.command("token")
def admin_token(
    user: Annotated[str, typer.Option("--user", help="the person (user id)")],
    token_dir: TokenDir = None,
    ttl_hours: TtlHours = None,
    label: Annotated[str, typer.Option(help="what the token is for")] = "issued on the server",
) -> None:
    """A new token for a person who lost theirs (on the server only; audited with the
    operator's name)."""
    from share_api.principals import issue_token

    with _admin_service("token") as service:
        ttl = dt.timedelta(hours=ttl_hours) if ttl_hours else None
        issued = issue_token(service, user, ttl=ttl, label=label, actor=cli_actor())
    _hand_over(issued, token_dir)


@admin_app.command("set-password")
def admin_set_password(
    user: Annotated[str, typer.Argument(help="the person (user id)")],
    stdin: Annotated[
        bool, typer.Option("--stdin", help="read the password from the first line of stdin")
    ] = False,
) -> None:
    """Set a person's portal password (at least 12 characters; audited
    auth.password_set with the operator's name, never the password)."""
    import sys

    from share_api.portal.accounts import set_password

    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with _admin_service("set-password") as service:
        set_password(service, user, password, actor=cli_actor())
    console.print(f"portal password of {escape(user)} set (audited auth.password_set)")


@admin_app.command("users")
def admin_users(
    org: Annotated[str | None, typer.Option(help="only this organisation's people")] = None,
) -> None:
    """The people of the share service and their roles."""
    from share_api.principals import list_users

    service = _open_service()
    try:
        people = list_users(service, org)
    finally:
        service.close()
    table = Table(title=f"{len(people)} people", box=box.SIMPLE_HEAD)
    for col in ("user", "org", "kind", "name", "roles", "disabled"):
        table.add_column(col)
    for p in people:
        table.add_row(
            escape(p["id"]),
            escape(p["org"]),
            p["org_kind"],
            escape(p["name"]),
            ", ".join(p["roles"]),
            "yes" if p["disabled_at"] else "",
        )
    console.print(table)
