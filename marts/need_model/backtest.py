"""The need models' backtest (回测): a time split over several cut-offs. For each test cut-off
``c`` the models are trained only on cut-offs whose labels were known by ``c`` (``c' +
HORIZON_DAYS <= c``: a label is the 90 days after its cut-off) and scored at ``c``; in the same
run the street's current rule (:mod:`marts.need_model.baseline`) is scored on the same rows,
and — when the simulator's true probabilities are given — their PR-AUC is the ceiling no
model can be expected to pass. Calibration is measured on the test rows (ECE and the
reliability curve).

:class:`BacktestResult` holds the figures as frames and prints as rich tables; the grid
forecast's backtest (:mod:`marts.need_model.forecast`) may be attached so one printout shows
every must-show figure.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from rich.console import Console, Group
from rich.table import Table

from marts.need_model.calibration import Method, expected_calibration_error, reliability_curve
from marts.need_model.metrics import average_precision
from marts.need_model.spec import HORIZON_DAYS, KEYS, NEEDS
from marts.need_model.train import RULE_SCORE, SEED, TrainingRows, train_rows, training_rows

GOAL_RATIO = 2.0
"""The model's PR-AUC should be at least this multiple of the rule's."""

RULE = "rule"
CEILING = "ceiling"


def training_cutoffs(cutoffs: Sequence[dt.date], test: dt.date, gap_days: int) -> list[dt.date]:
    """The cut-offs whose labels were complete by ``test``: ``c + gap_days <= test``."""
    return [c for c in cutoffs if c + dt.timedelta(days=gap_days) <= test]


def backtest_cutoffs(
    cutoffs: Sequence[dt.date], gap_days: int, last: int | None = None
) -> list[dt.date]:
    """The cut-offs with at least one training cut-off before them, the latest ``last``."""
    ordered = sorted(set(cutoffs))
    usable = [c for c in ordered if training_cutoffs(ordered, c, gap_days)]
    return usable[-last:] if last else usable


@dataclass
class BacktestResult:
    """The backtest's figures: ``needs`` pooled over the test cut-offs (one row per need),
    ``by_cutoff`` per need and cut-off, ``reliability`` the pooled reliability curve per need,
    ``predictions`` the test rows' keys, labels (``<need>``) and scores (``<need>_score``,
    ``<need>_rule``), and optionally the grid forecast's backtest."""

    needs: pl.DataFrame
    by_cutoff: pl.DataFrame
    reliability: pl.DataFrame
    predictions: pl.DataFrame
    forecast: Any = None

    def met_goal(self) -> dict[str, bool]:
        """Per need: model PR-AUC ≥ GOAL_RATIO × the rule's."""
        return {r["need"]: bool(r["ratio"] >= GOAL_RATIO) for r in self.needs.iter_rows(named=True)}

    def needs_table(self) -> Table:
        table = Table(
            title=f"需求模型回测 need-model backtest (goal: PR-AUC ≥ {GOAL_RATIO:g}× rule)"
        )
        for name in ("need", "cut-offs", "rows", "positives", "PR-AUC model", "rule (80+ 独居)"):
            table.add_column(name, justify="left" if name == "need" else "right")
        for name in ("ratio", "goal", "ceiling (true p)", "model/ceiling", "ECE"):
            table.add_column(name, justify="right")
        for r in self.needs.iter_rows(named=True):
            table.add_row(
                f"{r['need']} {NEEDS.get(r['need'], '')}",
                str(r["cutoffs"]),
                str(r["rows"]),
                str(r["positives"]),
                fmt(r["pr_auc_model"]),
                fmt(r["pr_auc_rule"]),
                fmt(r["ratio"], "×"),
                "✓" if r["ratio"] >= GOAL_RATIO else "✗",
                fmt(r["pr_auc_ceiling"]),
                fmt(r["model_to_ceiling"]),
                fmt(r["ece"]),
            )
        return table

    def cutoff_table(self) -> Table:
        table = Table(title="per cut-off 各截止日")
        for name in self.by_cutoff.columns:
            table.add_column(name, justify="left" if name in ("need", "cutoff") else "right")
        for row in self.by_cutoff.iter_rows():
            table.add_row(*(fmt(v) if isinstance(v, float) else str(v) for v in row))
        return table

    def reliability_table(self) -> Table:
        """One row per need, one column per score bin: the observed rate against the mean
        score, and how many residents the bin holds."""
        table = Table(title="可靠性曲线 reliability: observed rate / mean score (residents)")
        table.add_column("need", no_wrap=True)
        lows = sorted(self.reliability["bin_low"].unique().to_list())
        for low in lows:
            table.add_column(f"{low:.1f}–{low + 0.1:.1f}", justify="right")
        for need in self.reliability["need"].unique(maintain_order=True).to_list():
            bins = {
                r["bin_low"]: f"{r['observed_rate']:.3f} / {r['mean_score']:.3f} ({r['n']})"
                for r in self.reliability.filter(pl.col("need") == need).iter_rows(named=True)
            }
            table.add_row(need, *(bins.get(low, "") for low in lows))
        return table

    def __rich__(self) -> Group:
        parts: list[Any] = [self.needs_table(), self.cutoff_table(), self.reliability_table()]
        if self.forecast is not None:
            parts.append(self.forecast)
        return Group(*parts)

    def __str__(self) -> str:
        return as_text(self)


