"""Dataset-level quality over the lake: scores, expectations, disagreements, issues, report.

Reads staged (decrypted for the ``quality_scores`` purpose, audited), the
quarantine and the delivery accounts; calls the plain functions in
``quality/``; writes ``marts.quality_scorecard``, ``marts.quality_expectations``,
``quarantine.disagreements`` and ``quarantine.issues`` and the self-contained
HTML report under ``STREETHUB_HOME/reports/``.

Incremental: ``marts.quality_state`` records what the last scorecard read — the lake's
snapshot when it started, a digest of each dataset's quarantine, delivery accounts and
deliveries, its weight (staged rows), and a digest of the catalogue and the scoring
version. The next scorecard reads, reveals, scores and validates (Great Expectations)
only the datasets whose staged table changed since that snapshot (DuckLake's own record
of each snapshot's changes), whose digest differs, or whose authority or person
register's staged table changed (``quality.scores.rescored``); the others keep their
rows of the last scorecard, with timeliness and freshness judged again at ``now``. The
result equals a full recompute (tests/pipelines/test_quality_run_incremental.py). With
no usable state (first run, another catalogue or version, an expired snapshot) every
dataset is scored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from catalog.authority import person_registers
from catalog.model import Catalogue, UpdateMode
from catalog.settings import Settings
from lakehouse.lake import ALIAS, METADATA, tables_in, transaction
from pipelines.ingest.raw import raw_table
from pipelines.protection import STAGED_IDENTITY, Protection
from quality.keys import ROW_DIGEST
from quality.scores import TableFacts

Key = tuple[str, str]
# staged columns nothing downstream of the gate reads: the row digest is for the next
# delivery's comparison (``quality.keys``); left out, a quarter less of a narrow table
# (1.7 million IoT readings at 200,000 residents)
NOT_SCORED = ("_staged_at", ROW_DIGEST)
# bump when a score, an expectation or a disagreement is computed differently: the next
# scorecard then scores every dataset again instead of keeping the last one's rows
SCORING_VERSION = "2026-11-30.1"
# an events table (append) no authority check reads whole is scored where it lies, in SQL,
# from this many rows on (1.7 million IoT readings at 200,000 residents cost 0.7 GB as a
# frame); its expectations judge the newest delivery's rows only, read alone
LEAN_MIN_ROWS = 0
STATE_TABLE = "quality_state"  # in marts: what the last scorecard read (see module doc)
# the ledger and quarantine tables whose rows of a dataset feed its scores
DIGESTED = ("quarantine.rows", "landing.delivery_accounts", "landing.deliveries")


class StagedFrames(Mapping[Key, pl.DataFrame]):
    """The staged tables, read and revealed one at a time as they are asked for.

    The scorecard goes dataset by dataset: holding every staged table of a street at once
    cost gigabytes (5.9 GB peak at 200,000 residents). Each table is read once per use
    from the open lake (decrypted for ``quality_scores``, audited); the authorities the
    datasets are compared with, and the person registers, are kept once read (``pinned``),
    anything else only until the next table is asked for.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        cat: Catalogue,
        protection: Protection,
        pinned: set[Key] | None = None,
    ) -> None:
        self.con, self.protection = con, protection
        tables = _tables(con, "staged")
        self._datasets = {
            (dept.code, ds.code): ds
            for dept, ds in cat.datasets()
            if raw_table(dept.code, ds) in tables
        }
        self.pinned = pinned if pinned is not None else authority_keys(cat)
        self._kept: dict[Key, pl.DataFrame] = {}

    def __getitem__(self, key: Key) -> pl.DataFrame:
        if key in self._kept:
            return self._kept[key]
        ds = self._datasets[key]  # KeyError for a dataset with no staged table
        if key not in self.pinned:  # an authority read beside a dataset does not evict it
            for k in [k for k in self._kept if k not in self.pinned]:
                del self._kept[k]
        frame = self.con.execute(
            f'SELECT * EXCLUDE ({", ".join(NOT_SCORED)}) FROM staged."{raw_table(key[0], ds)}"'
        ).pl()
        frame = self.protection.reveal(frame, ds, "quality_scores")
        self._kept[key] = frame
        return frame

    def _table(self, key: Key) -> str:
        return f'staged."{raw_table(key[0], self._datasets[key])}"'

    def _columns(self, key: Key) -> list[str]:
        sql = f"SELECT * FROM {self._table(key)} LIMIT 0"
        return [d[0] for d in self.con.execute(sql).description]

    def lean(self, key: Key, cat: Catalogue) -> bool:
        """Whether ``key`` is scored in SQL where it lies (``LEAN_MIN_ROWS``): an append
        dataset not held as an authority, compared with none, its key not encrypted."""
        from quality.scores_authority import comparisons

        ds = self._datasets.get(key)
        if ds is None or key in self.pinned or key in self._kept:
            return False
        if ds.update_mode is not UpdateMode.append or any(
            ds.field(k).level.sensitive for k in ds.key
        ):
            return False
        if any((c.dept, c.dataset) == key for c in comparisons(cat)):
            return False
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
        """The staged rows one delivery brought, revealed (audited) like a whole table."""
        frame = self.con.execute(
            f"SELECT * EXCLUDE ({', '.join(NOT_SCORED)}) FROM {self._table(key)} "
            "WHERE _delivery_id = ?",
            [delivery_id],
        ).pl()
        return self.protection.reveal(frame, self._datasets[key], "quality_scores")

    def delivery_count(self, key: Key, delivery_id: str) -> int:
        sql = f"SELECT count(*) FROM {self._table(key)} WHERE _delivery_id = ?"
        return int(self.con.execute(sql, [delivery_id]).fetchone()[0])

    def issue_keys(self, key: Key, candidates: pl.DataFrame) -> pl.DataFrame | None:
        """``_issue_keys`` of the table for the candidate keys only, joined where it lies."""
        columns = self._columns(key)
        if "_key_pid" not in columns:
            return None
        mine = candidates.filter((pl.col("dept") == key[0]) & (pl.col("dataset") == key[1]))
        self.con.register("q_candidates", mine.select("key_pid").to_arrow())
        try:
            return self.con.execute(
                "SELECT ? AS dept, ? AS dataset, _key_pid AS key_pid, _delivery_id, _loaded_at "
                f"FROM {self._table(key)} WHERE _key_pid IN (SELECT key_pid FROM q_candidates)",
                list(key),
            ).pl()
        finally:
            self.con.unregister("q_candidates")

    def __contains__(self, key: object) -> bool:  # Mapping's would read the table
        return key in self._datasets

    def __iter__(self) -> Iterator[Key]:
        return iter(self._datasets)

    def __len__(self) -> int:
        return len(self._datasets)


