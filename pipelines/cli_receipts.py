"""``streethub audit receipt FILE --public-key KEY``: check a share-service read receipt
(``GET /audit/receipts/{seq}``) with the exported public key alone — what a grantee or an
inspector runs, holding no secret of the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from catalog.errors import StreethubError, shown
from pipelines.cli_common import console, err


def audit_receipt(
    receipt: Annotated[Path, typer.Argument(help="The receipt (JSON) the share service gave.")],
    public_key: Annotated[
        Path,
        typer.Option(
            "--public-key",
            help="The exported public-key file (`streethub audit export-key`, or the "
            "service's GET /audit/public-key saved).",
        ),
    ],
) -> None:
    """Check a read receipt: the record matches its hash and the audit log's key signed
    it. Exit 1 naming what is wrong."""
    from masking.audit import load_public_keys, verify_receipt

    try:
        keys = load_public_keys(public_key)
    except StreethubError as exc:
        err.print(Text(shown(str(exc)), style="red"))
        raise typer.Exit(1) from None
    try:
        doc = json.loads(receipt.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        err.print(Text(f"{receipt.name} is not a readable receipt", style="red"))
        raise typer.Exit(1) from None
    problems = verify_receipt(doc, keys)
    record = doc.get("record") if isinstance(doc, dict) else None
    seq = record.get("seq") if isinstance(record, dict) else None
    if problems:
        for problem in problems:
            err.print(Text(problem, style="red"))
        err.print(Text(f"receipt of audit record {seq} does NOT verify", style="bold red"))
        raise typer.Exit(1)
    console.print(
        f"receipt of audit record {seq:,} ({record.get('action')} by {record.get('actor')} "
        f"at {str(record.get('ts'))[:19]}Z) verifies: signed by {doc['alg']} key "
        f"{doc['key_id']} v{doc['kv']}"
    )
