"""Golden records (黄金记录): one row per person, each attribute from its authoritative source.

Which department and dataset hold the reference value of a concept is the catalogue's
answer (``catalog.authority.authority``); who a staged record is about is the master
resident index's (``curated.person_mentions``: dept, dataset, key_pid → person_id). For
every person attribute concept but the person key itself, the authority's records of a
person are *observations* of that attribute: the value, the record's date (``as_of``: the
dataset's event time, else its first date field without a concept, else the day it was
loaded) and when the hub learned it (``known_at``: the staged row's ``_loaded_at``).
Every version of a record the lake still holds counts: a record replaced by a newer
delivery (an upsert) keeps its older version in DuckLake until that snapshot expires, so
a moved resident's earlier address stays in the history. A record withdrawn (no longer
staged, so no longer mentioned) leaves it; versions replaced before the oldest snapshot
kept are gone (``lakehouse.snapshots.expire``).

Tables (schema ``curated``; keyed by the person pseudonym, no plain identifier):

- ``person``: one row per person_id; per attribute ``<attr>``, ``<attr>_source``
  (``dept.dataset``) and ``<attr>_as_of``; ``sources_digest`` fingerprints the staged rows
  the record was built from (for :func:`refresh_golden`).
- ``person_attribute_history``: the runs of equal values of each attribute in the order
  of their dates: ``valid_from`` (first record of the run), ``valid_to`` (the next run's
  ``valid_from``; null while current), ``as_of`` (last record of the run), ``known_at``
  (when the hub first held the run's value). :func:`person_as_of` rebuilds any past date.
- ``attribute_checks`` / ``attribute_conflicts``: every non-authoritative record's concept
  value compared with the person's golden value by ``quality.scores_authority.compare``
  (the consistency score's one rule), per record and counted per concept × dept × dataset.

Sensitive (L3/L4) values are stored as ciphertext (``masking.crypto``) bound to the curated
table, column and row; staged values are decrypted for the audited purpose
``golden_record``, a batch of rows at a time, through the caller's ``protection`` (the
pipelines' ``Protection``: its ``reveal`` knows the staged row identity).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import duckdb
import polars as pl

from catalog.authority import Authority, authorities, fields_of_concept, person_key
from catalog.days import BEIJING_ZONE
from catalog.errors import StreethubError
from catalog.model import Catalogue, Dataset, FieldType, dataset_table
from curated.houses import staged_name
from lakehouse.lake import (
    ALIAS,
    ensure_table,
    has_table,
    insert_frame,
    registered,
    tables_in,
    transaction,
)
from lakehouse.snapshots import insertions
from lakehouse.sqltext import sql_literal
from masking.audit import AuditLog
from masking.crypto import decrypt_series, encrypt_series
from masking.keys import KeyRing
from quality.keys import KEY_PID, ROW_DIGEST
from quality.scores_authority import Comparison, compare, comparisons

PURPOSE = "golden_record"
ZONE = "curated"
MENTIONS = "person_mentions"
PERSON = "person"
HISTORY = "person_attribute_history"
CHECKS = "attribute_checks"
CONFLICTS = "attribute_conflicts"
EVENT_TIME = "event.time"  # the concept dating an event record
PERSON_ID = "person_id"
BATCH_ROWS = 50_000  # staged rows decrypted at once
# persons whose golden records a full build makes at once (their mentions, staged rows,
# history and records, written before the next block's are read): a person's records
# depend on that person's rows only, so the blocks make what the whole street at once did
# at 200,000 residents (build_golden alone): one block 2.10 GB, 25.3 CPU s; blocks of
# 70,000 1.59 GB, 28.9 s; 50,000 1.42 GB, 31.1 s; 35,000 1.36 GB, 33.8 s (what a block
# inserted stays in memory until the build's one transaction commits). Read by ranges of
# the index, no block copies held (the curated build alone, heap tuned, its golden part's
# peak and CPU): 25,000 565 MB, 84 s; 35,000 620 MB, 64 s (50,000 with copies 925 MB, 48 s)
GOLDEN_BLOCK = 35_000
MENTIONS_COPY_ROWS = 100_000
"""The most mentions of the index a build or a block of queries copies into a temporary table
(~100 bytes a row in DuckDB's memory: a street of up to ~17,000 residents, ~6 mentions
each), read there instead of the lake's index: each read of the index filtered by a dataset
costs DuckLake a file-pruning query on its catalogue (~7 ms of CPU at 1,000 residents, most
of it DuckDB planning the query). A larger street reads the index: a copy made inside the
build's transaction stays in memory until its COMMIT (:class:`Mentions`)."""
_SCOPE = "_golden_scope"  # the registered frame of the persons a build is limited to