def authority_keys(cat: Catalogue) -> set[Key]:
    """Datasets other datasets are compared with or checked against (kept once read)."""
    from quality.scores_authority import comparisons

    keys = {(c.auth_dept, c.auth_dataset) for c in comparisons(cat)}
    return keys | {(r.dept, r.dataset.code) for r in person_registers(cat)}


@dataclass
class Previous:
    """What the last scorecard wrote, kept for the datasets nothing changed for."""

    scorecard: pl.DataFrame
    expectations: pl.DataFrame
    disagreements: pl.DataFrame
    weights: dict[Key, int]


@dataclass
class ReadState:
    """What this scorecard reads: the lake's snapshot at its start, each dataset's digest
    of its quarantine/accounts/deliveries rows, the catalogue-and-version digest."""

    snapshot: int | None
    digests: dict[Key, str]
    version: str


@dataclass
class QualityInputs:
    staged: Mapping[Key, pl.DataFrame]
    quarantine: pl.DataFrame
    accounts: pl.DataFrame
    deliveries: pl.DataFrame
    issues: pl.DataFrame | None
    rescore: set[Key] | None = None  # None: every dataset; else the others keep `previous`
    previous: Previous | None = None
    read: ReadState | None = None


@dataclass
class QualityOutputs:
    scorecard: pl.DataFrame
    expectations: pl.DataFrame
    disagreements: pl.DataFrame
    issues: pl.DataFrame
    state: pl.DataFrame | None = None  # marts.quality_state to write (None: leave it)


