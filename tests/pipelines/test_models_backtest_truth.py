"""``streethub models backtest`` on the need street (a simulated year, its need truth beside
the home): the registered tables with the true probabilities' PR-AUC (the ceiling) on the
backtest's own rows, the true expected grid counts scored beside the forecasts, and the
elderly alert's precision and recall against the planted events; without the simulator's
folder it says what needs it and prints the rest."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from marts.need_model.spec import NEEDS
from pipelines.cli import app
from pipelines.cli_common import console
from tests.need_street import NeedStreet
from tests.streets import copy_home

runner = CliRunner()


def rows(output: str, first: str) -> dict[str, dict[str, str]]:
    """The cells of the table whose header row starts with ``first``, by the row's first
    cell and the header's names."""
    lines = [line for line in output.splitlines() if line.count("┃") > 2 or line.count("│") > 2]
    header = next(i for i, line in enumerate(lines) if line.strip("┃ ").startswith(first))
    names = [c.strip() for c in lines[header].strip("┃").split("┃")]
    out = {}
    for line in lines[header + 1 :]:
        if "┃" in line:
            break
        cells = [c.strip() for c in line.strip("│").split("│")]
        out[cells[0]] = dict(zip(names, cells, strict=True))
    return out


def test_backtest_prints_ceiling_true_counts_and_alert_quality(
    need_street: NeedStreet, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    copy = copy_home(need_street.home, tmp_path, departments=True)
    monkeypatch.setenv("STREETHUB_HOME", str(copy.home))
    monkeypatch.setattr(console, "width", 240)  # whole names (120 when not a terminal)
    result = runner.invoke(app, ["models", "backtest"])
    print(result.output)
    assert result.exit_code == 0, result.output

    needs = rows(result.output, "need")
    assert set(needs) == set(NEEDS)
    for need, r in needs.items():
        model, ceiling = float(r["pr_auc_model"]), float(r["pr_auc_ceiling"])
        assert 0 < model <= ceiling <= 1, need
        assert r["rows_with_truth"] == r["rows"]  # the truth knows every backtest row

    grid = {m: float(r["poisson_deviance"]) for m, r in rows(result.output, "method").items()}
    assert grid["model"] < min(grid["naive"], grid["seasonal_naive"])
    assert 0 < grid["true_expected"] < min(grid["naive"], grid["seasonal_naive"])

    said = re.search(r"(\d+) planted event\(s\).*?recall ([\d.]+)", result.output, re.S)
    precision = re.search(r"precision ([\d.]+)", result.output)
    assert said and precision, result.output
    assert int(said[1]) >= 1
    assert 0 <= float(precision[1]) <= 1 and 0 <= float(said[2]) <= 1

    copy.sim_dir_abs.rename(tmp_path / "elsewhere")  # a hub without the simulator
    bare = runner.invoke(app, ["models", "backtest"])
    assert bare.exit_code == 0, bare.output
    assert "need the simulator's need truth" in bare.output
    assert "true_expected" not in bare.output and set(rows(bare.output, "need")) == set(NEEDS)
