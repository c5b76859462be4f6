"""Person names in Chinese free text: where 12345 and grid texts put them.

Spans (start, end, source) of candidate names; ``masking.text`` resolves them against the
other detectors and masks them. A candidate is a surname (``masking.names``: 百家姓, compound
surnames such as 欧阳 first) and one or two more characters, found by its context:

- ``cue_before``: after a word that introduces a person (市民, 户主, 用户, 反映人, 来电人 …),
  up to the first word that ends a name (``NAME_END``), or else up to where jieba ends a
  word before a verb (网格员王芳上报); no common word of another kind (市民来电), and a
  surname with a title counts (市民刘女士 → 刘*)
- ``cue_weak``: the same after a word that often precedes a name and as often other things
  (请, 与, 接, 回复, 据 …); the candidate must look like a name (:func:`plausible_name`)
- ``cue_verb``: before what follows a name that starts a sentence (反映, 称, 投诉, 来电, 家,
  的身份证, 的手机, ，男，, 本人, 母亲 …), starting a sentence, after a cue or at a word
  boundary jieba finds; it must look like a name
- ``edge``: starting a sentence or a clause (何秀英、冯静…, 卢浩然，电话…), up to a word that
  ends names or before a verb; it must look like a name, and not start with a common word
  jieba finds there (平台不处理, 楼道里)
- ``cue_after``: before a title (先生, 女士, 阿姨, 大爷, 师傅, 老师 …) at a word boundary
- ``paren``: alone inside brackets or quotes (账号……（张三）, “张三”), looking like a name
- ``jieba``: jieba tags the token ``nr``, it starts with a surname, is no common word, and
  is no place (its last character 路/村/庄/堡 …, or the next token 路/胡同/街 …)
- ``dotted``: a name in parts (少数民族 and transliterated foreign names: 买买提·艾力,
  阿卜杜勒·阿齐兹·买买提, 约翰·史密斯), Han characters joined by the interpunct or a
  look-alike (• ・ ‧ …; ``catalog.identifiers``), or by a full stop (阿依古丽．吐尔逊) right
  after a cue word; the first part starts after a cue word or the common words of another
  kind jieba finds before it (我们小区买买提·…), the last ends at a word that ends names (…艾力反映); each is cut to
  ``NAME_PART`` characters where nothing says where it ends. The surname rules do not
  apply: such names start with no 百家姓 surname
- ``known``: a name of the registry (its parts' joins folded alike)

A candidate "looks like a name" when it is not a common word of another kind in jieba's
dictionary (商家, 公司, 银行: frequency ≥ ``JIEBA_COMMON_WORD`` and a tag other than nr),
its given part is not a title (王师傅: the surname alone is no one), not 某 (王某: already
anonymous), not 家 alone (王家), it does not end like a place (黄村, 万寿路), does not start
with a character that is a word before it is a surname (向东走, 但仍, 于晚上) nor, with three
characters, with a common word (施工方, 石头砸).

Measured on ``tests/masking/data/hotline_texts.jsonl`` (``test_mask_text_hotline.py``).
The price of the context rules: a name that is also a common word (高明, 金玉兰's 金玉) is
found only after a strong cue, and a name with no context at all (20230110肖守义通过…) is
left to jieba's guess.
"""

from __future__ import annotations

import logging
import marshal
import os
import re
import sys
import threading
from pathlib import Path

from catalog.identifiers import (
    HAN,
    NAME_DOT,
    NAME_DOT_LOOKALIKES,
    NAME_IN_PARTS,
    NAME_STOPS,
    name_dots_str,
)
from masking.names import (
    COMPOUND_SURNAMES,
    FUNCTION_SURNAMES,
    NAME_AFTER,
    NAME_BEFORE,
    NAME_BEFORE_WEAK,
    NAME_END,
    NAME_VERB_AFTER,
    NOT_NAMES,
    PLACE_ENDS,
    SINGLE_SURNAMES,
    KnownNames,
)

