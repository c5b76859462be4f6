"""The feature table (特征表): ``curated.need_features``, the features of every cut-off computed,
keyed by the resident's pseudonym and the cut-off, so a backtest reads any past cut-off as it
was computed.

L3 like the curated attributes it is derived from: each column ``features.yaml`` marks
``sensitive`` (health-, identity- and finance-derived) is stored as ciphertext
(:func:`masking.crypto.encrypt_series`, bound to the table, column and row — the row is
``person_id`` and ``cutoff``); reading them back decrypts for the audited purpose
``need_model``. Written per cut-off: writing a cut-off again replaces its rows in one lake
transaction (no duplicates; the older version stays in time travel).

Versioned: each row carries ``feature_set``, the digest of the feature definition that computed
it (:func:`feature_set_version`: features.yaml and the SQL); a cut-off counts as stored only
under the current one, so a changed definition recomputes the cut-offs a run needs (and a
table from before the column existed holds none).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator
from functools import cache
from itertools import pairwise

import duckdb
import polars as pl

from curated.golden import Revealer
from lakehouse.allocator import purge_freed
from lakehouse.lake import INSERT_ROWS, ensure_table, has_table, insert_frame, transaction
from marts.need_model.features import (
    FEATURES_SQL,
    FEATURES_YAML,
    MACROS_SQL,
    FeatureSet,
    load_feature_set,
    read_feature_sql,
)
from marts.need_model.spec import KEYS
from masking.crypto import decrypt_columns, encrypt_series
from masking.keys import KeyRing

ZONE, TABLE = "curated", "need_features"
PURPOSE = "need_model"
SQL_TYPES = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN", "category": "VARCHAR"}
VERSION_COLUMN = "feature_set"


@cache
def feature_set_version() -> str:
    """The digest (16 hex digits of SHA-256) of the feature definition: features.yaml, the
    feature query and the macros it reads through."""
    digest = hashlib.sha256(FEATURES_YAML.read_bytes())
    for name in (FEATURES_SQL, MACROS_SQL):
        digest.update(read_feature_sql(name).encode("utf-8"))
    return digest.hexdigest()[:16]


def _row_ids(frame: pl.DataFrame) -> pl.Series:
    """Each row's identity in its ciphertexts: person_id and cut-off."""
    return frame.select(
        pl.concat_str([pl.col("person_id"), pl.col("cutoff").cast(pl.String)], separator="\x1f")
    ).to_series()


def _column_id(name: str) -> str:
    return f"{ZONE}.{TABLE}.{name}"


def table_columns(fs: FeatureSet) -> list[tuple[str, str]]:
    """(name, SQL type) of the feature table: ciphertext (text) for a sensitive feature."""
    return (
        [("person_id", "VARCHAR"), ("cutoff", "DATE")]
        + [(f.name, "VARCHAR" if f.sensitive else SQL_TYPES[f.type]) for f in fs.features]
        + [(VERSION_COLUMN, "VARCHAR")]
    )


WRITE_BATCH = INSERT_ROWS
"""Rows encrypted and inserted at a time (:func:`write_features`), one slice of the lake's
insert (the same files as the whole frame inserted at once): a row's ciphertexts are its
own, and a cut-off's sealed columns at once (some 300 MB at 200,000 residents) were the
features step's peak."""


def _sealed(frame: pl.DataFrame, fs: FeatureSet, keyring: KeyRing) -> pl.DataFrame:
    """The rows as stored: the sensitive columns encrypted, the definition's version added."""
    rows = _row_ids(frame)
    return frame.select(list(fs.schema)).with_columns(
        *(
            encrypt_series(frame[f.name], keyring, column=_column_id(f.name), rows=rows)
            for f in fs.features
            if f.sensitive
        ),
        pl.lit(feature_set_version()).alias(VERSION_COLUMN),
    )