def _tables(con: duckdb.DuckDBPyConnection, zone: str) -> set[str]:
    return {t for _, t in tables_in(con, zone)}


def load_inputs(
    con: duckdb.DuckDBPyConnection,
    cat: Catalogue,
    protection: Protection,
    *,
    incremental: bool = True,
) -> QualityInputs:
    """The scorecard's inputs; staged tables are read as they are needed, so use them
    (``compute_quality``, the truth evaluation) while ``con`` is open.

    ``incremental``: only the datasets something changed for since the last scorecard are
    scored again (see the module doc); False: every dataset (the same result, slower)."""
    read = _read_state(con, cat)  # first: anything committed after it counts as changed
    issues = None
    if "issues" in _tables(con, "quarantine"):
        issues = con.execute("SELECT * FROM quarantine.issues").pl()
    inputs = QualityInputs(
        staged=StagedFrames(con, cat, protection),
        quarantine=con.execute("SELECT * FROM quarantine.rows").pl(),
        accounts=con.execute("SELECT * FROM landing.delivery_accounts").pl(),
        deliveries=con.execute(
            "SELECT delivery_id, dept, dataset, file_name, arrived_at, size_bytes "
            "FROM landing.deliveries"
        ).pl(),
        issues=issues,
        read=read,
    )
    if incremental:
        found = _previous(con, cat, read)
        if found is not None:
            inputs.previous, inputs.rescore = found
    return inputs


def _version(cat: Catalogue) -> str:
    text = json.dumps(cat.as_dict(), sort_keys=True, default=str) + SCORING_VERSION
    return hashlib.sha256((text + pl.__version__).encode()).hexdigest()[:32]


def _read_state(con: duckdb.DuckDBPyConnection, cat: Catalogue) -> ReadState:
    snapshot = con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()
    digests: dict[Key, list[str]] = {}
    for table in DIGESTED:  # every row of the dataset, whatever its columns: order-free
        rows = con.execute(
            f"SELECT dept, dataset, count(*), sum(hash(t)::HUGEINT) FROM {table} t GROUP BY ALL"
        ).fetchall()
        for dept, dataset, n, total in rows:
            digests.setdefault((dept, dataset), []).append(f"{table}:{n}:{total}")
    return ReadState(
        snapshot=int(snapshot[0]) if snapshot else None,
        digests={k: "|".join(sorted(v)) for k, v in digests.items()},
        version=_version(cat),
    )


def _touched_staged(con: duckdb.DuckDBPyConnection, cat: Catalogue, since: int) -> set[Key] | None:
    """Datasets whose staged table any snapshot after ``since`` changed (created, inserted
    into, deleted from, compacted, altered, dropped: any change that names its id or its
    name), or None when ``since`` is no longer on record (expired: changes unknown)."""
    if not con.execute(
        f"SELECT count(*) FROM {ALIAS}.snapshots() WHERE snapshot_id = ?", [since]
    ).fetchone()[0]:
        return None
    named: set[str] = set()
    for (changes,) in con.execute(
        f"SELECT changes FROM {ALIAS}.snapshots() WHERE snapshot_id > ?", [since]
    ).fetchall():
        for values in (changes or {}).values():
            named |= {str(v) for v in values or []}
    if not named:
        return set()
    ids = dict(
        con.execute(
            f"SELECT t.table_name, t.table_id FROM {METADATA}.ducklake_table t "
            f"JOIN {METADATA}.ducklake_schema s USING (schema_id) "
            "WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL "
            "AND s.schema_name = 'staged'"
        ).fetchall()
    )
    out: set[Key] = set()
    for dept, ds in cat.datasets():
        name = raw_table(dept.code, ds)
        if f"staged.{name}" in named or (name in ids and str(ids[name]) in named):
            out.add((dept.code, ds.code))
    return out


