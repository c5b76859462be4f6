"""One Dagster step per dataset: ``landing`` → ``raw`` → ``staged``, with their checks.

No dataset-specific code: one factory makes every dataset's step from the catalogue. The
step is a ``multi_asset`` whose three specs (``specs.py``) keep the three assets, their
lineage, groups and schemas in the UI; it can be subset (a run with landed but unread
deliveries materialises raw and staged only). The raw account check and the blocking
staged contract are declared on it and evaluated inside it, after the step's writes, with
the other reads it reports, and reported right after their asset: a failed contract fails
the step, so what depends on staged (the scorecard) is not built on it, and nothing else
stops. One step instead of five (three assets, two check steps) is most of Dagster's own
cost per dataset: events written, concurrency slots claimed.
A step that runs all three lands each new delivery, reads it into raw and gates it in one
lake transaction (``pipelines.ingest.staged.stage_with_landing``): one commit a delivery,
where landing's own commit before it was a second (each costs DuckLake a snapshot, and
every table read after it its statistics again). A subset (landing alone, or raw and
staged of landed deliveries) runs its zones one after another.
Lake writes go through the ``lake`` pool (limit 1 in dagster.yaml). The step opens the lake
once, as a writer, and its zones and checks use that cursor: inside the main job's hold an
open is a cursor and a ``USE`` (~3 ms CPU), outside it (a run the UI launched) an ATTACH
(0.1-0.5 s), and a step opened it five or six times.
"""

from collections.abc import Callable, Iterator

import dagster as dg
import duckdb

from catalog.errors import shown
from catalog.loader import get_catalogue
from catalog.model import Dataset, Department
from catalog.settings import get_settings
from lakehouse.lake import row_count, transaction
from pipelines.defs.quality.checks import contract_result, contract_spec
from pipelines.defs.sources.checks import account_check_spec, accounted
from pipelines.defs.sources.specs import (
    LAKE_POOL,
    dataset_specs,
    landing_key,
    raw_key,
    staged_key,
)
from pipelines.ingest.landing import DeliveryLoad, LandingResult, land
from pipelines.ingest.ledger import of_dataset
from pipelines.ingest.raw import Account, load_raw, raw_table
from pipelines.ingest.staged import (
    StageAccount,
    load_and_stage,
    stage_dataset,
    stage_with_landing,
)
from pipelines.ingest.tables import ensure_dataset_tables
from pipelines.memory import release
from pipelines.resources import LakeResource

__all__ = ["LAKE_POOL", "build_dataset_assets", "landing_key", "raw_key", "staged_key"]


def ingest_step_name(dept: str, dataset: str) -> str:
    return f"ingest__{dept}__{dataset}"


