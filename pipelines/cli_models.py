"""``streethub models``: the need model's registered versions (MLflow under the home).

``list`` the versions, ``show`` one (metrics, fairness table, model card), ``backtest`` its
backtest table, and ``promote`` one to be the version the main job scores with. Promotion
is an administrators' operation under the two-person rule, as ``keys rotate`` is: open a
``model.promote`` operation (``POST /admin/operations`` with ``{"model": …, "version": …}``),
have a second administrator approve it, then ``streethub models promote N --request <id>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from catalog.settings import get_settings
from marts.need_model.registry import (
    BACKTEST,
    CARD,
    FAIRNESS,
    FORECAST_MODEL,
    MODEL_NAME,
    NO_ADMINS,
    ModelVersion,
    Registry,
    RegistryError,
)
from pipelines.cli_common import cli_actor, console, err
from pipelines.cli_keys import RequestOption, two_person

models_app = typer.Typer(
    help="The need model's registered versions: list, show, backtest, promote."
)

ModelOption = Annotated[str, typer.Option("--model", help="the registered model's name")]
VersionArg = Annotated[int | None, typer.Argument(help="the version (default: the promoted one)")]


@contextlib.contextmanager
def _registry() -> Iterator[Registry]:
    """The registry; a registry error printed (it names the version, never data), exit 1."""
    try:
        yield Registry.from_settings(get_settings())
    except RegistryError as exc:
        err.print(Text(str(exc), style="red"))
        raise typer.Exit(1) from None


def _hub_audit(settings):
    """The hub's audit log (``streethub audit``), where a promotion is recorded."""
    from masking.audit.log import AuditLog
    from masking.keys import KeyRing

    return AuditLog.from_settings(settings, KeyRing.from_settings(settings))


def _version(registry: Registry, version: int | None, model: str) -> ModelVersion:
    """The asked version, else the promoted one, else the newest."""
    if version is not None:
        return registry.version(version, model)
    found = registry.promoted(model) or next(iter(reversed(registry.versions(model))), None)
    if found is None:
        raise RegistryError(f"model {model} has no registered version")
    return found


def _print_frame(frame, title: str) -> None:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(col, justify="right" if frame[col].dtype.is_numeric() else "left")
    for row in frame.iter_rows():
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


@models_app.command("list")
def models_list(model: ModelOption = MODEL_NAME) -> None:
    """Every registered version: when, on which lake snapshot, its file's SHA-256, which
    one is promoted."""
    with _registry() as registry:
        versions = registry.versions(model)
    if not versions:
        console.print(f"model {model}: no version registered yet (the main job trains one)")
        return
    table = Table(title=f"model {model}: registered versions")
    for col in ("version", "registered (UTC)", "lake snapshot", "features", "sha256", "promoted"):
        table.add_column(col)
    for v in versions:
        promoted = f"yes, {v.promoted_at} by {v.promoted_by}" if v.promoted else ""
        table.add_row(str(v.version), f"{v.created_at:%Y-%m-%d %H:%M}", v.lake_snapshot,
                      str(v.features), v.sha256[:12], promoted)  # fmt: skip
    console.print(table)


