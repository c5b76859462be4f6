"""The share service under load, against a bare FastAPI endpoint in the same run (issue 14).

Run through ``python -m bench share`` (``make bench``). On a copy of a street's home
(``$STREETHUB_BENCH_SHARE_HOME``: a home the main job ran on; the copy reads that home's
master key file, found as for the home — ``XDG_CONFIG_HOME`` or ``STREETHUB_KEY_FILE``);
unset, a street of ``RESIDENTS`` is simulated (``bench/streets.py``'s cache) and
``streethub run`` makes its lake first (minutes):

1. a grantee department with a token, and two grants made through the service's own
   functions: the *page grant* (a dataset the catalogue holds with an L3+ field, its
   catalogue masking, a row filter) and the *big grant* (the shareable dataset whose staged
   table is largest, padded in the copy to ``BIG_ROWS`` rows by repeating its rows);
2. two server processes, each ``uvicorn`` with one worker on 127.0.0.1: the share service
   (``share_api.app:create_app``) and a bare FastAPI app (:func:`baseline_app`) whose one
   ``async`` route returns the page the service served, pre-serialised, as the same bytes
   with the same media type — no token, no grant, no audit;
3. the 100-row JSON page (``GET /grants/{id}/data?format=json&limit=100``, authenticated,
   grant-filtered, audited; clients cycle over ``PAGES`` offsets) under ``CLIENTS``
   closed-loop clients (``bench/_load.py``), ``ROUNDS`` rounds alternating the bare
   endpoint and the service so both see the same machine; per concurrency: requests/s
   (median of the rounds), p50/p99 over every measured request, errors, and each server's
   CPU a request (``/proc``): on a shared machine the ratio of CPU a request is the figure
   that does not depend on how much CPU each server got;
4. the big grant downloaded whole as Arrow IPC and as Parquet (``RUNS`` each, median; the
   first also reported: it materialises the grant's prepared file, which ``streethub
   serve``'s preparer makes ahead; later runs stream that file, decrypted as it goes; the
   answer read into a table) against ``pyarrow.parquet.read_table`` of the same rows from
   a local Parquet file.

Goals (the issue's ``make bench``): at 50 clients the service ≥ 25 % of the bare
endpoint's requests/s, p99 ≤ 100 ms, 0 errors; at 200 clients 0 errors (p99 reported);
each download ≤ 1.5× the local read. ``PROFILE``: two more 50-client phases (not counted)
with the service sampled by py-spy — the thread holding the GIL (CPU), and the request
threads with their waits (wall) — summarised beside the results (``share_profile.txt``,
``bench/_profile.py``). Writes ``bench/results/share.json`` and prints each figure beside
its goal.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench._load import LoadResult, request_bytes, run_load
from bench._profile import sampled, summarise_profile
from bench._servers import HOST, ROOT, Server, cpu_seconds, fetch, serve

if TYPE_CHECKING:
    from catalog.settings import Settings

RESULTS = Path(__file__).parent / "results" / "share.json"
PROFILE_NAME = "share_profile.txt"  # beside the results file
PROFILE_WITHIN = "WorkerThread.run"  # anyio's threads: sync dependencies and handlers
HOME_ENV = "STREETHUB_BENCH_SHARE_HOME"
PAGE_ENV, MEDIA_ENV = "STREETHUB_BENCH_PAGE_FILE", "STREETHUB_BENCH_PAGE_MEDIA"
CLIENTS = (50, 200)
SECONDS, WARMUP_S, ROUNDS = 10.0, 2.0, 3
PAGE_ROWS, PAGES = 100, 10
BIG_ROWS, RUNS = 1_000_000, 3
PROFILE = True
RESIDENTS = 1_500  # the street simulated when no home is given
GOALS = {"ratio_min": 0.25, "p99_ms_max": 100.0, "errors": 0, "download_ratio_max": 1.5}


def baseline_app():
    """The bare endpoint: FastAPI, one ``async`` route on the service's data path returning
    the pre-serialised page (file ``$STREETHUB_BENCH_PAGE_FILE``) as it is."""
    from fastapi import FastAPI, Response

    body = Path(os.environ[PAGE_ENV]).read_bytes()
    media = os.environ.get(MEDIA_ENV, "application/json")
    app = FastAPI()

    @app.get("/grants/{grant_id}/data")
    async def page(grant_id: str) -> Response:
        return Response(content=body, media_type=media)

    return app


# ---------------------------------------------------------------------------- the page


def page_targets(grant_id: str, pages: int = PAGES, rows: int = PAGE_ROWS) -> list[str]:
    return [
        f"/grants/{grant_id}/data?format=json&offset={p * rows}&limit={rows}" for p in range(pages)
    ]


def load_phase(server: Server, targets: list[str], token: str | None, clients: int) -> dict:
    """One closed-loop phase against ``server``: the load's summary, with the server's and
    the load generator's CPU per request, and every latency."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reqs = [request_bytes(HOST, server.port, t, headers) for t in targets]
    server_cpu, own_cpu = cpu_seconds(server.proc.pid), time.process_time()
    result: LoadResult = run_load(
        HOST, server.port, reqs, clients=clients, seconds=SECONDS, warmup_s=WARMUP_S
    )
    server_cpu, own_cpu = cpu_seconds(server.proc.pid) - server_cpu, time.process_time() - own_cpu
    n = max(1, result.answered)  # the warm-up's answers are in the CPU too
    summary = result.summary() | {
        "server_cpu_ms_per_request": round(server_cpu * 1000 / n, 3),
        "load_cpu_ms_per_request": round(own_cpu * 1000 / n, 3),
    }
    return {"summary": summary, "latencies": result.latencies_s}


