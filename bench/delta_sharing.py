"""The official Delta Sharing client reading a 1 M-row grant, against ``pandas.read_parquet``
of the same rows from a local file in the same run (issue 15).

Run through ``python -m bench delta_sharing`` (``make bench``). On a copy of a street's home
(``$STREETHUB_BENCH_SHARE_HOME``, as ``bench/share.py``; unset, a simulated street):

1. the shareable dataset whose staged table is largest, padded in the copy to ``ROWS`` rows
   (``bench.share.pad_table``), and a grant of every column under the catalogue's masking
   to a department that owns it not, with a person holding an API token;
2. the share service in its own ``uvicorn`` process (``bench/_servers.py``, no preparer:
   the first read materialises); the person downloads a Delta Sharing profile from it;
3. ``delta_sharing.load_as_pandas`` of the grant's table, ``RUNS`` times: the first builds
   the version's file (cold), the later ones find it (warm, median); against
   ``pandas.read_parquet`` of the same rows written to a local Parquet file with pyarrow's
   defaults, timed between the client's loads so both see the same machine; after each
   warm load, where its time goes: the client's own read path on the local file (no HTTP)
   and the protocol's round trips made by hand.

Goal (issue 15): the warm ``load_as_pandas`` ≤ 2× the local read. Writes
``bench/results/delta_sharing.json`` and prints the figure beside its goal.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench._servers import Server, serve
from bench.share import copied_street, pad_table, pick_resources, staged_rows

if TYPE_CHECKING:
    from catalog.settings import Settings

RESULTS = Path(__file__).parent / "results" / "delta_sharing.json"
ROWS, RUNS = 1_000_000, 11  # 10 warm loads: on a shared machine 6 gave medians 1.5-2.3x apart
GOAL_RATIO = 2.0
PROFILE_ROUTE = "/delta-sharing/profile"  # POST, signed in with the API token


@dataclass
class Shared:
    token: str  # the person's API token (downloads the profile)
    grant_id: str
    resource: str
    rows: int


def make_grant(settings: Settings, rows: int) -> Shared:
    """In the copied home: the largest shareable dataset padded to ``rows`` rows, a grantee
    department owning it not, a person of it with a token, and a grant of every column
    under the catalogue's masking (made with the service's own functions)."""
    import datetime as dt

    from share_api import grants, principals
    from share_api.service import Service

    service = Service.open(settings)
    try:
        principals.sync_departments(service)
        _, resource = pick_resources(service.catalogue, staged_rows(settings))
        rows = pad_table(settings, resource, rows)
        org = next(c for c in service.catalogue.departments if c != resource.split(".")[0])
        user = principals.create_user(service, org, name="sharing bench", roles=("requester",))
        token = principals.issue_token(service, user, label="bench").token
        masking = grants.default_masking(service.catalogue, resource)
        grant_id = grants.create_grant(
            service,
            grantee_org=org,
            resource=resource,
            columns=list(masking),
            row_filter=None,
            masking=masking,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
            request_id=None,
            actor="bench",
        )
    finally:
        service.close()
    return Shared(token, grant_id, resource, rows)


def download_profile(share: Server, token: str, work: Path) -> Path:
    """The profile the service hands the person, saved as a ``.share`` file."""
    import httpx

    answer = httpx.post(
        f"http://127.0.0.1:{share.port}{PROFILE_ROUTE}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    if answer.status_code != 200:
        raise RuntimeError(f"the profile download answered {answer.status_code}: {answer.text}")
    path = work / "bench.share"
    path.write_text(answer.text, encoding="utf-8")
    return path


def table_url(profile: Path, grant_id: str) -> str:
    import delta_sharing

    for t in delta_sharing.SharingClient(str(profile)).list_all_tables():
        if t.name == grant_id:
            return f"{profile}#{t.share}.{t.schema}.{t.name}"
    raise RuntimeError("the grant's table is not in the recipient's listing")


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def raw_calls(profile: Path, url: str) -> dict:
    """What one load costs in round trips, made by hand with one HTTP client: the
    ``/metadata`` and ``/query`` calls and a whole GET of each served file (seconds), with
    the files' count and bytes."""
    import httpx

    held = json.loads(profile.read_text(encoding="utf-8"))
    share, schema, table = url.rsplit("#", 1)[1].split(".")
    base = f"{held['endpoint']}/shares/{share}/schemas/{schema}/tables/{table}"
    with httpx.Client(headers={"Authorization": f"Bearer {held['bearerToken']}"}) as http:
        meta_s, _ = _timed(lambda: http.get(f"{base}/metadata").raise_for_status())
        query_s, answer = _timed(lambda: http.post(f"{base}/query", json={}).raise_for_status())
        lines = [json.loads(line) for line in answer.text.splitlines()]
        served = [line["file"] for line in lines if "file" in line]
        files_s, sizes = _timed(lambda: [len(http.get(f["url"]).content) for f in served])
    return {"metadata_s": meta_s, "query_s": query_s, "files_get_s": files_s,
            "files": len(served), "bytes": sum(sizes)}  # fmt: skip