def write_features(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, keyring: KeyRing
) -> list[dt.date]:
    """Store a features frame: its cut-offs' rows replaced in one transaction, the sensitive
    columns encrypted :data:`WRITE_BATCH` rows at a time. The cut-offs written."""
    fs = load_feature_set()
    cutoffs = sorted(frame["cutoff"].unique().to_list())
    with transaction(con):
        ensure_table(con, ZONE, TABLE, table_columns(fs))
        if cutoffs:
            marks = ", ".join("?" for _ in cutoffs)
            con.execute(f'DELETE FROM {ZONE}."{TABLE}" WHERE cutoff IN ({marks})', cutoffs)
        for start in range(0, frame.height, WRITE_BATCH):
            insert_frame(con, ZONE, TABLE, _sealed(frame.slice(start, WRITE_BATCH), fs, keyring))
    return cutoffs


def stored_cutoffs(con: duckdb.DuckDBPyConnection) -> list[dt.date]:
    """The cut-offs the table holds computed by the current feature definition
    (:func:`feature_set_version`), oldest first."""
    if not has_table(con, ZONE, TABLE):
        return []
    table = f'{ZONE}."{TABLE}"'
    have = {d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description}
    if VERSION_COLUMN not in have:
        return []
    rows = con.execute(
        f"SELECT DISTINCT cutoff FROM {table} WHERE {VERSION_COLUMN} = ? ORDER BY cutoff",
        [feature_set_version()],
    ).fetchall()
    return [r[0] for r in rows]


def stored_rows(con: duckdb.DuckDBPyConnection, cutoffs: Iterable[dt.date]) -> dict[dt.date, int]:
    """The rows stored (by the current feature definition) of each of ``cutoffs`` (0: none),
    counted in the lake: nothing read or decrypted."""
    wanted = sorted(set(cutoffs))
    if not wanted or not has_table(con, ZONE, TABLE) or not stored_cutoffs(con):
        return dict.fromkeys(wanted, 0)
    counted = con.execute(
        f'SELECT cutoff, count(*) FROM {ZONE}."{TABLE}" WHERE {VERSION_COLUMN} = ? '
        f"AND cutoff IN ({', '.join('?' for _ in wanted)}) GROUP BY cutoff",
        [feature_set_version(), *wanted],
    ).fetchall()
    return dict.fromkeys(wanted, 0) | dict(counted)


def _opened(values: pl.Series, dtype: pl.DataType) -> pl.Series:
    if dtype == pl.Boolean:
        return (values == "true").alias(values.name)
    return values.cast(dtype)


def read_features(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    cutoffs: Iterable[dt.date] | None = None,
    columns: Iterable[str] | None = None,
    *,
    in_key_order: bool = True,
) -> pl.DataFrame:
    """The stored features of ``cutoffs`` (None: every cut-off stored by the current feature
    definition, :func:`stored_cutoffs`), decrypted for ``need_model``
    (audited), typed as ``features.yaml`` says. ``columns``: the features read besides the
    keys (None: every one), in the table's order; only those are decrypted and audited.
    Sorted by key; ``in_key_order=False``: the cut-offs one after the other, each in the
    table's order, for a caller that orders the rows itself or needs no order (a sorted copy
    of a 200,000-resident cut-off is ~35 MB more at the read's peak)."""
    schema = read_schema(columns)
    if not has_table(con, ZONE, TABLE):
        return pl.DataFrame(schema=schema)
    wanted = sorted(set(stored_cutoffs(con) if cutoffs is None else cutoffs))
    if not wanted:
        return pl.DataFrame(schema=schema)
    # one snapshot for every statement: a cut-off's plain and sealed columns are read by
    # several statements and lined up by the rows' order, which only one state of the table
    # guarantees (a writer's commit between two of them would misalign them, and the
    # row-bound ciphertexts would then fail to decrypt); DuckLake's catalogue is loaded once
    # (measured when a cut-off of 2,000 residents took 22 statements, one a sealed column:
    # -10 % CPU; a few sealed columns a statement now, SEALED_CELLS: 2-3 a cut-off)
    with transaction(con):
        parts = [_read_cutoff(con, protection, schema, cutoff) for cutoff in wanted]
    return _sorted_by_keys(parts) if in_key_order else pl.concat(parts)


