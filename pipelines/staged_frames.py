"""The staged tables as the quality scorecard and the truth evaluation read them: one at a
time, revealed for the ``quality_scores`` purpose (audited), or — for a large events table —
counted where it lies."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import duckdb
import polars as pl

from catalog.authority import fields_of_concept, person_key, person_registers
from catalog.model import Catalogue, Dataset, UpdateMode
from lakehouse.lake import METADATA, registered
from pipelines.ingest.raw import raw_table
from pipelines.memory import trim_heap
from pipelines.protection import STAGED_IDENTITY, Protection
from quality.keys import ROW_DIGEST
from quality.scores import TableFacts

Key = tuple[str, str]
# staged columns nothing downstream of the gate reads: the row digest is for the next
# delivery's comparison (``quality.keys``); left out, a quarter less of a narrow table
# (1.7 million IoT readings at 200,000 residents)
NOT_SCORED = ("_staged_at", ROW_DIGEST)
# an events table (append) no authority check reads whole is scored where it lies, in SQL,
# from this many rows on (1.7 million IoT readings at 200,000 residents cost 0.7 GB as a
# frame); its expectations judge the newest delivery's rows only, read alone
LEAN_MIN_ROWS = 0


class StagedFrames(Mapping[Key, pl.DataFrame]):
    """The staged tables, read and revealed one at a time as they are asked for.

    The scorecard goes dataset by dataset: holding every staged table of a street at once
    cost gigabytes (5.9 GB peak at 200,000 residents). Each table is read once per use
    from the open lake (decrypted for ``quality_scores``, audited) and kept only until the
    next table is asked for (or, ``pinned``, to the end). The authorities the datasets are
    compared with, and the person registers, are read apart as well (:meth:`as_authority`):
    only the columns the others need of them, kept once read.

    A catalogue field whose value the scorecard never reads (:func:`scored_values`: it
    only asks whether it is null — completeness, Great Expectations' not-null) is read as
    that alone, ``''`` or null, and never decrypted: a 168,000-row register is held as its
    key and a column of empty strings, not as 17 revealed columns (the scorecard's peak at
    200,000 residents).
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        cat: Catalogue,
        protection: Protection,
        pinned: set[Key] | None = None,
    ) -> None:
        self.con, self.protection = con, protection
        tables = staged_columns(con)
        self._datasets = {
            (dept.code, ds.code): ds
            for dept, ds in cat.datasets()
            if raw_table(dept.code, ds) in tables
        }
        self._column_names = {
            key: tables[raw_table(key[0], ds)] for key, ds in self._datasets.items()
        }
        self.pinned = pinned if pinned is not None else set()
        self._kept: dict[Key, pl.DataFrame] = {}
        self._as_authority = authority_columns(cat)  # the columns read of an authority
        self._views: dict[Key, pl.DataFrame] = {}
        self._valued = {
            key: scored_values(cat, key, ds) | self._as_authority.get(key, set())
            for key, ds in self._datasets.items()
        }

    def __getitem__(self, key: Key) -> pl.DataFrame:
        if key in self._kept:
            return self._kept[key]
        if key not in self._datasets:  # a dataset with no staged table
            raise KeyError(key)
        if key not in self.pinned:  # an authority read beside a dataset does not evict it
            for k in [k for k in self._kept if k not in self.pinned]:
                del self._kept[k]
        frame = self._read(key)
        self._kept[key] = frame
        return frame

    def _read(self, key: Key, where: str = "", params: list | None = None) -> pl.DataFrame:
        """The table's rows (``where``: a SQL condition with ``params``), revealed; a field
        outside ``scored_values`` read as ``''`` or null, never decrypted."""
        ds = self._datasets[key]
        fields = {f.name for f in ds.fields} - self._valued[key]
        columns = [c for c in self._columns(key) if c not in NOT_SCORED]
        nullness = [c for c in columns if c in fields]
        select = ", ".join(
            f'CASE WHEN "{c}" IS NULL THEN NULL ELSE \'\' END AS "{c}"' if c in fields else f'"{c}"'
            for c in columns
        )
        sql = f"SELECT {select} FROM {self._table(key)}{where}"
        frame = self.con.execute(sql, params or []).pl()
        revealed = self.protection.reveal(frame.drop(nullness), ds, "quality_scores")
        if nullness:
            revealed = pl.concat([revealed, frame.select(nullness)], how="horizontal")
        return revealed.select(columns)

    def as_authority(self, key: Key) -> pl.DataFrame:
        """The columns of ``key`` that other datasets are compared with, and a register's
        person key (``authority_columns``), revealed and kept: a register of 200,000
        residents is not held whole while every other dataset is scored."""
        if key in self._views:
            return self._views[key]
        wanted = self._as_authority.get(key)
        if wanted is None:
            return self[key]
        if key in self._kept:
            frame = self._kept[key]
        else:
            ds = self._datasets[key]  # KeyError for a dataset with no staged table
            cols = [c for c in self._columns(key) if c in wanted or c in STAGED_IDENTITY]
            names = ", ".join(f'"{c}"' for c in cols)
            sql = f"SELECT {names} FROM {self._table(key)}"
            frame = self.protection.reveal(self.con.execute(sql).pl(), ds, "quality_scores")
        view = frame.select([c for c in frame.columns if c in wanted])
        self._views[key] = view
        return view

    def done(self, key: Key) -> None:
        """The caller has scored ``key``: its frame is let go now (unless pinned), and the
        memory it and its scoring freed is given back (``pipelines.memory.trim_heap``: what
        a dataset's read, decrypted values and GE's pandas frame freed stayed resident
        otherwise, and the scorecard alone at 200,000 residents grew by ~150 MB that way)."""
        if key in self._kept and key not in self.pinned:
            del self._kept[key]
        trim_heap()

    def _table(self, key: Key) -> str:
        return f'staged."{raw_table(key[0], self._datasets[key])}"'

    def _columns(self, key: Key) -> list[str]:
        return self._column_names[key]

    def lean(self, key: Key, cat: Catalogue) -> bool:
        """Whether ``key`` is scored in SQL where it lies (``LEAN_MIN_ROWS``): an append
        dataset not held as an authority, compared with none, its key not encrypted."""
        from quality.scores_authority import comparisons

        ds = self._datasets.get(key)
        if ds is None or key in self._as_authority or key in self._kept:
            return False
        if ds.update_mode is not UpdateMode.append or any(
            ds.field(k).level.sensitive for k in ds.key
        ):
            return False
        if any((c.dept, c.dataset) == key for c in comparisons(cat)):
            return False
        if LEAN_MIN_ROWS <= 0:  # every such table: no count to ask the lake for
            return True
        rows = self.con.execute(f"SELECT count(*) FROM {self._table(key)}").fetchone()[0]
        return rows >= LEAN_MIN_ROWS

    def facts(self, key: Key) -> TableFacts:
        """The table's :class:`TableFacts` counted in SQL (an encrypted value is null
        exactly when its plaintext is; the key columns are not encrypted: ``lean``)."""
        from quality.scores import TableFacts

        ds = self._datasets[key]
        columns = self._columns(key)
        fields = [f.name for f in ds.fields if f.name in columns]
        nulls = ", ".join(f'count(*) - count("{c}")' for c in fields)
        keyed = all(k in columns for k in ds.key)
        keys = ", ".join(f'"{k}"' for k in ds.key)
        distinct = (
            f"(SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {self._table(key)}))"
            if keyed
            else "NULL"
        )
        row = self.con.execute(
            f"SELECT count(*), {distinct}{', ' + nulls if nulls else ''} FROM {self._table(key)}"
        ).fetchone()
        return TableFacts(int(row[0]), dict(zip(fields, map(int, row[2:]), strict=True)),
                          None if row[1] is None else int(row[1]))  # fmt: skip

    def delivery_rows(self, key: Key, delivery_id: str) -> pl.DataFrame:
        """The staged rows one delivery brought, read like a whole table (``_read``)."""
        return self._read(key, " WHERE _delivery_id = ?", [delivery_id])

    def delivery_count(self, key: Key, delivery_id: str) -> int:
        sql = f"SELECT count(*) FROM {self._table(key)} WHERE _delivery_id = ?"
        return int(self.con.execute(sql, [delivery_id]).fetchone()[0])

    def issue_keys(self, key: Key, candidates: pl.DataFrame) -> pl.DataFrame | None:
        """``_issue_keys`` of the table for the candidate keys only, joined where it lies."""
        columns = self._columns(key)
        if "_key_pid" not in columns:
            return None
        mine = candidates.filter((pl.col("dept") == key[0]) & (pl.col("dataset") == key[1]))
        with registered(self.con, "q_candidates", mine.select("key_pid").to_arrow()):
            return self.con.execute(
                "SELECT ? AS dept, ? AS dataset, _key_pid AS key_pid, _delivery_id, _loaded_at "
                f"FROM {self._table(key)} WHERE _key_pid IN (SELECT key_pid FROM q_candidates)",
                list(key),
            ).pl()

    def __contains__(self, key: object) -> bool:  # Mapping's would read the table
        return key in self._datasets

    def __iter__(self) -> Iterator[Key]:
        return iter(self._datasets)

    def __len__(self) -> int:
        return len(self._datasets)


