"""The ``streethub`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from catalog.errors import StreethubError, shown
from catalog.export import to_dcat, to_json
from catalog.settings import Settings, get_settings, shown_url
from pipelines.cli_analyst import analyst, notebook
from pipelines.cli_attention import attention
from pipelines.cli_audit import audit_app
from pipelines.cli_common import (
    catalogue,
    cli_actor,
    console,
    err,
    or_exit,
    reading_lake,
    writing_lake,
)
from pipelines.cli_keys import keys_app
from pipelines.cli_leaks import leaks_app
from pipelines.cli_marts import MartsDirOption, catalog_lineage, check_marts_or_exit
from pipelines.cli_models import models_app
from pipelines.cli_persons import persons_app
from pipelines.cli_receipts import audit_receipt
from pipelines.cli_share import admin_app, openapi, serve
from pipelines.cli_sharing import sharing_app

app = typer.Typer(help="streethub: the street data hub (街道数据中台).", no_args_is_help=True)
catalog_app = typer.Typer(help="The street data resource catalogue (街道数据资源目录).")
lake_app = typer.Typer(help="The lake (DuckLake over Parquet).")
app.add_typer(catalog_app, name="catalog")
app.add_typer(lake_app, name="lake")
simulate_app = typer.Typer(help="The simulated department systems.")
app.add_typer(simulate_app, name="simulate")
app.add_typer(keys_app, name="keys")
app.add_typer(leaks_app, name="leaks")
app.add_typer(audit_app, name="audit")
audit_app.command("receipt")(audit_receipt)
app.add_typer(persons_app, name="persons")
app.add_typer(admin_app, name="admin")
app.add_typer(sharing_app, name="sharing")
app.add_typer(models_app, name="models")
app.command("serve")(serve)
app.command("openapi")(openapi)
app.command("attention")(attention)
app.command("analyst")(analyst)
app.command("notebook")(notebook)

LIST_LIMIT = 50  # deliveries listed unless --all

DirOption = Annotated[
    Path | None, typer.Option("--dir", help="catalogue folder (default: the shipped one)")
]


def _street(path: Path | None):
    from catalog.street import load_street

    return or_exit(load_street, path or get_settings().street_file)


@catalog_app.command("check")
def catalog_check(
    directory: DirOption = None,
    street_file: Annotated[
        Path | None, typer.Option("--street", help="street file (default: the shipped one)")
    ] = None,
    marts_dir: MartsDirOption = None,
) -> None:
    """Validate the catalogue, the street and the marts; exit non-zero listing every
    problem."""
    from quality.gate_checks import NAMED_CHECKS

    cat = catalogue(directory)
    street = _street(street_file)
    unknown = [
        f"{d.code}.{ds.code}.{f.name}: unknown check {name!r}"
        for d, ds in cat.datasets()
        for f in ds.fields
        for name in f.checks
        if name not in NAMED_CHECKS
    ]
    if unknown:
        known = ", ".join(sorted(NAMED_CHECKS))
        err.print("\n".join(unknown) + f"\nknown checks: {known}", highlight=False)
        raise typer.Exit(1)
    n_fields = sum(len(ds.fields) for _, ds in cat.datasets())
    console.print(
        f"catalogue OK: {len(cat.departments)} departments, {len(cat.datasets())} datasets, "
        f"{n_fields} fields; street {street.name} ({street.code}, {street.district}), "
        f"{len(street.communities)} communities"
    )
    console.print(check_marts_or_exit(cat, marts_dir))


catalog_app.command("lineage")(catalog_lineage)


@catalog_app.command("list")
def catalog_list(directory: DirOption = None) -> None:
    """A table of every dataset: code, name, provider, share type, level, fields."""
    cat = catalogue(directory)
    table = Table(title="街道数据资源目录 street data resource catalogue")
    for col in ("resource code", "dataset", "name", "provider", "share type", "level", "fields"):
        table.add_column(col)
    for d, ds in cat.datasets():
        table.add_row(
            ds.resource_code,
            f"{d.code}.{ds.code}",
            f"{ds.name_zh} {ds.name_en}",
            d.name_zh,
            ds.share_type.value,
            ds.max_level.value,
            str(len(ds.fields)),
        )
    console.print(table)


@catalog_app.command("show")
def catalog_show(code: str, directory: DirOption = None) -> None:
    """One dataset in full, by resource code or dept.dataset."""
    cat = catalogue(directory)
    try:
        d, ds = cat.dataset(code)
    except KeyError:
        err.print(f"no dataset {code!r} in the catalogue (try `streethub catalog list`)")
        raise typer.Exit(1) from None
    console.print(f"[bold]{ds.resource_code} {ds.name_zh} / {ds.name_en}[/bold]")
    console.print(f"provider: {d.name_zh} ({d.code}, {d.provider_code})  owner: {d.owner}")
    console.print(f"entity: {ds.entity.value}  grade: {ds.grade.value}  format: {ds.format}")
    console.print(
        f"update cycle: {ds.update_cycle.value}  share: {ds.share_type.value}  "
        f"open: {ds.open_attribute.value}  released: {ds.release_date}"
    )
    if ds.share_conditions:
        console.print(f"conditions: {ds.share_conditions}")
    if ds.legal_basis:
        console.print(f"legal basis: {ds.legal_basis}")
    console.print(f"summary: {ds.summary}")
    delivery = ds.delivery.model_dump(exclude_none=True, mode="json")
    console.print(f"delivery: {json.dumps(delivery, ensure_ascii=False)}")
    table = Table()
    for col in ("field", "label", "source", "type", "req", "level", "pii", "masking", "QI"):
        table.add_column(col)
    for f in ds.fields:
        table.add_row(
            f.name,
            f.label_zh,
            f.source_name,
            f.type.value,
            "yes" if f.required else "",
            f.level.value,
            "" if f.pii.value == "none" else f.pii.value,
            "" if f.masking.value == "none" else f.masking.value,
            "yes" if f.quasi_identifier else "",
        )
    console.print(table)


@catalog_app.command("export")
def catalog_export(
    fmt: Annotated[str, typer.Option("--format", help="json or dcat")] = "json",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    directory: DirOption = None,
) -> None:
    """Export as JSON, or as DCAT JSON-LD for other catalogue tools."""
    cat = catalogue(directory)
    if fmt not in ("json", "dcat"):
        err.print(f"unknown format {fmt!r}: use json or dcat")
        raise typer.Exit(2)
    doc = to_json(cat) if fmt == "json" else to_dcat(cat, _street(None))
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


@lake_app.command("init")
def lake_init() -> None:
    """Create the lake (metadata, data folder, zones) if it does not exist."""
    from lakehouse.lake import init_lake

    settings = get_settings()
    init_lake(settings)
    console.print(
        f"lake ready: metadata {shown_url(settings.lake_metadata)}, data {settings.lake_data_dir}"
    )


@lake_app.command("info")
def lake_info() -> None:
    """The zones, tables and row counts, and the latest snapshots."""
    from pipelines.summary import print_lake

    print_lake(console, get_settings())


quality_app = typer.Typer(help="Data quality: scorecard, expectations, report.")
app.add_typer(quality_app, name="quality")


@quality_app.command("report")
def quality_report() -> None:
    """Score the lake now, print the scorecard and the truth figures, write the HTML report."""
    import datetime as dt

    from pipelines.main_job import print_truth
    from pipelines.protection import Protection
    from pipelines.quality_run import compute_quality, load_inputs, write_report
    from pipelines.truth_run import evaluate_against_truth
    from quality.report import scorecard_text

    settings = get_settings()
    cat = catalogue(None)
    with reading_lake(settings, "reading the lake") as con:
        inputs = load_inputs(con, cat, Protection.from_settings(settings, cli_actor()))
        with console.status("scores, expectations"):
            out = compute_quality(settings, cat, inputs, dt.datetime.now(dt.UTC))
    console.print(scorecard_text(out.scorecard))
    with console.status("the simulator's deliveries against its ground truth"):
        print_truth(console, evaluate_against_truth(settings, cat, cli_actor()))
    failed = (
        out.expectations.filter(~out.expectations["success"]) if out.expectations.height else None
    )
    if failed is not None and failed.height:
        console.print(f"{failed.height} expectation(s) failed; see the report")
    console.print(f"report: {write_report(settings, inputs, out)}")


kanon_app = typer.Typer(help="k-anonymity over the catalogue's quasi-identifiers.")
app.add_typer(kanon_app, name="kanon")


@kanon_app.command("check")
def kanon_check(
    datasets: Annotated[
        list[str] | None, typer.Argument(help="dept.dataset … (default: every dataset with QIs)")
    ] = None,
    k: Annotated[int | None, typer.Option("--k", help="default: STREETHUB_K_ANONYMITY")] = None,
) -> None:
    """Measure k of staged datasets and what publishing them at k would take; exit 1 if any
    would be refused. Values are decrypted for the k_anonymity purpose (audited), never shown."""
    from masking.errors import KAnonymityError
    from masking.kanon import quasi_identifiers
    from pipelines.kanon import kanon_dataset
    from pipelines.protection import Protection

    settings = get_settings()
    cat = catalogue(None)
    k = k or settings.k_anonymity
    refs = datasets or [f"{d.code}.{ds.code}" for d, ds in cat.datasets() if quasi_identifiers(ds)]
    table = Table(title=f"k-anonymity at k = {k} (quasi-identifiers from the catalogue)")
    for col in ("dataset", "quasi-identifiers", "rows", "smallest class", "rows below k",
                "to publish at k"):  # fmt: skip
        table.add_column(col, justify="right" if col in ("rows", "smallest class",
                                                         "rows below k") else "left")  # fmt: skip
    refused = 0
    protection = Protection.from_settings(settings, actor=cli_actor())
    with reading_lake(settings, "measuring k", KAnonymityError, KeyError) as con:
        for ref in refs:
            r = kanon_dataset(con, cat, protection, ref, k, settings.k_max_suppression)
            m = r.measured
            if r.enforced is None:
                refused += 1
                verdict = f"[red]refused: {r.refused}[/red]"
            elif not r.enforced.steps:
                verdict = "[green]as it is[/green]"
            else:
                verdict = "; ".join(r.enforced.steps)
            table.add_row(r.ref, ", ".join(r.quasi_identifiers), f"{m.rows:,}",
                          f"{m.smallest_class:,}", f"{m.rows_below_k:,}", verdict)  # fmt: skip
    console.print(table)
    if refused:
        raise typer.Exit(1)


deliveries_app = typer.Typer(help="Deliveries: list them, acknowledge or retry failed ones.")
app.add_typer(deliveries_app, name="deliveries")


@deliveries_app.command("list")
def deliveries_list(
    failed: Annotated[bool, typer.Option("--failed", help="failed deliveries only")] = False,
    dept: Annotated[str | None, typer.Option("--dept", help="one department (code)")] = None,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help=f"also acknowledged failures, and more than the newest {LIST_LIMIT}"
        ),
    ] = False,
) -> None:
    """Every delivery's account, newest last: file as delivered (escaped), status, rows read
    = staged + quarantined + skipped, reason, acknowledgement. Never a value."""
    from pipelines.deliveries import list_deliveries
    from pipelines.summary import print_failures, print_notes

    settings = get_settings()
    with reading_lake(settings, "reading the accounts") as con:
        rows = list_deliveries(con, failed=failed, dept=dept, acknowledged=show_all or not failed)
    if not rows:
        none = "no failed delivery waits for an officer" if failed else "no delivery accounted"
        console.print(f"[green]{none}[/green]" if failed else none)
        return
    hidden = 0 if show_all else max(0, len(rows) - LIST_LIMIT)
    rows = rows[hidden:]
    what = (
        "failed deliveries" + ("" if show_all else " not acknowledged") if failed else "deliveries"
    )
    of = f" of {escape(shown(dept))}" if dept else ""
    table = Table(title=f"{what}{of}, newest last", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)
    for col in ("status", "read", "staged", "quarantined", "skipped"):
        table.add_column(col, justify="left" if col == "status" else "right")
    table.add_column("file as delivered", overflow="fold")
    for r in rows:
        table.add_row(
            r.delivery_id,
            Text(r.status, style="red" if r.failed else "green"),
            f"{r.rows_read:,}",
            "" if r.rows_staged is None else f"{r.rows_staged:,}",
            f"{r.rows_quarantined:,}",
            "" if r.rows_skipped is None else f"{r.rows_skipped:,}",
            Text(shown(r.file_name)) if r.file_name else Text("(nothing landed)", style="dim"),
        )
    console.print(table)
    failures = [r for r in rows if r.failed]
    if failures:  # why, and who has seen it: a block each
        print_failures(console, "why they failed:", failures)
    noted = [r for r in rows if r.notes and not r.failed]
    if noted:  # what the file said against the catalogue
        print_notes(console, "read as the file says, not as the catalogue does:", noted)
    if hidden:
        console.print(f"{hidden} older deliveries not shown (--all shows them)")


@deliveries_app.command("ack")
def deliveries_ack(
    delivery_id: Annotated[str, typer.Argument(help="the delivery's id (see `list --failed`)")],
    reason: Annotated[str, typer.Option("--reason", help="why it may stay failed")],
) -> None:
    """Acknowledge a failed delivery: it leaves the run summary's open failures. Audited."""
    from masking.audit import AuditLog
    from pipelines.deliveries import acknowledge

    settings = get_settings().ensure_dirs()
    actor = cli_actor()
    with writing_lake(settings, "recording the acknowledgement") as con:
        row = acknowledge(con, AuditLog.from_settings(settings), actor, delivery_id, reason)
    done = f"acknowledged {row.delivery_id} ({row.dept}.{row.dataset}) as {actor}: {reason}"
    console.print(Text(shown(done)))


