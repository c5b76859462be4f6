"""Key ring: envelope encryption, versions, rotation, file modes, no key material shown."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from masking.errors import KeyRingError
from masking.keys import KeyRing


def test_created_on_first_use_with_private_modes(keyring: KeyRing, settings) -> None:
    version, key = keyring.current("at_rest")
    assert version == 1 and len(key) == 32
    assert stat.S_IMODE(os.stat(keyring.keys_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(keyring.keys_dir / "keyring.json").st_mode) == 0o600
    assert not (keyring.keys_dir / "master.json").exists()  # the master is not in the home
    key_file = settings.key_file_abs
    assert not key_file.is_relative_to(settings.home_abs)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key_file.parent).st_mode) == 0o700
    assert keyring.current("at_rest").material == key  # stable
    assert keyring.get("at_rest", 1).material == key


def test_wrapped_keys_are_not_stored_in_clear(keyring: KeyRing) -> None:
    key = keyring.current("pseudonym").material
    text = (keyring.keys_dir / "keyring.json").read_text()
    assert base64.b64encode(key).decode() not in text and key.hex() not in text


def test_purposes_are_separate_and_recipients_on_demand(keyring: KeyRing) -> None:
    keys = {p: keyring.current(p).material for p in ("at_rest", "pseudonym", "audit_signing")}
    keys["recipient:wjw"] = keyring.current("recipient:wjw").material
    assert len(set(keys.values())) == 4
    with pytest.raises(KeyRingError):
        keyring.current("anything")
    with pytest.raises(KeyRingError):
        keyring.get("at_rest", 99)


def test_repr_shows_no_key_material(keyring: KeyRing) -> None:
    dk = keyring.current("at_rest")
    for text in (repr(dk), str(dk), repr(keyring)):
        assert dk.material.hex() not in text
        assert repr(dk.material) not in text
    assert "hidden" in repr(dk)


def test_rotate_keeps_old_versions_and_rewraps(keyring: KeyRing, settings) -> None:
    old = keyring.current("at_rest").material
    keyring.current("pseudonym")
    master_before = json.loads(settings.key_file_abs.read_text())["current"]
    new = keyring.rotate()
    assert new == {"at_rest": 2, "pseudonym": 1}  # pseudonyms keep joining
    assert keyring.master_version == 1
    masters = json.loads(settings.key_file_abs.read_text())
    assert masters["current"] != master_before
    assert list(masters["versions"]) == [masters["current"]]  # the old master is retired
    ring = json.loads((keyring.keys_dir / "keyring.json").read_text())
    entries = [e for vs in ring["keys"].values() for e in vs.values()]
    assert {e["kid"] for e in entries} == {masters["current"]} == {ring["master_kid"]}
    assert {(e["wrap"], e["suite"]) for e in entries} == {("aes-256-gcm", "intl")}
    fresh = KeyRing(keyring.keys_dir)  # another process
    assert fresh.get("at_rest", 1).material == old
    assert fresh.current("at_rest").version == 2 and fresh.current("at_rest").material != old


def test_master_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    master = os.urandom(32)
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(master).decode())
    ring = KeyRing(tmp_path / "keys")
    key = ring.current("at_rest").material
    assert not (tmp_path / "keys" / "master.json").exists()
    assert KeyRing(tmp_path / "keys").get("at_rest", 1).material == key
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(KeyRingError, match="master"):
        KeyRing(tmp_path / "keys").get("at_rest", 1)
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(master).decode())
    with pytest.raises(KeyRingError, match="STREETHUB_MASTER_KEY_NEW"):
        KeyRing(tmp_path / "keys").rotate()
    new_master = os.urandom(32)
    KeyRing(tmp_path / "keys").rotate(new_master_key=new_master)
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(new_master).decode())
    assert KeyRing(tmp_path / "keys").get("at_rest", 1).material == key


def test_bad_environment_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(KeyRingError, match="32 bytes"):
        KeyRing(tmp_path / "keys")


def test_concurrent_first_use_makes_one_key(keyring: KeyRing) -> None:
    rings = [KeyRing(keyring.keys_dir) for _ in range(8)]
    got: list[bytes] = []
    threads = [
        threading.Thread(target=lambda r=r: got.append(r.current("at_rest").material))
        for r in rings
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1
    assert keyring.versions("at_rest") == [1]


def test_pseudonyms_survive_rotation_unless_asked(keyring: KeyRing) -> None:
    from masking.pseudonym import pseudonym

    before = pseudonym("11010519491231002X", keyring, kind="citizen_id")
    keyring.rotate()
    assert pseudonym("11010519491231002X", KeyRing(keyring.keys_dir), kind="citizen_id") == before
    assert keyring.rotate(pseudonyms=True)["pseudonym"] == 2
    after = pseudonym("11010519491231002X", KeyRing(keyring.keys_dir), kind="citizen_id")
    assert after != before


def test_ring_with_old_pseudonym_scheme_is_refused(keyring: KeyRing) -> None:
    from masking.errors import KeyRingError
    from masking.pseudonym import pseudonym

    keyring.current("pseudonym")
    assert keyring.pseudonym_scheme == 2
    path = keyring.keys_dir / "keyring.json"
    state = json.loads(path.read_text())
    del state["pseudonym_scheme"]  # a ring written before the marker existed
    path.write_text(json.dumps(state))
    old = KeyRing(keyring.keys_dir)
    assert old.pseudonym_scheme == 1
    assert old.current("at_rest").version == 1  # encryption keys still work
    with pytest.raises(KeyRingError, match="scheme 1"):
        pseudonym("11010519491231002X", old, kind="citizen_id")
