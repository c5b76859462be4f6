"""Catalogue browsing (目录浏览与检索): what can be asked for, never the data itself.

One :class:`Entry` per department dataset (``dept.dataset``) and per published mart
(``marts.<name>``), built from the catalogue alone: names, summary, share type with its
conditions or legal basis, consent category, level, update cycle, grade, and the fields
(name, Chinese label, type, level, masking rule) — plus the latest quality score per
dataset from the lake's quality scorecard mart (``marts.quality_scorecard``).

:func:`search` is Chinese full-text search over names, summaries and field labels: the
query and every entry are segmented with jieba (search mode, the catalogue's own names and
labels added as words, so a query naming one finds it whole), and a query word matches a section that
holds it as a word or as a substring. Every query word must match; names weigh more than
field labels, field labels more than summaries.

:func:`lookup` is the one way other modules of the service resolve a resource reference.
"""

from __future__ import annotations

import logging
import os
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from catalog.consent import ConsentCategory
from catalog.errors import LakeError
from catalog.marts import Mart, load_marts
from catalog.model import Level, ShareType
from share_api.service import Service

MART_PREFIX = "marts."
MART_PROVIDER_ZH = "街道数据中台"
SCORECARD = 'marts."quality_scorecard"'
QUALITY_TTL_SECONDS = 60.0
# section weights of a match: a dataset's own name says most, a field label less, the summary least
WEIGHTS = {"name": 3.0, "fields": 2.0, "summary": 1.0}
# words too common in a catalogue to narrow a search
STOP_WORDS = frozenset({"的", "和", "与", "及", "或", "了", "在", "是", "等", "中", "之"})


@dataclass(frozen=True)
class FieldEntry:
    """A data item as the catalogue lists it (数据项): never a value."""

    name: str
    label_zh: str
    type: str
    level: str
    masking: str


@dataclass(frozen=True)
class Quality:
    """The latest scorecard of a dataset: the mean of its dimension scores, and each."""

    score: float
    dimensions: dict[str, float]
    computed_at: str | None


@dataclass(frozen=True)
class Entry:
    """What the catalogue says of one resource a department may ask for."""

    resource: str
    kind: str  # dataset | mart
    resource_code: str | None
    name_zh: str
    name_en: str | None
    summary: str
    owner_org: str | None  # the providing department's code; None for a mart (the hub's)
    provider_zh: str
    share_type: ShareType
    share_conditions: str | None
    legal_basis: str | None  # a dataset's legal basis; a mart's lawful basis
    consent_category: ConsentCategory
    level: Level
    update_cycle: str
    grade: str
    entity: str | None
    fields: tuple[FieldEntry, ...]
    consumers: tuple[str, ...] = ()

    def field(self, name: str) -> FieldEntry:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


@dataclass(frozen=True)
class Hit:
    entry: Entry
    score: float
    matched_fields: tuple[str, ...] = ()


def marts_of(service: Service) -> dict[str, Mart]:
    """The catalogued marts (``catalog/marts/*.yaml`` beside the departments' folder), read
    once per service."""
    directory = Path(service.settings.catalog_dir).parent / "marts"
    return service.kept("catalogue.marts", lambda: load_marts(directory))


def _dataset_entries(service: Service) -> list[Entry]:
    out = []
    for dept, ds in service.catalogue.datasets():
        fields = tuple(
            FieldEntry(f.name, f.label_zh, f.type.value, f.level.value, f.masking.value)
            for f in ds.fields
        )
        out.append(
            Entry(
                resource=f"{dept.code}.{ds.code}",
                kind="dataset",
                resource_code=ds.resource_code,
                name_zh=ds.name_zh,
                name_en=ds.name_en,
                summary=ds.summary,
                owner_org=dept.code,
                provider_zh=dept.name_zh,
                share_type=ds.share_type,
                share_conditions=ds.share_conditions,
                legal_basis=ds.legal_basis,
                consent_category=ds.consent_category,
                level=ds.max_level,
                update_cycle=ds.update_cycle.value,
                grade=ds.grade.value,
                entity=ds.entity.value,
                fields=fields,
            )
        )
    return out


