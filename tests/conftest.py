"""Shared fixtures: every test gets its own STREETHUB_HOME."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from catalog.settings import Settings

# master key files live outside every test home, as in production, and never in the
# developer's own config folder: one config folder for the session (subprocesses inherit it)
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="streethub-test-config-")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(h))
    return h


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home).ensure_dirs()
