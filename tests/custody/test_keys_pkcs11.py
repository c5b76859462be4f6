"""The master key in a PKCS#11 token (SoftHSM2): generated non-extractable inside it, data
keys wrapped and unwrapped inside it, rotation (also interrupted), no backup export.

Where SoftHSM2 is not installed these tests skip with the reason; on CI (``CI=true``)
they fail instead, and ``.ci/run`` installs it."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.keys import KeyRing
from masking.keys.pkcs11 import DEFAULT_MODULE, WRAP, Pkcs11Provider

TOKEN, PIN, SO_PIN = "streethub-test", "20261130", "11302026"
PURPOSES = ("at_rest", "pseudonym", "audit_signing", "audit_checkpoint", "landing")


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SoftHSM2 token in a temporary token folder (one per session: the library reads
    SOFTHSM2_CONF once, when it is loaded)."""
    util = shutil.which("softhsm2-util")
    if util is None or not DEFAULT_MODULE.exists():
        reason = "SoftHSM2 is not installed (Debian package softhsm2: `apt-get install softhsm2`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must run the PKCS#11 tests (.ci/run installs it)")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(
            [util, "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
            env=dict(os.environ),
        )
        yield conf


@pytest.fixture
def hsm_settings(
    softhsm: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch, request
) -> Settings:
    """The test's home with the provider set to the token (one key label per test)."""
    for name in ("STREETHUB_MASTER_KEY", "STREETHUB_MASTER_KEY_NEW"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STREETHUB_KEY_PROVIDER", "pkcs11")
    monkeypatch.setenv("STREETHUB_PKCS11_TOKEN", TOKEN)
    monkeypatch.setenv("STREETHUB_PKCS11_PIN", PIN)
    monkeypatch.setenv("STREETHUB_PKCS11_KEY_LABEL", f"master-{secrets.token_hex(4)}")
    return Settings()


def _objects(settings: Settings) -> list:
    from pkcs11 import Attribute, ObjectClass

    provider = Pkcs11Provider.from_settings(settings)
    with provider._session() as session:
        return [
            {
                "id": bytes(o[Attribute.ID]).hex(),
                "extractable": o[Attribute.EXTRACTABLE],
                "sensitive": o[Attribute.SENSITIVE],
                "token": o[Attribute.TOKEN],
            }
            for o in session.get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: provider.label}
            )
        ]


def test_the_master_key_is_made_in_the_token_and_never_leaves_it(
    hsm_settings: Settings,
) -> None:
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import AttributeSensitive

    ring = KeyRing.from_settings(hsm_settings)
    keys = {p: ring.current(p).material for p in PURPOSES}
    assert ring.provider.name == "pkcs11" and not ring.provider.exportable
    objects = _objects(hsm_settings)
    assert objects == [
        {"id": ring.master_kid, "extractable": False, "sensitive": True, "token": True}
    ]
    provider = ring.provider
    with provider._session() as session:
        (master,) = session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: provider.label}
        )
        with pytest.raises(AttributeSensitive):
            master[Attribute.VALUE]
    state = json.loads((hsm_settings.keys_dir / "keyring.json").read_text())
    assert {e["wrap"] for vs in state["keys"].values() for e in vs.values()} == {WRAP}
    assert not hsm_settings.key_file_abs.exists()
    home = b"".join(p.read_bytes() for p in hsm_settings.home_abs.rglob("*") if p.is_file())
    for key in keys.values():
        assert key not in home and base64.b64encode(key) not in home
    fresh = KeyRing.from_settings(Settings())  # another process: unwrapped in the token
    assert {p: fresh.get(p, 1).material for p in PURPOSES} == keys
    with pytest.raises(KeyRingError, match="cannot leave it"):
        fresh.export_master()


def test_a_moved_wrapped_key_does_not_unwrap_in_the_token(hsm_settings: Settings) -> None:
    ring = KeyRing.from_settings(hsm_settings)
    ring.current("at_rest")
    ring.current("landing")
    path = hsm_settings.keys_dir / "keyring.json"
    state = json.loads(path.read_text())
    state["keys"]["landing"]["1"] = state["keys"]["at_rest"]["1"]
    path.write_text(json.dumps(state))
    with pytest.raises(KeyRingError, match="landing v1"):
        KeyRing.from_settings(hsm_settings).get("landing", 1)


