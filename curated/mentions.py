"""Subject mentions (主体提及): the person each staged record describes, as pseudonyms only.

A dataset has a *subject* when its catalogue fields carry the identifying person concepts:
the person key (``person.citizen_id``, :func:`catalog.authority.person_key`), the name,
the mobile or the birth date. A staged record mentions its subject when its person key,
name or mobile is present. For each mention the index keeps only keyed pseudonyms:

- ``citizen_pid`` / ``mobile_pid``: the staged ``_pid_<field>`` columns (engineer PID's
  contract, :func:`catalog.authority.pid_column`), the same for the same normalised value
  in every department;
- ``name_pid`` / ``birth_pid``: pseudonyms of the normalised name and of the ISO birth date,
  computed here after decrypting the two columns for the audited purpose ``master_index``,
  in batches (:data:`BATCH` rows a decryption).

The plain name is needed again only when the fallback compares names (Splink, fuzzy): then
:func:`reveal_names` decrypts one staged record per distinct ``name_pid`` — never a table
of plain names — and it is dropped when the comparison ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import polars as pl

from catalog.authority import fields_of_concept, person_key, pid_column, pid_fields
from catalog.model import PERSON_NAME_CONCEPT, Catalogue, Dataset, PiiKind, dataset_table
from curated.houses import staged_rows
from lakehouse.lake import registered
from masking.keys import KeyRing
from masking.pseudonym import pseudonymise_series

PURPOSE = "master_index"
BATCH = 100_000  # staged rows decrypted at once
NAME = PERSON_NAME_CONCEPT
MOBILE = "person.mobile"
BIRTH = "person.birth_date"
KEY_COLUMNS = ("dept", "dataset", "key_pid")
MENTION_SCHEMA = {
    "dept": pl.String,
    "dataset": pl.String,
    "key_pid": pl.String,
    "citizen_pid": pl.String,
    "mobile_pid": pl.String,
    "name_pid": pl.String,
    "birth_pid": pl.String,
}


@dataclass(frozen=True)
class SubjectFields:
    """The fields of one dataset that identify its subject (None: the dataset has none)."""

    dept: str
    dataset: Dataset
    citizen_id: str | None
    mobile: str | None
    name: str | None
    birth_date: str | None

    @property
    def table(self) -> str:
        return dataset_table(self.dept, self.dataset.code)

    @property
    def identifying(self) -> list[str]:
        """Fields whose presence makes a record a mention of its subject."""
        return [f for f in (self.citizen_id, self.mobile, self.name) if f]


def _one(ds: Dataset, concept: str | None) -> str | None:
    """The dataset's single field of ``concept`` (the catalogue has one per dataset)."""
    if concept is None:
        return None
    names = fields_of_concept(ds, concept)
    return names[0] if names else None


def subject_fields(catalogue: Catalogue) -> list[SubjectFields]:
    """Every dataset with a subject person, in catalogue order."""
    key = person_key(catalogue)
    out = []
    for dept, ds in catalogue.datasets():
        sf = SubjectFields(
            dept.code, ds, _one(ds, key), _one(ds, MOBILE), _one(ds, NAME), _one(ds, BIRTH)
        )
        if sf.identifying:
            out.append(sf)
    return out


def _pid_of(sf: SubjectFields, field: str | None) -> str | None:
    """The staged pseudonym column of ``field`` when the contract gives it one."""
    if field is None:
        return None
    names = {f.name for f in pid_fields(sf.dataset)}
    return pid_column(field) if field in names else None


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=MENTION_SCHEMA)


def read_mentions(
    con: duckdb.DuckDBPyConnection, sf: SubjectFields, protection, keyring: KeyRing
) -> pl.DataFrame:
    """The mentions of one staged dataset (:data:`MENTION_SCHEMA`), pseudonyms only.

    ``protection`` is the pipelines' :class:`Protection` (decrypts for ``master_index``,
    audited); passed in, not imported, so this package never imports ``pipelines``.
    """
    cid, mob = _pid_of(sf, sf.citizen_id), _pid_of(sf, sf.mobile)
    select = ["_key_pid"]
    select += [f'"{c}"' for c in (cid, mob) if c]
    select += [f'"{c}"' for c in (sf.name, sf.birth_date) if c]
    rows = staged_rows(con, sf.table, ", ".join(select))
    if rows is None:
        return _empty()
    parts = []
    for start in range(0, rows.height, BATCH):
        part = rows.slice(start, BATCH)
        clear = [c for c in (sf.name, sf.birth_date) if c]
        if clear:
            part = protection.reveal_text(part, sf.dataset, PURPOSE)
        parts.append(_pseudonymise(part, sf, cid, mob, keyring))
    if not parts:
        return _empty()
    frame = pl.concat(parts)
    present = [pl.col(c).is_not_null() for c in ("citizen_pid", "mobile_pid", "name_pid")]
    return frame.filter(pl.any_horizontal(present)).cast(MENTION_SCHEMA)


