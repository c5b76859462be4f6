"""Every example notebook in ``notebooks/`` executed headless with nbclient, as CI runs it:
a cell that raises fails the test, and each notebook's charts and its closing summary (要点,
an ``application/json`` output) are checked against the data it read.

Notebooks 1–3 read the analysts' database (``analyst_street``: an analysts' organisation,
its grants on three marts, one resident who declined, the file built); 4 and 5 read the
same organisation's grants through the share service served by a real uvicorn — 4 by the
JSON and Arrow endpoints at two lake snapshots (the test commits a change to the demand
heat map between them), 5 with the official Delta Sharing client and a downloaded profile.

The kernel is this interpreter's ipykernel, named by a kernel spec in a temporary
``JUPYTER_PATH`` (found before any user's or system's ``python3``), started with the
environment ``streethub notebook`` gives (no ``STREETHUB_*`` variable of the hub, JupySQL's
statistics off) plus the notebooks' own variables, in a workspace folder of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lakehouse.lake import open_lake
from lakehouse.snapshots import current_snapshot
from share_api.analysts.lock import open_locked
from share_api.analysts.notebook import NOTEBOOKS_DIR, prepare_workspace
from share_api.views import SNAPSHOT_TTL_S
from tests.share_api.conftest import AnalystStreet, LiveServer, People
from tests.share_api.test_delta_sharing_client import download_profile

KERNEL = "python3"  # the name the notebooks' metadata gives
CELL_TIMEOUT_S = 120
HEATMAP = "demand_heatmap"


@dataclass
class Change:
    """What the test committed to the demand heat map between two lake snapshots."""

    before: int
    after: int
    bumped: int  # rows whose events went up by one
    removed: int  # rows deleted
    removed_events: int


@pytest.fixture
def kernel_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``python3`` meaning this interpreter's ipykernel: a kernel spec in a temporary
    ``JUPYTER_PATH``, found before any user's or system's."""
    specs = tmp_path / "jupyter-path"
    (specs / "kernels" / KERNEL).mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (streethub)",
        "language": "python",
    }
    (specs / "kernels" / KERNEL / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(specs))
    return KERNEL


async def run(notebook: Path, env: dict[str, str], workspace: Path) -> nbformat.NotebookNode:
    """The notebook executed top to bottom in a kernel of its own (CellExecutionError, naming
    the cell, on the first that raises)."""
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workspace)}},
    )
    await client.async_execute(env=env)
    return nb


async def run_all(found: list[Path], env: dict[str, str], workspace: Path) -> dict:
    """Every notebook at once (each kernel mostly waits: ~2-3 s of a start, then cells)."""
    done = await asyncio.gather(*(run(path, env, workspace) for path in found))
    return {path.name: nb for path, nb in zip(found, done, strict=True)}


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def charts(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for out in outputs(nb))


def summary(nb: nbformat.NotebookNode) -> dict:
    """The closing summary (要点): the last ``application/json`` output."""
    found = [out["data"]["application/json"] for out in outputs(nb)
             if "application/json" in out.get("data", {})]  # fmt: skip
    assert found, "the notebook shows no summary"
    return found[-1]


def change_heatmap(street: AnalystStreet) -> Change:
    """One lake commit between two snapshots: one grid cell's rows get one more event, the
    last week of the other cells is deleted."""
    table = f'marts."{HEATMAP}"'
    with open_lake(street.service.settings) as con:
        before = current_snapshot(con)
        (grid,) = con.execute(f"SELECT min(grid_code) FROM {table}").fetchone()
        (week,) = con.execute(
            f"SELECT max(iso_week) FROM {table} WHERE grid_code <> ?", [grid]
        ).fetchone()
        (bumped,) = con.execute(
            f"SELECT count(*) FROM {table} WHERE grid_code = ?", [grid]
        ).fetchone()
        removed, removed_events = con.execute(
            f"SELECT count(*), sum(events) FROM {table} WHERE iso_week = ? AND grid_code <> ?",
            [week, grid],
        ).fetchone()
        con.execute("BEGIN")
        con.execute(f"UPDATE {table} SET events = events + 1 WHERE grid_code = ?", [grid])
        con.execute(f"DELETE FROM {table} WHERE iso_week = ? AND grid_code <> ?", [week, grid])
        con.execute("COMMIT")
        after = current_snapshot(con)
    assert after > before and bumped and removed
    return Change(before, after, bumped, removed, int(removed_events))


def analyst_figures(street: AnalystStreet) -> dict[str, tuple]:
    """What notebooks 1–3 must find, asked of the analysts' database directly."""
    con = open_locked(street.path)
    try:
        return {
            "elderly": con.execute(
                "SELECT count(*), count(DISTINCT community_code), "
                "count(*) FILTER (WHERE on_elderly_alone_register) FROM elderly_care"
            ).fetchone(),
            "appeals": con.execute(
                "SELECT count(*), sum(appeals), sum(answered_in_time) FROM appeal_sla"
            ).fetchone(),
            "heatmap": con.execute(
                "SELECT count(DISTINCT grid_code), sum(events), "
                "(SELECT grid_code FROM demand_heatmap GROUP BY 1 "
                " ORDER BY sum(events) DESC, grid_code LIMIT 1) FROM demand_heatmap"
            ).fetchone(),
        }
    finally:
        con.close()