def staged_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Every committed staged table's columns, in the table's order (what ``SELECT *``
    gives), from one read of DuckLake's catalogue: a ``SELECT * … LIMIT 0`` per table and
    use cost a catalogue read each (~15 ms; 37 of them in a 1,000-resident scorecard)."""
    rows = con.execute(
        f"SELECT t.table_name, c.column_name FROM {METADATA}.ducklake_column c "
        f"JOIN {METADATA}.ducklake_table t USING (table_id) "
        f"JOIN {METADATA}.ducklake_schema s USING (schema_id) "
        "WHERE s.schema_name = 'staged' AND c.parent_column IS NULL AND c.end_snapshot IS NULL "
        "AND t.end_snapshot IS NULL AND s.end_snapshot IS NULL "
        "ORDER BY t.table_name, c.column_order"
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def scored_values(cat: Catalogue, key: Key, ds: Dataset) -> set[str]:
    """The fields of ``key`` whose values the scorecard reads: its business key (uniqueness,
    GE's unique key), the fields it is compared with an authority by (the entity key and the
    value) and its person-key fields (registry references). Of every other field the
    scorecard reads only whether it is null: its suite is row count, not-null and unique key
    (``quality.expectations.build_suite``; tests/pipelines/test_staged_frames_values.py
    fails when it asks more)."""
    from quality.scores_authority import comparisons

    out = set(ds.key)
    for c in comparisons(cat):
        if (c.dept, c.dataset) == key:
            out |= {c.field, c.join_field}
    concept = person_key(cat)
    if concept is not None:
        out |= set(fields_of_concept(ds, concept))
    return out


def authority_keys(cat: Catalogue) -> set[Key]:
    """Datasets other datasets are compared with or checked against (kept once read)."""
    from quality.scores_authority import comparisons

    keys = {(c.auth_dept, c.auth_dataset) for c in comparisons(cat)}
    return keys | {(r.dept, r.dataset.code) for r in person_registers(cat)}


def authority_columns(cat: Catalogue) -> dict[Key, set[str]]:
    """The columns each authority is read for by others: the entity key and the values
    compared (``quality.scores_authority.compare``, with ``_loaded_at`` for the newest
    value), and a person register's person-key field (the registry's IDs)."""
    from quality.scores_authority import comparisons

    out: dict[Key, set[str]] = {}
    for c in comparisons(cat):
        out.setdefault((c.auth_dept, c.auth_dataset), set()).update(
            {c.auth_key, c.auth_field, "_loaded_at"}
        )
    for r in person_registers(cat):
        out.setdefault((r.dept, r.dataset.code), set()).add(r.field)
    return out


class AuthoritiesBeside(Mapping[Key, pl.DataFrame]):
    """``staged`` as one dataset's comparisons read it: the dataset itself whole, any
    other (its authorities) as :meth:`StagedFrames.as_authority`."""

    def __init__(self, staged: StagedFrames, own: Key) -> None:
        self.staged, self.own = staged, own

    def __getitem__(self, key: Key) -> pl.DataFrame:
        return self.staged[key] if key == self.own else self.staged.as_authority(key)

    def __contains__(self, key: object) -> bool:
        return key in self.staged

    def __iter__(self) -> Iterator[Key]:
        return iter(self.staged)

    def __len__(self) -> int:
        return len(self.staged)
