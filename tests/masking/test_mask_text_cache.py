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


def test_a_text_without_a_surname_character_loads_no_dictionary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A blank or numeric text can hold no name (every candidate starts with a surname):
    it is answered without jieba's dictionary, ~1.4 CPU s to load in a process that masks
    one such value; a text that may hold one still loads it and finds the name."""
    loads = []
    real = text_names._pos_tokenizer
    monkeypatch.setattr(text_names, "_pos_tokenizer", lambda: loads.append(1) or real())
    for text in ("", "   ", "12345-678 / N/A", "（无）。"):
        assert text_names.name_spans(text) == []
    assert loads == []
    text = "市民王芳来电反映楼道灯坏了"
    found = text_names.name_spans(text)
    assert loads and "王芳" in {text[start:end] for start, end, _ in found}