def client_path(local: Path):
    """What the 1.4.2 client does with a served file, on the local copy (no HTTP): its
    ``ParquetFile`` open, ``dataset(...).to_table()``, single-threaded ``to_pandas`` with its
    flags, the concat and the column reselection (``delta_sharing/reader.py``)."""
    import pandas as pd
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    pq.ParquetFile(local)
    table = ds.dataset(local, format="parquet").to_table()
    frame = table.to_pandas(
        date_as_object=True, use_threads=False, split_blocks=False, self_destruct=True
    )
    merged = pd.concat([frame], axis=0, ignore_index=True, copy=False)
    return merged[list(merged.columns)]


def load_phase(url: str, profile: Path, work: Path, runs: int) -> dict:
    """``load_as_pandas`` ``runs`` times (the first cold) against ``pandas.read_parquet`` of
    the same rows from a local file, alternated; after each warm load, the round trips of
    :func:`raw_calls` and :func:`client_path` on the local file (where the client's time
    goes: its own conversion, or HTTP)."""
    import delta_sharing
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    seconds: dict[str, list[float]] = {"load_as_pandas": [], "local_read_parquet": []}
    seconds["client_path_local"] = []
    rows: dict[str, int] = {}
    raw: list[dict] = []
    local = work / "grant_rows.parquet"
    for i in range(runs):
        took, frame = _timed(lambda: delta_sharing.load_as_pandas(url))
        seconds["load_as_pandas"].append(took)
        rows["load_as_pandas"] = len(frame)
        if not local.exists():
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), local)
        del frame
        took, frame = _timed(lambda: pd.read_parquet(local))
        seconds["local_read_parquet"].append(took)
        rows["local_read_parquet"] = len(frame)
        del frame
        if i:
            raw.append(raw_calls(profile, url))
            seconds["client_path_local"].append(_timed(lambda: client_path(local))[0])
    warm = statistics.median(seconds["load_as_pandas"][1:])
    local_s = statistics.median(seconds["local_read_parquet"])
    keys = ("metadata_s", "query_s", "files_get_s")
    return {
        "note": "the first load materialises the grant's version (cold); later ones find it",
        "rows": rows,
        "local_bytes": local.stat().st_size,
        "served": {"files": raw[-1]["files"], "bytes": raw[-1]["bytes"]},
        "seconds_runs": {k: [round(x, 3) for x in v] for k, v in seconds.items()},
        "seconds_median": {
            "load_as_pandas_warm": round(warm, 3),
            "local_read_parquet": round(local_s, 3),
            "client_path_local": round(statistics.median(seconds["client_path_local"]), 3),
        },
        "round_trips_median_s": {k: round(statistics.median(r[k] for r in raw), 3) for k in keys},
        "ratio_to_local": round(warm / local_s, 2),
        "first_ratio_to_local": round(seconds["load_as_pandas"][0] / local_s, 2),
    }


def verdicts(figures: dict) -> list[str]:
    d = figures["load"]
    ratio, goal = d["ratio_to_local"], figures["goals"]["load_ratio_max"]
    trips = d["round_trips_median_s"]
    return [
        f"load_as_pandas of {d['rows']['load_as_pandas']:,} rows: "
        f"{d['seconds_median']['load_as_pandas_warm']} s = {ratio}× pandas.read_parquet of "
        f"the local file ({d['seconds_median']['local_read_parquet']} s) "
        f"(goal ≤ {goal}×: {'met' if ratio <= goal else 'MISSED'}); first (cold) load "
        f"{d['seconds_runs']['load_as_pandas'][0]} s = {d['first_ratio_to_local']}×",
        f"the client's read path on the local file (no HTTP): "
        f"{d['seconds_median']['client_path_local']} s; "
        f"round trips by hand: /metadata {trips['metadata_s']} s, /query {trips['query_s']} s, "
        f"{d['served']['files']} file(s) of {d['served']['bytes']:,} bytes fetched whole in "
        f"{trips['files_get_s']} s",
    ]


def main(
    home: Path | None = None,
    *,
    rows: int | None = None,
    runs: int | None = None,
    results: Path | None = None,
) -> dict:
    rows = rows or ROWS
    runs = max(2, runs or RUNS)
    results = results or RESULTS
    with copied_street(home, "bench_ds_") as (work, settings):
        shared = make_grant(settings, rows)
        env = {"STREETHUB_HOME": str(settings.home_abs)}
        with serve("share", "share_api.app:create_app", env, work) as share:
            profile = download_profile(share, shared.token, work)
            load = load_phase(table_url(profile, shared.grant_id), profile, work, runs)
    return report(shared, runs, load, results)


def report(shared: Shared, runs: int, load: dict, results: Path) -> dict:
    """The figures with their verdict, printed and written to ``results``."""
    figures = {"resource": shared.resource, "rows": shared.rows, "runs": runs, "load": load}
    figures |= {"cpus": os.cpu_count(), "load_average_after": list(os.getloadavg())}
    figures |= {"goals": {"load_ratio_max": GOAL_RATIO}}
    figures["verdicts"] = verdicts(figures)
    text = json.dumps(figures, indent=2, ensure_ascii=False)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text + "\n", encoding="utf-8")
    print("the delta-sharing client's load_as_pandas against a local pandas.read_parquet")
    print("\n".join(f"  {v}" for v in figures["verdicts"]))
    return figures


if __name__ == "__main__":
    main()
