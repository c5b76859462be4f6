"""Dataset-level quality over the lake: scores, expectations, disagreements, issues, report.

Reads staged (decrypted for the ``quality_scores`` purpose, audited), the
quarantine and the delivery accounts; calls the plain functions in
``quality/``; writes ``marts.quality_scorecard``, ``marts.quality_expectations``,
``quarantine.disagreements`` and ``quarantine.issues`` and the self-contained
HTML report under ``STREETHUB_HOME/reports/``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from catalog.authority import person_registers
from catalog.model import Catalogue, UpdateMode
from catalog.settings import Settings
from lakehouse.lake import tables_in, transaction
from pipelines.ingest.raw import raw_table
from pipelines.protection import Protection

Key = tuple[str, str]


@dataclass
class QualityInputs:
    staged: dict[Key, pl.DataFrame]
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
    staged_tables = _tables(con, "staged")
    staged: dict[Key, pl.DataFrame] = {}
    for dept, ds in cat.datasets():
        name = raw_table(dept.code, ds)
        if name in staged_tables:
            frame = con.execute(f'SELECT * FROM staged."{name}"').pl()
            staged[(dept.code, ds.code)] = protection.reveal(frame, ds, "quality_scores")
    issues = None
    if "issues" in _tables(con, "quarantine"):
        issues = con.execute("SELECT * FROM quarantine.issues").pl()
    return QualityInputs(
        staged=staged,
        quarantine=con.execute("SELECT * FROM quarantine.rows").pl(),
        accounts=con.execute("SELECT * FROM landing.delivery_accounts").pl(),
        deliveries=con.execute(
            "SELECT delivery_id, dept, dataset, file_name, arrived_at, size_bytes "
            "FROM landing.deliveries"
        ).pl(),
        issues=issues,
    )


def _registry_ids(cat: Catalogue, staged: dict[Key, pl.DataFrame]) -> set[str] | None:
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
            frame = con.execute(f'SELECT "{r.field}" FROM staged."{name}"').pl()
            staged[(r.dept, r.dataset.code)] = protection.reveal(frame, r.dataset, "quality_scores")
    return _registry_ids(cat, staged)


def _expectations(cat: Catalogue, inputs: QualityInputs, now: dt.datetime) -> pl.DataFrame:
    from quality.expectations import run_expectations

    registry = _registry_ids(cat, inputs.staged)
    deliveries = inputs.deliveries.sort("arrived_at")
    parts = []
    for (dept, code), frame in inputs.staged.items():
        _, ds = cat.dataset(f"{dept}.{code}")
        mine = deliveries.filter((pl.col("dept") == dept) & (pl.col("dataset") == code))
        if mine.is_empty() or frame.is_empty():
            continue
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
        parts.append(
            run_expectations(
                ds,
                judged,
                previous_rows=previous_rows,
                registry_ids=registry,
                newest_delivery_at=newest["arrived_at"],
                now=now,
                dept=dept,
                catalogue=cat,
            )
        )
    return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()


def _issues(inputs: QualityInputs, now: dt.datetime) -> pl.DataFrame:
    from quality.corrections import empty_issues, update_issues

    staged_keys = [
        frame.select(
            pl.lit(dept).alias("dept"),
            pl.lit(code).alias("dataset"),
            pl.col("_key_pid").alias("key_pid"),
            "_delivery_id",
            "_loaded_at",
        )
        for (dept, code), frame in inputs.staged.items()
        if "_key_pid" in frame.columns
    ]
    staged_with_keys = pl.concat(staged_keys) if staged_keys else None
    quarantine = inputs.quarantine.filter(pl.col("key_pid").is_not_null())
    previous = inputs.issues if inputs.issues is not None else empty_issues()
    return update_issues(previous, quarantine, staged_with_keys, now)


def compute_quality(
    settings: Settings, cat: Catalogue, inputs: QualityInputs, now: dt.datetime | None = None
) -> QualityOutputs:
    from quality.scores import flag_disagreements, score_datasets

    now = now or dt.datetime.now(dt.UTC)
    disagreements = flag_disagreements(cat, inputs.staged)
    return QualityOutputs(
        scorecard=score_datasets(
            cat, inputs.staged, inputs.quarantine, inputs.accounts, inputs.deliveries, now
        ),
        expectations=_expectations(cat, inputs, now),
        disagreements=disagreements,
        issues=_issues(inputs, now),
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
