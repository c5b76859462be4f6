"""``streethub keys``: the key ring and the master key's custody."""

from __future__ import annotations

import typer

from catalog.settings import get_settings
from pipelines.cli_common import cli_actor, console

keys_app = typer.Typer(help="The key ring: data keys per purpose under a master key.")


@keys_app.command("rotate")
def keys_rotate(
    pseudonyms: bool = typer.Option(
        False,
        "--pseudonyms",
        help="Also new pseudonym keys: every pseudonym changes, and nothing made before "
        "joins with anything made after.",
    ),
) -> None:
    """A new master and new encryption/signing keys; old versions stay readable, no data rewritten."""
    from masking.audit import AuditLog
    from masking.keys import KeyRing

    settings = get_settings().ensure_dirs()
    ring = KeyRing.from_settings(settings)
    versions = ring.rotate(pseudonyms=pseudonyms)
    AuditLog.from_settings(settings, ring).append(
        "keys.rotate", cli_actor(), master_version=ring.master_version, pseudonyms=pseudonyms
    )
    for purpose, version in sorted(versions.items()):
        console.print(f"{purpose}: now version {version}")
    console.print(f"master key version {ring.master_version}; older versions kept for reading")


@keys_app.command("list")
def keys_list() -> None:
    """Purposes and versions in the key ring (never key material)."""
    from masking.keys import KeyRing

    ring = KeyRing.from_settings(get_settings())
    for purpose in ring.purposes():
        versions = ring.versions(purpose)
        console.print(
            f"{purpose}: versions {', '.join(map(str, versions))} (current {max(versions)})"
        )