HISTORY_COLUMNS = [
    (PERSON_ID, "VARCHAR"),
    ("concept", "VARCHAR"),
    ("value", "VARCHAR"),
    ("encrypted", "BOOLEAN"),
    ("source_dept", "VARCHAR"),
    ("source_dataset", "VARCHAR"),
    ("as_of", "DATE"),
    ("valid_from", "DATE"),
    ("valid_to", "DATE"),
    ("known_at", "TIMESTAMPTZ"),
]
CHECK_COLUMNS = [
    (PERSON_ID, "VARCHAR"),
    ("concept", "VARCHAR"),
    ("dept", "VARCHAR"),
    ("dataset", "VARCHAR"),
    ("field", "VARCHAR"),
    ("key_pid", "VARCHAR"),
    ("authority_dept", "VARCHAR"),
    ("authority_dataset", "VARCHAR"),
    ("compared", "BOOLEAN"),
    ("conflicting", "BOOLEAN"),
]
CONFLICT_COLUMNS = [
    ("concept", "VARCHAR"),
    ("dept", "VARCHAR"),
    ("dataset", "VARCHAR"),
    ("field", "VARCHAR"),
    ("authority_dept", "VARCHAR"),
    ("authority_dataset", "VARCHAR"),
    ("records", "BIGINT"),
    ("compared", "BIGINT"),
    ("conflicting", "BIGINT"),
]


class Revealer(Protocol):
    """What golden records need of the caller's protection (``pipelines.protection``)."""

    keyring: KeyRing
    audit: AuditLog
    actor: str

    def reveal(self, frame: pl.DataFrame, dataset: Dataset, purpose: str) -> pl.DataFrame: ...


@dataclass(frozen=True)
class Attribute:
    """A golden attribute: a person concept and its authoritative field."""

    concept: str
    authority: Authority

    @property
    def column(self) -> str:
        """The person table's column (``care_level`` of ``person.care_level``)."""
        return self.concept.split(".", 1)[1]

    @property
    def sensitive(self) -> bool:
        return self.authority.dataset.field(self.authority.field).level.sensitive


def golden_attributes(catalogue: Catalogue) -> list[Attribute]:
    """Every person concept with an authority, the person key itself excepted."""
    key = person_key(catalogue)
    return [
        Attribute(c, a)
        for c, a in authorities(catalogue).items()
        if a.entity == PERSON and c != key
    ]


def as_of_field(ds: Dataset) -> str | None:
    """The field dating a record: its event time, else its first date field without a
    concept (a registration, approval, check or signing date; an update time); None when
    the dataset has none (the day the row was loaded dates it). Never a sensitive field."""
    dated = [
        f for f in ds.fields
        if f.type in (FieldType.date, FieldType.datetime) and not f.level.sensitive
    ]  # fmt: skip
    for f in dated:
        if f.concept == EVENT_TIME:
            return f.name
    return next((f.name for f in dated if f.concept is None), None)


def staged_table(dept: str, ds: Dataset) -> str:
    """The dataset's staged table, quoted, in its zone (``staged."dept__dataset"``)."""
    return f'staged."{staged_name(dept, ds)}"'


def golden_checks(catalogue: Catalogue) -> list[Comparison]:
    """The comparisons behind ``attribute_conflicts``.

    Those of the consistency score (``quality.scores_authority.comparisons``: a dataset
    joined to the key register on the person key) whose authoritative field is the golden
    attribute's, joined here through the master index; and, for a concept whose authority
    is another dataset, every other dataset's field of that concept, compared the same way.
    """
    attrs = {a.concept: a for a in golden_attributes(catalogue)}
    out, seen = [], set()
    for cmp in comparisons(catalogue):
        a = attrs.get(cmp.concept)
        if a is None or (a.authority.ref, a.authority.field) != (cmp.auth_ref, cmp.auth_field):
            continue
        out.append(cmp)
        seen.add((cmp.dept, cmp.dataset, cmp.field))
    for dept, ds in catalogue.datasets():
        for a in attrs.values():
            if (dept.code, ds.code) == (a.authority.dept, a.authority.dataset.code):
                continue
            for name in fields_of_concept(ds, a.concept):
                if (dept.code, ds.code, name) in seen:
                    continue
                out.append(
                    Comparison(
                        dept=dept.code,
                        dataset=ds.code,
                        field=name,
                        concept=a.concept,
                        join_field=PERSON_ID,
                        auth_dept=a.authority.dept,
                        auth_dataset=a.authority.dataset.code,
                        auth_field=a.authority.field,
                        auth_key=PERSON_ID,
                    )
                )
    return out


@dataclass(frozen=True)
class Plan:
    """What a build reads of one staged dataset."""

    dept: str
    dataset: Dataset
    attributes: tuple[Attribute, ...]  # authoritative here
    checks: tuple[Comparison, ...]  # compared here

    @property
    def attribute_fields(self) -> list[str]:
        return list(dict.fromkeys(a.authority.field for a in self.attributes))

    @property
    def check_fields(self) -> list[str]:
        return list(dict.fromkeys(c.field for c in self.checks))


def _plans(catalogue: Catalogue) -> list[Plan]:
    attrs, checks = golden_attributes(catalogue), golden_checks(catalogue)
    out = []
    for dept, ds in catalogue.datasets():
        mine = tuple(
            a for a in attrs if (a.authority.dept, a.authority.dataset.code) == (dept.code, ds.code)
        )
        compared = tuple(c for c in checks if (c.dept, c.dataset) == (dept.code, ds.code))
        if mine or compared:
            out.append(Plan(dept.code, ds, mine, compared))
    return out