def _mart_entries(service: Service) -> list[Entry]:
    out = []
    for mart in marts_of(service).values():
        fields = tuple(
            FieldEntry(c.name, c.label_zh, c.type.value, c.level.value, c.masking.value)
            for c in mart.columns
        )
        out.append(
            Entry(
                resource=MART_PREFIX + mart.name,
                kind="mart",
                resource_code=None,
                name_zh=mart.name_zh,
                name_en=mart.name,
                summary=mart.summary,
                owner_org=None,
                provider_zh=MART_PROVIDER_ZH,
                share_type=mart.share_type,
                share_conditions=None,
                legal_basis=mart.lawful_basis,
                consent_category=mart.consent_category,
                level=mart.level,
                update_cycle=mart.update_cycle.value,
                grade=mart.grade.value,
                entity=None,
                fields=fields,
                consumers=tuple(mart.consumers),
            )
        )
    return out


def entries(service: Service) -> list[Entry]:
    """Every dataset, then every mart, in catalogue order (built once per service)."""
    return service.kept(
        "catalogue.entries", lambda: _dataset_entries(service) + _mart_entries(service)
    )


def _by_ref(found: list[Entry]) -> dict[str, Entry]:
    by_ref = {e.resource: e for e in found}
    by_ref.update({e.resource_code: e for e in found if e.resource_code})
    return by_ref


def lookup(service: Service, resource: str) -> Entry:
    """The entry of ``dept.dataset`` (also ``dept/dataset``, ``dept__dataset`` or its
    resource code) or ``marts.<name>``; KeyError when the catalogue has none."""
    by_ref = service.kept("catalogue.by_ref", lambda: _by_ref(entries(service)))
    if resource in by_ref:
        return by_ref[resource]
    if not resource.startswith(MART_PREFIX):
        dept, ds = service.catalogue.dataset(resource)
        return by_ref[f"{dept.code}.{ds.code}"]
    raise KeyError(resource)


# --- quality scores from the lake ---------------------------------------------------------


def quality_scores(service: Service) -> dict[str, Quality]:
    """``dept.dataset`` → its latest quality scorecard (re-read at most once a minute);
    empty when the lake has no scorecard yet."""
    held = service.extra.get("catalogue.quality")
    if held is not None and time.monotonic() - held[0] < QUALITY_TTL_SECONDS:
        return held[1]
    scores = _read_scores(service)
    service.extra["catalogue.quality"] = (time.monotonic(), scores)
    return scores


def _read_scores(service: Service) -> dict[str, Quality]:
    import duckdb

    from lakehouse.lake import open_lake

    try:
        with open_lake(service.settings, read_only=True) as con:
            rows = con.execute(
                f"SELECT dept, dataset, dimension, score, CAST(computed_at AS VARCHAR) "
                f"FROM {SCORECARD} WHERE dataset <> '*' AND score IS NOT NULL"
            ).fetchall()
    except (LakeError, duckdb.Error) as exc:  # no lake or no scorecard yet: no scores
        logging.getLogger(__name__).info("no quality scores: %s", type(exc).__name__)
        return {}
    dims: dict[str, dict[str, float]] = {}
    when: dict[str, str | None] = {}
    for dept, dataset, dimension, score, computed_at in rows:
        ref = f"{dept}.{dataset}"
        dims.setdefault(ref, {})[dimension] = round(float(score), 4)
        when[ref] = max(filter(None, (when.get(ref), computed_at)), default=None)
    return {
        ref: Quality(round(sum(d.values()) / len(d), 4), d, when[ref])
        for ref, d in dims.items()
        if d
    }


# --- Chinese full-text search ------------------------------------------------------------


