"""Key rotation with every software provider, interrupted at each durable step (by an
exception and by SIGKILL): everything stays readable and the next rotation completes."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.settings import Settings
from masking.errors import KeyRingError
from masking.keys import KeyRing
from masking.keys.store import fingerprint
from tests.cli_text import one_line

STEPS = ("rotate.master_added", "rotate.ring_rewrapped")
PURPOSES = ("at_rest", "pseudonym", "audit_signing", "landing")


@pytest.fixture(autouse=True)
def _no_env_master(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STREETHUB_MASTER_KEY", "STREETHUB_MASTER_KEY_NEW", "STREETHUB_KEY_PROVIDER"):
        monkeypatch.delenv(name, raising=False)


class Interrupted(Exception):
    pass


def _stop_at(name: str):
    def step(current: str) -> None:
        if current == name:
            raise Interrupted(current)

    return step


def _all_keys(ring: KeyRing) -> dict[tuple[str, int], bytes]:
    return {(p, v): ring.get(p, v).material for p in ring.purposes() for v in ring.versions(p)}


@pytest.mark.parametrize("step", STEPS)
def test_interrupted_file_rotation_leaves_everything_readable(
    settings: Settings, step: str
) -> None:
    ring = KeyRing.from_settings(settings)
    before = {(p, 1): ring.current(p).material for p in PURPOSES}
    with pytest.raises(Interrupted):
        ring.rotate(step=_stop_at(step))
    masters = json.loads(settings.key_file_abs.read_text())["versions"]
    assert len(masters) == 2  # the new master added, the old one not yet retired
    fresh = KeyRing.from_settings(settings)  # another process after the crash
    assert {k: fresh.get(*k).material for k in before} == before
    fresh.rotate()  # the next rotation completes the job
    after = KeyRing.from_settings(settings)
    assert {k: after.get(*k).material for k in before} == before
    assert len(json.loads(settings.key_file_abs.read_text())["versions"]) == 1
    assert after.current("at_rest").version > 1


@pytest.mark.parametrize("step", STEPS)
def test_rotation_killed_at_each_step_leaves_everything_readable(
    settings: Settings, step: str, tmp_path: Path
) -> None:
    ring = KeyRing.from_settings(settings)
    before = {(p, 1): ring.current(p).material for p in PURPOSES}
    script = tmp_path / "rotate_and_die.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal
            from catalog.settings import Settings
            from masking.keys import KeyRing

            def step(name):
                if name == {step!r}:
                    os.kill(os.getpid(), signal.SIGKILL)

            KeyRing.from_settings(Settings()).rotate(step=step)
            """
        )
    )
    env = dict(os.environ, STREETHUB_HOME=str(settings.home_abs))
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-500:]
    fresh = KeyRing.from_settings(settings)
    assert {k: fresh.get(*k).material for k in before} == before
    assert fresh.master_version == (1 if step == "rotate.ring_rewrapped" else 0)
    fresh.rotate()
    assert {k: KeyRing.from_settings(settings).get(*k).material for k in before} == before


def _env_ring(monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes, dict]:
    """(old master, new master, every data key) of a ring under STREETHUB_MASTER_KEY."""
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(old).decode())
    ring = KeyRing.from_settings(Settings())
    return old, new, {(p, 1): ring.current(p).material for p in PURPOSES}


def test_environment_rotation_through_the_cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.cli_keys import keys_app

    old, new, before = _env_ring(monkeypatch)
    runner = CliRunner()
    refused = runner.invoke(keys_app, ["rotate"])
    assert refused.exit_code == 1
    assert "STREETHUB_MASTER_KEY_NEW" in refused.output
    monkeypatch.setenv("STREETHUB_MASTER_KEY_NEW", base64.b64encode(new).decode())
    done = runner.invoke(keys_app, ["rotate"])
    assert done.exit_code == 0, done.output
    out = one_line(done)
    assert "set STREETHUB_MASTER_KEY to the value of STREETHUB_MASTER_KEY_NEW" in out
    for key in (old, new):
        assert base64.b64encode(key).decode() not in done.output
    monkeypatch.delenv("STREETHUB_MASTER_KEY_NEW")
    with pytest.raises(KeyRingError, match=fingerprint(new)):
        KeyRing.from_settings(Settings()).get("at_rest", 1)  # the old key alone: refused
    monkeypatch.setenv("STREETHUB_MASTER_KEY", base64.b64encode(new).decode())
    fresh = KeyRing.from_settings(Settings())
    assert {k: fresh.get(*k).material for k in before} == before
    assert fresh.master_kid == fingerprint(new) and fresh.current("at_rest").version == 2
    assert not settings.key_file_abs.exists()


def test_interrupted_environment_rotation_is_readable_with_both_variables(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, new, before = _env_ring(monkeypatch)
    monkeypatch.setenv("STREETHUB_MASTER_KEY_NEW", base64.b64encode(new).decode())
    with pytest.raises(Interrupted):
        KeyRing.from_settings(Settings()).rotate(step=_stop_at("rotate.ring_rewrapped"))
    fresh = KeyRing.from_settings(Settings())  # both variables still set
    assert {k: fresh.get(*k).material for k in before} == before
    assert fresh.master_kid == fingerprint(new)


def test_cli_rotation_with_the_key_file_retires_the_old_master(settings: Settings) -> None:
    from pipelines.cli_keys import keys_app

    ring = KeyRing.from_settings(settings)
    before = {(p, 1): ring.current(p).material for p in PURPOSES}
    old_kid = ring.master_kid
    done = CliRunner().invoke(keys_app, ["rotate", "--pseudonyms"])
    assert done.exit_code == 0, done.output
    fresh = KeyRing.from_settings(settings)
    assert {k: fresh.get(*k).material for k in before} == before
    assert fresh.current("pseudonym").version == 2
    assert list(json.loads(settings.key_file_abs.read_text())["versions"]) == [fresh.master_kid]
    assert fresh.master_kid != old_kid
    assert "new backup shares" in done.output