def live_plans(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> list[Plan]:
    """The plans whose staged table exists (one look at the lake's catalogue)."""
    staged = {t for _, t in tables_in(con, "staged")}
    return [p for p in _plans(catalogue) if dataset_table(p.dept, p.dataset.code) in staged]


def require_mentions(con: duckdb.DuckDBPyConnection) -> None:
    if not has_table(con, ZONE, MENTIONS):
        raise StreethubError(
            f"{ZONE}.{MENTIONS} does not exist: link persons before building golden records"
        )


def scoped_mentions(con: duckdb.DuckDBPyConnection, persons: pl.DataFrame) -> pl.DataFrame:
    """The index's mentions (dept, dataset, key_pid, person_id) of ``persons``: one read
    of the index for a scoped build (registered as the scope's mentions)."""
    with registered(con, _SCOPE, persons.to_arrow()):
        return con.execute(
            f"SELECT dept, dataset, key_pid, {PERSON_ID} FROM {ZONE}.{MENTIONS} "
            f"SEMI JOIN {_SCOPE} USING ({PERSON_ID})"
        ).pl()


def held_plans(plans: list[Plan], mentions: pl.DataFrame) -> list[Plan]:
    """The plans of the datasets where ``mentions`` has a record."""
    held = set(mentions.select("dept", "dataset").unique().iter_rows())
    return [p for p in plans if (p.dept, p.dataset.code) in held]


_SCOPED = "_golden_scoped_mentions"  # sources_digests' copy of its scope
_BLOCK = "_golden_block_mentions"  # _build_block's copy of its mentions


@contextlib.contextmanager
def _temp_copy(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, name: str) -> Iterator[None]:
    """``frame`` as the temporary table ``temp.main.<name>`` for the block, dropped after.
    Copied by DuckDB's replacement scan of a local: a ``con.register``ed view stays
    referenced until the transaction ends (every block's mentions stayed in memory until
    the build's one COMMIT), and an Arrow scan joined directly may be handed a join's
    bloom filter, which DuckDB 1.5 cannot push into a PyArrow scan (NotImplementedException
    on a small street's staged tables)."""
    _streethub_frame = frame.to_arrow()
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _streethub_frame")
    del _streethub_frame
    try:
        yield
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.main.{name}")


def sources_digests(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    *,
    scoped: pl.DataFrame | None = None,
    block: tuple[str, str] | None = None,
) -> pl.DataFrame:
    """person_id → ``sources_digest``: a digest of the staged rows (key pseudonym and row
    digest) a person's golden record is built from, for every person with a mention (a
    person only in datasets golden records do not read has the digest of nothing).
    ``scoped``: only the persons of these mentions (:func:`scoped_mentions`); ``block``:
    only the persons from its first to its last person_id (:func:`person_blocks`)."""
    # the index read once (a materialised CTE, freed with the query), not once a dataset
    where, params = _in_block(block, "WHERE")
    read_once = (
        f'WITH "_mentions" AS MATERIALIZED (SELECT {PERSON_ID}, dept, dataset, key_pid '
        f"FROM {ZONE}.{MENTIONS}{where}) "
    )
    mentions, plans = '"_mentions"', live_plans(con, catalogue)
    if scoped is not None:  # only the scope's mentions meet the staged tables (a copy)
        read_once, mentions, plans = "", f"temp.main.{_SCOPED}", held_plans(plans, scoped)
        params = []
    parts = []
    for plan in plans:
        parts.append(
            f"SELECT m.{PERSON_ID}, m.dept || '.' || m.dataset || ':' || m.key_pid || ':' || "
            f"coalesce(s.{ROW_DIGEST}, '') AS part FROM {mentions} m "
            f"JOIN {staged_table(plan.dept, plan.dataset)} s ON s.{KEY_PID} = m.key_pid "
            "WHERE m.dept = ? AND m.dataset = ?"
        )
        params += [plan.dept, plan.dataset.code]
    rows = " UNION ALL ".join(parts) or f"SELECT NULL::VARCHAR AS {PERSON_ID}, NULL AS part"
    sql = read_once + (
        f"SELECT p.{PERSON_ID}, sha256(coalesce(string_agg(x.part, ',' ORDER BY x.part), '')) "
        f"AS sources_digest FROM (SELECT DISTINCT {PERSON_ID} FROM {mentions} "
        f"WHERE {PERSON_ID} IS NOT NULL) p "
        f"LEFT JOIN ({rows}) x USING ({PERSON_ID}) GROUP BY p.{PERSON_ID}"
    )
    copy = _temp_copy(con, scoped, _SCOPED) if scoped is not None else contextlib.nullcontext()
    with copy:
        return con.execute(sql, params).pl()


def _in_block(block: tuple[str, str] | None, keyword: str) -> tuple[str, list[str]]:
    """SQL (`` <keyword> person_id BETWEEN ? AND ?``) and its parameters limiting the index
    to the persons of ``block`` (nothing for None)."""
    if block is None:
        return "", []
    return f" {keyword} {PERSON_ID} BETWEEN ? AND ?", list(block)


def snapshot_span(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """The oldest and newest snapshot the lake still holds."""
    lo, hi = con.execute(
        f"SELECT min(snapshot_id), max(snapshot_id) FROM {ALIAS}.snapshots()"
    ).fetchone()
    return int(lo), int(hi)


def picked_columns(plan: Plan, fields: list[str]) -> str:
    """SQL: what a build reads of a staged row: its key pseudonym, load time, as-of date
    (:func:`as_of_field`, else the load day in Beijing, as the delivered dates and times are
    Beijing's) and ``fields``."""
    dated = as_of_field(plan.dataset)
    loaded = f"CAST(timezone({sql_literal(BEIJING_ZONE)}, _loaded_at) AS DATE)"
    as_of = f'coalesce(CAST("{dated}" AS DATE), {loaded})' if dated else loaded
    return f"{KEY_PID}, _loaded_at, {as_of} AS as_of, " + ", ".join(f'"{f}"' for f in fields)


def inserted_rows(plan: Plan, versions: tuple[int, int]) -> str:
    """SQL: every row inserted into the plan's staged table in the snapshot span."""
    return insertions("staged", staged_name(plan.dept, plan.dataset), *versions)


def _read_plan(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    protection: Revealer,
    mentions: str,
    fields: list[str],
    versions: tuple[int, int] | None = None,
    block: tuple[str, str] | None = None,
) -> Iterable[pl.DataFrame]:
    """The plan's staged rows linked in the table ``mentions`` (dept, dataset, key_pid,
    person_id: the scope's copy, :func:`_temp_copy`, or the index itself with ``block``,
    the persons from its first to its last person_id), decrypted a batch at a time.

    ``versions`` (a snapshot span): every version of the rows the lake still holds — the
    rows inserted in those snapshots (DuckLake keeps a replaced row's file until its
    snapshot expires) and the current ones — each version a record of its business key,
    so of the person the key's current record is linked to."""
    picked = picked_columns(plan, fields)
    table = staged_table(plan.dept, plan.dataset)
    # the scope's mentions of the dataset, read once (a materialised CTE, freed with the
    # query: a temporary table made inside the build's transaction stays until COMMIT)
    bounds, params = _in_block(block, "AND")
    scope = (
        f"WITH _m AS MATERIALIZED (SELECT key_pid, {PERSON_ID} FROM {mentions} "
        f"WHERE dept = ? AND dataset = ?{bounds}) "
    )
    # only the scope's records (before the versions are made distinct)
    mine = f" WHERE {KEY_PID} IN (SELECT key_pid FROM _m)"
    rows = f"SELECT {picked} FROM {table}{mine}"
    if versions is not None:
        rows = f"SELECT {picked} FROM {inserted_rows(plan, versions)}{mine} UNION {rows}"
    sql = (
        scope
        + f"SELECT m.{PERSON_ID}, s.{KEY_PID}, s._loaded_at AS known_at, s.as_of, "
        + ", ".join(f's."{f}"' for f in fields)
        + f" FROM ({rows}) s JOIN _m m ON m.key_pid = s.{KEY_PID} "
        f"WHERE m.{PERSON_ID} IS NOT NULL "
        f"ORDER BY m.{PERSON_ID}, s.{KEY_PID}, s._loaded_at"
    )
    key = [plan.dept, plan.dataset.code]
    reader = con.execute(sql, [*key, *params]).to_arrow_reader(BATCH_ROWS)
    for batch in reader:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        if frame.height:
            yield protection.reveal(frame, plan.dataset, PURPOSE)


def observations(frame: pl.DataFrame, plan: Plan) -> list[pl.DataFrame]:
    """The plan's attribute values in ``frame`` (decrypted staged rows of persons), one
    frame per attribute: person, concept, value, source, as_of, known_at, key_pid."""
    return [
        frame.select(
            PERSON_ID,
            pl.lit(a.concept).alias("concept"),
            pl.col(a.authority.field).cast(pl.String).alias("value"),
            pl.lit(plan.dept).alias("source_dept"),
            pl.lit(plan.dataset.code).alias("source_dataset"),
            pl.col("as_of").cast(pl.Date),
            pl.col("known_at"),
            pl.col(KEY_PID).alias("key_pid"),
        ).filter(pl.col("value").is_not_null())
        for a in plan.attributes
    ]


# the order of a person's observations of a concept: by date, then load time; records of
# one date and load (nothing says which came later) by their value and source, so equal
# values make one run; the record's key last. Never the key before the value: it is a
# keyed pseudonym (another home's key or a rekey orders them otherwise), and one
# person's records of a day with two values would split into runs as their keys fell.
HISTORY_ORDER = ("as_of", "known_at", "value", "source_dept", "source_dataset", "key_pid")


def history_of(observations: pl.DataFrame) -> pl.DataFrame:
    """Runs of equal values per person and concept, in :data:`HISTORY_ORDER` (date, load
    time, then value), with valid_from / valid_to / as_of / known_at (plaintext values)."""
    group = [PERSON_ID, "concept"]
    obs = observations.sort([*group, *HISTORY_ORDER])
    starts = pl.col("value").ne_missing(pl.col("value").shift(1).over(group))
    runs = (
        obs.with_columns(starts.cast(pl.Int64).cum_sum().alias("_run"))
        .group_by([*group, "_run"], maintain_order=True)
        .agg(
            pl.col("value").first(),
            pl.col("source_dept").first(),
            pl.col("source_dataset").first(),
            pl.col("as_of").first().alias("valid_from"),
            pl.col("as_of").last(),
            pl.col("known_at").min(),
        )
        .sort([*group, "_run"])
    )
    return runs.with_columns(pl.col("valid_from").shift(-1).over(group).alias("valid_to")).drop(
        "_run"
    )


def _history_rows(history: pl.DataFrame) -> pl.Series:
    """The row identity binding a history value: person, concept, valid_from."""
    return history.select(
        pl.concat_str(
            [pl.col(PERSON_ID), pl.col("concept"), pl.col("valid_from").cast(pl.String)],
            separator="\x1f",
        )
    ).to_series()


def _protect_history(
    history: pl.DataFrame, attrs: list[Attribute], keyring: KeyRing
) -> pl.DataFrame:
    secret = [a.concept for a in attrs if a.sensitive]
    encrypted = pl.col("concept").is_in(secret)
    hidden = history.with_columns(
        pl.when(encrypted).then(pl.col("value")).alias("_secret"), encrypted.alias("encrypted")
    )
    sealed = encrypt_series(
        hidden["_secret"], keyring, column=f"{ZONE}.{HISTORY}.value", rows=_history_rows(history)
    )
    return hidden.with_columns(
        pl.when(pl.col("encrypted")).then(sealed).otherwise(pl.col("value")).alias("value")
    ).drop("_secret")


def _person_frame(
    persons: pl.DataFrame, current: pl.DataFrame, attrs: list[Attribute], keyring: KeyRing
) -> pl.DataFrame:
    """One row per person: each attribute's current value, source and as-of date."""
    out = persons
    for a in attrs:
        mine = current.filter(pl.col("concept") == a.concept).select(
            PERSON_ID,
            pl.col("value").alias(a.column),
            pl.concat_str(["source_dept", "source_dataset"], separator=".").alias(
                f"{a.column}_source"
            ),
            pl.col("as_of").alias(f"{a.column}_as_of"),
        )
        out = out.join(mine, on=PERSON_ID, how="left")
        if a.sensitive:
            rows = out[PERSON_ID]
            column = f"{ZONE}.{PERSON}.{a.column}"
            out = out.with_columns(encrypt_series(out[a.column], keyring, column=column, rows=rows))
    return out


def _value_types(con: duckdb.DuckDBPyConnection, attrs: list[Attribute]) -> dict[str, str]:
    """Each attribute column's SQL type: its staged column's (text for ciphertext)."""
    staged = {t for _, t in tables_in(con, "staged")}
    out = {}
    for a in attrs:
        kind = "VARCHAR"
        auth = a.authority
        if not a.sensitive and dataset_table(auth.dept, auth.dataset.code) in staged:
            sql = f'DESCRIBE SELECT "{auth.field}" FROM {staged_table(auth.dept, auth.dataset)}'
            kind = str(con.execute(sql).fetchone()[1])
        out[a.column] = kind
    return out


def person_columns(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> list[tuple[str, str]]:
    """(name, SQL type) of ``curated.person``."""
    attrs = golden_attributes(catalogue)
    types = _value_types(con, attrs)
    cols = [(PERSON_ID, "VARCHAR"), ("sources_digest", "VARCHAR")]
    for a in attrs:
        cols += [(a.column, types[a.column]), (f"{a.column}_source", "VARCHAR"),
                 (f"{a.column}_as_of", "DATE")]  # fmt: skip
    return cols


@dataclass(frozen=True)
class GoldenBuild:
    """What a build wrote: persons rebuilt, history rows, checked records."""

    persons: int
    history_rows: int
    checked: int
    full: bool


def build_golden(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    persons: Iterable[str] | None = None,
) -> GoldenBuild:
    """Build the golden records of ``persons`` (None: every person, a full rebuild).

    A partial build replaces exactly those persons' rows (a person without mentions any
    more loses them) and recounts ``attribute_conflicts``; the result equals a full build.
    """
    require_mentions(con)
    if persons is None:
        return _build(con, catalogue, protection, None, None, None)
    scope = scope_frame(persons)
    mine = scoped_mentions(con, scope)
    return _build(con, catalogue, protection, scope, mine, None)


def scope_frame(persons: Iterable[str]) -> pl.DataFrame:
    return pl.DataFrame({PERSON_ID: sorted(set(persons))}, schema={PERSON_ID: pl.String})


def person_blocks(persons: pl.DataFrame, size: int) -> list[tuple[str, str]]:
    """The persons of ``persons`` (its person_id) in blocks of ``size``: (first, last)
    person_id of each, in person_id order."""
    ids = persons[PERSON_ID].drop_nulls().sort()
    return [(ids[i], ids[min(i + size, ids.len()) - 1]) for i in range(0, ids.len(), size)]


def indexed_persons(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The person_id of every person with a mention in the index."""
    return con.execute(
        f"SELECT DISTINCT {PERSON_ID} FROM {ZONE}.{MENTIONS} WHERE {PERSON_ID} IS NOT NULL"
    ).pl()


def few_mentions(
    con: duckdb.DuckDBPyConnection,
    limit: int | None = None,
    datasets: Iterable[tuple[str, str]] | None = None,
) -> pl.DataFrame | None:
    """The index's mentions (dept, dataset, key_pid, person_id) of every indexed person (of
    ``datasets``' (dept, dataset) only, when given), when they are at most ``limit``
    (default :data:`MENTIONS_COPY_ROWS`); None when more."""
    limit = MENTIONS_COPY_ROWS if limit is None else limit
    where = f"{PERSON_ID} IS NOT NULL"
    if datasets is not None:
        listed = ", ".join(f"({sql_literal(d)}, {sql_literal(s)})" for d, s in datasets)
        where += f" AND (dept, dataset) IN ({listed})" if listed else " AND false"
    frame = con.execute(
        f"SELECT dept, dataset, key_pid, {PERSON_ID} FROM {ZONE}.{MENTIONS} "
        f"WHERE {where} LIMIT {int(limit) + 1}"
    ).pl()
    return frame if frame.height <= limit else None


@contextlib.contextmanager
def mentions_to_read(
    con: duckdb.DuckDBPyConnection,
    name: str,
    datasets: Iterable[tuple[str, str]] | None = None,
    limit: int | None = None,
) -> Iterator[str]:
    """For a block of statements that each read the index's mentions of one dataset (of
    ``datasets``, when given): the relation to read them from — a temporary copy
    (``temp.main.<name>``, dropped after the block) when :func:`few_mentions` are few, else
    the index itself. Not inside a transaction that outlives the block: the copy would stay
    in memory until its COMMIT."""
    few = few_mentions(con, limit, datasets)
    if few is None:
        yield f"{ZONE}.{MENTIONS}"
        return
    with _temp_copy(con, few, name):
        yield f"temp.main.{name}"


def block_datasets(con: duckdb.DuckDBPyConnection, block: tuple[str, str]) -> pl.DataFrame:
    """The datasets (dept, dataset) where the index has a mention of a person from the
    block's first to its last person_id."""
    where, params = _in_block(block, "WHERE")
    return con.execute(f"SELECT DISTINCT dept, dataset FROM {ZONE}.{MENTIONS}{where}", params).pl()


def _build(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    scope: pl.DataFrame | None,
    mine: pl.DataFrame | None,
    digests: pl.DataFrame | None,
) -> GoldenBuild:
    """:func:`build_golden` of the persons of ``scope`` (None: all, :data:`GOLDEN_BLOCK`
    at a time, each block read from the index by its range of person ids, its sources
    digests too: those of the whole street at once held ~400 MB of DuckDB's memory at
    200,000 residents), whose mentions are ``mine``; ``digests``: their sources digests,
    known already. A full build of a street with at most :data:`MENTIONS_COPY_ROWS` mentions
    is built as one scope of every indexed person, its mentions copied."""
    plans, span = live_plans(con, catalogue), snapshot_span(con)
    if scope is not None and digests is None:
        digests = sources_digests(con, catalogue, scoped=mine)
    blocks = [None] if scope is not None else person_blocks(indexed_persons(con), GOLDEN_BLOCK)
    if scope is None and len(blocks) == 1 and (few := few_mentions(con)) is not None:
        # a small street's full build: its mentions copied once, as a scoped build's
        blocks, mine = [None], few
        digests = sources_digests(con, catalogue, scoped=mine)
    with transaction(con):
        clear_golden(con, catalogue, scope)
        made = [0, 0, 0]
        for block in blocks:
            if block is None:
                with _temp_copy(con, mine, _BLOCK):
                    mentions = Mentions(f"temp.main.{_BLOCK}", None, held_plans(plans, mine))
                    built = _build_block(con, catalogue, protection, mentions, span, digests)
            else:
                known = sources_digests(con, catalogue, block=block)
                held = held_plans(plans, block_datasets(con, block))
                mentions = Mentions(f"{ZONE}.{MENTIONS}", block, held)
                built = _build_block(con, catalogue, protection, mentions, span, known)
            made = [a + b for a, b in zip(made, built, strict=True)]
        count_conflicts(con, catalogue)
    return GoldenBuild(*made, full=scope is None)


@dataclass(frozen=True)
class Mentions:
    """Where a block's mentions are read: a table (the scope's copy, or the index limited
    to ``block``, a range of person ids) and the plans of the datasets they are in. A
    full build reads the index itself: a temporary copy of each block's mentions made
    inside the build's transaction stayed in memory until its COMMIT, even once dropped
    (~180 MB at 200,000 residents by the last block)."""

    table: str
    block: tuple[str, str] | None
    plans: list[Plan]


def _build_block(con, catalogue, protection, mentions: Mentions, span, digests):
    """Insert the golden records of the persons of ``digests`` from the staged rows of
    their ``mentions``; (persons, history rows, checked records)."""
    observed, checks = [], []
    table, block = mentions.table, mentions.block
    for plan in mentions.plans:  # the datasets where they have records
        if plan.attributes:  # every version the lake holds: the history
            fields = plan.attribute_fields
            read = _read_plan(con, plan, protection, table, fields, span, block)
            observed += [o for f in read for o in observations(f, plan)]
        if plan.checks:  # the current records only
            read = _read_plan(con, plan, protection, table, plan.check_fields, block=block)
            checks += [(plan, f) for f in read]
    return insert_golden(con, catalogue, protection, observed, checks, digests)


def write_golden(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    scope: pl.DataFrame | None,
    observed: list[pl.DataFrame],
    checks: list[tuple[Plan, pl.DataFrame]],
    digests: pl.DataFrame,
) -> GoldenBuild:
    """Replace the golden records of the persons of ``scope`` (None: all) with those made
    of their ``observed`` attribute values (:func:`observations`) and the current records
    to ``checks`` (plan, decrypted frame), and recount the conflicts. Inside the caller's
    transaction."""
    clear_golden(con, catalogue, scope)
    made = insert_golden(con, catalogue, protection, observed, checks, digests)
    count_conflicts(con, catalogue)
    return GoldenBuild(*made, full=scope is None)


def golden_tables(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue
) -> list[tuple[str, list[tuple[str, str]]]]:
    """The golden tables: (name, columns)."""
    return [(PERSON, person_columns(con, catalogue)), (HISTORY, HISTORY_COLUMNS),
            (CHECKS, CHECK_COLUMNS), (CONFLICTS, CONFLICT_COLUMNS)]  # fmt: skip


def clear_golden(con: duckdb.DuckDBPyConnection, catalogue: Catalogue, scope) -> None:
    """Make the golden tables exist and delete the rows of the persons of ``scope`` (None:
    every row) from person, history and checks."""
    for table, cols in golden_tables(con, catalogue):
        ensure_table(con, ZONE, table, cols)
    with (
        registered(con, _SCOPE, scope.to_arrow()) if scope is not None else contextlib.nullcontext()
    ):
        for table in (PERSON, HISTORY, CHECKS):
            where = f" WHERE {PERSON_ID} IN (SELECT {PERSON_ID} FROM {_SCOPE})"
            con.execute(f"DELETE FROM {ZONE}.{table}" + (where if scope is not None else ""))


def insert_golden(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    protection: Revealer,
    observed: list[pl.DataFrame],
    checks: list[tuple[Plan, pl.DataFrame]],
    digests: pl.DataFrame,
) -> tuple[int, int, int]:
    """Insert the golden records, history and checks of the persons of ``digests`` made of
    their ``observed`` values and ``checks`` (:func:`write_golden`); (persons, history
    rows, checked records). The two lists are emptied as they are used (their frames
    freed before the records are made)."""
    attrs = golden_attributes(catalogue)
    history = history_of(pl.concat(observed) if observed else _no_observations())
    observed.clear()
    current = history.filter(pl.col("valid_to").is_null())
    checked = pl.concat(
        [check_records(cmp, frame, current) for plan, frame in checks for cmp in plan.checks]
        or [pl.DataFrame(schema=dict(CHECK_SCHEMA))]
    )
    checks.clear()
    person = _person_frame(digests.sort(PERSON_ID), current, attrs, protection.keyring)
    del current
    insert_frame(con, ZONE, PERSON, person)
    stored = _protect_history(history, attrs, protection.keyring).drop("key_pid", strict=False)
    insert_frame(con, ZONE, HISTORY, stored.select([c for c, _ in HISTORY_COLUMNS]))
    del stored
    insert_frame(con, ZONE, CHECKS, checked.select([c for c, _ in CHECK_COLUMNS]))
    return person.height, history.height, checked.height


_OBSERVATION_SCHEMA = {
    PERSON_ID: pl.String, "concept": pl.String, "value": pl.String,
    "source_dept": pl.String, "source_dataset": pl.String, "as_of": pl.Date,
    "known_at": pl.Datetime("us", "UTC"), "key_pid": pl.String,
}  # fmt: skip
CHECK_SCHEMA = [(c, pl.Boolean if t == "BOOLEAN" else pl.String) for c, t in CHECK_COLUMNS]


def _no_observations() -> pl.DataFrame:
    return pl.DataFrame(schema=_OBSERVATION_SCHEMA)


def check_records(cmp: Comparison, frame: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """Each record's value of ``cmp.field`` against its person's golden value, by the
    consistency score's rule (``quality.scores_authority.compare``)."""
    records = frame.select(pl.col(PERSON_ID).alias(cmp.join_field), pl.col(cmp.field))
    golden = current.filter(pl.col("concept") == cmp.concept).select(
        pl.col(PERSON_ID).alias(cmp.auth_key), pl.col("value").alias(cmp.auth_field)
    )
    outcome = compare(cmp, records, golden)
    return pl.DataFrame(
        {
            PERSON_ID: frame[PERSON_ID],
            "concept": cmp.concept,
            "dept": cmp.dept,
            "dataset": cmp.dataset,
            "field": cmp.field,
            "key_pid": frame[KEY_PID],
            "authority_dept": cmp.auth_dept,
            "authority_dataset": cmp.auth_dataset,
            "compared": outcome["compared"],
            "conflicting": outcome["compared"] & ~outcome["agrees"],
        }
    )


def count_conflicts(con: duckdb.DuckDBPyConnection, catalogue: Catalogue) -> None:
    """``attribute_conflicts`` recounted from every record's check (inside the build): a
    row for each of :func:`golden_checks`, zero where no record of the dataset is linked."""
    keys = ["concept", "dept", "dataset", "field", "authority_dept", "authority_dataset"]
    checks = golden_checks(catalogue)
    every = pl.DataFrame(
        [(c.concept, c.dept, c.dataset, c.field, c.auth_dept, c.auth_dataset) for c in checks],
        schema=dict.fromkeys(keys, pl.String),  # typed even when there is no check at all
        orient="row",
    )
    counted = con.execute(
        f"SELECT {', '.join(keys)}, count(*) AS records, "
        "count(*) FILTER (WHERE compared) AS compared, "
        "count(*) FILTER (WHERE conflicting) AS conflicting "
        f"FROM {ZONE}.{CHECKS} GROUP BY ALL"
    ).pl()
    counts = ["records", "compared", "conflicting"]
    frame = every.join(counted, on=keys, how="left").with_columns(
        pl.col(counts).fill_null(0).cast(pl.Int64)
    )
    con.execute(f"DELETE FROM {ZONE}.{CONFLICTS}")
    insert_frame(con, ZONE, CONFLICTS, frame)


def _decrypt(values: pl.Series, protection: Revealer, column: str, rows: pl.Series) -> pl.Series:
    return decrypt_series(
        values, protection.keyring, column=column, purpose=PURPOSE,
        actor=protection.actor, audit=protection.audit, rows=rows,
    )  # fmt: skip


def reveal_persons(
    con: duckdb.DuckDBPyConnection, catalogue: Catalogue, protection: Revealer
) -> pl.DataFrame:
    """``curated.person`` with its sensitive attributes decrypted (``golden_record``,
    audited; values as text)."""
    frame = con.execute(f"SELECT * FROM {ZONE}.{PERSON} ORDER BY {PERSON_ID}").pl()
    plain = [
        _decrypt(frame[a.column], protection, f"{ZONE}.{PERSON}.{a.column}", frame[PERSON_ID])
        for a in golden_attributes(catalogue)
        if a.sensitive
    ]
    return frame.with_columns(plain)


def reveal_history_rows(frame: pl.DataFrame, protection: Revealer) -> pl.DataFrame:
    secret = frame.filter(pl.col("encrypted"))
    if secret.height == 0:
        return frame
    column = f"{ZONE}.{HISTORY}.value"
    plain = _decrypt(secret["value"], protection, column, _history_rows(secret))
    opened = secret.with_columns(plain.alias("value"))
    return pl.concat([frame.filter(~pl.col("encrypted")), opened]).sort([PERSON_ID, "concept"])


def reveal_history(con: duckdb.DuckDBPyConnection, protection: Revealer) -> pl.DataFrame:
    """``curated.person_attribute_history`` with its values decrypted (``golden_record``,
    audited)."""
    sql = f"SELECT * FROM {ZONE}.{HISTORY} ORDER BY {PERSON_ID}, concept, valid_from"
    return reveal_history_rows(con.execute(sql).pl(), protection)


def person_as_of(
    con: duckdb.DuckDBPyConnection, date: dt.date, protection: Revealer | None = None
) -> pl.DataFrame:
    """Each person's attributes as they stood on ``date`` (one row per person and
    concept whose history holds it then): value, source, as_of, valid_from, valid_to,
    known_at. Sensitive values stay ciphertext unless ``protection`` is given (then they
    are decrypted for ``golden_record``, audited)."""
    frame = con.execute(
        f"SELECT * FROM {ZONE}.{HISTORY} WHERE valid_from <= ? "
        f"AND (valid_to IS NULL OR valid_to > ?) ORDER BY {PERSON_ID}, concept",
        [date, date],
    ).pl()
    return frame if protection is None else reveal_history_rows(frame, protection)


__all__ = [
    "Attribute",
    "GoldenBuild",
    "as_of_field",
    "build_golden",
    "golden_attributes",
    "golden_checks",
    "golden_tables",
    "history_of",
    "person_as_of",
    "person_columns",
    "reveal_history",
    "reveal_persons",
    "sources_digests",
    "staged_table",
]