def _previous(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, read: ReadState
) -> tuple[Previous, set[Key]] | None:
    """The last scorecard's rows and the datasets to score again, or None (score all)."""
    marts = _tables(con, "marts")
    if STATE_TABLE not in marts or "quality_scorecard" not in marts:
        return None
    state = con.execute(f"SELECT * FROM marts.{STATE_TABLE}").pl()
    if state.is_empty() or state["version"].n_unique() != 1 or state["version"][0] != read.version:
        return None
    since, computed_at = state["snapshot_id"][0], state["computed_at"][0]
    scorecard = con.execute("SELECT * FROM marts.quality_scorecard").pl()
    if since is None or scorecard.is_empty() or scorecard["computed_at"].max() != computed_at:
        return None  # the scorecard on record is not the one the state describes
    touched = _touched_staged(con, cat, int(since))
    if touched is None:
        return None
    expectations = pl.DataFrame()
    if "quality_expectations" in marts:
        expectations = con.execute(
            "SELECT * FROM marts.quality_expectations WHERE run_at = ?", [computed_at]
        ).pl()
    disagreements = pl.DataFrame()
    if "disagreements" in _tables(con, "quarantine"):
        disagreements = con.execute("SELECT * FROM quarantine.disagreements").pl()
    before = {(r["dept"], r["dataset"]): r for r in state.iter_rows(named=True)}
    changed = {
        k
        for k in read.digests.keys() | before.keys()
        if read.digests.get(k) != (before[k]["inputs_digest"] if k in before else None)
    }
    scored = set(scorecard.filter(pl.col("dataset") != "*").select("dept", "dataset").iter_rows())
    from quality.scores import rescored

    keys = {(d.code, ds.code) for d, ds in cat.datasets()}
    rescore = rescored(cat, touched, changed, also=keys - (scored & before.keys()))
    previous = Previous(
        scorecard=scorecard,
        expectations=expectations,
        disagreements=disagreements,
        weights={k: int(r["weight"]) for k, r in before.items()},
    )
    return previous, rescore


def _registry_ids(cat: Catalogue, staged: Mapping[Key, pl.DataFrame]) -> set[str] | None:
    """Person keys the registers hold (``catalog.authority.person_registers``: the datasets
    of the person key's authority that carry it); None when no register is staged, or the
    catalogue declares no authority for persons: nothing to check references against."""
    held = [
        (r, staged[(r.dept, r.dataset.code)])
        for r in person_registers(cat)
        if (r.dept, r.dataset.code) in staged
    ]
    held = [(r, frame) for r, frame in held if r.field in frame.columns]
    if not held:
        return None
    return {v for r, frame in held for v in frame[r.field].drop_nulls().to_list()}


def registry_ids(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, protection: Protection
) -> set[str] | None:
    """:func:`_registry_ids` read from the lake: only the registers' person-key columns
    (decrypted for the ``quality_scores`` purpose, audited)."""
    staged_tables = _tables(con, "staged")
    staged: dict[Key, pl.DataFrame] = {}
    for r in person_registers(cat):
        name = raw_table(r.dept, r.dataset)
        if name in staged_tables:
            cols = ", ".join(f'"{c}"' for c in (*STAGED_IDENTITY, r.field))  # + AAD identity
            frame = con.execute(f'SELECT {cols} FROM staged."{name}"').pl()
            staged[(r.dept, r.dataset.code)] = protection.reveal(frame, r.dataset, "quality_scores")
    return _registry_ids(cat, staged)


