"""What every ``streethub`` command group shares: the consoles, the actor, the lake and
catalogue openers that turn a known error into a message and exit 1."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from catalog.errors import CatalogError, StreethubError, shown
from catalog.loader import load_catalogue
from catalog.settings import get_settings

# wide enough for the summary tables when the output is a pipe or a CI log
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def cli_actor() -> str:
    """Who is at the keyboard, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return f"cli:uid{os.getuid()}"


def or_exit(load, path: Path):
    """``load(path)``, or every catalogue problem printed and exit 1."""
    try:
        return load(path)
    except CatalogError as exc:
        err.print(f"[red]{exc}[/red]", markup=True, highlight=False)
        raise typer.Exit(1) from None


@contextlib.contextmanager
def reading_lake(settings, status: str, *also: type[Exception]):
    """The lake opened read-only under a status line; a LakeError (or one of ``also``)
    raised opening or reading it is printed and exits 1."""
    from catalog.errors import LakeError
    from lakehouse.lake import open_lake

    try:
        with console.status(status), open_lake(settings, read_only=True) as con:
            yield con
    except (LakeError, *also) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


def catalogue(directory: Path | None):
    return or_exit(load_catalogue, directory or get_settings().catalog_dir)


@contextlib.contextmanager
def writing_lake(settings, status: str):
    """The lake opened for writing (the writer lock, the ledger ensured) under a status
    line; a StreethubError raised inside is printed and exits 1."""
    from lakehouse.lake import open_lake
    from pipelines.ingest.ledger import ensure_ledger

    try:
        with console.status(status), open_lake(settings) as con:
            ensure_ledger(con)
            yield con
    except StreethubError as exc:
        err.print(Text(shown(str(exc)), style="red"))
        raise typer.Exit(1) from None
