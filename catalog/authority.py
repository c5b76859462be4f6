"""Who is the authority (权威来源) for what: asked of the catalogue, never of a department code.

The catalogue marks a field ``authoritative: true`` together with the ``concept`` it is the
authority for (``person.birth_date``); the loader allows one authoritative department per
concept. Everything below is derived from those two settings alone:

- :func:`authorities` / :func:`authority`: the authoritative field for a concept (which
  department, dataset and field hold the reference value);
- :func:`key_authorities`: the *entity keys* — authoritative datasets whose business key is
  one authoritative field (the household registry keyed by ``person.citizen_id``, the
  merchant register keyed by ``merchant.credit_code``); other datasets holding that concept
  join to it;
- :func:`person_key`: the concept that keys the person entity (``person.citizen_id``);
- :func:`person_registers` (the registry, 登记库): the datasets whose IDs a person must be
  found in — every dataset of the department that is the authority for the person key and
  that carries the person key (in the shipped catalogue: the household registry and the
  residence permits of public security);
- :func:`pid_fields` / :func:`pid_column`: the fields whose deterministic person pseudonym
  every staged table carries beside the ciphertext (``_pid_citizen_id``): a field of PII
  kind citizen ID or mobile that carries a concept, i.e. identifies the record's subject
  (a guardian's ID, with no concept, gets none).

A catalogue that declares no authority for a concept still loads and runs: these return
``None`` or nothing, and the callers say "no authority declared".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from catalog.model import Catalogue, Dataset, Entity, FieldSpec, PiiKind

NO_AUTHORITY = "no authority declared"
# PII kinds whose value names one person in every department (after standardising)
PID_KINDS = frozenset({PiiKind.citizen_id, PiiKind.mobile})
PID_PREFIX = "_pid_"


@dataclass(frozen=True)
class FieldRef:
    """One field of one catalogued dataset."""

    dept: str
    dataset: Dataset
    field: str

    @property
    def ref(self) -> str:
        """``dept.dataset``."""
        return f"{self.dept}.{self.dataset.code}"


@dataclass(frozen=True)
class Authority(FieldRef):
    """The authoritative field for one concept."""

    concept: str

    @property
    def keyed(self) -> bool:
        """The authoritative dataset's business key is this field alone."""
        return list(self.dataset.key) == [self.field]

    @property
    def entity(self) -> str:
        """The entity part of the concept (``person`` of ``person.citizen_id``)."""
        return self.concept.split(".", 1)[0]


def authorities(catalogue: Catalogue) -> dict[str, Authority]:
    """Concept → its authoritative field, in catalogue order.

    When the authoritative department marks the concept in several datasets, the dataset
    keyed by that field alone wins (the register itself), else the first one catalogued.
    """
    out: dict[str, Authority] = {}
    for dept, ds in catalogue.datasets():
        for f in ds.fields:
            if not (f.authoritative and f.concept):
                continue
            found = Authority(dept.code, ds, f.name, f.concept)
            held = out.get(f.concept)
            if held is None or (found.keyed and not held.keyed):
                out[f.concept] = found
    return out


def authority(catalogue: Catalogue, concept: str) -> Authority | None:
    """The authoritative field for ``concept``, or None when the catalogue declares none."""
    return authorities(catalogue).get(concept)


def key_authorities(catalogue: Catalogue) -> dict[str, Authority]:
    """Entity key concept → the authoritative dataset keyed by it (one field key)."""
    return {c: a for c, a in authorities(catalogue).items() if a.keyed}


def authoritative_datasets(catalogue: Catalogue) -> set[tuple[str, str]]:
    """(dept, dataset) of every dataset holding at least one authoritative field."""
    return {
        (d.code, ds.code)
        for d, ds in catalogue.datasets()
        if any(f.authoritative and f.concept for f in ds.fields)
    }


def person_key(catalogue: Catalogue) -> str | None:
    """The concept keying the person entity (``person.citizen_id``), or None if undeclared.

    It is the key concept of an authoritative dataset about persons (``entity: person``).
    Should a catalogue key persons by two authoritative concepts, the one the most datasets
    carry wins (ties: alphabetical), so the answer never depends on file order.
    """
    keys = [
        a.concept for a in key_authorities(catalogue).values() if a.dataset.entity is Entity.person
    ]
    if not keys:
        return None
    carried = Counter(
        f.concept for _, ds in catalogue.datasets() for f in ds.fields if f.concept in keys
    )
    return min(keys, key=lambda c: (-carried[c], c))


def person_registers(catalogue: Catalogue) -> list[FieldRef]:
    """The datasets whose IDs a person must be found in (the registry), in catalogue order.

    Every dataset of the department that is the authority for the person key, holding
    exactly one field of that concept. Empty when no person key is declared.
    """
    key = person_key(catalogue)
    if key is None:
        return []
    owner = authorities(catalogue)[key].dept
    out = []
    for dept, ds in catalogue.datasets():
        if dept.code != owner:
            continue
        fields = fields_of_concept(ds, key)
        if len(fields) == 1:
            out.append(FieldRef(dept.code, ds, fields[0]))
    return out


def fields_of_concept(ds: Dataset, concept: str) -> list[str]:
    """Names of the dataset's fields carrying ``concept``."""
    return [f.name for f in ds.fields if f.concept == concept]


def pid_fields(dataset: Dataset) -> list[FieldSpec]:
    """The dataset's fields that get a person pseudonym column in staged, in field order:
    PII kind in :data:`PID_KINDS` and a ``concept`` (the subject's ID or mobile)."""
    return [f for f in dataset.fields if f.pii in PID_KINDS and f.concept]


def pid_column(field_name: str) -> str:
    """The staged column holding ``field_name``'s person pseudonym: ``_pid_<field_name>``."""
    return PID_PREFIX + field_name
