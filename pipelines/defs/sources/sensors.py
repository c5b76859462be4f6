"""A sensor per file-delivering department, watching ``STREETHUB_HOME/inbox/<dept>/``.

It lists the folder with landing's own listing (:func:`scan_inbox`: lstat only,
nothing opened) and starts one run of the department's ingest job when a file
that is new or changed has **settled** (size and mtime stable for
``settle_seconds``: old enough, or seen unchanged at the previous evaluation).
A file still being written is remembered as pending and asked about again at
the next tick. Refused entries (links, devices …) and unexpected names count as
new too, so that the run accounts for them or warns about them. Landing is
idempotent on the file's hash, so a sensor firing twice adds nothing.

Cursor: ``{"pending": {name: [size, mtime_ns, first_seen_ns]}, "requested": {name: [size, mtime_ns]}}``.
"""

import hashlib
import json

import dagster as dg

from catalog.errors import shown
from catalog.loader import get_catalogue
from catalog.model import Department
from catalog.settings import Settings, get_settings
from pipelines.defs.sources.jobs import dept_files_job, file_datasets
from pipelines.ingest.inbox import scan_inbox

Sig = list[int]  # [size, mtime_ns]


def _read_cursor(raw: str | None) -> tuple[dict[str, Sig], dict[str, list[int]]]:
    state = json.loads(raw) if raw else {}
    if state and "requested" not in state:  # the first cursor format: {name: sig}
        return state, {}
    return state.get("requested", {}), state.get("pending", {})


def evaluate_inbox(
    settings: Settings, dept: Department, cursor: str | None
) -> tuple[list[str], list[str], str]:
    """(new settled names to request a run for, names still settling, next cursor).

    ``pending`` remembers each young file's signature and when it was first seen
    so: a file unchanged for the settle period is settled even if its mtime lies
    in the future.
    """
    requested, pending = _read_cursor(cursor)
    scan = scan_inbox(settings, dept.code, file_datasets(dept))
    settle_ns = settings.settle_seconds * 1e9
    now: dict[str, Sig] = {}
    young: dict[str, list[int]] = {}
    for entry in scan.entries:
        sig = [entry.sig.size, entry.sig.mtime_ns]
        seen = pending.get(entry.name)
        first_ns = seen[2] if seen and seen[:2] == sig else scan.taken_ns
        if scan.settled(entry, settings) or scan.taken_ns - first_ns >= settle_ns:
            now[entry.name] = sig
        else:
            young[entry.name] = [*sig, first_ns]
    for name in scan.unmatched:  # a new unexpected name gets its warning in a run
        now.setdefault(name, [0, 0])
    new = sorted(name for name, sig in now.items() if requested.get(name) != sig)
    state = {"requested": now, "pending": young}
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
        if settling:
            context.log.info(
                f"inbox/{dept.code}/: {len(settling)} file(s) still settling: "
                + ", ".join(shown(n) for n in settling[:20])
            )
        if not new:
            skip = f"no new settled files in inbox/{dept.code}/"
            if cursor == (context.cursor or json.dumps({"pending": {}, "requested": {}})):
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