def read_schema(columns: Iterable[str] | None = None) -> dict[str, pl.DataType]:
    """The schema of :func:`read_features`' frame: the keys and ``columns`` (None: every
    feature), in the table's order; a name ``features.yaml`` lacks is refused."""
    schema = load_feature_set().schema
    if columns is None:
        return schema
    wanted = set(columns)
    unknown = sorted(wanted - set(schema))
    if unknown:
        raise KeyError(f"features.yaml has no feature {unknown}")
    return {name: dtype for name, dtype in schema.items() if name in KEYS or name in wanted}


def _sorted_by_keys(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """``pl.concat(parts).sort(KEYS)`` made a column at a time, each part's column let go
    once gathered (the keys are unique): the whole frame and its sorted copy were never
    needed at once (at 200,000 residents, four cut-offs' ~600 MB twice)."""
    order = pl.concat([p.select(KEYS) for p in parts]).select(pl.arg_sort_by(KEYS)).to_series()
    columns = []
    for name in parts[0].columns:
        columns.append(pl.concat([p.get_column(name) for p in parts]).gather(order))
        parts = [p.drop(name) for p in parts]
    return pl.DataFrame(columns)


SLICE_ROWS = 50_000
"""Residents a slice of :func:`read_slices` holds, about: the transient of a cut-off's read
(DuckDB's results, the ciphertexts and their decryption, ~3x the frame) grows with its rows;
at 200,000 residents a whole cut-off's (178,000 rows) stood ~105 MB over what the training
held, the training's peak."""


SEALED_CELLS = 180_000
"""Ciphertexts one statement of a cut-off's read reads, about: its sealed columns are read as
many at a time as make this many cells (a 200,000-resident street's slice of 50,000
residents: three; a 2,000-resident street's cut-off: all of them in one statement, not one
statement each), each column decrypted on its own."""


def _slice_where(
    cutoff: dt.date, persons: tuple[str | None, str | None]
) -> tuple[str, list[object]]:
    """The FROM and WHERE of a cut-off's residents from ``persons[0]`` up to ``persons[1]``,
    and its parameters."""
    where, params = f'FROM {ZONE}."{TABLE}" WHERE cutoff = ?', [cutoff]
    first, end = persons
    if first is not None:
        where, params = f"{where} AND person_id >= ?", [*params, first]
    if end is not None:  # the first slice holds a row without a person id, if one has none
        below = "person_id < ?" if first is not None else "(person_id < ? OR person_id IS NULL)"
        where, params = f"{where} AND {below}", [*params, end]
    return where, params


def slice_bounds(
    con: duckdb.DuckDBPyConnection, cutoff: dt.date, rows: int, stored: int | None = None
) -> list[str]:
    """Person ids that cut the stored residents of ``cutoff`` into slices of about ``rows``
    each, in order (none: one slice holds them all). ``stored``: the cut-off's rows, when
    the caller has counted them (:func:`stored_rows`); counted here otherwise."""
    if stored is None:
        count = con.execute(
            f'SELECT count(*) FROM {ZONE}."{TABLE}" WHERE cutoff = ?', [cutoff]
        ).fetchone()
        stored = count[0] if count else 0
    slices = -(-stored // max(rows, 1))
    if slices <= 1:
        return []
    shares = [k / slices for k in range(1, slices)]
    found = con.execute(
        f'SELECT quantile_disc(person_id, {shares}) FROM {ZONE}."{TABLE}" WHERE cutoff = ?',
        [cutoff],
    ).fetchone()
    return sorted(set(found[0])) if found and found[0] else []


def read_slices(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    cutoff: dt.date,
    columns: Iterable[str] | None = None,
    rows: int = SLICE_ROWS,
    stored: int | None = None,
) -> Iterator[pl.DataFrame]:
    """:func:`read_features` of one cut-off, ``in_key_order=False``, as slices of about
    ``rows`` residents (the residents between two person ids, :func:`slice_bounds`) read and
    decrypted one after the other, all from one snapshot (one lake transaction, over the
    iteration): their concatenation is the whole cut-off, each slice in the table's order.
    One slice's read is held at a time, for a caller that puts each slice away (the need
    model's training). Each slice's decryption is audited as a read of its own. ``stored``:
    the cut-off's rows, when the caller has counted them (:func:`slice_bounds`)."""
    schema = read_schema(columns)
    if not has_table(con, ZONE, TABLE):
        return
    with transaction(con):
        bounds: list[str | None] = [None, *slice_bounds(con, cutoff, rows, stored), None]
        for first, end in pairwise(bounds):
            yield _read_cutoff(con, protection, schema, cutoff, (first, end))


def _read_cutoff(
    con: duckdb.DuckDBPyConnection,
    protection: Revealer,
    schema: dict[str, pl.DataType],
    cutoff: dt.date,
    persons: tuple[str | None, str | None] = (None, None),
) -> pl.DataFrame:
    """One cut-off's stored features of ``schema``, decrypted and typed: a few sealed columns
    at a time (:data:`SEALED_CELLS`; all of them at once were the need model's training peak
    at 200,000 residents), apart from the plain columns — a frame read from DuckDB is one
    allocation its columns share, so plain columns read with them would keep the
    ciphertexts alive (each read in the same order). ``persons``: only the residents from
    the first (None: the first of all) up to, not including, the second (None: to the last
    of all), a slice of :func:`read_slices`."""
    sensitive = [f for f in load_feature_set().features if f.sensitive and f.name in schema]
    # one row a person, in the table's order (read_features sorts by key unless asked not
    # to): every statement reads the cut-off's rows in the same order (DuckDB keeps a scan's
    # order, preserve_insertion_order), so no statement sorts — an ORDER BY made each one
    # sort what it read with the person ids (a 200,000-resident cut-off's plain columns:
    # +69 MB against +30, one ciphertext column +37 against +12). A ciphertext is bound to
    # its row's person and cut-off: columns that did not line up would fail to decrypt,
    # never mix rows; they line up because the caller reads them in one transaction
    where, params = _slice_where(cutoff, persons)

    def read(columns: list[str]) -> pl.DataFrame:
        names = ", ".join(f'"{c}"' for c in columns)
        return con.execute(f"SELECT {names} {where}", params).pl()

    sealed_names = {f.name for f in sensitive}
    # what was freed handed back before the read, after it and after each statement's
    # decryption (DuckDB's results, the ciphertexts, their decryption's parts: freed, they
    # stayed resident under the next statement's, ~30 MB a 200,000-resident cut-off)
    purge_freed()
    frame = read([c for c in schema if c not in sealed_names])
    purge_freed()
    rows = _row_ids(frame)
    plain = []
    at_once = max(1, SEALED_CELLS // max(frame.height, 1))  # columns a statement reads
    for start in range(0, len(sensitive), at_once):  # (every one: ~400 MB at 200,000)
        group = sensitive[start : start + at_once]
        sealed = read([f.name for f in group])
        opened = decrypt_columns(
            [(_column_id(f.name), sealed.get_column(f.name)) for f in group],
            protection.keyring, purpose=PURPOSE, actor=protection.actor,
            audit=protection.audit, rows=rows,
        )  # fmt: skip
        for f, values in zip(group, opened, strict=True):
            plain.append(_opened(values, f.dtype))
        del sealed
        purge_freed()
    return frame.with_columns(plain).select(list(schema)).cast(schema)  # type: ignore[arg-type]


__all__ = [
    "feature_set_version",
    "read_features",
    "read_schema",
    "read_slices",
    "slice_bounds",
    "stored_cutoffs",
    "stored_rows",
    "table_columns",
    "write_features",
]
