"""``streethub analyst NAME`` and ``streethub notebook [NAME]``: an analysts' team's
database, and JupyterLab over a copy of it (``share_api.analysts``)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from catalog.settings import Settings, get_settings
from pipelines.cli_common import cli_actor, console, err

START_TIMEOUT_S = 120.0  # how long the notebook server may take to answer


def _ensure(settings: Settings, name: str, snapshot: int | None, out: Path | None):
    """The analyst's database built or found current, said so; errors exit 1."""
    from share_api.analysts.build import AnalystError, ensure_analyst_db

    try:
        with console.status(f"analyst database of {name}"):
            built = ensure_analyst_db(settings, name, snapshot=snapshot, out=out, actor=cli_actor())
    except AnalystError as exc:
        err.print(Text(str(exc), style="red"))
        raise typer.Exit(1) from None
    if built.rebuilt:
        console.print(f"built {built.path} as of lake snapshot {built.snapshot}")
    else:
        console.print(
            f"up to date: {built.path} (lake snapshot {built.snapshot}): no grant, opt-out "
            "or granted mart changed since its build"
        )
    return built


def _print_tables(path: Path) -> None:
    """The file's tables: rows and the catalogue's name of each."""
    from share_api.analysts.lock import open_locked

    con = open_locked(path)
    try:
        found = con.execute(
            "SELECT table_name, estimated_size, comment FROM duckdb_tables() "
            "WHERE NOT internal ORDER BY table_name"
        ).fetchall()
    finally:
        con.close()
    table = Table(title="tables")
    for col in ("table", "rows", "about"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for name, rows, comment in found:
        table.add_row(name, f"{rows:,}", Text((comment or "").partition("：")[0]))
    console.print(table)


def analyst(
    name: Annotated[str, typer.Argument(help="the analysts' organisation (kind analyst)")],
    snapshot: Annotated[int | None, typer.Option(help="as of this lake snapshot")] = None,
    out: Annotated[Path | None, typer.Option(help="default: <analyst_dir>/NAME.duckdb")] = None,
) -> None:
    """Build (or refresh) an analysts' team's database: its grants on published marts,
    each through its grant's view (masked, its own pseudonyms, opt-outs left out), with
    the catalogue's comments; rebuilt only when a grant, an opt-out or a mart changed."""
    built = _ensure(get_settings(), name, snapshot, out)
    _print_tables(built.path)


def _the_analyst(settings: Settings) -> str:
    """The only analysts' organisation (exit 1 naming them when there are several)."""
    from share_api.analysts.build import ANALYST_KIND
    from share_api.principals import list_orgs
    from share_api.service import Service

    svc = Service.open(settings)
    try:
        codes = [o["code"] for o in list_orgs(svc) if o["kind"] == ANALYST_KIND]
    finally:
        svc.close()
    if len(codes) != 1:
        err.print(f"[red]name the analysts' organisation: {', '.join(codes) or 'none made'}[/red]")
        raise typer.Exit(1)
    return codes[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notebook(
    name: Annotated[
        str | None, typer.Argument(help="the analysts' organisation (default: the only one)")
    ] = None,
    snapshot: Annotated[int | None, typer.Option(help="as of this lake snapshot")] = None,
) -> None:
    """JupyterLab on 127.0.0.1 over a copy of the analyst's database, in a workspace
    outside the home (notebook_dir); kernels start with a cleaned environment, JupySQL
    connected (%%sql) to the database opened read-only and locked."""
    from share_api.analysts.notebook import lab_command, prepare_workspace, server_info

    settings = get_settings()
    root = settings.notebook_dir_abs
    if root.is_relative_to(settings.home_abs) or settings.home_abs.is_relative_to(root):
        err.print("[red]notebook_dir must be outside the home (a kernel runs any code)[/red]")
        raise typer.Exit(1)
    name = name or _the_analyst(settings)
    built = _ensure(settings, name, snapshot, None)
    ws = prepare_workspace(root, name, built.path, port=settings.notebook_port or _free_port(),
                           share_url=f"http://{settings.share_host}:{settings.share_port}")  # fmt: skip
    console.print(f"workspace {ws.root} (database copied to {ws.db})")
    lab = subprocess.Popen(lab_command(), env=ws.env, cwd=ws.notebooks)

    def stop(signum, _frame) -> None:  # the server stops cleanly on SIGTERM
        lab.send_signal(signal.SIGTERM)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    deadline = time.monotonic() + START_TIMEOUT_S
    info = None
    while info is None and lab.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        info = server_info(ws, lab.pid)
    if info is not None:
        console.print(f"JupyterLab: {info['url']}lab?token={info['token']}")
    code = lab.wait()
    raise typer.Exit(code if code > 0 else 0)
