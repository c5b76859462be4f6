"""``streethub audit``: verify and read the tamper-evident audit log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from catalog.settings import get_settings
from pipelines.cli_common import console, err

audit_app = typer.Typer(help="The audit log: hash-chained, signed, append-only.")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check every record's hash chain and signature, and the head; exit 1 on any problem."""
    from masking.audit import AuditLog

    log = AuditLog.from_settings(get_settings())
    result = log.verify()
    for problem in result.problems:
        err.print(f"[red]{problem}[/red]", highlight=False)
    if not result.ok:
        raise typer.Exit(1)
    console.print(f"audit log: {result.records:,} records, hash chain and signatures verified")


@audit_app.command("tail")
def audit_tail(n: Annotated[int, typer.Option("-n", help="how many records")] = 20) -> None:
    """The newest records: who did what, for which purpose, on which column (never a value)."""
    from masking.audit import AuditLog

    records = AuditLog.from_settings(get_settings()).records()[-n:]
    table = Table(title="audit log, newest last")
    for col in ("seq", "time (UTC)", "action", "actor", "details"):
        table.add_column(col, justify="right" if col == "seq" else "left")
    skip = {"seq", "ts", "action", "actor", "prev", "hash", "sig", "kv"}
    for r in records:
        details = ", ".join(f"{k}={v}" for k, v in sorted(r.items()) if k not in skip)
        table.add_row(str(r["seq"]), str(r["ts"])[:19], r["action"], r["actor"], details)
    console.print(table)