def _expectations_one(
    cat: Catalogue,
    key: Key,
    frame: pl.DataFrame | None,
    deliveries: pl.DataFrame,
    registry: set[str] | None,
    now: dt.datetime,
    lake: StagedFrames | None = None,
) -> pl.DataFrame | None:
    """Expectations of one staged dataset (``deliveries`` sorted by arrival); ``frame``
    None: an append dataset scored where it lies, its deliveries' rows read from ``lake``."""
    from quality.expectations import run_expectations

    dept, code = key
    _, ds = cat.dataset(f"{dept}.{code}")
    mine = deliveries.filter((pl.col("dept") == dept) & (pl.col("dataset") == code))
    if mine.is_empty() or (frame is not None and frame.is_empty()):
        return None
    newest = mine.row(-1, named=True)
    previous_rows = None
    if frame is None:  # append, in the lake (``StagedFrames.lean``)
        assert lake is not None
        judged = lake.delivery_rows(key, newest["delivery_id"])
        if mine.height > 1:
            previous_rows = lake.delivery_count(key, mine.row(-2, named=True)["delivery_id"])
            previous_rows = previous_rows or None
    elif ds.update_mode is UpdateMode.append:
        # events: the newest delivery's rows, its size against the one before
        judged = frame.filter(pl.col("_delivery_id") == newest["delivery_id"])
        if mine.height > 1:
            prev_id = mine.row(-2, named=True)["delivery_id"]
            previous_rows = frame.filter(pl.col("_delivery_id") == prev_id).height or None
    else:
        # snapshot / upsert: the staged table is the dataset as it stands now (an
        # identical re-delivery stages nothing of its own), as the Dagster check judges it
        judged = frame
    return run_expectations(
        ds,
        judged,
        previous_rows=previous_rows,
        registry_ids=registry,
        newest_delivery_at=newest["arrived_at"],
        now=now,
        dept=dept,
        catalogue=cat,
    )


def _expectations(cat: Catalogue, inputs: QualityInputs, now: dt.datetime) -> pl.DataFrame:
    registry = _registry_ids(cat, inputs.staged)
    deliveries = inputs.deliveries.sort("arrived_at")
    parts = [
        _expectations_one(cat, key, inputs.staged[key], deliveries, registry, now)
        for key in inputs.staged
    ]
    parts = [p for p in parts if p is not None]
    return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()


def _issue_keys(key: Key, frame: pl.DataFrame) -> pl.DataFrame | None:
    if "_key_pid" not in frame.columns:
        return None
    return frame.select(
        pl.lit(key[0]).alias("dept"),
        pl.lit(key[1]).alias("dataset"),
        pl.col("_key_pid").alias("key_pid"),
        "_delivery_id",
        "_loaded_at",
    )


def _issue_candidates(inputs: QualityInputs) -> pl.DataFrame:
    """(dept, dataset, key_pid) an issue can be opened or resolved for: the quarantined
    keys and the keys of issues still open. ``update_issues`` joins staged rows to them
    by key, so the staged keys of anything else are never needed (holding every staged
    row's key of a 200,000-resident street was about 2.9 million rows)."""
    cols = ["dept", "dataset", "key_pid"]
    parts = [inputs.quarantine.filter(pl.col("key_pid").is_not_null()).select(cols)]
    if inputs.issues is not None and inputs.issues.height:
        parts.append(inputs.issues.filter(pl.col("status") == "open").select(cols))
    return pl.concat(parts, how="vertical_relaxed").unique()


def _issues(inputs: QualityInputs, now: dt.datetime) -> pl.DataFrame:
    keys = [_issue_keys(key, inputs.staged[key]) for key in inputs.staged]
    return _update_issues(inputs, [k for k in keys if k is not None], now)