def _pseudonymise(
    part: pl.DataFrame, sf: SubjectFields, cid: str | None, mob: str | None, keyring: KeyRing
) -> pl.DataFrame:
    def pid(column: str | None) -> pl.Series:
        if column is None:
            return pl.Series([None] * part.height, dtype=pl.String)
        return part[column].cast(pl.String)

    def pseudonym(field: str | None, kind: PiiKind | None) -> pl.Series:
        if field is None:
            return pl.Series([None] * part.height, dtype=pl.String)
        text = pl.col(field).cast(pl.String)
        values = part.select(pl.when(text.str.strip_chars() != "").then(text)).to_series()
        return pseudonymise_series(values, keyring, kind=kind)

    return pl.DataFrame(
        {
            "dept": [sf.dept] * part.height,
            "dataset": [sf.dataset.code] * part.height,
            "key_pid": part["_key_pid"].cast(pl.String),
            "citizen_pid": pid(cid),
            "mobile_pid": pid(mob),
            "name_pid": pseudonym(sf.name, PiiKind.person_name),
            "birth_pid": pseudonym(sf.birth_date, None),
        },
        schema=MENTION_SCHEMA,
    )


def reveal_names(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    wanted: pl.DataFrame,
    protection,
    *,
    masked_mobile: bool = False,
) -> pl.DataFrame:
    """Plain names of the mentions in ``wanted`` (dept, dataset, key_pid), decrypted for
    ``master_index`` (audited), one staged read and one decryption per dataset.

    Returns (dept, dataset, key_pid, name) and with ``masked_mobile`` also the mobile in
    its display mask (138****5678): the plain mobile never leaves this function.
    """
    by_table = {sf.table: sf for sf in subject_fields(catalogue)}
    out = []
    for (dept, dataset), keys in wanted.group_by(["dept", "dataset"], maintain_order=True):
        sf = by_table.get(dataset_table(dept, dataset))
        if sf is None or sf.name is None:
            continue
        cols = [sf.name] + ([sf.mobile] if masked_mobile and sf.mobile else [])
        view = "_link_wanted"
        with registered(con, view, keys.select(pl.col("key_pid").alias("_key_pid")).to_arrow()):
            rows = con.execute(
                f"SELECT s._key_pid, {', '.join(f's.{c}' for c in cols)} "
                f'FROM staged."{sf.table}" s SEMI JOIN "{view}" w USING (_key_pid)'
            ).pl()
        plain = protection.reveal_text(rows, sf.dataset, PURPOSE)
        got = plain.select(
            pl.lit(dept).alias("dept"),
            pl.lit(dataset).alias("dataset"),
            pl.col("_key_pid").alias("key_pid"),
            pl.col(sf.name).str.strip_chars().alias("name"),
        )
        if masked_mobile:
            from masking.masks import mask_values

            mob = (
                mask_values(plain[sf.mobile], PiiKind.mobile)
                if sf.mobile
                else pl.Series([None] * plain.height, dtype=pl.String)
            )
            got = got.with_columns(mob.alias("mobile_masked"))
        out.append(got)
    if not out:
        schema = {"dept": pl.String, "dataset": pl.String, "key_pid": pl.String, "name": pl.String}
        if masked_mobile:
            schema["mobile_masked"] = pl.String
        return pl.DataFrame(schema=schema)
    return pl.concat(out, how="diagonal_relaxed")


def datasets_of(
    catalogue: Catalogue, changed: Iterable[tuple[str, str]] | None
) -> list[SubjectFields]:
    """The subject datasets to (re)read: all, or those among ``changed``."""
    every = subject_fields(catalogue)
    if changed is None:
        return every
    wanted = set(changed)
    return [sf for sf in every if (sf.dept, sf.dataset.code) in wanted]
