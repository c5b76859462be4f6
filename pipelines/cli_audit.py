"""``streethub audit``: verify, checkpoint and read the audit log; export its public key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from catalog.errors import StreethubError, shown
from catalog.settings import get_settings
from pipelines.cli_common import console, err

audit_app = typer.Typer(
    help="The audit log: hash-chained, MACed, signed checkpoints, witnessed outside the home."
)


def _log(public: bool = False, witness: Path | None = None):
    from masking.audit import AuditLog

    settings = get_settings()
    if not public:
        log = AuditLog.from_settings(settings)
        if witness is not None:
            log.witness_path = witness / log.witness_path.name
        return log
    return AuditLog(settings.audit_dir, None, witness_dir=witness or settings.witness_dir_abs)


def _fail(exc: StreethubError) -> typer.Exit:
    err.print(Text(shown(str(exc)), style="red"))
    return typer.Exit(1)


@audit_app.command("verify")
def audit_verify(
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="Verify with this exported public-key file and no secret: the chain's "
            "structure, every checkpoint signature and the witness, but no MAC (records "
            "after the newest checkpoint are then covered by the chain alone).",
        ),
    ] = None,
    witness: Annotated[
        Path | None,
        typer.Option("--witness", help="The witness folder (default: the setting's)."),
    ] = None,
) -> None:
    """Check the hash chain, every record's MAC, the signed head, every checkpoint's
    signature and the witness; name the first bad record and exit 1 on any problem."""
    from masking.audit import load_public_keys

    try:
        keys = load_public_keys(public_key) if public_key else None
        result = _log(public_key is not None, witness).verify(public_keys=keys)
    except StreethubError as exc:
        raise _fail(exc) from None
    for problem in result.problems:
        err.print(Text(shown(problem), style="red"))
    if not result.ok:
        where = f"first bad record: {result.first_bad:,}" if result.first_bad else "see above"
        err.print(Text(f"audit log does NOT verify ({where})", style="bold red"))
        raise typer.Exit(1)
    seen = (
        f"witness at checkpoint #{result.witnessed.n} (record {result.witnessed.seq:,})"
        if result.witnessed
        else "no checkpoint witnessed yet"
    )
    if result.with_secret:
        console.print(
            f"audit log: {result.records:,} records; hash chain, every MAC, the signed head, "
            f"{result.checkpoints} checkpoint signature(s) and the {seen} verified"
        )
    else:
        console.print(
            f"audit log: {result.records:,} records; hash chain structure, "
            f"{result.checkpoints} checkpoint signature(s) and the {seen} verified with the "
            "public key. Not checked without the MAC key: record MACs and the head, so "
            "records after the newest checkpoint could be rewritten or cut off unseen"
        )


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign a checkpoint of the log's head now, write it to the witness, print its receipt
    (an old-format log is verified and upgraded first)."""
    try:
        cp = _log().checkpoint()
    except StreethubError as exc:
        raise _fail(exc) from None
    console.print(cp.receipt if cp else "the audit log is empty: nothing to sign", soft_wrap=True)


@audit_app.command("export-key")
def audit_export_key(
    out: Annotated[Path, typer.Argument(help="Where to write the public-key file (JSON).")],
) -> None:
    """Write the checkpoint signatures' public keys (every version; no secret) for an
    inspector's `streethub audit verify --public-key FILE`."""
    try:
        n = _log().export_public_keys(out)
    except StreethubError as exc:
        raise _fail(exc) from None
    console.print(f"{n} public verification key(s) written to {out}")


@audit_app.command("tail")
def audit_tail(n: Annotated[int, typer.Option("-n", help="how many records")] = 20) -> None:
    """The newest records: who did what, for which purpose, on which column (never a value)."""
    from masking.audit import AuditLog
    from masking.audit.format import CHAIN_FIELDS

    records = AuditLog.from_settings(get_settings()).records()[-n:]
    table = Table(title="audit log, newest last")
    for col in ("seq", "time (UTC)", "action", "actor", "details"):
        table.add_column(col, justify="right" if col == "seq" else "left")
    skip = {"seq", "ts", "action", "actor"} | CHAIN_FIELDS
    for r in records:
        details = ", ".join(f"{k}={v}" for k, v in sorted(r.items()) if k not in skip)
        table.add_row(str(r["seq"]), str(r["ts"])[:19], r["action"], r["actor"], details)
    console.print(table)
