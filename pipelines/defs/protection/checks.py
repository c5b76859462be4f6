"""Protection in the Dagster UI: the leak scan as a blocking check on the published marts."""

import dagster as dg

from catalog.loader import get_catalogue
from pipelines.defs.quality.assets import SCORECARD_KEY
from pipelines.leak_marks import write_mark
from pipelines.leaks import scan_lake_changes
from pipelines.resources import LakeResource

LEAK_CHECK = "no_unmasked_personal_information"


def build_leak_check(asset: dg.AssetKey = SCORECARD_KEY) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=LEAK_CHECK,
        blocking=True,
        description=(
            "Blocking: no value that looks like an unmasked citizen ID (valid check digit), "
            "mobile, bank card (Luhn) or a registered resident's name in any zone of the lake "
            "or the HTML reports. Reads what no clean scan on record read: the rows inserted "
            "since (every table the first time), and earlier rows for names new to the "
            "registers. Counts and places only, never a value."
        ),
    )
    def _leaks(lake: LakeResource) -> dg.AssetCheckResult:
        settings = lake.settings()
        with lake.open(read_only=True) as con:
            report = scan_lake_changes(settings, get_catalogue(settings.catalog_dir), con)
        findings = report.findings
        if report.mark is not None and not report.leaks and not report.problems:
            write_mark(settings, report.mark)  # clean: the next scan starts after it
        by_kind: dict[str, int] = {}
        for f in findings:
            for kind, n in f.counts.by_kind.items():
                by_kind[kind] = by_kind.get(kind, 0) + n
        leaking = {f.place: f.counts.total for f in findings if f.counts.total}
        return dg.AssetCheckResult(
            passed=not leaking,
            metadata={
                "places_scanned": len(findings),
                "lake_snapshot_scanned_to": report.mark.snapshot if report.mark else 0,
                "cells_scanned": sum(f.cells for f in findings),
                "unmasked_by_kind": dg.MetadataValue.json(by_kind),
                "places_with_unmasked_values": dg.MetadataValue.json(leaking),
            },
        )

    return _leaks


@dg.definitions
def protection_checks() -> dg.Definitions:
    return dg.Definitions(asset_checks=[build_leak_check()])
