"""A 1 M-row grant's whole-view download served from its materialised file (issue 14's
download goal, issue 15's files), against a local Parquet read of the same rows, same run.

Run through ``python -m bench share_files``. On a copy of a street's home
(``$STREETHUB_BENCH_SHARE_HOME``, as ``bench/share.py``; unset, a simulated street) with
``bench/share.py``'s grants: the *big grant* is the shareable dataset with the most staged
rows, padded in the copy to ``BIG_ROWS`` rows. Then, in this process on the service:

1. **cold**: ``files.prepared_download`` of the big grant's current snapshot with nothing
   made yet — it materialises the version (builds the grant's view, writes the encrypted
   Parquet) and streams it; then the first Arrow download (its IPC stream made beside the
   Parquet from it);
2. **prepared**: ``RUNS`` downloads of each format on a *fresh* service (nothing kept in
   memory: no view, no page; its lake open and the grant's current version worked out
   first, as the preparer of a running server has) — the file decrypted as it streams, the bytes read into a table, as a client does;
3. **local**: ``pyarrow.parquet.read_table`` of the same rows from a local Parquet file;
4. **over HTTP**: the share service in a uvicorn child (``bench/_servers.py``) answering
   ``GET /grants/{id}/data?format=…`` (the data route serves prepared files where it asks
   ``prepared_download``; else it builds the view: the first download says which).

Goal (issue 14): each prepared download ≤ 1.5× the local read. Writes
``bench/results/share_files.json`` and prints each figure beside its goal.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench._servers import cpu_seconds, fetch, serve
from bench.share import BIG_ROWS, copied_street, make_grants

RESULTS = Path(__file__).parent / "results" / "share_files.json"
RUNS = 5
GOAL_RATIO = 1.5
FORMATS = ("parquet", "arrow")


def _decode(fmt: str, body: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.read_table(io.BytesIO(body))
    return pa.ipc.open_stream(body).read_all()


def _timed(run: Callable[[], object], pid: int | None = None) -> tuple[float, float, object]:
    """(wall s, CPU s — this process's, plus server ``pid``'s when given —, result)."""
    other = cpu_seconds(pid) if pid else 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    cpu = time.process_time() - cpu + ((cpu_seconds(pid) - other) if pid else 0.0)
    return time.perf_counter() - wall, cpu, out


def _download(service, grant, fmt: str) -> tuple[int, bool]:
    """(rows, served from a file) of one whole-view download read into a table: the
    prepared file when there is one, else the view (as the data route does)."""
    from share_api.sharing.files import prepared_download
    from share_api.views import grant_view, pick_snapshot

    snapshot = pick_snapshot(service, None)
    got = prepared_download(service, grant, snapshot, "department", fmt)
    if got is not None:
        body = b"".join(got.chunks)
    else:
        body = grant_view(service, grant, snapshot=snapshot).serialised(fmt, 0, None)[0]
    return _decode(fmt, body).num_rows, got is not None


def _summary(runs: list[tuple[float, float]], local: list[tuple[float, float]]) -> dict:
    wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    lwall, lcpu = statistics.median(r[0] for r in local), statistics.median(r[1] for r in local)
    return {
        "wall_s": [round(r[0], 3) for r in runs],
        "cpu_s": [round(r[1], 3) for r in runs],
        "wall_median_s": round(wall, 3),
        "cpu_median_s": round(cpu, 3),
        "ratio_to_local": round(wall / lwall, 2),
        "cpu_ratio_to_local": round(cpu / lcpu, 2),
    }


def in_process(settings, grant_id: str, work: Path) -> dict:
    """Cold, prepared and local reads of the big grant (see the module docstring); each run
    of the prepared downloads next to a local read, so both see the same machine."""
    import pyarrow.parquet as pq

    from share_api.grants import get_grant
    from share_api.service import Service
    from share_api.sharing.versions import current_version
    from share_api.views import grant_view

    cold: dict[str, dict] = {}
    prepared: dict[str, list] = {fmt: [] for fmt in FORMATS}
    local_runs: list[tuple[float, float]] = []
    local = work / "grant_rows.parquet"
    service = Service.open(settings)
    try:
        grant = get_grant(service, grant_id)
        for fmt in FORMATS:
            wall, cpu, (rows, from_file) = _timed(partial(_download, service, grant, fmt))
            cold[fmt] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "file": from_file}
        pq.write_table(grant_view(service, grant).table, local)  # pyarrow's defaults (snappy)
    finally:
        service.close()
    for _ in range(RUNS):
        service = Service.open(settings)  # fresh: nothing of the grant kept in memory
        try:
            grant = get_grant(service, grant_id)
            # what a running server has done already: its lake open, and its preparer's
            # pass (the grant's current version worked out); its view is not kept
            current_version(service, grant, "department")
            for fmt in FORMATS:
                wall, cpu, (rows, from_file) = _timed(partial(_download, service, grant, fmt))
                if not from_file:
                    raise RuntimeError(f"the {fmt} download was not served from a file")
                prepared[fmt].append((wall, cpu))
        finally:
            service.close()
        wall, cpu, _ = _timed(lambda: pq.read_table(local))
        local_runs.append((wall, cpu))
    lwall = statistics.median(r[0] for r in local_runs)
    return {
        "rows": rows,
        "local_parquet_bytes": local.stat().st_size,
        "local": _summary(local_runs, local_runs),
        "cold": {
            f: {**c, "ratio_to_local": round(c["wall_s"] / lwall, 2)} for f, c in cold.items()
        },
        "prepared": {fmt: _summary(runs, local_runs) for fmt, runs in prepared.items()},
    }


def _idle(pid: int, quiet_s: float = 0.5, within_s: float = 60.0) -> None:
    """Wait until process ``pid`` has used next to no CPU for ``quiet_s`` (the server's
    start-up work done: it loads the text scrubber's dictionary in a thread)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(quiet_s)
        if cpu_seconds(pid) - before < 0.02:
            return


def over_http(settings, g, work: Path) -> dict:
    """Whole-view downloads from the service in a uvicorn child (the files made already),
    fetched and read into a table, each run next to a local read; CPU is the client's and
    the server's. A JSON page of the other grant first, then the server idle: warmed up."""
    import pyarrow.parquet as pq

    env = {"STREETHUB_HOME": str(settings.home_abs)}
    runs: dict[str, list] = {fmt: [] for fmt in FORMATS}
    local_runs: list[tuple[float, float]] = []
    local = work / "grant_rows.parquet"
    with serve("share", "share_api.app:create_app", env, work) as share:
        fetch(share, f"/grants/{g.page_grant}/data?limit=100", g.token)
        _idle(share.proc.pid)

        def download(fmt: str) -> None:
            status, body, _, _ = fetch(share, f"/grants/{g.big_grant}/data?format={fmt}", g.token)
            if status != 200:
                raise RuntimeError(f"the {fmt} download answered {status}")
            _decode(fmt, body)

        for _ in range(RUNS):
            for fmt in FORMATS:
                wall, cpu, _ = _timed(partial(download, fmt), share.proc.pid)
                runs[fmt].append((wall, cpu))
            wall, cpu, _ = _timed(lambda: pq.read_table(local))
            local_runs.append((wall, cpu))
    return {
        "local": _summary(local_runs, local_runs),
        "downloads": {fmt: _summary(r, local_runs) for fmt, r in runs.items()},
    }


def verdicts(figures: dict) -> list[str]:
    """Each download's median beside the goal (wall, and CPU on a shared machine)."""
    p, h = figures["in_process"], figures.get("over_http")
    lines = []
    for where, block, local in (
        ("prepared, in process", p["prepared"], p["local"]),
        ("over HTTP", h["downloads"] if h else {}, h["local"] if h else {}),
    ):
        for fmt, d in block.items():
            met = "met" if d["ratio_to_local"] <= GOAL_RATIO else "MISSED"
            lines.append(
                f"{fmt} download of {p['rows']:,} rows, {where}: {d['wall_median_s']} s = "
                f"{d['ratio_to_local']}× the local Parquet read ({local['wall_median_s']} s) "
                f"(goal ≤ {GOAL_RATIO}×: {met}); CPU {d['cpu_median_s']} s = "
                f"{d['cpu_ratio_to_local']}× the local read's"
            )
    for fmt, c in p["cold"].items():
        lines.append(
            f"{fmt}, cold (materialised on the way): {c['wall_s']} s = {c['ratio_to_local']}×"
        )
    return lines


def main(home: Path | None = None, *, big_rows: int | None = None, results: Path | None = None):
    results = results or RESULTS
    with copied_street(home, "bench_files_") as (work, settings):
        g = make_grants(settings, big_rows or BIG_ROWS)
        figures = {"big_resource": g.big_resource, "big_rows": g.big_rows}
        figures["in_process"] = in_process(settings, g.big_grant, work)
        figures["over_http"] = over_http(settings, g, work)
    figures |= {
        "runs": RUNS,
        "cpus": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "goal_ratio": GOAL_RATIO,
    }
    figures["verdicts"] = verdicts(figures)
    head = "a 1 M-row grant's download from its materialised file against a local Parquet read"
    print(head, *(f"  {line}" for line in figures["verdicts"]), sep="\n")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