def _pooled(runs: list[dict], clients: int) -> dict:
    """The rounds of one server at one concurrency: requests/s median of the rounds,
    percentiles over every measured request of every round, errors summed."""
    lat = sorted(x for r in runs for x in r["latencies"])
    pooled = LoadResult(clients=clients, seconds=1.0, latencies_s=lat)
    return {
        "per_s": round(statistics.median(r["summary"]["per_s"] for r in runs), 1),
        "per_s_rounds": [r["summary"]["per_s"] for r in runs],
        "requests": len(lat),
        "p50_ms": round(pooled.percentile_ms(0.5), 2),
        "p99_ms": round(pooled.percentile_ms(0.99), 2),
        "max_ms": round(lat[-1] * 1000, 2) if lat else None,
        "errors": sum(r["summary"]["errors"] for r in runs),
        "error_kinds": _sum_kinds(r["summary"]["error_kinds"] for r in runs),
        "mean_body_bytes": runs[-1]["summary"]["mean_body_bytes"],
        "server_cpu_ms_per_request": round(
            statistics.median(r["summary"]["server_cpu_ms_per_request"] for r in runs), 3
        ),
    }


def _sum_kinds(kinds) -> dict:
    out: dict[str, int] = {}
    for k in kinds:
        for name, n in k.items():
            out[name] = out.get(name, 0) + n
    return out


# ---------------------------------------------------------------------------- the street


def street_home(work: Path, home: Path | None) -> Settings:
    """A copy of ``home`` and its audit witness under ``work``, or (None) a street
    simulated there with the main job run on it; its settings."""
    from catalog.settings import Settings

    if home is None:
        from bench.streets import street

        made = street(work / "street", RESIDENTS)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREETHUB_")}
        env |= {"STREETHUB_KEY_FILE": os.environ["STREETHUB_KEY_FILE"]}  # master_key_of's
        env |= {"STREETHUB_HOME": str(made.home), "STREETHUB_SIM_DIR": str(made.sim_dir)}
        env |= {"STREETHUB_SIM_AUTO": "false", "PYTHONPATH": str(ROOT)}
        exe = Path(sys.executable).parent / "streethub"
        done = subprocess.run([str(exe), "run"], cwd=ROOT, env=env, capture_output=True)
        if done.returncode not in (0, 1):  # 1: the run reported failures of the data
            raise RuntimeError(f"streethub run failed:\n{done.stderr.decode()[-3000:]}")
        return Settings(home=made.home)
    from bench.streets import copy_home

    return Settings(home=copy_home(home, work / "home"))


@contextlib.contextmanager
def master_key_of(home: Path | None, fresh: Path) -> Iterator[None]:
    """Inside: ``STREETHUB_KEY_FILE`` (for this process and its children) names the master
    key file of ``home`` itself, so its copy reads it instead of the key ring copying it
    under the copy's own id into the user's config folder on every run; without a home,
    ``fresh`` (the simulated street's own key, removed with the run). Nothing changes when
    the key is configured in the environment already."""
    from catalog.settings import Settings

    key = Settings(home=home).key_file_abs if home is not None else fresh
    if os.environ.get("STREETHUB_KEY_FILE") or (home is not None and not key.is_file()):
        yield
        return
    os.environ["STREETHUB_KEY_FILE"] = str(key)
    try:
        yield
    finally:
        os.environ.pop("STREETHUB_KEY_FILE", None)


