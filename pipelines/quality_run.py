"""Dataset-level quality over the lake: scores, expectations, disagreements, issues, report.

Reads staged (decrypted for the ``quality_scores`` purpose, audited), the
quarantine and the delivery accounts; calls the plain functions in
``quality/``; publishes ``marts.quality_scorecard`` through the mart build
(``marts.quality``: ``marts/sql/quality_scorecard.sql``); writes ``marts.quality_expectations``,
``quarantine.disagreements`` and ``quarantine.issues`` and the self-contained
HTML report under ``STREETHUB_HOME/reports/``.

Incremental (``pipelines.quality_state``): ``marts.quality_state`` records what the last
scorecard read — the lake's snapshot when it started, a digest of each dataset's quarantine, delivery accounts and
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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from catalog.authority import person_registers
from catalog.model import Catalogue, UpdateMode
from catalog.settings import Settings
from lakehouse.lake import registered, replace_with_frame, tables_in, transaction
from pipelines.ingest.raw import raw_table
from pipelines.memory import release
from pipelines.protection import STAGED_IDENTITY, Protection
from pipelines.quality_state import (
    STATE_TABLE,
    Previous,
    ReadState,
    kept,
    previous_scorecard,
    read_state,
    state_frame,
)
from pipelines.staged_frames import NOT_SCORED, AuthoritiesBeside, StagedFrames, authority_keys

__all__ = ["NOT_SCORED", "StagedFrames", "authority_keys"]  # where callers found them

Key = tuple[str, str]


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
    read = read_state(con, cat)  # first: anything committed after it counts as changed
    tables = tables_in(con)  # one read of the catalogue for every zone's tables
    issues = None
    if ("quarantine", "issues") in tables:
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
        found = previous_scorecard(con, cat, read, tables)
        if found is not None:
            inputs.previous, inputs.rescore = found
    return inputs


def _registry_ids(cat: Catalogue, staged: Mapping[Key, pl.DataFrame]) -> set[str] | None:
    """Person keys the registers hold (``catalog.authority.person_registers``: the datasets
    of the person key's authority that carry it); None when no register is staged, or the
    catalogue declares no authority for persons: nothing to check references against."""
    read = staged.as_authority if isinstance(staged, StagedFrames) else staged.__getitem__
    held = [
        (r, read((r.dept, r.dataset.code)))
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
    table is read once (beside the authorities it is compared with) and let go. When it is
    done, Great Expectations' context goes with all it held for the suites
    (:func:`quality.expectations.release_context`: the last suite's frame, batches, stores),
    collected and its heap pages given back, not carried through the later phases."""
    from quality.expectations import release_context

    try:
        return _compute_quality(cat, inputs, now)
    finally:
        if release_context():
            release(growth=0)


def _compute_quality(
    cat: Catalogue, inputs: QualityInputs, now: dt.datetime | None
) -> QualityOutputs:
    from quality.expectations import checks_registry
    from quality.scores import (
        assemble_scorecard,
        comparison_results,
        concat_disagreements,
        detached,
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
            held = kept(cat, key, inputs.previous, deliveries, now)
            rows += held.rows
            weights[key] = held.weight
            disagreements.append(held.disagreements)
            if held.expectations is not None:
                expectations.append(held.expectations)
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
            staged.done(key)
            continue
        beside = AuthoritiesBeside(staged, key) if isinstance(staged, StagedFrames) else staged
        results = comparison_results(cat, beside, only=key).get(key, [])
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
            keys = keys.join(candidates, on=["dept", "dataset", "key_pid"], how="semi")
            issue_keys.append(detached(keys))  # not the whole staged read
        if isinstance(staged, StagedFrames):
            staged.done(key)
    return QualityOutputs(
        scorecard=assemble_scorecard(rows, weights, now),
        expectations=(
            pl.concat(expectations, how="diagonal_relaxed") if expectations else pl.DataFrame()
        ),
        disagreements=concat_disagreements(disagreements),
        issues=_update_issues(inputs, issue_keys, now),
        state=state_frame(inputs.read, weights, now),
    )


def write_quality(
    con: duckdb.DuckDBPyConnection, out: QualityOutputs, cat: Catalogue | None = None
) -> None:
    """Replace the quality tables: the scorecard published as a mart (``marts.quality``,
    the mart build), history staying in time travel. Three transactions, the state last:
    it records what the scorecard read, so a crash before it leaves the next run scoring
    at least everything that changed since the state it finds (expectations and issues
    first, then the scorecard, then the state)."""
    from catalog.loader import get_catalogue
    from marts.quality import publish_scorecard

    with transaction(con):
        if out.expectations.height:  # kept per run: run_at tells the runs apart
            with registered(con, "q_out", out.expectations.to_arrow()):
                if "quality_expectations" in _tables(con, "marts"):
                    con.execute(
                        "INSERT INTO marts.quality_expectations BY NAME SELECT * FROM q_out"
                    )
                else:
                    con.execute("CREATE TABLE marts.quality_expectations AS SELECT * FROM q_out")
        replace_with_frame(con, "quarantine", "disagreements", out.disagreements)
        replace_with_frame(con, "quarantine", "issues", out.issues)
    publish_scorecard(con, cat or get_catalogue(), out.scorecard)
    if out.state is not None:
        with transaction(con):
            replace_with_frame(con, "marts", STATE_TABLE, out.state)


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