JIEBA_COMMON_WORD = 50  # dictionary frequency from which a token is a word, not a name
_SINGLE_SURNAME = "[" + "".join(sorted(SINGLE_SURNAMES)) + "]"
_SURNAME_RE = "(?:" + "|".join(sorted(COMPOUND_SURNAMES)) + "|" + _SINGLE_SURNAME + ")"
_CANDIDATE = rf"{_SURNAME_RE}[{HAN}]{{1,2}}?"
_CUE_WORD = re.compile(rf"(?:{NAME_BEFORE})(?:是|为)?[：:\s]*")
_NAME_TO_END = re.compile(rf"{_CANDIDATE}(?={NAME_END})")
# a two-character name padded to a roster's width (王　芳: half-width here, 王 芳), copied
# into a text with its padding: a single surname, spaces, one character, then a word that
# ends names or no Han character
_PADDED = re.compile(rf"{_SINGLE_SURNAME} {{1,2}}[{HAN}](?={NAME_END}|[^{HAN}]|$)")
_ALL_HAN = re.compile(f"[{HAN}]+")
_CUE_WEAK = re.compile(rf"(?:{NAME_BEFORE_WEAK})[：:\s]*")
_CUE_AFTER = re.compile(rf"({_CANDIDATE})(?={NAME_AFTER})")
_VERB_AFTER = re.compile(NAME_VERB_AFTER)
_PAREN = re.compile(rf"[（(“「『\"]({_SURNAME_RE}[{HAN}]{{1,2}})[）)”」』\"]")
_SENTENCE_EDGE = set("。！？!?；;，,：:、\n\t （(）)“”\"'【】[]「」")
_ANY_CUE_END = re.compile(rf"(?:{NAME_BEFORE}|{NAME_BEFORE_WEAK})$")
_LONGEST_CUE = max(len(w) for w in f"{NAME_BEFORE}|{NAME_BEFORE_WEAK}".split("|"))
TITLES = frozenset(NAME_AFTER.split("|"))
CUE_WORDS = frozenset(NAME_BEFORE.split("|"))  # 楼门长, 邻居: a cue is no name
# 这张卡, 一张纸: 张 after a number or a demonstrative is a measure word
_MEASURE = re.compile(r"(?<=[这那一两几每哪整半\d])张")
# the token after a place named like a person (张自忠路, 汪家胡同, 白家庄社区)
PLACE_NEXT = frozenset(["路", "街", "胡同", "大街", "村", "庄", "桥", "路口", "小区", "社区", "地铁站",
                        "公园", "菜市场", "市场", "商场", "大厦", "广场", "站", "镇", "乡"])  # fmt: skip

# a name in parts: its Han parts joined by the interpunct (folded from its look-alikes) or,
# right after a cue word, a full stop; a first or last part is cut to NAME_PART characters
NAME_PART = 6
_DOTTED = re.compile(rf"[{HAN}]+(?:{NAME_DOT}[{HAN}]+)+")
_STOPPED = re.compile(rf"[{HAN}]{{1,{NAME_PART}}}(?:[{NAME_DOT}{NAME_STOPS}][{HAN}]+)+")
_ENDS_NAME = re.compile(NAME_END)
_JOINS = frozenset(NAME_DOT + NAME_DOT_LOOKALIKES + NAME_STOPS)
_STOPS = frozenset(NAME_STOPS)
_JOINED = re.compile(NAME_IN_PARTS)

_jieba_lock = threading.Lock()
_jieba_state: dict = {"cache_dir": None, "pos": None}


def set_jieba_cache_dir(path: Path | str) -> None:
    """Where jieba keeps its dictionary cache (default: :func:`_default_cache_dir`)."""
    with _jieba_lock:
        _jieba_state["cache_dir"] = Path(path)
        _jieba_state["pos"] = None


def _default_cache_dir() -> Path:
    """The user's cache folder (``$XDG_CACHE_HOME/streethub/jieba``, else
    ``~/.cache/streethub/jieba``), not the hub's home: the cache is a copy of jieba's
    public dictionary, the same for every home, and no data of the hub's. Under the home
    the leak scan read it as a file the run wrote, and on a street of 50,000 residents
    some of its 350,000 words were residents' names. A cache an older version left in
    the home is removed."""
    from catalog.settings import Settings

    old = Settings().home_abs / "cache" / "jieba" / "jieba.cache"
    old.unlink(missing_ok=True)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streethub" / "jieba"


