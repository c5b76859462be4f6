"""Check on raw: every delivery accounted for, and no failure left unacknowledged.

Declared on the dataset's ingest step (``assets.py``): it runs in that step right after
raw is loaded, not as a step of its own.
"""

import dagster as dg
import duckdb

from catalog.errors import shown
from catalog.model import Dataset, Department
from pipelines.defs.sources.specs import raw_key
from pipelines.deliveries import list_deliveries

ACCOUNT_CHECK = "deliveries_accounted"


def account_check_spec(dept: Department, ds: Dataset) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        ACCOUNT_CHECK,
        asset=raw_key(dept.code, ds.code),
        description="rows read = rows loaded + rows quarantined for every delivery; "
        "no failed delivery left unacknowledged (`streethub deliveries list --failed`)",
    )


def accounted(con: duckdb.DuckDBPyConnection, dept: Department, ds: Dataset) -> dg.AssetCheckResult:
    """The account check's result on the lake as ``con`` sees it."""
    mine = [r for r in list_deliveries(con, dept=dept.code) if r.dataset == ds.code]
    unbalanced = [r for r in mine if r.rows_read != r.rows_loaded + r.rows_quarantined_raw]
    failed = [r for r in mine if r.failed]
    open_ = [r for r in failed if not r.acknowledged]
    return dg.AssetCheckResult(
        asset_key=raw_key(dept.code, ds.code),
        check_name=ACCOUNT_CHECK,
        passed=not unbalanced and not open_,
        severity=dg.AssetCheckSeverity.ERROR if unbalanced else dg.AssetCheckSeverity.WARN,
        metadata={
            "deliveries": len(mine),
            "unbalanced": len(unbalanced),
            "failed": len(failed),
            "failed_unacknowledged": len(open_),
            "failure_reasons": dg.MetadataValue.json(
                [f"{r.delivery_id}: {shown(r.reason or '')}" for r in open_][:20]
            ),
        },
    )
