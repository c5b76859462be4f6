"""Dataset-level quality over the lake: scores, expectations, disagreements, issues, report.

Reads staged (decrypted for the ``quality_scores`` purpose, audited), the
quarantine and the delivery accounts; calls the plain functions in
``quality/``; writes ``marts.quality_scorecard``, ``marts.quality_expectations``,
``quarantine.disagreements`` and ``quarantine.issues`` and the self-contained
HTML report under ``STREETHUB_HOME/reports/``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from catalog.authority import person_registers
from catalog.model import Catalogue, UpdateMode
from catalog.settings import Settings
from lakehouse.lake import tables_in, transaction
from pipelines.ingest.raw import raw_table
from pipelines.protection import STAGED_IDENTITY, Protection
from quality.keys import ROW_DIGEST

Key = tuple[str, str]
# staged columns nothing downstream of the gate reads: the row digest is for the next
# delivery's comparison (``quality.keys``); left out, a quarter less of a narrow table
# (1.7 million IoT readings at 200,000 residents)
NOT_SCORED = ("_staged_at", ROW_DIGEST)


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
class QualityInputs:
    staged: Mapping[Key, pl.DataFrame]
    quarantine: pl.DataFrame
    accounts: pl.DataFrame
    deliveries: pl.DataFrame
    issues: pl.DataFrame | None


@dataclass
class QualityOutputs:
    scorecard: pl.DataFrame
    expectations: pl.DataFrame
    disagreements: pl.DataFrame
    issues: pl.DataFrame


def _tables(con: duckdb.DuckDBPyConnection, zone: str) -> set[str]:
    return {t for _, t in tables_in(con, zone)}


def load_inputs(
    con: duckdb.DuckDBPyConnection, cat: Catalogue, protection: Protection
) -> QualityInputs:
    """The scorecard's inputs; staged tables are read as they are needed, so use them
    (``compute_quality``, the truth evaluation) while ``con`` is open."""
    issues = None
    if "issues" in _tables(con, "quarantine"):
        issues = con.execute("SELECT * FROM quarantine.issues").pl()
    return QualityInputs(
        staged=StagedFrames(con, cat, protection),
        quarantine=con.execute("SELECT * FROM quarantine.rows").pl(),
        accounts=con.execute("SELECT * FROM landing.delivery_accounts").pl(),
        deliveries=con.execute(
            "SELECT delivery_id, dept, dataset, file_name, arrived_at, size_bytes "
            "FROM landing.deliveries"
        ).pl(),
        issues=issues,
    )


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
    frame: pl.DataFrame,
    deliveries: pl.DataFrame,
    registry: set[str] | None,
    now: dt.datetime,
) -> pl.DataFrame | None:
    """Expectations of one staged dataset (``deliveries`` sorted by arrival)."""
    from quality.expectations import run_expectations

    dept, code = key
    _, ds = cat.dataset(f"{dept}.{code}")
    mine = deliveries.filter((pl.col("dept") == dept) & (pl.col("dataset") == code))
    if mine.is_empty() or frame.is_empty():
        return None
    newest = mine.row(-1, named=True)
    previous_rows = None
    if ds.update_mode is UpdateMode.append:
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
    registry = _registry_ids(cat, staged)
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
        results = comparison_results(cat, staged, only=key).get(key, [])
        mine, weights[key] = score_dataset_rows(
            cat, key, staged, inputs.quarantine, inputs.accounts, inputs.deliveries, now, results
        )
        rows += mine
        if key not in staged:
            continue
        frame = staged[key]
        disagreements.append(disagreement_rows(frame, results))
        exp = _expectations_one(cat, key, frame, deliveries, registry, now)
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