def _update_issues(
    inputs: QualityInputs, staged_keys: list[pl.DataFrame], now: dt.datetime
) -> pl.DataFrame:
    from quality.corrections import empty_issues, update_issues

    staged_with_keys = pl.concat(staged_keys) if staged_keys else None
    quarantine = inputs.quarantine.filter(pl.col("key_pid").is_not_null())
    previous = inputs.issues if inputs.issues is not None else empty_issues()
    return update_issues(previous, quarantine, staged_with_keys, now)


def compute_quality(
    settings: Settings, cat: Catalogue, inputs: QualityInputs, now: dt.datetime | None = None
) -> QualityOutputs:
    """Scores, expectations, disagreements and issues, one dataset at a time: each staged
    table is read once (beside the authorities it is compared with) and let go."""
    from quality.expectations import checks_registry
    from quality.scores import (
        assemble_scorecard,
        comparison_results,
        concat_disagreements,
        disagreement_rows,
        present_datasets,
        score_dataset_rows,
    )

    now = now or dt.datetime.now(dt.UTC)
    staged = inputs.staged
    registry: list[set[str] | None] = []  # read once, when a dataset first checks it

    def registry_of(dept: str, ds) -> set[str] | None:
        if not checks_registry(ds, dept, cat):
            return None
        if not registry:
            registry.append(_registry_ids(cat, staged))
        return registry[0]

    deliveries = (
        inputs.deliveries.sort("arrived_at") if inputs.deliveries.height else inputs.deliveries
    )
    present = present_datasets(staged, inputs.accounts, inputs.deliveries, inputs.quarantine)
    candidates = _issue_candidates(inputs)
    rows: list[dict] = []
    weights: dict[Key, int] = {}
    expectations, disagreements, issue_keys = [], [], []
    for dept, ds in cat.datasets():
        key = (dept.code, ds.code)
        if key not in present:
            continue
        if inputs.rescore is not None and key not in inputs.rescore and inputs.previous:
            kept = _kept(cat, key, inputs.previous, deliveries, now)
            rows += kept.rows
            weights[key] = kept.weight
            disagreements.append(kept.disagreements)
            if kept.expectations is not None:
                expectations.append(kept.expectations)
            continue  # its staged keys: no issue of it can open or resolve (nothing changed)
        if isinstance(staged, StagedFrames) and staged.lean(key, cat):
            facts = staged.facts(key)
            mine, weights[key] = score_dataset_rows(
                cat, key, {}, inputs.quarantine, inputs.accounts, inputs.deliveries, now, [], facts
            )
            rows += mine
            if facts.rows:
                reg = registry_of(dept.code, ds)
                exp = _expectations_one(cat, key, None, deliveries, reg, now, lake=staged)
                if exp is not None:
                    expectations.append(exp)
            keys = staged.issue_keys(key, candidates)
            if keys is not None:
                issue_keys.append(keys)
            continue
        results = comparison_results(cat, staged, only=key).get(key, [])
        mine, weights[key] = score_dataset_rows(
            cat, key, staged, inputs.quarantine, inputs.accounts, inputs.deliveries, now, results
        )
        rows += mine
        if key not in staged:
            continue
        frame = staged[key]
        disagreements.append(disagreement_rows(frame, results))
        exp = _expectations_one(cat, key, frame, deliveries, registry_of(dept.code, ds), now)
        if exp is not None:
            expectations.append(exp)
        keys = _issue_keys(key, frame)
        if keys is not None:
            issue_keys.append(keys.join(candidates, on=["dept", "dataset", "key_pid"], how="semi"))
    return QualityOutputs(
        scorecard=assemble_scorecard(rows, weights, now),
        expectations=(
            pl.concat(expectations, how="diagonal_relaxed") if expectations else pl.DataFrame()
        ),
        disagreements=concat_disagreements(disagreements),
        issues=_update_issues(inputs, issue_keys, now),
        state=_state(inputs.read, weights, now),
    )


@dataclass
class _Kept:
    rows: list[dict]
    weight: int
    disagreements: pl.DataFrame
    expectations: pl.DataFrame | None