@deliveries_app.command("retry")
def deliveries_retry(
    delivery_id: Annotated[str, typer.Argument(help="the failed delivery's id")],
) -> None:
    """Read a failed delivery's landed copy again, after a catalogue or connector fix, into
    raw and through the row gate (under the lake writer lock; audited). Refused for a
    delivery that did not fail, or whose landed copy is missing or changed."""
    from masking.audit import AuditLog
    from pipelines.deliveries import retry
    from pipelines.protection import Protection

    settings = get_settings().ensure_dirs()
    cat = catalogue(None)
    actor = cli_actor()
    protection = Protection.from_settings(settings, actor=actor)
    with writing_lake(settings, "reading the delivery again") as con:
        done = retry(con, cat, protection, AuditLog.from_settings(settings), actor, delivery_id)
    a, s = done.account, done.stage
    if a.status != "loaded":
        err.print(Text(shown(f"{delivery_id} failed again: {a.reason}"), style="red"))
        raise typer.Exit(1)
    staged = f"{s.rows_out:,} staged, " if s else ""
    quarantined = a.rows_quarantined + (s.rows_quarantined if s else 0)
    skipped = s.rows_skipped if s else 0
    console.print(
        f"[green]{delivery_id} loaded[/green]: {a.rows_read:,} rows read = {staged}"
        f"{quarantined:,} quarantined, {skipped:,} skipped"
    )