def as_text(renderable: Any, width: int = 160) -> str:
    """What rich prints for ``renderable``, as plain text."""
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def fmt(value: float | None, suffix: str = "") -> str:
    """A figure to three decimals, '–' when missing or not a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}{suffix}"


def score_rows(test: TrainingRows, models: Any, truth: pl.DataFrame | None) -> pl.DataFrame:
    """The test rows' keys, labels, model scores, rule scores (the rows' :data:`RULE_SCORE`) and
    (if given) true probabilities (``<need>_true``); ``test``'s categories coded as the
    models' (:meth:`TrainingRows.subset`)."""
    needs = test.needs
    rule = test.rows.get_column(RULE_SCORE).to_numpy()
    out = test.rows.select(*KEYS, *(pl.col(n).cast(pl.Boolean).fill_null(False) for n in needs))
    out = out.with_columns(
        *(pl.Series(f"{n}_score", models.scores(n, test.matrix)) for n in needs),
        *(pl.Series(f"{n}_rule", rule) for n in needs),
    )
    if truth is not None:
        true = truth.select(
            *KEYS, *(pl.col(n).alias(f"{n}_true") for n in needs if n in truth.columns)
        )
        out = out.join(true, on=list(KEYS), how="left")
    return out


def need_figures(rows: pl.DataFrame, need: str) -> dict[str, Any]:
    """PR-AUC of the model, the rule and the ceiling, their ratios and the ECE for one need."""
    y = rows[need].to_numpy()
    model = average_precision(y, rows[f"{need}_score"].to_numpy())
    rule = average_precision(y, rows[f"{need}_rule"].to_numpy())
    ceiling = float("nan")
    if f"{need}_true" in rows.columns:
        known = rows.filter(pl.col(f"{need}_true").is_not_null())
        if known.height:
            ceiling = average_precision(known[need].to_numpy(), known[f"{need}_true"].to_numpy())
    return {
        "rows": rows.height,
        "positives": int(y.sum()),
        "pr_auc_model": model,
        "pr_auc_rule": rule,
        "ratio": model / rule if rule else float("nan"),
        "pr_auc_ceiling": ceiling,
        "model_to_ceiling": model / ceiling if ceiling else float("nan"),
        "ece": expected_calibration_error(y, rows[f"{need}_score"].to_numpy()),
    }


def backtest(
    features: pl.DataFrame, labels: pl.DataFrame, inputs: Sequence[str], **options: Any
) -> BacktestResult:
    """Train-then-test at each of the latest ``last`` cut-offs that have training cut-offs
    ``gap_days`` or more before them (or at ``cutoffs``), and pool the test rows: the rows
    of ``features`` with ``labels`` (:func:`training_rows`, with the rule's scores) backtested
    by :func:`backtest_rows`, whose keywords ``options`` are."""
    return backtest_rows(training_rows(features, labels, inputs, rule=True), **options)


def backtest_rows(
    data: TrainingRows,
    *,
    truth: pl.DataFrame | None = None,
    cutoffs: Sequence[dt.date] | None = None,
    last: int | None = 3,
    gap_days: int = HORIZON_DAYS,
    calibration: Method | None = None,
    seed: int = SEED,
    num_rounds: int | None = None,
    params: dict[str, Any] | None = None,
    between: Callable[[], object] | None = None,
) -> BacktestResult:
    """:func:`backtest` on rows already made (:class:`TrainingRows` with the rule's scores),
    each test's training rows and test rows taken from ``data`` by cut-off. ``truth``: the
    simulator's true probabilities, keys and one column per need; ``between``: called
    before each test's training (the pipeline's heap trim: what the last test's rows and
    LightGBM's bins freed, at 200,000 residents ~35 MB more at each test without it)."""
    needs = data.needs
    at_cutoff = data.rows.get_column("cutoff")
    every = sorted(at_cutoff.unique().to_list())
    tests = list(cutoffs) if cutoffs else backtest_cutoffs(every, gap_days, last)
    if not tests:
        raise ValueError(f"no cut-off has another at least {gap_days} days before it")
    extra = {"num_rounds": num_rounds} if num_rounds else {}
    scored: list[pl.DataFrame] = []
    per_cutoff: list[dict[str, Any]] = []
    for test in tests:
        if between is not None:
            between()
        train_on = training_cutoffs(every, test, gap_days)
        models = train_rows(
            data.subset(at_cutoff.is_in(train_on).to_numpy()),
            calibration=calibration,
            seed=seed,
            params=params,
            release=True,  # the subset is this fit's alone
            **extra,
        )
        at = (at_cutoff == test).to_numpy()  # a test cut-off's rows alone (not every one's)
        rows = score_rows(data.subset(at, models.categories), models, truth)
        scored.append(rows)
        for need in needs:
            per_cutoff.append(
                {"need": need, "cutoff": test, "train_cutoffs": len(train_on)}
                | need_figures(rows, need)
            )
    pooled = pl.concat(scored, how="diagonal")
    summary = pl.DataFrame(
        [{"need": n, "cutoffs": len(tests)} | need_figures(pooled, n) for n in needs]
    )
    curves = pl.concat(
        reliability_curve(pooled[n].to_numpy(), pooled[f"{n}_score"].to_numpy()).select(
            pl.lit(n).alias("need"), pl.all()
        )
        for n in needs
    )
    by_cutoff = pl.DataFrame(per_cutoff).select(
        "need", "cutoff", "train_cutoffs", "rows", "positives", "pr_auc_model",
        "pr_auc_rule", "ratio", "pr_auc_ceiling", "ece",
    )  # fmt: skip
    return BacktestResult(summary, by_cutoff, curves, pooled)
