"""The raw account check (``pipelines/defs/sources/checks.py``) reads one ledger table, and
the acknowledgements only when a delivery failed: its result equals the old path's, which
listed every delivery of the department (``list_deliveries``) and filtered it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from catalog.errors import shown
from catalog.loader import load_catalogue
from catalog.model import Dataset, Department
from catalog.settings import Settings
from lakehouse.lake import open_lake
from pipelines.defs.sources.checks import accounted
from pipelines.deliveries import list_deliveries
from pipelines.ingest.ledger import ensure_ledger, record_account


def old_path(con: duckdb.DuckDBPyConnection, dept: Department, ds: Dataset) -> tuple:
    """The check's verdict as the old code computed it, from every delivery listed."""
    mine = [r for r in list_deliveries(con, dept=dept.code) if r.dataset == ds.code]
    unbalanced = [r for r in mine if r.rows_read != r.rows_loaded + r.rows_quarantined_raw]
    failed = [r for r in mine if r.failed]
    open_ = [r for r in failed if not r.acknowledged]
    reasons = [f"{r.delivery_id}: {shown(r.reason or '')}" for r in open_][:20]
    severity = dg.AssetCheckSeverity.ERROR if unbalanced else dg.AssetCheckSeverity.WARN
    counts = (len(mine), len(unbalanced), len(failed), len(open_))
    return not unbalanced and not open_, severity, counts, reasons


def verdict(result: dg.AssetCheckResult) -> tuple:
    meta = {k: v.value for k, v in result.metadata.items()}
    counts = tuple(meta[k] for k in ("deliveries", "unbalanced", "failed", "failed_unacknowledged"))
    return result.passed, result.severity, counts, meta["failure_reasons"]


@pytest.fixture
def lake(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home").ensure_dirs()


def test_the_account_check_equals_the_old_path(lake: Settings) -> None:
    cat = load_catalogue(lake.catalog_dir)
    dept = next(d for d in cat.departments.values() if len(d.datasets) >= 2)
    other = next(d for d in cat.departments.values() if d.code != dept.code)
    first, second = dept.datasets[:2]
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    accounts = [  # (dataset, delivery, status, read, loaded, quarantined)
        (first, "a1", "loaded", 10, 9, 1),  # balanced
        (first, "a2", "failed", 0, 0, 0),  # acknowledged after: covered
        (first, "a3", "failed", 0, 0, 0),  # acknowledged before it failed: open
        (first, "a4", "failed", 0, 0, 0),  # never acknowledged: open
        (second, "b1", "loaded", 10, 8, 1),  # unbalanced
        (second, "b2", "loaded", None, None, None),  # nothing counted: balanced
    ]
    with open_lake(lake) as con:
        ensure_ledger(con)
        for ds, delivery, status, read, loaded, quarantined in accounts:
            record_account(
                con, delivery_id=delivery, dept=dept.code, dataset=ds.code, status=status,
                reason=f"{delivery} <b>unreadable</b>" if status == "failed" else None,
                rows_read=read, rows_loaded=loaded, rows_quarantined=quarantined,
            )  # fmt: skip
        # another department's failure under the same dataset code is not this dataset's
        record_account(
            con,
            delivery_id="c1",
            dept=other.code,
            dataset=first.code,
            status="failed",
            reason="x",
            rows_read=1,
            rows_loaded=0,
            rows_quarantined=0,
        )
        for delivery, at in (("a2", later), ("a3", past)):
            con.execute(
                "INSERT INTO landing.delivery_acks VALUES (?, 'officer', 'seen', ?)",
                [delivery, at],
            )
    with open_lake(lake, read_only=True) as con:
        got = {ds.code: verdict(accounted(con, dept, ds)) for ds in dept.datasets}
        want = {ds.code: old_path(con, dept, ds) for ds in dept.datasets}
    assert got == want
    assert got[first.code][:3] == (False, dg.AssetCheckSeverity.WARN, (4, 0, 3, 2))
    assert [r.split(":")[0] for r in got[first.code][3]] == ["a3", "a4"]
    assert got[second.code][:3] == (False, dg.AssetCheckSeverity.ERROR, (2, 1, 0, 0))
    for ds in dept.datasets[2:]:  # no delivery: passes with nothing counted
        assert got[ds.code] == (True, dg.AssetCheckSeverity.WARN, (0, 0, 0, 0), [])