@contextlib.contextmanager
def copied_street(home: Path | None, prefix: str) -> Iterator[tuple[Path, Settings]]:
    """A scratch folder and the street a share benchmark works on: ``home`` (else
    ``STREETHUB_BENCH_SHARE_HOME``, else a street simulated here) copied into it, with its
    master key (:func:`master_key_of`); everything removed afterwards."""
    home = home or (Path(os.environ[HOME_ENV]) if os.environ.get(HOME_ENV) else None)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        with master_key_of(home, work / "master.json"):
            yield work, street_home(work, home)


def staged_rows(settings: Settings) -> dict[str, int]:
    """Rows of each dataset's staged table, by resource (``dept.dataset``)."""
    from lakehouse.lake import open_lake
    from lakehouse.snapshots import list_tables

    with open_lake(settings, read_only=True) as con:
        tables = list_tables(con)
    return {t.replace("__", ".", 1): n for zone, t, n in tables if zone == "staged"}


def pick_resources(catalogue, rows: dict[str, int]) -> tuple[str, str]:
    """(the page grant's dataset: the shareable one with an L3+ field holding the most
    staged rows; the big grant's: the shareable one holding the most rows)."""
    from catalog.model import ShareType

    shareable = {
        f"{dept.code}.{ds.code}": ds
        for dept, ds in catalogue.datasets()
        if ds.share_type is not ShareType.not_shareable and rows.get(f"{dept.code}.{ds.code}")
    }
    sensitive = [r for r, ds in shareable.items() if any(f.level.sensitive for f in ds.fields)]
    return max(sensitive, key=rows.get), max(shareable, key=rows.get)


