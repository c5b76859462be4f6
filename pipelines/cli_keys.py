"""``streethub keys``: the key ring and the master key's custody.

The master key lives with the key provider (``STREETHUB_KEY_PROVIDER``: env, file,
pkcs11; auto = env when ``STREETHUB_MASTER_KEY`` is set, else the key file outside the
home). ``rotate`` works with every provider; ``backup`` and ``restore`` cut the master key
into 2-of-3 shares and put it back into an empty key store.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from catalog.settings import get_settings
from pipelines.cli_common import cli_actor, console, err

keys_app = typer.Typer(help="The key ring: data keys per purpose under a master key.")


@contextlib.contextmanager
def _key_errors() -> Iterator[None]:
    """A key-ring or audit problem printed (it never carries key material) and exit 1."""
    from masking.errors import MaskingError

    try:
        yield
    except MaskingError as exc:
        err.print(Text(str(exc), style="red"))
        raise typer.Exit(1) from None


def _ring(settings):
    from masking.keys import KeyRing

    return KeyRing.from_settings(settings)


def _audit(settings, ring, action: str, **details) -> None:
    from masking.audit import AuditLog

    AuditLog.from_settings(settings, ring).append(action, cli_actor(), **details)


RequestOption = Annotated[
    str | None,
    typer.Option(
        "--request",
        help="The admin operation two administrators approved (POST /admin/operations, then a "
        "second administrator's review): needed once the share service has administrators "
        "(`streethub admin init`); used once.",
    ),
]


def two_person(settings, kind: str, request_id: str | None, **expect) -> None:
    """The two-person rule (seed §6.1): ``request_id`` must name an approved ``kind``
    operation with these parameters, which is marked used; else a message and exit 1. A hub
    whose share service has no administrators yet runs without one, as before."""
    from share_api import requests as rq
    from share_api.service import Service

    if request_id is None:
        if not rq.two_person_rule_in_force(settings):
            return
        err.print(
            Text(
                f"{kind} needs a second administrator's approval: open it with POST "
                "/admin/operations, have another administrator approve it, then pass "
                "--request <id>",
                "red",
            )
        )
        raise typer.Exit(1)
    service = Service.open(settings)
    try:
        rq.approved_admin_operation(service, request_id, kind, cli_actor(), expect=expect)
    except rq.RequestError as exc:
        err.print(Text(f"request {request_id}: {exc}", "red"))
        raise typer.Exit(1) from None
    finally:
        service.close()


def _outside_home(settings, path: Path, what: str) -> Path:
    path = path.expanduser().resolve()
    if path.is_relative_to(settings.home_abs):
        err.print(Text(f"{what} {path} is inside the home {settings.home_abs}: refused", "red"))
        raise typer.Exit(1)
    return path


@keys_app.command("rotate")
def keys_rotate(
    pseudonyms: bool = typer.Option(
        False,
        "--pseudonyms",
        help="Also new pseudonym keys: every pseudonym changes, and nothing made before "
        "joins with anything made after.",
    ),
    request: RequestOption = None,
) -> None:
    """A new master and new encryption/signing keys; old versions stay readable, no data
    rewritten. With STREETHUB_MASTER_KEY the new master comes from STREETHUB_MASTER_KEY_NEW.
    Once the share service has administrators, a second one approves it first (--request)."""
    from masking.keys import MASTER_ENV, MASTER_ENV_NEW

    settings = get_settings().ensure_dirs()
    two_person(settings, "keys.rotate", request, pseudonyms=pseudonyms)
    with _key_errors():
        ring = _ring(settings)
        versions = ring.rotate(pseudonyms=pseudonyms)
        _audit(
            settings,
            ring,
            "keys.rotate",
            master_version=ring.master_version,
            master_kid=ring.master_kid,
            provider=ring.provider.name,
            pseudonyms=pseudonyms,
        )
    for purpose, version in sorted(versions.items()):
        console.print(f"{purpose}: now version {version}")
    console.print(
        f"master key version {ring.master_version} (kid {ring.master_kid}) in "
        f"{ring.provider.describe()}; older data key versions kept for reading"
    )
    if ring.provider.name == "env":
        console.print(
            f"now set {MASTER_ENV} to the value of {MASTER_ENV_NEW} and remove "
            f"{MASTER_ENV_NEW}: the key ring is wrapped under the new key only"
        )
    if ring.provider.exportable:
        console.print("make new backup shares (`streethub keys backup`): old ones are void")


@keys_app.command("list")
def keys_list() -> None:
    """The provider, the suite, purposes and versions in the key ring (never key material)."""
    settings = get_settings()
    with _key_errors():
        ring = _ring(settings)
        console.print(f"master key: {ring.provider.describe()} (kid {ring.master_kid or '-'})")
        console.print(f"cipher suite: {ring.suite.name}")
        for purpose in ring.purposes():
            versions = ring.versions(purpose)
            console.print(
                f"{purpose}: versions {', '.join(map(str, versions))} (current {max(versions)})"
            )
    if ring.migration:
        err.print(ring.migration)


@keys_app.command("backup")
def keys_backup(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="A folder outside the home for share-1.txt … share-3.txt (0600); "
            "default: print the shares.",
        ),
    ] = None,
) -> None:
    """Split the master key into 3 shares, any 2 of which restore it (Shamir), for offline
    custody by different people. Only where the provider lets the key out (env, file)."""
    from masking.keys.backup import SHARES, THRESHOLD, split_master

    settings = get_settings().ensure_dirs()
    if out is not None:
        out = _outside_home(settings, out, "the share folder")
    with _key_errors():
        ring = _ring(settings)
        kid, key = ring.export_master()
        lines = split_master(kid, key)
        del key
        _audit(settings, ring, "keys.backup", master_kid=kid, shares=SHARES, threshold=THRESHOLD)
    if out is None:
        console.print(
            f"master key {kid}: {SHARES} shares, any {THRESHOLD} restore it — give each to a "
            "different custodian, keep them offline, never together:"
        )
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    for number, line in enumerate(lines, 1):
        path = out / f"share-{number}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(line + "\n")
        console.print(f"share {number} of {SHARES}: {path}")
    console.print(
        f"master key {kid}: any {THRESHOLD} shares restore it; move the files to "
        "different custodians and delete them here"
    )


@keys_app.command("restore")
def keys_restore(
    share_files: Annotated[
        list[Path] | None,
        typer.Argument(help="Files holding one share each; none: read from standard input."),
    ] = None,
    print_key: bool = typer.Option(
        False,
        "--print",
        help="Print the restored key as base64 for STREETHUB_MASTER_KEY instead of writing "
        "the key store (the environment provider).",
    ),
) -> None:
    """Rebuild the master key from 2 of its shares into an empty key store (the key file),
    then check that every data key of the ring unwraps."""
    from masking.keys import KeyRing, provider_from_settings
    from masking.keys.backup import combine_shares

    settings = get_settings().ensure_dirs()
    if share_files:
        lines = []
        for path in share_files:
            try:
                lines.append(path.read_text(encoding="ascii").strip())
            except (OSError, UnicodeDecodeError) as exc:
                err.print(Text(f"cannot read the share file {path}: {type(exc).__name__}", "red"))
                raise typer.Exit(1) from None
    else:
        lines = [line.strip() for line in sys.stdin if line.strip()]
    with _key_errors():
        kid, key = combine_shares(lines)
        if print_key:
            import base64

            sys.stdout.write(base64.b64encode(key).decode("ascii") + "\n")
            err.print(f"master key {kid} restored: set STREETHUB_MASTER_KEY to the line above")
            return
        ring = KeyRing.from_settings(settings)
        if ring.master_kid not in (None, kid):
            err.print(
                Text(
                    f"these shares rebuild master key {kid}, but the key ring is wrapped "
                    f"under {ring.master_kid}: not restored",
                    "red",
                )
            )
            raise typer.Exit(1)
        provider = provider_from_settings(settings)
        provider.install(key)
        del key
        ring = KeyRing.from_settings(settings)
        readable = ring.check_readable()
        _audit(settings, ring, "keys.restore", master_kid=kid, provider=provider.name)
    console.print(
        f"master key {kid} restored into {provider.describe()}; {readable} data key versions unwrap"
    )


@keys_app.command("rekey")
def keys_rekey(
    suite: Annotated[str, typer.Option("--suite", help="the new cipher suite: intl, or gm (国密)")],
    request: RequestOption = None,
) -> None:
    """Change the cipher suite: re-encrypt the lake, recompute every pseudonym (audited);
    with a second administrator's approval once the share service has administrators."""
    from pipelines.rekey import rekey_command  # CRYPTO's pipelines/rekey.py

    settings = get_settings().ensure_dirs()
    two_person(settings, "keys.rekey", request, suite=suite)
    rekey_command(settings, suite, cli_actor())