def lake_figures(street: AnalystStreet, mart: str) -> tuple[int, int | None]:
    """Rows (and, for the heat map, events) of a mart in the lake now."""
    events = "sum(events)" if mart == HEATMAP else "NULL"
    with open_lake(street.service.settings, read_only=True) as con:
        rows, total = con.execute(f'SELECT count(*), {events} FROM marts."{mart}"').fetchone()
    return rows, total


def test_every_notebook_runs_headless(
    analyst_street: AnalystStreet,
    people: People,
    server: LiveServer,
    kernel_spec: str,
    tmp_path: Path,
) -> None:
    street = analyst_street
    found = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    assert [p.name for p in found] == sorted(CHECKS), "every notebook has its check here"
    for path in found:  # committed clean: `jupyter nbconvert --clear-output --inplace`
        cells = nbformat.read(path, as_version=4).cells
        assert not any(c.get("outputs") or c.get("execution_count") for c in cells), path.name
    change = change_heatmap(street)
    changed_at = time.monotonic()
    person = people.make(street.org, "requester", kind="analyst")
    profile = download_profile(server, person, tmp_path)
    lake_elderly, _ = lake_figures(street, "elderly_care")
    expected = analyst_figures(street)
    # the workspace `streethub notebook` makes from the caller's environment: the database's
    # copy, the startup file, the kernels' allow-listed environment (no STREETHUB_* of the
    # hub, no proxy) with the notebooks' own variables the caller set
    caller = os.environ | {
        "STREETHUB_NOTEBOOK_SHARE_URL": server.url,
        "STREETHUB_NOTEBOOK_TOKEN": person.token,
        "STREETHUB_NOTEBOOK_SNAPSHOTS": f"{change.before},{change.after}",
        "STREETHUB_NOTEBOOK_PROFILE": str(profile.profile),
    }
    workspace = prepare_workspace(tmp_path / "workspaces", street.org, street.path, environ=caller)
    # the service takes a lake snapshot as current for up to SNAPSHOT_TTL_S: 5 reads "now"
    time.sleep(max(0.0, SNAPSHOT_TTL_S - (time.monotonic() - changed_at)))
    ran = asyncio.run(run_all(found, workspace.env, workspace.notebooks))
    for name, nb in ran.items():
        assert charts(nb) >= 1, f"{name} drew no chart"

    # 1 — the analysts' copy of elderly_care, the resident who declined left out
    people_, communities, on_register = expected["elderly"]
    elderly = summary(ran["01_elderly_care.ipynb"])
    assert elderly["people"] == people_ == lake_elderly - 1
    assert (elderly["communities"], elderly["on_register"]) == (communities, on_register)
    assert 0 <= elderly["to_visit"] <= people_

    # 2 — appeal SLA per handling office
    offices, appeals, in_time = expected["appeals"]
    sla = summary(ran["02_appeal_sla.ipynb"])
    assert (sla["departments"], sla["appeals"], sla["answered_in_time"]) == (
        offices, appeals, in_time,
    )  # fmt: skip
    assert 0 <= sla["below_goal"] <= offices

    # 3 — the heat map over every grid cell
    cells, events, busiest = expected["heatmap"]
    heat = summary(ran["03_demand_heatmap.ipynb"])
    assert (heat["grid_cells"], heat["events"], heat["busiest_grid"]) == (cells, events, busiest)

    # 4 — time travel over the share service: exactly the committed change
    travel = summary(ran["04_time_travel.ipynb"])
    assert travel["grant"] == street.grants[HEATMAP]
    assert (travel["before"], travel["after"]) == (change.before, change.after)
    assert travel["rows_before"] - travel["rows_after"] == change.removed
    assert travel["only_before"] == change.bumped + change.removed
    assert travel["only_after"] == change.bumped
    assert travel["events_after"] - travel["events_before"] == change.bumped - change.removed_events

    # 5 — the official Delta Sharing client reads the grant as the lake holds it now
    rows, events_now = lake_figures(street, HEATMAP)
    shared = summary(ran["05_delta_sharing.ipynb"])
    assert shared["table"] == street.grants[HEATMAP]
    assert (shared["rows"], shared["events"]) == (rows, events_now)
    assert travel["rows_after"] == rows and shared["change_rows"] >= rows


CHECKS = (
    "01_elderly_care.ipynb",
    "02_appeal_sla.ipynb",
    "03_demand_heatmap.ipynb",
    "04_time_travel.ipynb",
    "05_delta_sharing.ipynb",
)
