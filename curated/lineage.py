"""Where each curated column comes from (列级血缘): its concepts, the department fields behind
them (dept, dataset, field, raw source header, level, masking rule) and the protection the
curated zone already applied (pseudonyms, ciphertext).

Nothing here lists departments or datasets: the entity tables' columns are the curated
modules' public names (``EVENT_COLUMNS``, ``THING_COLUMNS``, ``HOUSE_COLUMNS``,
``HOUSEHOLD_COLUMNS``, the golden attributes), the concepts each column is built from are
those modules' concept names, and the fields carrying a concept are the catalogue's. A column
a module adds later is found by name: ``<entity>.<column>``, ``<entity>.<stem>_time`` for a
``<stem>_at`` column, or ``place.<column>`` (``urgency`` ← ``event.urgency``,
``dispatched_at`` ← ``event.dispatched_time``, ``lon`` ← ``place.lon``).

Protection in the curated zone: pseudonym columns (``person_id``, ``house_id``, ``key_pid``
…) hold keyed HMACs (``pseudonymise``); a text column whose sources are L3/L4 and not
pseudonymised holds ciphertext (``encrypt``) bound to ``curated.<table>.<column>`` and to the
row's id column (``person_id``, ``house_id``, ``event_id``); the rest is as the sources say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from catalog.authority import authority, key_authorities, person_key, pid_fields
from catalog.model import Catalogue, Dataset, Level, MaskingRule, PiiKind
from curated.events import (
    CATEGORY,
    CLOSED,
    EVENT,
    EVENT_COLUMNS,
    STATUS,
    TIME,
    event_datasets,
    placing_thing,
)
from curated.golden import PERSON, PERSON_ID, as_of_field, golden_attributes
from curated.households import HOUSEHOLD, HOUSEHOLD_COLUMNS, HOUSEHOLD_KEY, RELATION
from curated.houses import (
    BUILDING_ADDRESS,
    BUILDING_KEY,
    HOUSE,
    HOUSE_COLUMNS,
    MENTION_COLUMNS,
    MENTIONS,
    UNIT_ADDRESS,
    UNIT_KEY,
    address_fields,
    public_fields,
)
from curated.persons import MENTION_COLUMNS as PERSON_MENTION_COLUMNS
from curated.persons import MENTIONS_TABLE
from curated.things import COMMUNITY, GRID, LAT, LON, THING, THING_COLUMNS, thing_datasets

ZONE = "curated"
PLACE = "place"
# the id column a table's ciphertexts are bound to (and its rows are counted by)
ROW_ID = {PERSON: PERSON_ID, HOUSE: "house_id", EVENT: "event_id", THING: "thing_id",
          HOUSEHOLD: "household_id", "person_mentions": "key_pid",
          "house_mentions": "key_pid"}  # fmt: skip
# a bookkeeping column (dept, dataset, method, built_at …) holds none of its fields' values:
# the rule a count is published under (masking.sql.COUNTED)
NO_VALUE = MaskingRule.suppress
# columns that hold pseudonyms (keyed HMACs) in every entity table
PSEUDONYM_COLUMNS = frozenset(
    {"person_id", "house_id", "household_id", "event_id", "thing_id", "entity_id", "key_pid",
     "unit_key_pid", "room_key_pid", "sources_digest", "members"}
)  # fmt: skip


@dataclass(frozen=True)
class DeptField:
    """A department's field as the catalogue describes it (the raw header included)."""

    dept: str
    dataset: str
    field: str
    header: str
    level: Level
    masking: MaskingRule
    concept: str | None

    @property
    def ref(self) -> str:
        """``dept.dataset.field``."""
        return f"{self.dept}.{self.dataset}.{self.field}"


@dataclass(frozen=True)
class CuratedColumn:
    """A column of a curated table and what it is made of."""

    table: str
    column: str
    sql_type: str
    concepts: tuple[str, ...]
    fields: tuple[DeptField, ...]
    applied: MaskingRule  # none | pseudonymise | encrypt: what the curated zone did already
    row_id: str | None = None  # encrypt: the row's id column the ciphertext is bound to

    @property
    def ref(self) -> str:
        return f"{ZONE}.{self.table}.{self.column}"

    @property
    def sensitive(self) -> bool:
        """Some source field is L3/L4."""
        return any(f.level.sensitive for f in self.fields)

    @property
    def encrypted(self) -> bool:
        return self.applied is MaskingRule.encrypt

    @property
    def cipher_column(self) -> str:
        """The column part of the ciphertexts' AAD (``curated.person.chronic_disease``)."""
        return self.ref


def dept_field(dept: str, ds: Dataset, name: str) -> DeptField:
    f = ds.field(name)
    return DeptField(dept, ds.code, f.name, f.source_name, f.level, f.masking, f.concept)


Sources = list[tuple[str, Dataset]]


def _with_concepts(datasets: Sources, concepts: Iterable[str]) -> list[DeptField]:
    wanted = set(concepts)
    return [
        dept_field(d, ds, f.name) for d, ds in datasets for f in ds.fields if f.concept in wanted
    ]


