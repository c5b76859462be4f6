"""jieba's dictionary cache lives in the user's cache folder, never under the hub's home
(the home's leak scan read its 350,000 public words, some of them residents' names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from masking import text_names


def test_the_cache_is_outside_the_home_and_an_old_one_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, cache = tmp_path / "home", tmp_path / "xdg-cache"
    old = home / "cache" / "jieba" / "jieba.cache"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an older version's cache")
    monkeypatch.setenv("STREETHUB_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    where = text_names._default_cache_dir()
    assert where == cache / "streethub" / "jieba"
    assert not where.is_relative_to(home) and not old.exists()
