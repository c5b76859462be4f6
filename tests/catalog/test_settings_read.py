"""get_settings: what Settings() reads from the environment, read again only when it changes."""

from __future__ import annotations

from pathlib import Path

from catalog.settings import Settings, get_settings


def test_get_settings_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STREETHUB_HOME", str(tmp_path / "a"))
    first = get_settings()
    assert first == Settings() and first.home == tmp_path / "a"
    first.home = tmp_path / "changed"  # a caller's own copy: the next one is not changed
    first.db_urls["xx"] = "sqlite:/changed"
    again = get_settings()
    assert again.home == tmp_path / "a" and "xx" not in again.db_urls and again is not first
    monkeypatch.setenv("STREETHUB_HOME", str(tmp_path / "b"))
    monkeypatch.setenv("STREETHUB_ABC_DB_URL", "sqlite:/abc.sqlite")
    moved = get_settings()
    assert moved.home == tmp_path / "b" and moved.db_url("abc") == "sqlite:/abc.sqlite"
    assert moved == Settings()
    monkeypatch.setenv("streethub_lake_threads", "2")  # matched in any case, as Settings does
    assert get_settings().lake_threads == Settings().lake_threads == 2
