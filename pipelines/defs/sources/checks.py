"""Asset checks on raw: every delivery accounted for, and no failure left unacknowledged."""

import dagster as dg

from catalog.errors import shown
from catalog.loader import get_catalogue
from catalog.model import Dataset, Department
from catalog.settings import get_settings
from pipelines.defs.sources.assets import raw_key
from pipelines.deliveries import list_deliveries
from pipelines.resources import LakeResource


def build_account_check(dept: Department, ds: Dataset) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=raw_key(dept.code, ds.code),
        name="deliveries_accounted",
        description="rows read = rows loaded + rows quarantined for every delivery; "
        "no failed delivery left unacknowledged (`streethub deliveries list --failed`)",
    )
    def _check(lake: LakeResource) -> dg.AssetCheckResult:
        with lake.open(read_only=True) as con:
            rows = list_deliveries(con, dept=dept.code)
        mine = [r for r in rows if r.dataset == ds.code]
        unbalanced = [r for r in mine if r.rows_read != r.rows_loaded + r.rows_quarantined_raw]
        failed = [r for r in mine if r.failed]
        open_ = [r for r in failed if not r.acknowledged]
        return dg.AssetCheckResult(
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

    return _check


@dg.definitions
def account_checks() -> dg.Definitions:
    cat = get_catalogue(get_settings().catalog_dir)
    return dg.Definitions(asset_checks=[build_account_check(d, ds) for d, ds in cat.datasets()])