@app.command("run")
def run(
    simulate: Annotated[
        bool,
        typer.Option(
            "--simulate",
            help="simulate a new street first (default: only on a first run, when the "
            "simulator's folder holds none and STREETHUB_SIM_AUTO is not false)",
        ),
    ] = False,
) -> None:
    """The main job on the embedded default, with a summary."""
    from pipelines.memory import freeze_at_exit, tune_gc, tune_heap

    tune_heap()  # before the imports' and the run's allocations
    tune_gc()  # full collections rarer: in a 1,000-resident first run GC 1.59 -> 0.60 CPU s
    freeze_at_exit()  # and none over the whole heap as the process ends
    from pipelines.main_job import run_main

    # what the imports made lives as long as the process: CPython's full collections (9-12
    # in a 1,000-resident first run) then skip its ~230,000 objects (GC 1.55 -> 1.2 CPU s)
    gc.freeze()
    try:
        run_main(get_settings(), console, simulate=simulate)
    except StreethubError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None


@simulate_app.callback(invoke_without_command=True)
def simulate(
    ctx: typer.Context,
    residents: Annotated[int, typer.Option(help="residents of the street")] = 20_000,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same data)")] = 7,
    days: Annotated[int, typer.Option(help="days of daily deliveries (IoT: a file a day)")] = 3,
    history_days: Annotated[
        int | None,
        typer.Option(
            "--history-days",
            min=0,
            help="deliver the need model's inputs and outcomes over this many days "
            "(departments/NEEDS.md; default: the sim_history_days setting, 365; 0: none)",
        ),
    ] = None,
    register_days: Annotated[
        int | None,
        typer.Option(
            "--register-days",
            min=1,
            help="without a history: days the four need-outcome registers hold (default 150, "
            "too few for the need model to train; 270 or more: it trains)",
        ),
    ] = None,
) -> None:
    """Generate one street's deliveries from the simulated departments: files into the
    inbox, their systems (database, API data, token) and truth into the simulator's folder."""
    if ctx.invoked_subcommand is not None:
        return
    from departments.connect import connection_env
    from departments.simulate import simulate as run_simulation
    from quality.evaluation import manifest_rows

    settings = get_settings().ensure_dirs()
    with console.status("simulating departments") as status:
        manifest = run_simulation(
            settings.home_abs,
            residents=residents,
            seed=seed,
            days=days,
            progress=lambda msg: status.update(f"simulating: {msg}"),
            sim_dir=settings.sim_dir_abs,
            history_days=(settings.sim_history_days if history_days is None else history_days)
            or None,
            register_days=register_days,
        )
    rows = manifest_rows(manifest)
    console.print(
        f"simulated {len({d for d, _ in rows})} departments, {len(rows)} datasets, "
        f"{sum(rows.values()):,} rows: inbox {settings.inbox_dir}, "
        f"systems and truth {settings.sim_dir_abs}"
    )
    names = sorted(connection_env(settings.sim_dir_abs, settings.dept_api_url))
    console.print(
        "the hub reaches the simulated systems by "
        + ", ".join(names)
        + " (set by `streethub run` and `streethub ui`; `streethub simulate serve` serves "
        + f"the APIs on {shown_url(settings.dept_api_url)})"
    )