def _keys(datasets: Sources) -> list[DeptField]:
    return [dept_field(d, ds, k) for d, ds in datasets for k in ds.key]


def _addresses(datasets: Sources) -> list[DeptField]:
    return [
        dept_field(d, ds, f.name)
        for d, ds in datasets
        for f in ds.fields
        if f.pii is PiiKind.address
    ]


def _named(entity: str, column: str) -> tuple[str, ...]:
    """Concepts a column is named after (a column a module added after this file)."""
    out = [f"{entity}.{column}", f"{PLACE}.{column}"]
    if column.endswith("_at"):
        out.append(f"{entity}.{column.removesuffix('_at')}_time")
    return tuple(out)


def _column(
    table: str,
    column: str,
    sql_type: str,
    concepts: Iterable[str],
    fields: Iterable[DeptField],
    applied: MaskingRule | None = None,
) -> CuratedColumn:
    fields = tuple(dict.fromkeys(fields))
    concepts = tuple(c for c in dict.fromkeys(concepts) if any(f.concept == c for f in fields))
    if applied is None:
        if column in PSEUDONYM_COLUMNS:
            applied = MaskingRule.pseudonymise
        elif not concepts:  # which records, how linked, when: none of the fields' values
            applied = NO_VALUE
        elif sql_type == "VARCHAR" and any(
            f.level.sensitive and f.masking is not MaskingRule.pseudonymise for f in fields
        ):
            applied = MaskingRule.encrypt
        else:
            applied = MaskingRule.none
    row_id = ROW_ID.get(table) if applied is MaskingRule.encrypt else None
    return CuratedColumn(table, column, sql_type, concepts, fields, applied, row_id)


def _person_columns(cat: Catalogue) -> list[CuratedColumn]:
    key = person_key(cat)
    everyone = [(d.code, ds) for d, ds in cat.datasets()]
    ids = _with_concepts(everyone, [key] if key else [])
    out = [
        _column(PERSON, PERSON_ID, "VARCHAR", [key] if key else [], ids),
        _column(PERSON, "sources_digest", "VARCHAR", [key] if key else [], ids),
    ]
    for a in golden_attributes(cat):
        auth = a.authority
        f = [dept_field(auth.dept, auth.dataset, auth.field)]
        # the record's date (its event time or first date field; none: the day it was loaded)
        when = as_of_field(auth.dataset)
        dated = [dept_field(auth.dept, auth.dataset, when)] if when else []
        secret = MaskingRule.encrypt if a.sensitive else MaskingRule.none
        out += [
            _column(PERSON, a.column, "VARCHAR", [a.concept], f, secret),
            _column(PERSON, f"{a.column}_source", "VARCHAR", [a.concept], f, MaskingRule.none),
            _column(PERSON, f"{a.column}_as_of", "DATE", [a.concept], f + dated, MaskingRule.none),
        ]
    return out


def _household_columns(cat: Catalogue) -> list[CuratedColumn]:
    a = authority(cat, HOUSEHOLD_KEY)
    if a is None:
        return []
    register = [(a.dept, a.dataset)]
    key = person_key(cat)
    spec = {
        "household_id": [HOUSEHOLD_KEY],
        "house_id": [UNIT_KEY, UNIT_ADDRESS],
        "members": [key, RELATION] if key else [RELATION],
        "member_count": [HOUSEHOLD_KEY],
    }
    out = []
    for name, sql_type in HOUSEHOLD_COLUMNS:
        concepts = spec.get(name, [HOUSEHOLD_KEY])
        fields = _with_concepts(register, concepts)
        if name in ("house_id", "members_housed", "houses_named"):
            fields += _addresses(register)
        applied = MaskingRule.suppress if name in ("members_housed", "houses_named") else None
        out.append(_column(HOUSEHOLD, name, sql_type, concepts, fields, applied))
    return out


def _house_columns(cat: Catalogue) -> list[CuratedColumn]:
    unit, building = authority(cat, UNIT_KEY), authority(cat, BUILDING_KEY)
    units = [(unit.dept, unit.dataset)] if unit else []
    buildings = [(building.dept, building.dataset)] if building else []
    spec = {
        "house_id": (units, [UNIT_KEY, UNIT_ADDRESS]),
        "community_code": (units + buildings, [COMMUNITY]),
        "building_id": (units + buildings, [BUILDING_KEY]),
        "building_address": (buildings, [BUILDING_ADDRESS]),
        "grid_code": (units + buildings, [GRID, LON, LAT]),  # the cell nearest the building
        "lon": (buildings, [LON]),
        "lat": (buildings, [LAT]),
        "address": (units, [UNIT_ADDRESS]),
        "unit_key_pid": (units, [UNIT_ADDRESS]),
        "room_key_pid": (units, [UNIT_ADDRESS]),
    }
    out = []
    for name, sql_type in HOUSE_COLUMNS:
        datasets, concepts = spec.get(name) or (units + buildings, _named(HOUSE, name))
        fields = _with_concepts(datasets, concepts)
        if not fields:  # bookkeeping: the register's units
            concepts, fields = [UNIT_KEY], _with_concepts(units, [UNIT_KEY])
        applied = None
        if name == "attributes":  # the register's public fields as JSON
            fields = [dept_field(d, ds, f) for d, ds in units for f in public_fields(ds)]
            applied = MaskingRule.none
        out.append(_column(HOUSE, name, sql_type, concepts, fields, applied))
    return out


