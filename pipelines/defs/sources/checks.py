"""Asset checks on raw: every delivery accounted for, and none failed."""

import dagster as dg

from catalog.loader import get_catalogue
from catalog.model import Dataset, Department
from catalog.settings import get_settings
from pipelines.defs.sources.assets import raw_key
from pipelines.resources import LakeResource


def build_account_check(dept: Department, ds: Dataset) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=raw_key(dept.code, ds.code),
        name="deliveries_accounted",
        description="rows read = rows loaded + rows quarantined for every delivery; "
        "no delivery failed",
    )
    def _check(lake: LakeResource) -> dg.AssetCheckResult:
        with lake.open(read_only=True) as con:
            unbalanced, failed, total, reasons = con.execute(
                """SELECT count(*) FILTER (WHERE rows_read <> rows_loaded + rows_quarantined),
                          count(*) FILTER (WHERE status = 'failed'),
                          count(*),
                          list(reason) FILTER (WHERE status = 'failed')
                   FROM landing.delivery_accounts WHERE dept = ? AND dataset = ?""",
                [dept.code, ds.code],
            ).fetchone()
        return dg.AssetCheckResult(
            passed=unbalanced == 0 and failed == 0,
            severity=dg.AssetCheckSeverity.ERROR if unbalanced else dg.AssetCheckSeverity.WARN,
            metadata={
                "deliveries": int(total),
                "unbalanced": int(unbalanced),
                "failed": int(failed),
                "failure_reasons": dg.MetadataValue.json((reasons or [])[:20]),
            },
        )

    return _check


@dg.definitions
def account_checks() -> dg.Definitions:
    cat = get_catalogue(get_settings().catalog_dir)
    return dg.Definitions(asset_checks=[build_account_check(d, ds) for d, ds in cat.datasets()])
