"""The marts' own catalogue entries (数据集市目录): ``catalog/marts/<mart>.yaml``, one a mart.

A mart is documented like any dataset — level, share type, owner, update cycle, consent
category (a code of ``catalog.consent``) with the lawful basis it rests on in words, intended
consumers, grade — but has no delivery or provider block: the hub makes
it, from the SQL in ``marts/sql/<mart>.sql``. Each column says the level and the masking rule
it is published with; ``k_anonymity`` and ``quasi_identifiers`` (both or neither) ask the
build to check k-anonymity over those columns. A mart with one row per resident marks the
column holding the resident's pseudonym ``subject: true``: residents who declined the mart's
consent category are left out of its grants by that column. ``made_from`` names the frame
made in Python (a model's scores) that its SQL reads instead of lake tables: only the maker
handing it over publishes the mart. ``history_of`` names the mart whose rows a history mart
keeps, one dated set a day (trends: the governance and quality scorecards). ``sources`` says which department datasets feed a
curated table the mart reads (``curated.event: [dept.dataset, …]``): the SQL sees
only those datasets' rows of it and the lineage only their fields — the SQL itself never
names a department or a dataset.

What needs the SQL (its output columns equal the YAML's, the level at least the strictest
source the SQL reads, masking through each column's rule) is checked in ``marts/`` (the
catalogue imports nothing of ours); here only what a YAML file says on its own.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from catalog.consent import ConsentCategory
from catalog.errors import CatalogError, StreethubError
from catalog.model import (
    IDENTIFIER,
    DataGrade,
    FieldType,
    Level,
    MaskingRule,
    ShareType,
    UpdateCycle,
    _Strict,
)
from catalog.settings import CATALOG_DIR
from catalog.yamlfile import load_entry

MARTS_DIR = CATALOG_DIR.parent / "marts"
HISTORY_COLUMN = "run_date"  # a history mart's first column: the day of the run that added a row


class MartColumn(_Strict):
    """A column of a mart: what it holds, its level and the rule it is published with."""

    name: str
    label_zh: str
    type: FieldType
    level: Level
    masking: MaskingRule = Field(
        default=MaskingRule.none,
        description="the rule the column is published with (the SQL applies it)",
    )
    subject: bool = Field(
        default=False,
        description="holds the pseudonym of the resident the row is about (the master index's "
        "person id): residents' consent choices are matched against it",
    )
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"column name {v!r} must be snake_case ASCII (a-z, 0-9, _)")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> MartColumn:
        if self.level.sensitive and self.masking is MaskingRule.none:
            raise ValueError(f"an {self.level.value} column needs its masking rule, not 'none'")
        if self.subject and self.masking is not MaskingRule.pseudonymise:
            raise ValueError("a subject column holds a resident's pseudonym: masking pseudonymise")
        return self


class Mart(_Strict):
    """A published table of the hub (数据集市)."""

    name: str
    name_zh: str
    summary: str
    level: Level
    share_type: ShareType
    owner: str = Field(description="e-mail or team:x of the mart's owner")
    update_cycle: UpdateCycle
    consent_category: ConsentCategory = Field(
        description="授权同意类别 (catalog/consent.py): residents who declined it are left out"
    )
    lawful_basis: str = Field(description="the lawful basis it rests on (处理依据), in words")
    consumers: list[str] = Field(description="who is meant to read it")
    grade: DataGrade = DataGrade.general
    k_anonymity: int | None = Field(default=None, ge=2)
    quasi_identifiers: list[str] = Field(default_factory=list)
    sources: dict[str, list[str]] = Field(
        default_factory=dict,
        description="curated.<table> → the datasets (dept.dataset) of its rows the mart reads",
    )
    made_from: str | None = Field(
        default=None,
        description="the relation its SQL reads that is a frame made in Python (a model's "
        "scores), not a lake table: only the maker that hands the build that frame publishes "
        "it (marts.publish.publish_frame); a build from the lake alone skips it",
    )
    history_of: str | None = Field(
        default=None,
        description="the mart this one keeps the history of (历史): each build of that mart "
        "adds its rows here under the run's date (column run_date, first), a re-run the same "
        "day replacing that day's rows (marts.build)",
    )
    columns: list[MartColumn]

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"mart name {v!r} must be snake_case ASCII")
        return v

    @field_validator("made_from", "history_of")
    @classmethod
    def _relation(cls, v: str | None) -> str | None:
        if v is not None and not IDENTIFIER.match(v):
            raise ValueError(f"{v!r} must be snake_case ASCII")
        return v

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str) -> str:
        if not (v.startswith("team:") or ("@" in v and " " not in v)):
            raise ValueError(f"owner {v!r} must be an e-mail or team:name")
        return v

    @field_validator("consumers")
    @classmethod
    def _consumers(cls, v: list[str]) -> list[str]:
        if not v or any(not c.strip() for c in v):
            raise ValueError("a mart names at least one consumer, none blank")
        return v

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for table, refs in v.items():
            zone, _, name = table.partition(".")
            if zone != "curated" or not IDENTIFIER.match(name):
                raise ValueError(f"sources: {table!r} is not a curated table (curated.<table>)")
            if not refs:
                raise ValueError(f"sources: {table} names no dataset")
            for ref in refs:
                dept, _, dataset = ref.partition(".")
                if not (IDENTIFIER.match(dept) and IDENTIFIER.match(dataset)):
                    raise ValueError(f"sources: {table}: {ref!r} is not dept.dataset")
            dupes = sorted({r for r in refs if refs.count(r) > 1})
            if dupes:
                raise ValueError(f"sources: {table} names {', '.join(dupes)} twice")
        return v

    def source_datasets(self, table: str) -> set[tuple[str, str]] | None:
        """(dept, dataset) of the rows of ``curated.<table>`` the mart reads; None: all."""
        refs = self.sources.get(f"curated.{table}")
        if refs is None:
            return None
        return {(r.partition(".")[0], r.partition(".")[2]) for r in refs}

    @property
    def subject_column(self) -> str | None:
        """The column naming the resident a row is about (``subject: true``), or None."""
        return next((c.name for c in self.columns if c.subject), None)

    def column(self, name: str) -> MartColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @model_validator(mode="after")
    def _coherent(self) -> Mart:
        names = self.column_names
        if not names:
            raise ValueError("a mart needs at least one column")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column(s): {', '.join(dupes)}")
        top = max((c.level for c in self.columns), key=lambda lv: lv.rank)
        if top.rank > self.level.rank:
            raise ValueError(f"level {self.level.value} is below its {top.value} column(s)")
        if (self.k_anonymity is None) != (not self.quasi_identifiers):
            raise ValueError("k_anonymity and quasi_identifiers go together (both or neither)")
        subjects = [c.name for c in self.columns if c.subject]
        if len(subjects) > 1:
            raise ValueError(f"one subject column at most, not {', '.join(subjects)}")
        if subjects and not self.consent_category.personal:
            raise ValueError(
                f"a mart with a resident per row ({subjects[0]}) holds residents' information: "
                f"consent_category cannot be {self.consent_category.value}"
            )
        if self.history_of is not None and (
            names[0] != HISTORY_COLUMN or self.columns[0].type is not FieldType.date
        ):
            raise ValueError(f"a history mart's first column is {HISTORY_COLUMN} (date)")
        unknown = [q for q in self.quasi_identifiers if q not in names]
        if unknown:
            raise ValueError(f"quasi_identifiers name unknown column(s): {', '.join(unknown)}")
        return self


def load_mart(path: Path) -> tuple[Mart | None, list[StreethubError]]:
    """Parse one mart file; the mart (or None) and the problems found."""
    return load_entry(path, Mart, "mart", lambda m: m.name)


def load_marts(catalogue_dir: Path | None = None) -> dict[str, Mart]:
    """Every ``<mart>.yaml`` of ``catalogue_dir`` (default ``catalog/marts``) by name;
    CatalogError listing every problem. A folder without marts gives none."""
    directory = Path(catalogue_dir or MARTS_DIR)
    marts: dict[str, Mart] = {}
    problems: list[StreethubError] = []
    for path in sorted(directory.glob("*.yaml")):
        mart, found = load_mart(path)
        problems.extend(found)
        if mart is not None and not found:
            marts[mart.name] = mart
    if problems:
        raise CatalogError(problems)
    return marts


__all__ = ["MARTS_DIR", "Mart", "MartColumn", "load_mart", "load_marts"]
