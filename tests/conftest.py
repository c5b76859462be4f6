"""Shared fixtures: every test gets its own STREETHUB_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.settings import Settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(h))
    return h


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home).ensure_dirs()