@models_app.command("show")
def models_show(version: VersionArg = None, model: ModelOption = MODEL_NAME) -> None:
    """One version: its record, metrics, fairness table and model card."""
    with _registry() as registry:
        v = _version(registry, version, model)
        card = registry.text(v.version, CARD, model)
        fairness = registry.table(v.version, FAIRNESS, model)
    console.print(f"model {model} version {v.version}")
    console.print(
        f"  registered   {v.created_at:%Y-%m-%d %H:%M} UTC, lake snapshot {v.lake_snapshot}"
    )
    console.print(f"  file sha256  {v.sha256}")
    if v.promoted:
        console.print(f"  promoted     {v.promoted_at} by {v.promoted_by} (approval: {v.approval})")
    if v.metrics:
        table = Table(title="metrics (backtest)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in sorted(v.metrics.items()):
            table.add_row(key, f"{value:.4f}")
        console.print(table)
    if fairness is not None:
        _print_frame(fairness, "fairness per group")
    from rich.markdown import Markdown  # markdown-it and Pygments: not for every command

    console.print(Markdown(card))


@models_app.command("backtest")
def models_backtest(
    version: VersionArg = None,
    model: Annotated[
        str | None, typer.Option("--model", help="one registered model (default: both)")
    ] = None,
) -> None:
    """The backtest tables the versions were registered with: each need's PR-AUC against
    the street's rule (goal 2x) and calibration error; the grid forecast's Poisson deviance
    and MAE against naive and seasonal-naive (goal: below both). On a simulated street with
    the simulator's need truth beside the home, also the true probabilities' PR-AUC (the
    ceiling), the true expected counts' deviance and the elderly alert's precision and
    recall against the planted events (pipelines/need_truth.py)."""
    names = [model] if model else [MODEL_NAME, FORECAST_MODEL]
    found = []
    with _registry() as registry:
        for name in names:
            if not registry.versions(name) and model is None:
                continue
            v = _version(registry, version, name)
            table = registry.table(v.version, BACKTEST, name)
            if table is not None:
                found.append((name, v, table))
    if not found:
        err.print(Text("no registered version with a backtest table", "red"))
        raise typer.Exit(1)
    found, alert = _against_truth(found)
    for name, v, table in found:
        _print_frame(table, f"backtest: model {name} version {v.version}, lake snapshot "
                            f"{v.lake_snapshot}")  # fmt: skip
    if alert is None:
        console.print("ceiling (true probabilities), true expected counts and the elderly "
                      "alert's precision/recall need the simulator's need truth (a simulated "
                      "street with history): none beside this home")  # fmt: skip
        return
    from marts.need_model.backtest import fmt  # the training code only when it is needed

    quality, lists, last = alert
    console.print(
        f"elderly alert against planted events: {lists} weekly lists to {last}, "
        f"{quality.alerted} alert(s), {quality.hits} right — precision {fmt(quality.precision)}; "
        f"{quality.positives} planted event(s) the doors saw, {quality.found} warned of — "
        f"recall {fmt(quality.recall)}"
    )


def _against_truth(found: list) -> tuple[list, tuple | None]:
    """With the simulator's need truth: the tables with the ceiling / true expected rows and
    the alert's (quality, lists, last day); else as they were and None."""
    import pipelines.need_truth as nt  # the simulator's need truth (quality.evaluation reads it)
    from lakehouse.lake import open_lake

    settings = get_settings()
    loaded = nt.load_need_truth(settings, cli_actor())
    if loaded is None:
        return found, None
    truth, protection = loaded
    with open_lake(settings) as con:
        found = [
            (n, v, nt.with_ceiling(con, protection, v, t, truth)) if n == MODEL_NAME
            else (n, v, nt.with_true_expected(con, v, t, truth)) if n == FORECAST_MODEL
            else (n, v, t)
            for n, v, t in found
        ]  # fmt: skip
        last = nt.last_scored(con)
        quality = nt.alert_quality(con, settings, protection, truth, last)
    return found, (quality, nt.ALERT_WEEKS, last)


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="the version to score with from now on")],
    request: RequestOption = None,
    model: ModelOption = MODEL_NAME,
) -> None:
    """Make VERSION the version the main job scores with. Its file is checked against the
    SHA-256 recorded at registration first; once the share service has administrators, a
    second one approves the ``model.promote`` operation first (--request)."""
    settings = get_settings()
    with _registry() as registry:
        sha = registry.verify(version, model)  # a changed file spends no approval
        two_person(settings, "model.promote", request, model=model, version=version)
        done = registry.promote(
            version, actor=cli_actor(), approval=request or NO_ADMINS, name=model,
            audit=_hub_audit(settings),
        )  # fmt: skip
    console.print(f"model {model} version {done.version} promoted (file sha256 {sha})")