def _tagger(posseg, tok):
    """A part-of-speech tokenizer over ``tok`` that shares the tag table ``jieba.posseg``
    made at import for its default tokenizer, of the same dictionary file.

    ``jieba.posseg.POSTokenizer(tok)`` would parse that file again into a second table of
    349,045 words with their own strings: ~43 MB kept for the life of the process and
    ~0.3 CPU s. Our own words (``NOT_NAMES``) are added to the shared table; nothing else
    in the hub uses jieba's default part-of-speech tokenizer."""
    default = posseg.dt
    if default.tokenizer.dictionary != tok.dictionary:
        return posseg.POSTokenizer(tok)
    if not default.word_tag_tab:  # let go by release_dictionaries: parsed again
        default.load_word_tag(default.tokenizer.get_dict_file())
    pos = object.__new__(posseg.POSTokenizer)
    pos.tokenizer = tok
    pos.word_tag_tab = default.word_tag_tab
    return pos


CACHE_FILE = "jieba.cache"  # jieba's own cache of its prefix dict: marshal of (FREQ, total)


def _load_prefix_dict(tok, path: Path) -> bool:
    """Give ``tok`` jieba's prefix dict from its cache file at ``path``, read whole and then
    unmarshalled; False when there is none, and jieba makes it. A file that holds no prefix
    dict is removed first: jieba would take whatever it unmarshals for one.

    jieba reads it with ``marshal.load`` on the open file, which reads it piece by piece:
    0.55 CPU s for its 498,000 words and prefixes against 0.28 s read whole (2026-12-06)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    try:
        freq, total = marshal.loads(data)
        usable = isinstance(freq, dict) and bool(freq) and isinstance(total, int) and total > 0
    except (ValueError, EOFError, TypeError):
        usable = False
    if not usable:
        path.unlink(missing_ok=True)
        return False
    tok.FREQ, tok.total, tok.initialized = freq, total, True
    return True


def _pos_tokenizer():
    with _jieba_lock:
        if _jieba_state["pos"] is None:
            import jieba
            import jieba.posseg

            logging.getLogger("jieba").setLevel(logging.WARNING)
            jieba.setLogLevel(logging.WARNING)
            cache_dir = _jieba_state["cache_dir"] or _default_cache_dir()
            cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            tok = jieba.Tokenizer()
            tok.tmp_dir = str(cache_dir)
            tok.cache_file = CACHE_FILE
            if not _load_prefix_dict(tok, cache_dir / CACHE_FILE):
                tok.check_initialized()  # jieba builds its prefix dict and writes the cache
            pos = _tagger(jieba.posseg, tok)
            for word in NOT_NAMES:  # keep them whole and never tagged as names
                tok.add_word(word, freq=2000, tag="n")
                pos.word_tag_tab[word] = "n"
            _jieba_state["pos"] = pos
        return _jieba_state["pos"]


def release_dictionaries() -> None:
    """Let jieba's dictionaries go (~100 MB: our tokenizer's 500,000 words and prefixes,
    and the tag table ``jieba.posseg``'s default tokenizer shares with it, see
    :func:`_tagger`), for a process that scans no more free text for a while. The next scan
    loads them again (~0.6 CPU s: the words from jieba's cache file, the tags from its
    dictionary). A scan running meanwhile in another thread keeps the tables it holds."""
    with _jieba_lock:
        pos, _jieba_state["pos"] = _jieba_state["pos"], None
        posseg = sys.modules.get("jieba.posseg")
        if pos is not None and posseg is not None and posseg.dt.word_tag_tab is pos.word_tag_tab:
            posseg.dt.word_tag_tab = {}  # replaced, not cleared: a scan holding it keeps it


def _surname_length(token: str) -> int:
    """Characters of ``token``'s surname: 2 for a compound one with a given name after it,
    1 for a single one, 0 for none."""
    if len(token) >= 3 and token[:2] in COMPOUND_SURNAMES:
        return 2
    return 1 if token[:1] in SINGLE_SURNAMES else 0


def plausible_name(token: str, *, word_check: bool = True) -> bool:
    """``token`` (a surname and one or two characters) can be a person's full name: no
    title, no 某, not 家 alone, no place ending, not in ``NOT_NAMES``; ``word_check``: and
    not a common word of another kind in jieba's dictionary."""
    surname = _surname_length(token)
    given = token[surname:]
    if not surname or not given or token in NOT_NAMES or TITLES & {token, given}:
        return False
    if token in CUE_WORDS:
        return False
    if given[0] == "某" or given == "家" or token[-1] in PLACE_ENDS:
        return False
    if surname == 1 and token[0] in FUNCTION_SURNAMES and len(given) == 2 and _common_word(given):
        return False  # 于晚上, 和物业
    if not word_check:
        return True
    if _other_word(token):
        return False  # 商家, 公司, 银行
    if surname == 1 and token[0] in FUNCTION_SURNAMES:
        return False  # 向东走, 但仍: the character is a word before it is a surname
    if _name_word(token):
        return True  # 李娜, 王平
    return not (len(token) == 3 and surname == 1 and _common_word(token[:2]))  # 施工方, 石头砸