@simulate_app.command("serve")
def simulate_serve(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8765,
    fault_rate: Annotated[float, typer.Option(help="share of requests answered 429/503")] = 0.05,
) -> None:
    """Serve the simulated departments' HTTP APIs (social security, 12345 hotline) on
    127.0.0.1 (for `streethub ui`: the default STREETHUB_DEPT_API_URL is port 8765)."""
    from departments.server import serve

    settings = get_settings()
    console.print(f"department APIs on http://127.0.0.1:{port} (Ctrl-C stops)")
    serve(settings.sim_dir_abs, host="127.0.0.1", port=port, fault_rate=fault_rate)


@app.command("ui")
def ui(port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 3000) -> None:
    """The Dagster UI (webserver and daemon) on 127.0.0.1; stops cleanly on Ctrl-C / SIGTERM."""
    import os
    import signal

    from pipelines.instance import prepare_dagster_home

    settings = get_settings().ensure_dirs()
    prepare_dagster_home(settings)
    _recover_before_ui()
    _simulated_connections(settings)
    exe = Path(sys.executable).parent / "dagster"
    args = [str(exe), "dev", "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)]
    console.print(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME {settings.dagster_home})")
    # `dagster dev` copies an inherited ignored SIGINT onto SIGTERM (STACK.md): reset both
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execv(str(exe), args)


def _simulated_connections(settings: Settings) -> None:
    """For the Dagster processes `streethub ui` starts: the simulated systems' connection
    settings (database URLs, API token) when the simulator's folder holds a street. Set
    variables win; the APIs themselves are served by `streethub simulate serve`."""
    if not settings.sim_dir_abs.exists():
        return
    from departments.connect import connection_env

    env = connection_env(settings.sim_dir_abs)
    for name, value in env.items():
        os.environ.setdefault(name, value)
    if env:
        console.print(
            f"simulated departments {settings.sim_dir_abs}: {', '.join(sorted(env))} set; "
            f"their APIs: `streethub simulate serve` (STREETHUB_DEPT_API_URL "
            f"{shown_url(settings.dept_api_url)})"
        )


def _recover_before_ui() -> None:
    """Runs a killed UI (or main job) left STARTED give their pool slots back first:
    Dagster's default run launcher cannot tell that a dead webserver's runs are gone."""
    import dagster as dg

    from pipelines.recovery import recover_dead_runs

    dead = recover_dead_runs(dg.DagsterInstance.get())
    if dead:
        console.print(f"{len(dead)} run(s) whose process is gone marked failed, slots freed")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
