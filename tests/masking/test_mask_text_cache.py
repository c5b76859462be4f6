"""jieba's dictionary cache lives in the user's cache folder, never under the hub's home
(the home's leak scan read its 350,000 public words, some of them residents' names)."""

from __future__ import annotations

import marshal
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
    it is answered without jieba's dictionary, ~0.6 CPU s to load (with its imports) in a
    process that masks one such value; a text that may hold one still loads it and finds
    the name."""
    loads = []
    real = text_names._pos_tokenizer
    monkeypatch.setattr(text_names, "_pos_tokenizer", lambda: loads.append(1) or real())
    for text in ("", "   ", "12345-678 / N/A", "（无）。"):
        assert text_names.name_spans(text) == []
    assert loads == []
    text = "市民王芳来电反映楼道灯坏了"
    found = text_names.name_spans(text)
    assert loads and "王芳" in {text[start:end] for start, end, _ in found}


def test_released_dictionaries_load_again_and_find_the_same() -> None:
    """``release_dictionaries`` lets go of the tokenizer and the tag table jieba's default
    part-of-speech tokenizer shares with it; the next scan loads both again and finds the
    same names, and jieba's own default tokenizer is never loaded."""
    import jieba
    import jieba.posseg

    texts = [
        "市民王芳来电反映楼道灯坏了",
        "网格员刘德华上报：商家占道经营",
        "何秀英、冯静三户联名投诉",
    ]
    before = [text_names.name_spans(t) for t in texts]
    held = text_names._pos_tokenizer()
    text_names.release_dictionaries()
    assert jieba.posseg.dt.word_tag_tab == {}  # the shared table is gone with ours
    text_names.release_dictionaries()  # nothing held: nothing to do
    assert [text_names.name_spans(t) for t in texts] == before
    again = text_names._pos_tokenizer()
    assert again is not held and again.tokenizer is not held.tokenizer
    assert len(again.word_tag_tab) > 300_000 and again.word_tag_tab["井盖"] == "n"  # NOT_NAMES
    assert again.tokenizer.FREQ["郎家园"] == 2000  # ours again, not in jieba's dictionary
    assert jieba.posseg.dt.word_tag_tab is again.word_tag_tab
    assert not jieba.dt.initialized and not jieba.dt.FREQ


def test_a_full_stop_that_joins_no_han_characters_loads_no_dictionary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name in parts needs jieba's words around it; a decimal point or an ASCII full stop
    is no join of one, and a text of them still loads no dictionary."""
    loads = []
    real = text_names._pos_tokenizer
    monkeypatch.setattr(text_names, "_pos_tokenizer", lambda: loads.append(1) or real())
    for text in ("12.5", "v1.2. N/A。", "3.14．"):
        assert text_names.name_spans(text) == []
    assert loads == []
    text = "居民买买提·艾力要求回访"
    assert (2, 8, "dotted") in text_names.name_spans(text)


def test_the_prefix_dict_read_whole_is_jiebas_and_a_bad_cache_is_made_again(
    tmp_path: Path, _jieba_cache: Path
) -> None:
    """Our read of jieba's cache (whole, then unmarshalled) gives a tokenizer the same
    prefix dict and total as jieba's own read; with no cache, or one that is not jieba's,
    there is nothing to read (a foreign one is removed: jieba would unmarshal it and take
    it for its dict) and jieba makes the dict and writes its cache, which then reads the
    same."""
    import jieba

    text_names.release_dictionaries()
    text_names.set_jieba_cache_dir(tmp_path)
    try:
        cache = tmp_path / text_names.CACHE_FILE
        assert not text_names._load_prefix_dict(jieba.Tokenizer(), cache)  # none yet
        first = text_names._pos_tokenizer().tokenizer  # made by jieba, its cache written
        assert cache.is_file()
        ours = jieba.Tokenizer()
        assert text_names._load_prefix_dict(ours, cache) and ours.initialized
        theirs = jieba.Tokenizer()
        theirs.tmp_dir, theirs.cache_file = str(tmp_path), text_names.CACHE_FILE
        theirs.check_initialized()  # jieba's own read of the same file
        assert ours.total == theirs.total > 0 and ours.FREQ == theirs.FREQ
        assert len(first.FREQ) >= len(ours.FREQ)  # ours plus the words we add (NOT_NAMES)
        for bad in (b"not a cache", marshal.dumps(["a", 1])):
            cache.write_bytes(bad)
            assert not text_names._load_prefix_dict(jieba.Tokenizer(), cache)
            assert not cache.exists()  # gone: jieba would take the list for a dict
        text_names.release_dictionaries()
        assert text_names._pos_tokenizer().tokenizer.FREQ["郎家园"] == 2000  # made again
        assert text_names._load_prefix_dict(jieba.Tokenizer(), cache)  # and its cache
    finally:
        text_names.release_dictionaries()
        text_names.set_jieba_cache_dir(_jieba_cache)  # the session's, as conftest set it