def pad_table(settings: Settings, resource: str, rows: int) -> int:
    """Add copies of the rows of ``resource``'s staged table (in this copy of the home)
    until it holds ``rows`` rows, in one commit; the rows it holds. Each copy ``r`` moves
    every time by ``r`` minutes and every decimal or floating value by 1 to 100 hundredths, so
    the rows are distinct as a real table's are (identical copies compress to almost
    nothing: 1 M rows of sensor readings made a 0.98 MB Parquet file, which flatters any
    download). Text columns (ciphertext among them: bound to their row's key) are copied
    as they are."""
    from lakehouse.lake import open_lake, row_count

    table = resource.replace(".", "__", 1)
    with open_lake(settings) as con:
        have = row_count(con, "staged", table)
        if have < rows:
            reps = -(-(rows - have) // have)
            columns = con.execute(f'DESCRIBE staged."{table}"').fetchall()
            moved = []
            for name, kind, *_ in columns:
                ref = f't."{name}"'
                if kind.startswith("TIMESTAMP"):
                    moved.append(f'{ref} + to_minutes(r.range + 1) AS "{name}"')
                elif kind.startswith(("DECIMAL", "DOUBLE", "FLOAT")):
                    moved.append(f'CAST({ref} + (r.range % 100 + 1) / 100 AS {kind}) AS "{name}"')
                else:
                    moved.append(f'{ref} AS "{name}"')
            con.execute(
                f'INSERT INTO staged."{table}" SELECT {", ".join(moved)} '
                f'FROM staged."{table}" t, range({reps}) r LIMIT {rows - have}'
            )
        return row_count(con, "staged", table)


# ---------------------------------------------------------------------------- downloads


def _decode(fmt: str, body: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.read_table(io.BytesIO(body))
    return pa.ipc.open_stream(body).read_all()


def download_phase(share: Server, grant_id: str, token: str, work: Path, runs: int) -> dict:
    """The whole grant as Arrow IPC and as Parquet (fetched and read into a table), ``runs``
    times each, against reading the same rows from a local Parquet file."""
    import pyarrow.parquet as pq

    seconds: dict[str, list[float]] = {"arrow": [], "parquet": [], "local_parquet": []}
    sizes: dict[str, int] = {}
    rows: dict[str, int] = {}
    local = work / "grant_rows.parquet"
    for _ in range(runs):
        for fmt in ("arrow", "parquet"):
            started = time.perf_counter()
            status, body, _, _ = fetch(share, f"/grants/{grant_id}/data?format={fmt}", token)
            if status != 200:
                raise RuntimeError(f"the {fmt} download answered {status}: {body[:300]!r}")
            table = _decode(fmt, body)
            seconds[fmt].append(time.perf_counter() - started)
            sizes[fmt], rows[fmt] = len(body), table.num_rows
            if not local.exists():
                pq.write_table(table, local)  # pyarrow's defaults (snappy)
        started = time.perf_counter()
        rows["local_parquet"] = pq.read_table(local).num_rows
        seconds["local_parquet"].append(time.perf_counter() - started)
    sizes["local_parquet"] = local.stat().st_size
    med = {k: statistics.median(v) for k, v in seconds.items()}
    return {
        "note": "the first run materialises the grant's prepared file (cold: streethub "
        "serve's preparer makes it ahead); later runs stream that file",
        "rows": rows,
        "bytes": sizes,
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "seconds_runs": {k: [round(x, 3) for x in v] for k, v in seconds.items()},
        "ratio_to_local": {
            fmt: round(med[fmt] / med["local_parquet"], 2) for fmt in ("arrow", "parquet")
        },
        "first_ratio_to_local": {
            fmt: round(seconds[fmt][0] / med["local_parquet"], 2) for fmt in ("arrow", "parquet")
        },
    }


# ---------------------------------------------------------------------------- the run


@dataclass
class Grants:
    token: str
    page_grant: str
    big_grant: str
    page_resource: str
    big_resource: str
    big_rows: int


def _row_filter(catalogue, resource: str) -> dict:
    """A row scope on the resource from its catalogue entry: its first L1 field with allowed
    values, in any of them (a real predicate of the view's SQL that keeps every valid row);
    else its first required L1 field, not null."""
    _, ds = catalogue.dataset(resource)
    plain = [f for f in ds.fields if not f.level.sensitive]
    for f in plain:
        if f.allowed_values:
            return {"field": f.name, "op": "in", "value": list(f.allowed_values)}
    field = next(f for f in plain if f.required)
    return {"field": field.name, "op": "not_null"}


def make_grants(settings: Settings, big_rows: int) -> Grants:
    """In the copied home: a grantee (a catalogue department that owns neither resource, a
    person with the requester role and a token) and the two grants, made with the service's
    own functions (expiring in a day, the rate limit at its maximum: the bench is the load)."""
    import datetime as dt

    from share_api import grants, principals
    from share_api.service import Service

    service = Service.open(settings)
    try:
        principals.sync_departments(service)
        rows = staged_rows(settings)
        page_res, big_res = pick_resources(service.catalogue, rows)
        big_rows = pad_table(settings, big_res, big_rows)
        owners = {page_res.split(".")[0], big_res.split(".")[0]}
        org = next(code for code in service.catalogue.departments if code not in owners)
        user = principals.create_user(service, org, name="share bench", roles=("requester",))
        token = principals.issue_token(service, user, label="bench").token
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        made = {}
        for res, row_filter in (
            (page_res, _row_filter(service.catalogue, page_res)),
            (big_res, None),
        ):
            masking = grants.default_masking(service.catalogue, res)
            made[res] = grants.create_grant(
                service,
                grantee_org=org,
                resource=res,
                columns=list(masking),
                row_filter=row_filter,
                masking=masking,
                expires_at=expires,
                request_id=None,
                rate_per_minute=grants.MAX_RATE_PER_MINUTE,
                actor="bench",
            )
    finally:
        service.close()
    return Grants(token, made[page_res], made[big_res], page_res, big_res, big_rows)


def page_phases(
    share: Server, base: Server, g: Grants, clients, profile: Path | None, work: Path
) -> dict:
    """Per concurrency, ``ROUNDS`` rounds of (bare endpoint, service), pooled; then, when
    ``profile`` (a path), one more service phase at the lowest concurrency under py-spy
    (not counted: sampling slows the server), summarised into that file."""
    targets = page_targets(g.page_grant)
    out = {}
    for n in clients:
        runs: dict[str, list[dict]] = {"baseline": [], "share": []}
        for _ in range(ROUNDS):
            runs["baseline"].append(load_phase(base, targets, None, n))
            runs["share"].append(load_phase(share, targets, g.token, n))
        pooled = {k: _pooled(v, n) for k, v in runs.items()}
        pooled["rounds"] = {k: [r["summary"] for r in v] for k, v in runs.items()}
        pooled["ratio"] = round(pooled["share"]["per_s"] / pooled["baseline"]["per_s"], 3)
        out[str(n)] = pooled
    if profile:
        parts = []
        for wall, title, within in (
            (False, "CPU: the thread holding the GIL, 200 samples/s", ""),
            (True, "wall: request threads, waiting too, 200 samples/s", PROFILE_WITHIN),
        ):
            raw = work / f"share_profile_{'wall' if wall else 'gil'}.raw"
            with sampled(share.proc.pid, raw, SECONDS + WARMUP_S, wall=wall):
                load_phase(share, targets, g.token, min(clients))
            parts.append(summarise_profile(raw, title, within=within))
        head = f"the share server under {min(clients)} clients (the 100-row JSON page), py-spy"
        profile.write_text(head + "\n\n" + "\n\n".join(parts) + "\n", encoding="utf-8")
    return out


def verdicts(figures: dict) -> list[str]:
    """The goals, each figure beside its goal."""
    g, lines = figures["goals"], []
    low = figures["pages"][str(min(int(k) for k in figures["pages"]))]
    s, ok = low["share"], lambda c: "met" if c else "MISSED"
    lines.append(
        f"{s['per_s']:,.0f} req/s = {low['ratio']:.1%} of the bare endpoint's "
        f"{low['baseline']['per_s']:,.0f} at {min(int(k) for k in figures['pages'])} clients "
        f"(goal ≥ {g['ratio_min']:.0%}: {ok(low['ratio'] >= g['ratio_min'])})"
    )
    lines.append(
        f"p99 {s['p99_ms']} ms (goal ≤ {g['p99_ms_max']:.0f} ms: "
        f"{ok(s['p99_ms'] <= g['p99_ms_max'])}); errors {s['errors']} (goal 0: "
        f"{ok(s['errors'] == 0)})"
    )
    cpu, bare = s["server_cpu_ms_per_request"], low["baseline"]["server_cpu_ms_per_request"]
    lines.append(
        f"server CPU a request: {cpu} ms, the bare endpoint's {bare} ms (at equal CPU the "
        f"service could reach {bare / cpu:.1%}; the goal needs ≤ {bare / g['ratio_min']:.2f} ms)"
    )
    for k, p in figures["pages"].items():
        if int(k) != min(int(x) for x in figures["pages"]):
            sh = p["share"]
            lines.append(
                f"{k} clients: {sh['per_s']:,.0f} req/s, p99 {sh['p99_ms']} ms, errors "
                f"{sh['errors']} (goal 0: {ok(sh['errors'] == 0)})"
            )
    d = figures.get("downloads")
    if d:
        for fmt, ratio in d["ratio_to_local"].items():
            lines.append(
                f"{fmt} download of {d['rows'][fmt]:,} rows: {d['seconds_median'][fmt]} s = "
                f"{ratio}× the local Parquet read ({d['seconds_median']['local_parquet']} s) "
                f"(goal ≤ {g['download_ratio_max']}×: {ok(ratio <= g['download_ratio_max'])}); "
                f"first read {d['seconds_runs'][fmt][0]} s = {d['first_ratio_to_local'][fmt]}×"
            )
    return lines


def main(
    home: Path | None = None,
    *,
    clients: tuple[int, ...] = CLIENTS,
    big_rows: int | None = None,
    runs: int | None = None,
    profile: bool | None = None,
    results: Path | None = None,
) -> dict:
    big_rows = big_rows or BIG_ROWS
    runs = runs or RUNS
    profile = PROFILE if profile is None else profile
    results = results or RESULTS
    with copied_street(home, "bench_share_") as (work, settings):
        g = make_grants(settings, big_rows)
        env = {"STREETHUB_HOME": str(settings.home_abs)}
        with serve("share", "share_api.app:create_app", env, work) as share:
            status, body, media, first_s = fetch(share, page_targets(g.page_grant)[0], g.token)
            if status != 200:
                raise RuntimeError(f"the service answered the page with {status}: {body[:300]!r}")
            page = work / "page.body"
            page.write_bytes(body)
            base_env = {PAGE_ENV: str(page), MEDIA_ENV: media}
            with serve("baseline", "bench.share:baseline_app", base_env, work) as base:
                spy = results.with_name(PROFILE_NAME) if profile else None
                pages = page_phases(share, base, g, clients, spy, work)
            downloads = download_phase(share, g.big_grant, g.token, work, runs)
    figures = {
        "page_resource": g.page_resource,
        "big_rows": g.big_rows,
        "big_resource": g.big_resource,
        "page_bytes": len(body),
        "page_media_type": media,
        "first_page_s": round(first_s, 3),
        "seconds_per_phase": SECONDS,
        "warmup_s": WARMUP_S,
        "rounds": ROUNDS,
        "cpus": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "pages": {k: {**v, "rounds": v["rounds"]} for k, v in pages.items()},
        "downloads": downloads,
        "goals": GOALS,
    }
    figures["verdicts"] = verdicts(figures)
    print("share service against a bare FastAPI endpoint (same run, one uvicorn worker each)")
    for line in figures["verdicts"]:
        print(f"  {line}")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