def build_dataset_assets(dept: Department, ds: Dataset) -> list[dg.AssetsDefinition]:
    """The dataset's one step (a list, as the definitions collect them)."""
    landing, raw, staged = (s.key for s in dataset_specs(dept, ds))
    account, contract = account_check_spec(dept, ds), contract_spec(dept, ds)

    @dg.multi_asset(
        name=ingest_step_name(dept.code, ds.code),
        specs=dataset_specs(dept, ds),
        check_specs=[account, contract],
        can_subset=True,
        pool=LAKE_POOL,
        description=f"Land, load and gate {ds.name_zh} ({dept.code}.{ds.code}).",
    )
    def _ingest(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        selected = context.selected_asset_keys
        checks = context.selected_asset_check_keys
        report = lake.settings().home_abs / "reports" / "quality.html"
        # the zones' writes first (their own commits), then what the step reports about them
        # (row counts, the account check, the contract), read in one lake transaction: one
        # snapshot for all, where each read on its own was a transaction and a snapshot
        # read of DuckLake's. A zone that fails stops the step's writes; what was made
        # before it is still reported, then its error raised.
        reports: list[Callable[[], list[dg.MaterializeResult | dg.AssetCheckResult]]] = []
        with lake.open() as con:  # one writer's cursor for the step (module doc)
            try:
                if raw in selected or staged in selected:
                    ensure_run_tables(context, lake, con)
                gated = None  # raw and staged of a new delivery: one transaction (ingest.staged)
                if {landing, raw, staged} <= selected:  # and its landing too: one commit

                    def land_new(load: DeliveryLoad) -> LandingResult:
                        landed = land_dataset(lake, con, dept, ds, load)
                        # reported though a delivery's read fails after it (landing stands)
                        reports.append(lambda: [landing_result(context, con, dept, ds, landed)])
                        return landed

                    _, accounts, gated = stage_with_landing(
                        con, dept.code, ds, lake.protection(), land_new
                    )
                elif landing in selected:
                    landed = land_dataset(lake, con, dept, ds)
                    reports.append(lambda: [landing_result(context, con, dept, ds, landed)])
                    release()  # what landing held goes back, as at the end of a writer's open
                if raw in selected:
                    if gated is None:
                        accounts, gated = load_dataset(lake, con, dept, ds, staged in selected)
                    reports.append(
                        lambda: (
                            [raw_result(context, con, dept, ds, accounts)]
                            + ([accounted(con, dept, ds)] if account.key in checks else [])
                        )
                    )
                    release()
                if staged in selected:
                    if gated is None:
                        gated = stage_dataset(con, dept.code, ds, lake.protection())
                    reports.append(
                        lambda: (
                            [staged_result(con, dept, ds, gated)]
                            + (
                                [contract_result(con, dept, ds, report)]
                                if contract.key in checks
                                else []
                            )
                        )
                    )
            except Exception:
                yield from _reported(con, reports, failed=True)
                raise
            yield from _reported(con, reports)

    return [_ingest]


def _reported(
    con: duckdb.DuckDBPyConnection,
    reports: list[Callable[[], list[dg.MaterializeResult | dg.AssetCheckResult]]],
    *,
    failed: bool = False,
) -> list[dg.MaterializeResult | dg.AssetCheckResult]:
    """The step's results, read in one transaction (read-only: it commits nothing). After a
    failed zone (``failed``) a failed read reports nothing more: the zone's error is the
    one raised."""
    if not reports:
        return []
    try:
        with transaction(con):
            return [r for report in reports for r in report()]
    except Exception:
        if failed:
            return []
        raise


# runs whose datasets' tables this process has ensured (their first dataset step did)
_RUNS_WITH_TABLES: set[str] = set()


def ensure_run_tables(
    context: dg.AssetExecutionContext, lake: LakeResource, con: duckdb.DuckDBPyConnection
) -> None:
    """Once a run (its first dataset step in this process): the raw and staged tables of
    every dataset whose raw or staged asset the run selected, created in one lake commit
    (``pipelines.ingest.tables``) instead of each in its first delivery's commit."""
    run = context.run
    if run.run_id in _RUNS_WITH_TABLES:
        return
    # the assets of the run's job as subset (the run's own asset_selection is empty when
    # dg.materialize is given every asset of its list)
    selection = context.job_def.asset_layer.selected_asset_keys
    cat = get_catalogue(lake.settings().catalog_dir)
    datasets = [
        (dept.code, ds)
        for dept, ds in cat.datasets()
        if raw_key(dept.code, ds.code) in selection or staged_key(dept.code, ds.code) in selection
    ]
    ensure_dataset_tables(con, datasets)
    _RUNS_WITH_TABLES.add(run.run_id)


def land_dataset(
    lake: LakeResource,
    con: duckdb.DuckDBPyConnection,
    dept: Department,
    ds: Dataset,
    load: DeliveryLoad | None = None,
) -> LandingResult:
    """landing: the new deliveries (files in the inbox, or a pull), byte for byte (``load``:
    each read into raw and gated in its landing's transaction)."""
    # a run right after a delivery waits for files still settling; a later run
    # (the sensor's) lands what was still changing then. A pull is recorded (the next
    # is due a cycle later) in the transaction of what it landed
    return land(con, lake.settings(), dept.code, ds, wait_for_settle=True, record=True, load=load)


def landing_result(
    context: dg.AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    dept: Department,
    ds: Dataset,
    result: LandingResult,
) -> dg.MaterializeResult:
    """What landing did, with the dataset's deliveries in all (as landing counted them, a
    statement on the ledger saved; read when it did not)."""
    total = result.deliveries_total
    if total is None:
        total = con.execute(
            f"SELECT count(*) FROM landing.deliveries WHERE {of_dataset()}",
            [dept.code, ds.code],
        ).fetchone()[0]
    for reason in result.failed:  # file names in reasons are already shown escaped
        context.log.warning(f"delivery failed: {reason}")
    if result.unmatched_total:
        more = result.unmatched_total - len(result.unmatched)
        context.log.warning(
            f"inbox/{dept.code}/ holds {result.unmatched_total} file(s) no dataset's "
            f"pattern matches (not landed): {', '.join(result.unmatched)}"
            + (f" … and {more} more" if more else "")
        )
    if result.waiting:
        context.log.info(
            f"{ds.code}: {len(result.waiting)} file(s) still being written, left for a "
            f"later run: {', '.join(result.waiting)}"
        )
    # the counts are in the metadata, not in a log line: each line is one more event Dagster
    # writes to its SQLite storage (two a dataset were a tenth of a run's events)
    return dg.MaterializeResult(
        asset_key=landing_key(dept.code, ds.code),
        metadata={
            "new_deliveries": len(result.landed),
            "skipped_seen_before": result.skipped,
            "failed_pulls": len(result.failed) - result.refused,
            "refused_files": result.refused,
            "waiting_files": dg.MetadataValue.json(result.waiting),
            "unmatched_files": result.unmatched_total,
            "unmatched_names": dg.MetadataValue.json(result.unmatched),
            "deliveries_total": int(total),
            "new_files": dg.MetadataValue.json([shown(d.file_name) for d in result.landed]),
        },
    )


def load_dataset(
    lake: LakeResource,
    con: duckdb.DuckDBPyConnection,
    dept: Department,
    ds: Dataset,
    and_stage: bool = False,
) -> tuple[list[Account], list[StageAccount] | None]:
    """raw: the landed deliveries not yet read, parsed and typed, sensitive columns
    encrypted; ``and_stage``: each read and gated in one lake transaction
    (``pipelines.ingest.staged.load_and_stage``), whose stage accounts are returned for the
    staged asset (None: not staged here)."""
    if and_stage:
        return load_and_stage(con, dept.code, ds, lake.protection())
    return load_raw(con, dept.code, ds, lake.protection().protect), None


def raw_result(
    context: dg.AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    dept: Department,
    ds: Dataset,
    accounts: list[Account],
) -> dg.MaterializeResult:
    """What raw loaded, with the table's rows in all."""
    table = raw_table(dept.code, ds)
    rows = row_count(con, "raw", table)
    noted = []
    for a in accounts:
        if a.status == "failed":
            context.log.warning(f"delivery {shown(a.file_name)} failed: {a.reason}")
        elif a.notes:  # what the file said against the catalogue: the officer corrects it
            noted.append(f"{shown(a.file_name)}: {shown(a.notes)}")
            context.log.warning(f"delivery {noted[-1]} (read as the file says)")
    return dg.MaterializeResult(
        asset_key=raw_key(dept.code, ds.code),
        metadata={
            "dagster/row_count": int(rows),
            "deliveries_loaded": sum(a.status == "loaded" for a in accounts),
            "deliveries_failed": sum(a.status == "failed" for a in accounts),
            "rows_read": sum(a.rows_read for a in accounts),
            "rows_loaded": sum(a.rows_loaded for a in accounts),
            "rows_quarantined": sum(a.rows_quarantined for a in accounts),
            "table": f"lake.raw.{table}",
            **({"read_as_the_file_says": noted} if noted else {}),
        },
    )


def staged_result(
    con: duckdb.DuckDBPyConnection,
    dept: Department,
    ds: Dataset,
    gated: list[StageAccount],
) -> dg.MaterializeResult:
    """What the row gate staged (``gated``: the stage accounts of the deliveries it gated),
    with the table's rows in all."""
    accounts = gated
    rows = row_count(con, "staged", raw_table(dept.code, ds))
    rows_in = sum(a.rows_in for a in accounts)
    passed = sum(a.rows_out for a in accounts)
    quarantined = sum(a.rows_quarantined for a in accounts)
    repaired: dict[str, int] = {}  # "field: kind" → values the standardisers repaired
    for a in accounts:
        for field, kind, n in a.repairs:
            repaired[f"{field}: {kind}"] = repaired.get(f"{field}: {kind}", 0) + int(n)
    return dg.MaterializeResult(
        asset_key=staged_key(dept.code, ds.code),
        metadata={
            "dagster/row_count": int(rows),
            "deliveries_gated": len(accounts),
            "rows_in": rows_in,
            "rows_passed": passed,
            "rows_quarantined": quarantined,
            "rows_skipped": sum(a.rows_skipped for a in accounts),  # copies of staged rows
            "pass_rate": (rows_in - quarantined) / rows_in if rows_in else 1.0,
            "values_repaired": sum(repaired.values()),
            "repairs": dg.MetadataValue.json(dict(sorted(repaired.items()))),
        },
    )


def all_source_assets() -> list[dg.AssetsDefinition]:
    cat = get_catalogue(get_settings().catalog_dir)
    return [a for dept, ds in cat.datasets() for a in build_dataset_assets(dept, ds)]


@dg.definitions
def source_assets() -> dg.Definitions:
    return dg.Definitions(assets=all_source_assets())
