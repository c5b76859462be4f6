"""Checks on staged: a blocking contract (the gate held) and the dataset's expectations."""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from catalog.loader import get_catalogue
from catalog.model import Dataset, Department, UpdateMode
from catalog.settings import get_settings
from pipelines.defs.sources.specs import staged_key
from pipelines.ingest.ledger import of_dataset
from pipelines.ingest.raw import raw_table
from pipelines.quality_run import registry_ids
from pipelines.resources import LakeResource

MIN_PASS_RATE = 0.80  # below this the delivery is too broken to build on


CONTRACT_CHECK = "contract"


def contract_spec(dept: Department, ds: Dataset) -> dg.AssetCheckSpec:
    """The blocking contract on staged (declared on the dataset's ingest step, which runs it
    right after the row gate)."""
    return dg.AssetCheckSpec(
        CONTRACT_CHECK,
        asset=staged_key(dept.code, ds.code),
        blocking=True,
        description=(
            "Blocking: every delivery accounted for (delivered = staged + quarantined + "
            f"skipped) and at least {MIN_PASS_RATE:.0%} of the newest delivery's rows passed "
            "the row gate (exact duplicates skipped count as passed)."
        ),
    )


def contract_result(
    con: duckdb.DuckDBPyConnection, dept: Department, ds: Dataset, report: Path
) -> dg.AssetCheckResult:
    """The contract's result on the lake as ``con`` sees it (``report``: the quality report
    the officer is pointed to)."""
    # one statement (each costs DuckLake a catalogue read, the first after the step's commit
    # most): the deliveries' accounts, then the rows quarantined per check (kind 1). The
    # dataset's quarantined rows are read once (``failed``, referenced twice: DuckDB
    # materialises it) and counted per delivery from there; a delivery belongs to one
    # dataset, so its count is the one a read of the whole quarantine table would give
    found = con.execute(
        f"""WITH failed AS (SELECT delivery_id, source_row, check_name FROM quarantine.rows
                      WHERE dept = ? AND dataset = ?),
           per_delivery AS (SELECT delivery_id, count(DISTINCT source_row) AS quarantined
                            FROM failed GROUP BY delivery_id)
           SELECT 0 AS kind, a.delivery_id, a.rows_read, s.rows_out,
                  coalesce(s.rows_skipped, 0), coalesce(p.quarantined, 0) AS quarantined,
                  s.accounted_at, a.accounted_at AS read_at
           FROM landing.delivery_accounts a
           JOIN landing.stage_accounts s USING (delivery_id)
           LEFT JOIN per_delivery p USING (delivery_id)
           WHERE {of_dataset("a", **{"s.stage": "'staged'"})}
           UNION ALL
           SELECT 1, check_name, count(DISTINCT (delivery_id, source_row)), NULL, NULL, NULL,
                  NULL, NULL
           FROM failed GROUP BY check_name
           ORDER BY kind, read_at, accounted_at, 3 DESC""",
        [dept.code, ds.code, dept.code, ds.code],
    ).fetchall()
    rows = [r[1:7] for r in found if r[0] == 0]
    failing = [(r[1], r[2]) for r in found if r[0] == 1]
    unbalanced = [r[0] for r in rows if r[1] != r[2] + r[3] + r[4]]
    newest = rows[-1] if rows else None
    newest_rate = (newest[2] + newest[3]) / newest[1] if newest and newest[1] else 1.0
    return dg.AssetCheckResult(
        asset_key=staged_key(dept.code, ds.code),
        check_name=CONTRACT_CHECK,
        passed=not unbalanced and newest_rate >= MIN_PASS_RATE,
        metadata={
            "deliveries": len(rows),
            "unbalanced": dg.MetadataValue.json(unbalanced[:20]),
            "newest_delivery": newest[0] if newest else "",
            # the main job fails a run only for a delivery gated during it
            "newest_staged_at": newest[5].isoformat() if newest else "",
            "newest_pass_rate": newest_rate,
            "rows_quarantined_by_check": dg.MetadataValue.json(dict(failing)),
            "report": dg.MetadataValue.path(str(report)),
        },
    )


def build_expectations_check(dept: Department, ds: Dataset) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=staged_key(dept.code, ds.code),
        name="expectations",
        description=(
            "Great Expectations suite from the catalogue (warn): on the newest delivery of an "
            "append dataset, on the whole staged table of a snapshot or upsert dataset."
        ),
    )
    def _expectations(lake: LakeResource) -> dg.AssetCheckResult:
        from quality.expectations import checks_registry, run_expectations

        protection = lake.protection()
        cat = get_catalogue(lake.settings().catalog_dir)
        with lake.open(read_only=True) as con:
            newest = con.execute(
                "SELECT delivery_id, arrived_at FROM landing.deliveries WHERE dept=? AND "
                "dataset=? ORDER BY arrived_at DESC LIMIT 2",
                [dept.code, ds.code],
            ).fetchall()
            if not newest:
                return dg.AssetCheckResult(passed=True, metadata={"note": "no delivery yet"})
            table = f'staged."{raw_table(dept.code, ds)}"'
            if ds.update_mode is UpdateMode.append:
                # events: the newest delivery's rows, its size against the one before
                frame = con.execute(
                    f"SELECT * FROM {table} WHERE _delivery_id = ?", [newest[0][0]]
                ).pl()
                previous = (
                    con.execute(
                        f"SELECT count(*) FROM {table} WHERE _delivery_id = ?", [newest[1][0]]
                    ).fetchone()[0]
                    if len(newest) > 1
                    else None
                )
            else:
                # snapshot / upsert: the staged table is the dataset as it stands now (an
                # identical re-delivery stages nothing of its own, yet the data is there)
                frame = con.execute(f"SELECT * FROM {table}").pl()
                previous = None
            # registry references: the person keys of the registers the catalogue declares
            known = (
                registry_ids(con, cat, protection) if checks_registry(ds, dept.code, cat) else None
            )
        frame = protection.reveal(frame, ds, "quality_scores")
        result = run_expectations(
            ds,
            frame,
            previous_rows=previous,
            registry_ids=known,
            newest_delivery_at=newest[0][1],
            now=dt.datetime.now(dt.UTC),
            dept=dept.code,
            catalogue=cat,
        )
        failed = result.filter(~pl.col("success"))
        return dg.AssetCheckResult(
            passed=failed.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "expectations": result.height,
                "failed": dg.MetadataValue.json(
                    [
                        f"{r['expectation']}({r['column']}): {r['observed']}"
                        for r in failed.iter_rows(named=True)
                    ][:20]
                ),
            },
        )

    return _expectations


@dg.definitions
def staged_checks() -> dg.Definitions:
    cat = get_catalogue(get_settings().catalog_dir)
    # the contract is declared on each dataset's ingest step (pipelines/defs/sources/assets.py)
    checks = [build_expectations_check(d, ds) for d, ds in cat.datasets()]
    return dg.Definitions(asset_checks=checks)