def _titled(token: str) -> bool:
    """A surname and a title (刘女士, 王师傅): after a cue, masked like a name (刘*)."""
    return token[_surname_length(token) :] in TITLES


def _name_word(token: str) -> bool:
    """jieba's dictionary tags ``token`` as a person's name (nr)."""
    return _pos_tokenizer().word_tag_tab.get(token, "").startswith("nr")


def _other_word(token: str) -> bool:
    """A common word of jieba's dictionary not tagged as a name (来电, 商家; not 李娜)."""
    return _common_word(token) and not _name_word(token)


def _common_word(token: str) -> bool:
    """``token`` is a common word of jieba's dictionary (of any kind)."""
    return _pos_tokenizer().tokenizer.FREQ.get(token, 0) >= JIEBA_COMMON_WORD


class _Words:
    """jieba's words of a text: where they end (``bounds``) and the tag of the word that
    starts at each position (``tag_at``)."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[int, int, str, str]] = []
        pos = 0
        for pair in _pos_tokenizer().cut(text):
            self.tokens.append((pos, pos + len(pair.word), pair.word, pair.flag))
            pos += len(pair.word)
        self.bounds = {0, len(text)} | {end for _, end, _, _ in self.tokens}
        self.tag_at = {start: flag for start, _, _, flag in self.tokens}

    def starts_with_a_word(self, start: int, end: int) -> bool:
        """The word jieba finds at ``start`` is a common word inside ``start``–``end`` other
        than a compound surname or the whole span tagged a name (平台不, 楼道里, 双方已)."""
        for s, e, word, flag in self.tokens:
            if s == start:
                whole_name = e == end and flag.startswith("nr")
                return (
                    2 <= len(word) <= end - start
                    and word not in COMPOUND_SURNAMES
                    and not whole_name
                    and _common_word(word)
                )
        return False

    def before_a_verb(self, end: int) -> bool:
        """A word ends at ``end`` and a verb, preposition or adverb follows (上报, 把, 已)."""
        return end in self.bounds and self.tag_at.get(end, "x")[:1] in ("v", "p", "d")


def _jieba_names(text: str, words: _Words) -> list[tuple[int, int, str]]:
    """Names jieba tags as ``nr``: no common word, no digit, no place (黄村, 张自忠路),
    no measure word (这张卡)."""
    freq = _pos_tokenizer().tokenizer.FREQ
    found = []
    for i, (start, end, word, flag) in enumerate(words.tokens):
        following = words.tokens[i + 1][2] if i + 1 < len(words.tokens) else ""
        if (
            flag.startswith("nr")
            and 2 <= len(word) <= 4
            and freq.get(word, 0) < JIEBA_COMMON_WORD  # 师傅, 阿姨, 银行卡 are tagged nr too
            and not any(c.isdigit() for c in word)
            and following not in PLACE_NEXT
            and not _MEASURE.match(text, start)
            and plausible_name(word, word_check=False)
        ):
            found.append((start, end, "jieba"))
    return found


def _left_edge(text: str, start: int, bounds: set[int]) -> bool:
    """A name may start at ``start``: the text's or a sentence's start, after a cue word,
    or where jieba puts a word boundary."""
    return (
        start == 0
        or text[start - 1] in _SENTENCE_EDGE
        or start in bounds
        or _ANY_CUE_END.search(text, max(0, start - _LONGEST_CUE), start) is not None
    )


def _lengths(text: str, start: int) -> list[int]:
    """Lengths of the candidates starting at ``start``, longest first: a surname and one or
    two Han characters."""
    surname = 2 if text[start : start + 2] in COMPOUND_SURNAMES else 1
    if surname == 1 and text[start : start + 1] not in SINGLE_SURNAMES:
        return []
    return [n for n in (surname + 2, surname + 1) if _ALL_HAN.fullmatch(text, start, start + n)]


def _open_name(text: str, start: int, words: _Words, *, word_check: bool) -> tuple[int, int] | None:
    """A name at ``start`` with no word after it that ends names (网格员王芳上报, 诸葛雨桐付款):
    the longest candidate that ends where jieba ends a word and a verb, preposition or
    adverb follows."""
    for n in _lengths(text, start):
        token = text[start : start + n]
        if words.before_a_verb(start + n) and plausible_name(token, word_check=word_check):
            return start, start + n
    return None


def _verb_names(text: str, bounds: set[int]) -> list[tuple[int, int, str]]:
    """Names before what follows a name at a sentence's start (反映, 称, 家, 的身份证 …):
    the longest candidate ending there that starts at a left edge and looks like a name
    (和王芳来电 → 王芳)."""
    out = []
    for m in _VERB_AFTER.finditer(text):
        end = m.start()
        if len(m.group()) == 1 and end not in bounds and _common_word(text[end - 1 : m.end()]):
            continue  # the verb ends a word: 商家, 名称, 听说
        for length in (4, 3, 2):
            start = end - length
            token = text[start:end] if start >= 0 else ""
            if (
                not token
                or _surname_length(token) + 2 < length
                or not _left_edge(text, start, bounds)
            ):
                continue
            if not _ALL_HAN.fullmatch(token) or not plausible_name(token):
                continue  # 和王芳 is no name (a function word first): 王芳 is tried next
            out.append((start, end, "cue_verb"))
            break
    return out


def _edge_names(text: str, words: _Words) -> list[tuple[int, int, str]]:
    """Names that start a sentence or a clause (何秀英、冯静三户联名…, 卢浩然，电话…, 【来电】
    皇甫佳，…): up to a word that ends names, or before a verb (:func:`_open_name`); they
    must look like names."""
    out = []
    for start in range(len(text)):
        if start and text[start - 1] not in _SENTENCE_EDGE:
            continue
        m = _NAME_TO_END.match(text, start)
        span = (start, m.end()) if m and plausible_name(m.group()) else None
        span = span or _open_name(text, start, words, word_check=True)
        if span is not None and not words.starts_with_a_word(*span):
            out.append((*span, "edge"))
    return out


def _cue_names(
    text: str, words: _Words | None, cues: re.Pattern = _CUE_WORD, source: str = "cue_before"
) -> list[tuple[int, int, str]]:
    """Names after a cue word (市民, 户主, 反映人 …): up to a word that ends names, else (with
    jieba's words) before a verb. After a strong cue a candidate may be any name that is
    no common word of another kind (市民来电) and a surname with a title (市民刘女士); after
    a weak one (``_CUE_WEAK``: 请, 与, 据 …) it must pass every check of
    :func:`plausible_name`."""
    weak = cues is _CUE_WEAK
    out = []
    for cue in cues.finditer(text):
        m = _NAME_TO_END.match(text, cue.end())
        token = m.group() if m else ""
        if token and weak and plausible_name(token):
            out.append((m.start(), m.end(), source))
        elif token and not weak and words is None and plausible_name(token, word_check=False):
            out.append((m.start(), m.end(), source))  # no dictionary loaded
        elif token and not weak and words is not None and not _other_word(token):
            if plausible_name(token, word_check=False) or _titled(token):
                out.append((m.start(), m.end(), source))
        elif words is not None:
            span = _open_name(text, cue.end(), words, word_check=weak)
            if span is not None and not _other_word(text[span[0] : span[1]]):
                out.append((*span, source))
    return out


def _padded_names(text: str) -> list[tuple[int, int, str]]:
    """Two-character names padded to a roster's width, after a cue word (市民王 芳反映)."""
    return [
        (m.start(), m.end(), "cue_before")
        for cue in _CUE_WORD.finditer(text)
        if (m := _PADDED.match(text, cue.end())) is not None
    ]


def _dotted_names(text: str, words: _Words | None) -> list[tuple[int, int, str]]:
    """Names in parts (see the module's ``dotted``) in ``text`` (half-width)."""
    joined = name_dots_str(text, stops=False)  # one character for one: offsets line up
    runs = [(m.start(), m.end(), False) for m in _DOTTED.finditer(joined)]
    runs += [
        (m.start(), m.end(), True)
        for cue in _CUE_WORD.finditer(joined)
        if (m := _STOPPED.match(joined, cue.end())) is not None
        and not _STOPS.isdisjoint(m.group())  # joined by a full stop (else _DOTTED found it)
    ]
    out = []
    for start, end, after_cue in runs:
        first = min(i for i in range(start, end) if joined[i] in _JOINS)
        last = max(i for i in range(start, end) if joined[i] in _JOINS)
        if not after_cue:
            for cue in _CUE_WORD.finditer(joined, start, first):
                if cue.end() < first:  # a cue inside the first part: the name follows it
                    start = cue.end()
            if words is not None:  # common words of another kind before it (我们小区, 据
                for s, e, word, _ in words.tokens:  # 了解) are not of the name
                    if s == start and e < first and _other_word(word):
                        start = e
            start = max(start, first - NAME_PART)
        limit = min(end, last + 1 + NAME_PART)
        ends = _ENDS_NAME.search(joined, last + 2, limit)
        end = ends.start() if ends is not None else limit
        out.append((start, end, "dotted"))
    return out


_SURNAME_STARTS = frozenset(SINGLE_SURNAMES) | {c[0] for c in COMPOUND_SURNAMES}


def _may_hold_a_name(text: str) -> bool:
    """``text`` holds a character a surname starts with: a candidate name (a surname and
    one or two more characters) is possible only then."""
    return not _SURNAME_STARTS.isdisjoint(text)


def name_spans(
    text: str, known_names: frozenset[str] | set[str] | None = None, use_jieba: bool = True
) -> list[tuple[int, int, str]]:
    """(start, end, source) of every candidate name in ``text`` (half-width); candidates
    overlap: the caller keeps the best (``masking.text``). ``use_jieba=False``: the
    trusted cues and the registry only (no dictionary loaded)."""
    # a join between Han characters (not any full stop: 2400.5 loads no dictionary)
    dotted = not _JOINS.isdisjoint(text) and _JOINED.search(text) is not None
    if not (_may_hold_a_name(text) or dotted):  # a candidate starts with a surname, or is
        use_jieba = False  # in parts: none here, so jieba's dictionary (~0.6 CPU s) stays
    words = _Words(text) if use_jieba else None
    out = _cue_names(text, words)
    if " " in text:
        out += _padded_names(text)
    if dotted:
        out += _dotted_names(text, words)
    if words is not None:
        out += _jieba_names(text, words)
        out += [
            (m.start(1), m.end(1), "cue_after")
            for m in _CUE_AFTER.finditer(text)
            if m.start(1) in words.bounds and plausible_name(m.group(1), word_check=False)
        ]
        out += _cue_names(text, words, _CUE_WEAK, "cue_weak")
        out += _verb_names(text, words.bounds)
        out += _edge_names(text, words)
        out += [
            (m.start(1), m.end(1), "paren")
            for m in _PAREN.finditer(text)
            if plausible_name(m.group(1))
        ]
    if known_names:
        names = KnownNames.of(known_names)
        out += [(s, e, "known") for s, e in names.spans(text)]
    return out