def test_a_wrong_pin_or_token_is_refused_without_showing_the_pin(
    hsm_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    KeyRing.from_settings(hsm_settings).current("at_rest")
    monkeypatch.setenv("STREETHUB_PKCS11_PIN", "99999999")
    with pytest.raises(KeyRingError, match="cannot log in") as info:
        KeyRing.from_settings(Settings()).get("at_rest", 1)
    assert "99999999" not in str(info.value) and PIN not in str(info.value)
    monkeypatch.setenv("STREETHUB_PKCS11_PIN", PIN)
    monkeypatch.setenv("STREETHUB_PKCS11_TOKEN", "no-such-token")
    with pytest.raises(KeyRingError, match="no PKCS#11 token labelled 'no-such-token'"):
        KeyRing.from_settings(Settings()).get("at_rest", 1)
    monkeypatch.delenv("STREETHUB_PKCS11_PIN")
    with pytest.raises(KeyRingError, match="STREETHUB_PKCS11_PIN is not set"):
        KeyRing.from_settings(Settings())


@pytest.mark.parametrize("stop", [None, "rotate.master_added", "rotate.ring_rewrapped"])
def test_rotation_in_the_token(hsm_settings: Settings, stop: str | None) -> None:
    ring = KeyRing.from_settings(hsm_settings)
    before = {(p, 1): ring.current(p).material for p in PURPOSES}
    old_kid = ring.master_kid

    def step(name: str) -> None:
        if name == stop:
            raise RuntimeError(name)

    if stop is None:
        ring.rotate(step=step)
    else:
        with pytest.raises(RuntimeError):
            ring.rotate(step=step)
        assert len(_objects(hsm_settings)) == 2  # old and new: everything readable
        fresh = KeyRing.from_settings(hsm_settings)
        assert {k: fresh.get(*k).material for k in before} == before
        fresh.rotate()
    after = KeyRing.from_settings(hsm_settings)
    assert {k: after.get(*k).material for k in before} == before
    assert [o["id"] for o in _objects(hsm_settings)] == [after.master_kid] != [old_kid]
    assert after.current("at_rest").version > 1


def test_the_cli_with_the_token(hsm_settings: Settings) -> None:
    from pipelines.cli_keys import keys_app

    KeyRing.from_settings(hsm_settings).current("at_rest")
    runner = CliRunner()
    listed = runner.invoke(keys_app, ["list"])
    assert listed.exit_code == 0 and TOKEN in listed.output
    refused = runner.invoke(keys_app, ["backup"])
    assert refused.exit_code == 1 and "cannot leave it" in refused.output
    assert "streethub-share" not in refused.output
    rotated = runner.invoke(keys_app, ["rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert PIN not in listed.output + refused.output + rotated.output


def test_an_old_home_migrates_into_the_token(hsm_settings: Settings) -> None:
    from masking.keys.store import fingerprint
    from masking.suite import get_suite

    master, key = secrets.token_bytes(32), secrets.token_bytes(32)
    kid = fingerprint(master)
    nonce = secrets.token_bytes(12)
    blob = nonce + get_suite("intl").aead(master).encrypt(nonce, key, b"streethub-key|at_rest|1")
    hsm_settings.keys_dir.mkdir(mode=0o700, exist_ok=True)
    (hsm_settings.keys_dir / "master.json").write_text(
        json.dumps({"current": kid, "versions": {kid: base64.b64encode(master).decode()}})
    )
    (hsm_settings.keys_dir / "keyring.json").write_text(
        json.dumps(
            {
                "format": 1,
                "current": {"at_rest": 1},
                "keys": {
                    "at_rest": {"1": {"kid": kid, "wrapped": base64.b64encode(blob).decode()}}
                },
            }
        )
    )
    ring = KeyRing.from_settings(hsm_settings)
    assert ring.get("at_rest", 1).material == key
    assert not (hsm_settings.keys_dir / "master.json").exists()
    assert "PKCS#11" in (ring.migration or "")
    assert [o["id"] for o in _objects(hsm_settings)] == [ring.master_kid]
