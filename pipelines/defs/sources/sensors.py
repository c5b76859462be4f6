"""A sensor per file-delivering department, watching ``STREETHUB_HOME/inbox/<dept>/``.

It lists the folder with landing's own listing (:func:`scan_inbox`: lstat only,
nothing opened) and starts one run of the department's ingest job when a file
that is **new** — landing's and the main job's one notion
(:func:`pipelines.ingest.inbox.new_entries`: a file whose signature the ledger
already has is not new, so after the main job has landed the inbox no sensor
asks for a run) — has **settled** (size and mtime stable for
``settle_seconds``: old enough, or seen unchanged at the previous evaluation).
A file still being written is remembered as pending and asked about again at
the next tick; a file asked for is not asked for again while its run has not
landed it. Refused entries (links, devices …) not yet accounted count as new,
so that a run accounts for them; names no dataset expects start no run (the
sensor warns about each once, escaped).

Cursor: ``{"pending": {name: [size, mtime_ns, first_seen_ns]}, "requested": {name:
[size, mtime_ns]}, "unmatched": [name, …]}``.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg

from catalog.errors import shown
from catalog.loader import get_catalogue
from catalog.model import Department
from catalog.settings import Settings, get_settings
from lakehouse.lake import open_lake
from pipelines.defs.sources.jobs import dept_files_job, file_datasets
from pipelines.ingest.inbox import known_keys, new_entries, scan_inbox

Sig = list[int]  # [size, mtime_ns]


def _read_cursor(raw: str | None) -> tuple[dict[str, Sig], dict[str, list[int]], list[str]]:
    state = json.loads(raw) if raw else {}
    if state and "requested" not in state:  # the first cursor format: {name: sig}
        return state, {}, []
    return state.get("requested", {}), state.get("pending", {}), state.get("unmatched", [])


def ledger_keys(settings: Settings, dept: str) -> set[str]:
    """What the ledger has dealt with in the department's inbox (nothing: no lake yet)."""
    meta = settings.lake_metadata
    if meta.startswith("sqlite:") and not Path(meta.removeprefix("sqlite:")).exists():
        return set()
    with open_lake(settings, read_only=True) as con:
        return known_keys(con, dept)


def evaluate_inbox(
    settings: Settings, dept: Department, cursor: str | None
) -> tuple[list[str], list[str], str]:
    """(new settled names to request a run for, names still settling, next cursor).

    ``pending`` remembers each young file's signature and when it was first seen
    so: a file unchanged for the settle period is settled even if its mtime lies
    in the future.
    """
    requested, pending, _ = _read_cursor(cursor)
    scan = scan_inbox(settings, dept.code, file_datasets(dept))
    settle_ns = settings.settle_seconds * 1e9
    now: dict[str, Sig] = {}
    young: dict[str, list[int]] = {}
    for entry in new_entries(scan, ledger_keys(settings, dept.code)):
        sig = [entry.sig.size, entry.sig.mtime_ns]
        seen = pending.get(entry.name)
        first_ns = seen[2] if seen and seen[:2] == sig else scan.taken_ns
        if scan.settled(entry, settings) or scan.taken_ns - first_ns >= settle_ns:
            now[entry.name] = sig
        else:
            young[entry.name] = [*sig, first_ns]
    new = sorted(name for name, sig in now.items() if requested.get(name) != sig)
    state = {"requested": now, "pending": young, "unmatched": scan.unmatched}
    return new, sorted(young), json.dumps(state, sort_keys=True)


def build_inbox_sensor(dept: Department) -> dg.SensorDefinition:
    job = dept_files_job(dept)

    @dg.sensor(
        name=f"inbox_{dept.code}",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"New files from {dept.name_zh} in inbox/{dept.code}/, once settled",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        new, settling, cursor = evaluate_inbox(get_settings(), dept, context.cursor)
        warned = set(_read_cursor(context.cursor)[2])
        unexpected = [n for n in json.loads(cursor)["unmatched"] if n not in warned]
        if unexpected:
            context.log.warning(
                f"inbox/{dept.code}/ holds {len(unexpected)} new file(s) no dataset's pattern "
                "matches (not landed): " + ", ".join(shown(n) for n in unexpected[:20])
            )
        if settling:
            context.log.info(
                f"inbox/{dept.code}/: {len(settling)} file(s) still settling: "
                + ", ".join(shown(n) for n in settling[:20])
            )
        if not new:
            skip = f"no new settled files in inbox/{dept.code}/"
            empty = {"pending": {}, "requested": {}, "unmatched": []}
            if cursor == (context.cursor or json.dumps(empty, sort_keys=True)):
                return dg.SkipReason(skip)
            return dg.SensorResult(skip_reason=skip, cursor=cursor)
        state = json.loads(cursor)["requested"]
        key = json.dumps([(n, state[n]) for n in new], ensure_ascii=True)
        run_key = hashlib.sha256(key.encode()).hexdigest()
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=run_key, tags={"files": str(len(new))})],
            cursor=cursor,
        )

    return _sensor


@dg.definitions
def inbox_sensors() -> dg.Definitions:
    cat = get_catalogue(get_settings().catalog_dir)
    depts = [d for d in cat.departments.values() if file_datasets(d)]
    return dg.Definitions(sensors=[build_inbox_sensor(d) for d in depts])
