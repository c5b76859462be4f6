"""What a mart's lineage is made of: :class:`SourceField` (a lake column an output column
is computed from, with the department fields behind it and the rule its value leaves
through), the mart error family and the names of the zones and the SQL folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catalog.errors import StreethubError
from catalog.model import Catalogue, Level, MaskingRule
from curated.lineage import ROW_ID, CuratedColumn, DeptField, curated_lineage, curated_schema

SQL_DIR = Path(__file__).parent / "sql"
DIALECT = "duckdb"
CURATED, MARTS = "curated", "marts"


class MartError(StreethubError):
    """A mart's SQL or YAML cannot be built as it stands (never carries a value)."""


@dataclass(frozen=True)
class SourceField:
    """One curated (or mart) column an output column is computed from."""

    table: str  # zone.table: curated.person, marts.resident_profile
    column: str
    fields: tuple[DeptField, ...]  # the department fields behind it
    applied: MaskingRule  # the strictest rule the value passes on its way out
    masks: tuple[str, ...] = ()  # SQL functions between the output and the column, outermost first
    curated: CuratedColumn | None = None
    published_level: Level | None = None  # read through a mart: the level it publishes it at
    via: str | None = None  # read through a mart: that mart's column (marts.<mart>.<column>)

    @property
    def ref(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def level(self) -> Level:
        return max((f.level for f in self.fields), key=lambda lv: lv.rank, default=Level.L1)

    @property
    def sensitive_fields(self) -> tuple[DeptField, ...]:
        return tuple(f for f in self.fields if f.level.sensitive)


Lineage = dict[str, list[SourceField]]

# the columns of a curated table naming the department and dataset each row comes from
ROW_SOURCE_COLUMNS = ("dept", "dataset")


def held_datasets(catalogue: Catalogue, table: str) -> set[tuple[str, str]] | None:
    """(dept, dataset) of the catalogue datasets whose records ``curated.<table>`` holds (the
    fields behind its row id); None when the table has no ``dept`` / ``dataset`` columns to
    tell its rows' datasets by (or is no curated table)."""
    columns = curated_schema(catalogue).get(table, {})
    key = ROW_ID.get(table)
    if key is None or not all(c in columns for c in ROW_SOURCE_COLUMNS):
        return None
    return {(f.dept, f.dataset) for f in curated_lineage(catalogue)[(table, key)].fields}


__all__ = [
    "CURATED",
    "DIALECT",
    "MARTS",
    "ROW_SOURCE_COLUMNS",
    "SQL_DIR",
    "Lineage",
    "MartError",
    "SourceField",
    "held_datasets",
]