def _thing_columns(cat: Catalogue) -> list[CuratedColumn]:
    things = [(d, ds) for d, ds in thing_datasets(cat)]
    registers = list(key_authorities(cat))
    spec = {
        "entity_id": registers,
        "community_code": [COMMUNITY],
        "grid_code": [GRID, LON, LAT],
        "lon": [LON],
        "lat": [LAT],
    }
    out = []
    for name, sql_type in THING_COLUMNS:
        concepts = spec.get(name, [])
        if name == "attributes":
            fields = [dept_field(d, ds, f) for d, ds in things for f in public_fields(ds)]
        elif concepts:
            fields = _with_concepts(things, concepts)
        else:
            fields = _keys(things)
        if name == "entity_id":
            fields += _keys(things)
        applied = MaskingRule.none if name == "attributes" else None  # public fields as JSON
        out.append(_column(THING, name, sql_type, concepts, fields, applied))
    return out


def _event_columns(cat: Catalogue) -> list[CuratedColumn]:
    events = [(d, ds) for d, ds in event_datasets(cat)]
    placing = [via[:2] for _, ds in events if (via := placing_thing(cat, ds))]
    key = person_key(cat)
    spec = {
        "category": [CATEGORY],
        "status": [STATUS],
        "at": [TIME],
        "day": [TIME],
        "closed_at": [CLOSED],
        "grid_code": [GRID, LON, LAT],
        "community_code": [COMMUNITY],
    }
    out = []
    for name, sql_type in EVENT_COLUMNS:
        concepts = spec.get(name) or list(_named(EVENT, name))
        fields = _with_concepts(events, concepts)
        if name in ("grid_code", "community_code"):
            fields += _with_concepts(placing, concepts)
        if name == "person_id":
            concepts = [key] if key else []
            fields = [dept_field(d, ds, f.name) for d, ds in events for f in pid_fields(ds)]
        elif name == "house_id":
            concepts, fields = [], _addresses(events)
        elif not fields:  # ids and bookkeeping: the records the rows come from
            concepts, fields = [], _keys(events)
        out.append(_column(EVENT, name, sql_type, concepts, fields))
    return out


def _mention_columns(cat: Catalogue) -> list[CuratedColumn]:
    """The master resident index (a record → its person) and the house mentions (a record's
    address → its unit): ids from the person fields / the address fields, the rest from the
    records' keys."""
    key = person_key(cat)
    everyone = [(d.code, ds) for d, ds in cat.datasets()]
    people = [dept_field(d, ds, f.name) for d, ds in everyone for f in pid_fields(ds)]
    out = []
    for name, sql_type in PERSON_MENTION_COLUMNS:
        fields = people if name == "person_id" else _keys(everyone)
        concepts = [key] if key and name == "person_id" else []
        out.append(_column(MENTIONS_TABLE, name, sql_type, concepts, fields))
    addresses = [dept_field(d, ds, f.name) for d, ds, f in address_fields(cat)]
    named = sorted({(f.dept, f.dataset) for f in addresses})
    holders = [(d, ds) for d, ds in everyone if (d, ds.code) in named]
    for name, sql_type in MENTION_COLUMNS:
        fields = addresses if name in ("house_id", "unit_key_pid", "field") else _keys(holders)
        out.append(_column(MENTIONS, name, sql_type, [], fields))
    return out


def _build(cat: Catalogue) -> dict[tuple[str, str], CuratedColumn]:
    columns = (
        _person_columns(cat)
        + _household_columns(cat)
        + _house_columns(cat)
        + _thing_columns(cat)
        + _event_columns(cat)
        + _mention_columns(cat)
    )
    return {(c.table, c.column): c for c in columns}


_BUILT: dict[int, tuple[Catalogue, dict[tuple[str, str], CuratedColumn]]] = {}


def curated_lineage(catalogue: Catalogue) -> dict[tuple[str, str], CuratedColumn]:
    """(table, column) → :class:`CuratedColumn` for every column of the curated entity
    tables (person, household, house, thing, event) and of the two indexes
    (person_mentions, house_mentions); built once per catalogue object."""
    held = _BUILT.get(id(catalogue))
    if held is None or held[0] is not catalogue:
        if len(_BUILT) > 8:
            _BUILT.clear()
        held = _BUILT[id(catalogue)] = (catalogue, _build(catalogue))
    return held[1]


def curated_schema(catalogue: Catalogue) -> dict[str, dict[str, str]]:
    """table → column → SQL type of the curated entity tables (for parsing mart SQL)."""
    out: dict[str, dict[str, str]] = {}
    for (table, column), c in curated_lineage(catalogue).items():
        out.setdefault(table, {})[column] = c.sql_type
    return out


__all__ = [
    "ROW_ID",
    "CuratedColumn",
    "DeptField",
    "curated_lineage",
    "curated_schema",
    "dept_field",
]
