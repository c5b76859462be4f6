"""Key custody: where the master key lives (env, key file outside the home), the suite the
ring records and enforces, and the migration of a home of the old layout."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shutil
from pathlib import Path

import pytest

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.keys import KeyRing
from masking.keys.store import fingerprint
from masking.suite import get_suite

PURPOSES = ("at_rest", "pseudonym", "audit_signing", "audit_checkpoint", "landing")


@pytest.fixture(autouse=True)
def _no_env_master(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STREETHUB_MASTER_KEY", "STREETHUB_MASTER_KEY_NEW", "STREETHUB_KEY_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("STREETHUB_CIPHER_SUITE", raising=False)


def _files_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _encodings(key: bytes) -> list[bytes]:
    return [key, key.hex().encode(), base64.b64encode(key), base64.urlsafe_b64encode(key)]


def test_key_file_outside_the_home_and_nothing_in_the_home_unwraps(settings: Settings) -> None:
    ring = KeyRing.from_settings(settings)
    keys = {p: ring.current(p).material for p in PURPOSES}
    key_file = settings.key_file_abs
    assert key_file.exists() and not key_file.is_relative_to(settings.home_abs)
    master = base64.b64decode(json.loads(key_file.read_text())["versions"][ring.master_kid])
    home = _files_bytes(settings.home_abs)
    for key in [master, *keys.values()]:
        for form in _encodings(key):
            assert form not in home
    state = json.loads((settings.keys_dir / "keyring.json").read_text())
    assert state["home_id"] == settings.home_id and state["suite"] == "intl"
    assert ring.provider.name == "file"


def test_key_file_inside_the_home_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETHUB_KEY_FILE", str(settings.home_abs / "state" / "master.json"))
    with pytest.raises(KeyRingError, match="inside the home"):
        KeyRing.from_settings(Settings())
    assert not (settings.home_abs / "state" / "master.json").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(settings: Settings, mode: int) -> None:
    KeyRing.from_settings(settings).current("at_rest")
    os.chmod(settings.key_file_abs, mode)
    with pytest.raises(KeyRingError, match="chmod 600") as info:
        KeyRing.from_settings(settings).get("at_rest", 1)
    assert f"{mode:o}" in str(info.value)
    os.chmod(settings.key_file_abs, 0o600)
    assert KeyRing.from_settings(settings).get("at_rest", 1).version == 1


def test_explicit_key_file_setting(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETHUB_KEY_FILE", str(tmp_path / "vault" / "streethub.key"))
    ring = KeyRing.from_settings(Settings())
    key = ring.current("at_rest").material
    assert (tmp_path / "vault" / "streethub.key").exists()
    assert KeyRing(settings.keys_dir).get("at_rest", 1).material == key  # same provider


def test_environment_provider_auto_and_explicit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = secrets.token_bytes(32)
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(master).decode())
    ring = KeyRing.from_settings(Settings())  # auto: the variable is set
    assert ring.provider.name == "env" and ring.provider.exportable
    key = ring.current("at_rest").material
    assert not settings.key_file_abs.exists()
    assert ring.master_kid == fingerprint(master)
    monkeypatch.delenv("STREETHUB_MASTER_KEY")
    with pytest.raises(KeyRingError, match="not in the key file"):
        KeyRing.from_settings(Settings()).get("at_rest", 1)  # auto: now the (empty) key file
    assert not settings.key_file_abs.exists()  # no master made for a ring that has keys
    monkeypatch.setenv("STREETHUB_KEY_PROVIDER", "env")
    with pytest.raises(KeyRingError, match="STREETHUB_MASTER_KEY is not set"):
        KeyRing.from_settings(Settings())
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(master).decode())
    assert KeyRing.from_settings(Settings()).get("at_rest", 1).material == key


def test_a_copied_home_finds_its_key_file_then_keeps_its_own(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ring = KeyRing.from_settings(settings)
    key = ring.current("pseudonym").material
    copy = tmp_path / "elsewhere" / "home"
    shutil.copytree(settings.home_abs, copy)
    copied = Settings(home=copy)
    assert copied.key_file_abs == settings.key_file_abs  # found through the recorded id
    early = KeyRing.from_settings(copied)  # opened before the copy takes its own file
    with caplog.at_level(logging.WARNING, logger="streethub.keys"):
        copy_ring = KeyRing.from_settings(copied)
        assert copy_ring.get("pseudonym", 1).material == key
    assert early.get("pseudonym", 1).material == key
    assert early.provider.path == copy_ring.provider.path != settings.key_file_abs
    assert sum("copied or moved" in r.message for r in caplog.records) == 1
    # from now on the copy has a key file of its own: its rotation retires nothing of ours
    assert Settings(home=copy).key_file_abs != settings.key_file_abs
    assert Settings(home=copy).key_file_abs.exists()
    KeyRing.from_settings(Settings(home=copy)).rotate()
    assert KeyRing.from_settings(settings).get("pseudonym", 1).material == key
    assert KeyRing.from_settings(Settings(home=copy)).get("pseudonym", 1).material == key
    assert json.loads(settings.key_file_abs.read_text())["current"] == ring.master_kid


def test_a_lost_key_file_is_never_replaced(settings: Settings) -> None:
    KeyRing.from_settings(settings).current("pseudonym")
    settings.key_file_abs.rename(settings.key_file_abs.with_name("moved-away.json"))
    with pytest.raises(KeyRingError, match="keys restore"):
        KeyRing.from_settings(settings).current("at_rest")  # a new purpose: still refused
    assert not settings.key_file_abs.exists()


def test_the_ring_records_and_enforces_its_suite(settings: Settings) -> None:
    gm = Settings(home=settings.home_abs, cipher_suite="gm")
    ring = KeyRing.from_settings(gm)
    key = ring.current("at_rest").material
    assert ring.suite.name == "gm"
    state = json.loads((settings.keys_dir / "keyring.json").read_text())
    assert state["suite"] == "gm"
    assert {e["wrap"] for e in state["keys"]["at_rest"].values()} == {"sm4-gcm"}
    intl = Settings(home=settings.home_abs, cipher_suite="intl")
    with pytest.raises(KeyRingError, match="streethub keys rekey --suite intl"):
        KeyRing.from_settings(intl).get("at_rest", 1)
    # the suite left unset: the ring's own is followed
    assert KeyRing.from_settings(Settings(home=settings.home_abs)).suite.name == "gm"
    assert KeyRing(settings.keys_dir).get("at_rest", 1).material == key
    rekey = KeyRing.from_settings(intl, enforce_suite=False)
    assert rekey.get("at_rest", 1).material == key


def test_an_intl_ring_opened_under_gm_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    KeyRing.from_settings(settings).current("at_rest")
    monkeypatch.setenv("STREETHUB_CIPHER_SUITE", "gm")
    with pytest.raises(KeyRingError, match="`streethub keys rekey --suite gm`"):
        KeyRing.from_settings(Settings()).current("pseudonym")
    with pytest.raises(KeyRingError, match="made under the intl cipher suite"):
        KeyRing(settings.keys_dir).get("at_rest", 1)
    assert "pseudonym" not in json.loads((settings.keys_dir / "keyring.json").read_text())["keys"]


def test_change_suite_rewraps_and_makes_new_versions_current(settings: Settings) -> None:
    ring = KeyRing.from_settings(settings)
    old = {p: ring.current(p).material for p in ("at_rest", "pseudonym")}
    new = {p: ring.add_version(p) for p in ("at_rest", "pseudonym")}
    assert ring.current("at_rest").version == 1  # not current before the suite changes
    ring.change_suite("gm", {p: k.version for p, k in new.items()})
    fresh = KeyRing(settings.keys_dir)
    assert fresh.suite.name == "gm"
    for p in old:
        assert fresh.get(p, 1).material == old[p]
        assert fresh.current(p).version == 2 and fresh.current(p).material == new[p].material
    state = json.loads((settings.keys_dir / "keyring.json").read_text())
    assert {(e["wrap"], e["suite"]) for vs in state["keys"].values() for e in vs.values()} == {
        ("sm4-gcm", "gm")
    }


def test_a_wrapped_key_is_bound_to_its_purpose_version_and_suite(settings: Settings) -> None:
    ring = KeyRing.from_settings(settings)
    ring.current("at_rest")
    ring.current("landing")
    path = settings.keys_dir / "keyring.json"
    pristine = path.read_text()
    for tamper in ("purpose", "version", "suite"):
        state = json.loads(pristine)
        if tamper == "purpose":
            state["keys"]["landing"]["1"] = state["keys"]["at_rest"]["1"]
        elif tamper == "version":
            state["keys"]["at_rest"]["2"] = dict(state["keys"]["at_rest"]["1"], version=2)
        else:
            state["keys"]["at_rest"]["1"]["suite"] = "gm"
        path.write_text(json.dumps(state))
        ring = KeyRing.from_settings(settings)
        purpose, version = {"purpose": ("landing", 1), "version": ("at_rest", 2)}.get(
            tamper, ("at_rest", 1)
        )
        with pytest.raises(KeyRingError, match=f"{purpose} v{version}"):
            ring.get(purpose, version)


def _legacy_home(settings: Settings) -> tuple[bytes, dict[str, bytes]]:
    """A home of the old layout: keys/master.json beside a format-1 keyring.json."""
    master = secrets.token_bytes(32)
    kid = fingerprint(master)
    keys = {p: secrets.token_bytes(32) for p in ("at_rest", "pseudonym", "audit_signing")}
    aead = get_suite("intl").aead(master)
    entries = {}
    for p, key in keys.items():
        nonce = secrets.token_bytes(12)
        blob = nonce + aead.encrypt(nonce, key, f"streethub-key|{p}|1".encode())
        entries[p] = {"1": {"kid": kid, "wrapped": base64.b64encode(blob).decode()}}
    settings.keys_dir.mkdir(mode=0o700, exist_ok=True)
    legacy = {"current": kid, "versions": {kid: base64.b64encode(master).decode()}}
    (settings.keys_dir / "master.json").write_text(json.dumps(legacy))
    ring = {
        "format": 1,
        "master_version": 0,
        "pseudonym_scheme": 2,
        "current": dict.fromkeys(keys, 1),
        "keys": entries,
    }
    (settings.keys_dir / "keyring.json").write_text(json.dumps(ring))
    return master, keys


def test_old_layout_moves_its_master_key_to_the_key_file(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    master, keys = _legacy_home(settings)
    with caplog.at_level(logging.WARNING, logger="streethub.keys"):
        ring = KeyRing.from_settings(settings)
        assert {p: ring.get(p, 1).material for p in keys} == keys
        assert {p: KeyRing.from_settings(settings).get(p, 1).material for p in keys} == keys
    moved = [r for r in caplog.records if "moved the master key out of the home" in r.message]
    assert len(moved) == 1 and str(settings.key_file_abs) in moved[0].message
    assert ring.migration == moved[0].message
    assert not (settings.keys_dir / "master.json").exists()
    stored = json.loads(settings.key_file_abs.read_text())
    assert stored["versions"] == {fingerprint(master): base64.b64encode(master).decode()}
    state = json.loads((settings.keys_dir / "keyring.json").read_text())
    assert state["format"] == 2 and state["master_kid"] == fingerprint(master)
    assert {e["wrap"] for vs in state["keys"].values() for e in vs.values()} == {"aes-256-gcm"}
    for form in _encodings(master):
        assert form not in _files_bytes(settings.home_abs)


def test_old_layout_with_the_environment_provider_is_rewrapped_under_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, keys = _legacy_home(settings)
    env_master = secrets.token_bytes(32)
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(env_master).decode())
    ring = KeyRing.from_settings(Settings())
    assert {p: ring.get(p, 1).material for p in keys} == keys
    assert not (settings.keys_dir / "master.json").exists()
    assert not settings.key_file_abs.exists()
    assert ring.master_kid == fingerprint(env_master)
    assert "environment" in (ring.migration or "")
