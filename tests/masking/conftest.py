"""Fixtures for masking: a key ring and audit log in the test's home, catalogue datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.loader import get_catalogue
from catalog.model import Dataset
from catalog.settings import Settings
from masking.audit import AuditLog
from masking.keys import KeyRing
from masking.text_names import set_jieba_cache_dir


@pytest.fixture(scope="session", autouse=True)
def _jieba_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One jieba cache for the session, inside a temporary STREETHUB_HOME-like dir."""
    path = tmp_path_factory.mktemp("jieba")
    set_jieba_cache_dir(path)
    return path


@pytest.fixture
def keyring(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> KeyRing:
    monkeypatch.delenv("STREETHUB_MASTER_KEY", raising=False)
    return KeyRing(settings.keys_dir)


@pytest.fixture
def audit(settings: Settings, keyring: KeyRing) -> AuditLog:
    return AuditLog(settings.audit_dir, keyring)


@pytest.fixture
def residents() -> Dataset:
    return get_catalogue().dataset("gaj.registered_residents")[1]


@pytest.fixture
def appeals() -> Dataset:
    return get_catalogue().dataset("rx.appeals")[1]