class SearchIndex:
    """jieba-segmented sections of every entry, with the catalogue's words added."""

    def __init__(self, items: list[Entry], cache_dir: Path) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.tokenizer = jieba.Tokenizer()
        self.tokenizer.tmp_dir = str(cache_dir)
        self.tokenizer.cache_file = "jieba.cache"
        for e in items:
            for word in (e.name_zh, *(f.label_zh for f in e.fields)):
                for part in _parts(word):
                    self.tokenizer.add_word(part)
        self.items = items
        self.sections = [
            {
                "name": self._section(f"{e.name_zh} {e.name_en or ''} {e.resource}"),
                "summary": self._section(e.summary),
                "fields": self._section(" ".join(f.label_zh for f in e.fields)),
            }
            for e in items
        ]
        self.field_labels = [
            [(f.name, _norm(f.label_zh), set(self.words(f.label_zh))) for f in e.fields]
            for e in items
        ]

    def words(self, text: str, *, search_mode: bool = True) -> list[str]:
        """The words of ``text``, normalised (NFKC, lower case), without blanks, punctuation
        and stop words: jieba's search mode (a long word and the shorter words in it), or
        its precise mode (each word once)."""
        cut = self.tokenizer.cut_for_search if search_mode else self.tokenizer.cut
        out = []
        for w in cut(_norm(text)):
            w = w.strip()
            if w and w not in STOP_WORDS and any(ch.isalnum() for ch in w):
                out.append(w)
        return out

    def _terms(self, query: str) -> list[list[tuple[str, float]]]:
        """Each word of the query (precise mode) with its alternatives: itself (weight 1),
        and the shorter words of two or more characters search mode finds in it (weight
        0.5: 身份证号 also finds 公民身份号码 by 身份)."""
        terms = []
        for word in dict.fromkeys(self.words(query, search_mode=False)):
            parts = [p for p in self.words(word) if p != word and len(p) >= 2]
            terms.append([(word, 1.0), *((p, 0.5) for p in dict.fromkeys(parts))])
        return terms

    def _match(self, i: int, alternatives: list[tuple[str, float]]) -> float:
        """The best weight with which one query word meets entry ``i``: the section's weight
        × the alternative's × 1 as a word of the section, 0.6 inside one of its words."""
        best = 0.0
        for name, (text, words) in self.sections[i].items():
            for term, weight in alternatives:
                if term in words:
                    best = max(best, WEIGHTS[name] * weight)
                elif term in text:
                    best = max(best, WEIGHTS[name] * weight * 0.6)
        return best

    def _section(self, text: str) -> tuple[str, set[str]]:
        return _norm(text), set(self.words(text))

    def search(self, query: str) -> list[Hit]:
        terms = self._terms(query)
        if not terms:
            return []
        hits = []
        for i, e in enumerate(self.items):
            weights = [self._match(i, alternatives) for alternatives in terms]
            if not all(weights):
                continue
            alternatives = [t for alt in terms for t, _ in alt]
            matched = tuple(
                name
                for name, text, words in self.field_labels[i]
                if any(t in words or t in text for t in alternatives)
            )
            hits.append(Hit(e, round(sum(weights), 3), matched))
        hits.sort(key=lambda h: (-h.score, h.entry.resource))
        return hits


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _parts(label: str) -> list[str]:
    """A label as words to add to jieba: the label without its bracketed unit, and the
    bracket's contents (``收缩压（mmHg）`` → 收缩压, mmhg)."""
    text = _norm(label).replace("(", " ").replace(")", " ").replace("/", " ")
    return [p for p in text.split() if len(p) >= 2]


def jieba_cache_dir() -> Path:
    """Where jieba caches its dictionary: the user's cache folder, as masking's tokenizer
    (``$XDG_CACHE_HOME/streethub/jieba``), not the hub's home."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streethub" / "jieba"


def search_index(service: Service) -> SearchIndex:
    """The service's search index, built once (jieba's dictionary loads in about a second)."""
    return service.kept("catalogue.index", lambda: SearchIndex(entries(service), jieba_cache_dir()))


def search(service: Service, query: str) -> list[Hit]:
    """Entries matching every word of ``query`` (names, summaries, field labels), best first."""
    return search_index(service).search(query)


__all__ = [
    "Entry",
    "FieldEntry",
    "Hit",
    "Quality",
    "SearchIndex",
    "entries",
    "lookup",
    "marts_of",
    "quality_scores",
    "search",
    "search_index",
]