def _kept(
    cat: Catalogue, key: Key, previous: Previous, deliveries: pl.DataFrame, now: dt.datetime
) -> _Kept:
    """A dataset nothing changed for: its rows of the last scorecard, timeliness and
    freshness judged again at ``now``."""
    from quality.expectations import refresh_expectations
    from quality.scores import DIMENSIONS, timeliness_row

    _, ds = cat.dataset(f"{key[0]}.{key[1]}")
    mine = (pl.col("dept") == key[0]) & (pl.col("dataset") == key[1])
    old = {
        r["dimension"]: r
        for r in previous.scorecard.filter(mine).drop("computed_at").iter_rows(named=True)
    }
    old["timeliness"] = timeliness_row(cat, key, deliveries, now)
    expectations = None
    if previous.expectations.height:
        before = previous.expectations.filter(mine)
        if before.height:
            newest = deliveries.filter(mine)["arrived_at"].max() if deliveries.height else None
            expectations = refresh_expectations(before, ds, newest_delivery_at=newest, now=now)
    disagreements = (
        previous.disagreements.filter(mine) if previous.disagreements.height else pl.DataFrame()
    )
    return _Kept(
        rows=[old[d] for d in DIMENSIONS if d in old],
        weight=previous.weights.get(key, 0),
        disagreements=disagreements,
        expectations=expectations,
    )


def _state(
    read: ReadState | None, weights: dict[Key, int], now: dt.datetime
) -> pl.DataFrame | None:
    """marts.quality_state for this scorecard (None: its reads were not recorded)."""
    if read is None:
        return None
    return pl.DataFrame(
        {
            "dept": [k[0] for k in weights],
            "dataset": [k[1] for k in weights],
            "weight": [int(w) for w in weights.values()],
            "inputs_digest": [read.digests.get(k) for k in weights],
            "snapshot_id": [read.snapshot] * len(weights),
            "version": [read.version] * len(weights),
            "computed_at": [now] * len(weights),
        },
        schema={
            "dept": pl.String,
            "dataset": pl.String,
            "weight": pl.Int64,
            "inputs_digest": pl.String,
            "snapshot_id": pl.Int64,
            "version": pl.String,
            "computed_at": pl.Datetime("us", "UTC"),
        },
    )


def _replace(con: duckdb.DuckDBPyConnection, zone: str, table: str, frame: pl.DataFrame) -> None:
    con.register("q_out", frame.to_arrow())
    con.execute(f'CREATE OR REPLACE TABLE {zone}."{table}" AS SELECT * FROM q_out')
    con.unregister("q_out")


def write_quality(con: duckdb.DuckDBPyConnection, out: QualityOutputs) -> None:
    """Replace the quality tables in one snapshot (history stays in time travel)."""
    with transaction(con):
        _replace(con, "marts", "quality_scorecard", out.scorecard)
        if out.expectations.height:  # kept per run: run_at tells the runs apart
            con.register("q_out", out.expectations.to_arrow())
            if "quality_expectations" in _tables(con, "marts"):
                con.execute("INSERT INTO marts.quality_expectations BY NAME SELECT * FROM q_out")
            else:
                con.execute("CREATE TABLE marts.quality_expectations AS SELECT * FROM q_out")
            con.unregister("q_out")
        _replace(con, "quarantine", "disagreements", out.disagreements)
        _replace(con, "quarantine", "issues", out.issues)
        if out.state is not None:
            _replace(con, "marts", STATE_TABLE, out.state)


def write_report(settings: Settings, inputs: QualityInputs, out: QualityOutputs) -> Path:
    from quality.corrections import issue_counts
    from quality.report import render_report, summarise_quarantine

    html = render_report(
        out.scorecard,
        out.expectations,
        None,
        summarise_quarantine(inputs.quarantine),
        "街道数据质量报告 street data quality report",
        issues=issue_counts(out.issues),
    )
    path = settings.home_abs / "reports" / "quality.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
