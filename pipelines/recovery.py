"""Recovery after a crash: what a killed run held is given back before the next run.

A run killed with SIGKILL (an OOM kill, a pulled plug, an operator's ``kill -9``)
leaves behind what it held: its Dagster run stays STARTED and keeps its
concurrency-pool slots (with the ``lake`` pool at 1, every later run waits for the
slot forever), and it may leave a half-written landing copy (``*.part``) and the
Parquet files of a DuckLake transaction that never committed. The lake's tables
need no repair: a DuckLake commit is atomic, and the writer lock is an fcntl lock
the kernel drops with the process. The next run finishes what was landed but not
accounted (``ledger.unaccounted``: landed, not read into raw; ``staged.unstaged``:
read into raw, not through the gate; the scorecard is rewritten by every run).

What covers which case:

- **In-process runs** (``streethub run``: the main job calls ``dg.materialize``, no
  daemon). Each run carries :func:`run_tags` (pid, host, boot id and the process's
  start time, so a recycled pid is not mistaken for the run). At the start of the
  main job :func:`recover_dead_runs` marks every unfinished run whose process is
  gone as failed (``report_run_failed``) and frees its pool slots and pending steps
  (``event_log_storage.free_concurrency_slots_for_run``); it also frees slots still
  held by runs that already ended. A run without these tags (made before them, or
  by a launcher) is judged by the pid Dagster stores on its RUN_START event and that
  process's start time; such runs are assumed to run on this host (the instance is
  the local SQLite one under ``STREETHUB_HOME/dagster``). A run on another host or
  boot id that cannot be checked from here, and a live process, are never touched.
- **Runs launched by the daemon** (``streethub ui`` = ``dagster dev``). The code
  server that spawned the run worker notices its death and reports the run failed;
  ``run_monitoring`` in ``dagster.yaml`` then frees the slots of ended runs after
  ``free_slots_after_run_end_seconds`` and fails runs stuck starting or canceling.
  Dagster's default run launcher cannot check a worker's health, so if the whole
  ``dagster dev`` was killed with its workers, nothing in Dagster notices: the next
  ``streethub run`` (or a call of :func:`recover_dead_runs`) does, by the pid on the
  run's events.
- **The lake** (:func:`recover_lake`, under the writer lock so no live writer can
  own what it deletes): Parquet files that no DuckLake snapshot references (written
  by a transaction that never committed) are removed with
  ``ducklake_delete_orphaned_files``. Readers never read an untracked file, so this
  is safe with readers present. Half-written landing copies (``*.part``) are removed
  by landing itself before it lands a dataset (``landing.remove_leftovers``).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType, JobFailureData, RunFailureReason

from catalog.settings import Settings
from lakehouse.lake import ALIAS, open_lake
from lakehouse.processes import alive, started_at

log = logging.getLogger(__name__)

TAG_PID = "streethub/pid"
TAG_HOST = "streethub/host"
TAG_BOOT = "streethub/boot"
TAG_PID_START = "streethub/pid_start"  # the process's start time, clock ticks after boot

UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii").strip()
    except OSError:
        return None


def boot_id() -> str | None:
    """This boot of the machine (Linux); a pid from another boot is certainly dead."""
    return _read("/proc/sys/kernel/random/boot_id")


def _start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks after boot, None if it is gone."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
    return int(fields[19])


def run_tags() -> dict[str, str]:
    """Tags for a run executed in this process, so a later run can tell it is dead.

    Merge into ``dg.materialize(..., tags=...)`` of every in-process run.
    """
    tags = {TAG_PID: str(os.getpid()), TAG_HOST: socket.gethostname()}
    boot = boot_id()
    started = _start_ticks(os.getpid())
    if boot is not None:
        tags[TAG_BOOT] = boot
    if started is not None:
        tags[TAG_PID_START] = str(started)
    return tags


@dataclass(frozen=True)
class Verdict:
    dead: bool
    why: str


ALIVE = Verdict(False, "its process is alive")


def _tagged_verdict(tags: dict[str, str]) -> Verdict:
    pid = int(tags[TAG_PID])
    host = tags.get(TAG_HOST)
    where = f"pid {pid} on {host}"
    if host is not None and host != socket.gethostname():
        return Verdict(False, f"it runs on another host ({where}); not checkable from here")
    boot = tags.get(TAG_BOOT)
    if boot is not None and boot_id() is not None and boot != boot_id():
        return Verdict(True, f"its process ({where}) belonged to an earlier boot")
    if not alive(pid):
        return Verdict(True, f"its process ({where}) is gone")
    started = tags.get(TAG_PID_START)
    ticks = _start_ticks(pid)
    if started is not None and ticks is not None and int(started) != ticks:
        return Verdict(True, f"its process ({where}) is gone; the pid now names another")
    return ALIVE


def _untagged_verdict(instance: dg.DagsterInstance, run_id: str) -> Verdict:
    """Judge a run without our tags by the pid on its RUN_START event (if it has one)."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.RUN_START, limit=1
    ).records
    event = records[0].event_log_entry if records else None
    pid = event.dagster_event.pid if event and event.dagster_event else None
    if pid is None:
        return Verdict(False, "no process recorded for it yet")
    if not alive(pid):
        return Verdict(True, f"its process (pid {pid}) is gone")
    started = started_at(pid)
    if started is not None and started > event.timestamp + 2:  # began after the run did
        return Verdict(True, f"its process (pid {pid}) is gone; the pid now names another")
    return ALIVE


def run_verdict(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Verdict:
    """Whether an unfinished run's process is certainly gone, and why."""
    if TAG_PID in run.tags:
        return _tagged_verdict(dict(run.tags))
    return _untagged_verdict(instance, run.run_id)


def held_slot_runs(instance: dg.DagsterInstance) -> set[str]:
    """Run ids that hold a concurrency slot or wait in a pool's queue."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return set()
    keys = list(storage.get_concurrency_keys())
    infos = storage.get_concurrency_infos(keys) if keys else {}
    held = {slot.run_id for info in infos.values() for slot in info.claimed_slots}
    return held | set(storage.get_concurrency_run_ids())


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark runs whose process is gone as failed and free their pool slots; return their ids.

    Safe at any time and from any process: a run whose process is alive, or cannot
    be checked from this host, is left alone.
    """
    dead: list[str] = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=UNFINISHED)):
        run = record.dagster_run
        if run.status == dg.DagsterRunStatus.NOT_STARTED and TAG_PID not in run.tags:
            continue  # about to be launched by someone else; holds nothing
        verdict = run_verdict(instance, run)
        if not verdict.dead:
            continue
        message = (
            f"streethub recovery: {verdict.why} (killed without a word: SIGKILL, out of "
            "memory or power); marked failed and its concurrency slots freed"
        )
        log.warning("run %s: %s", run.run_id, message)
        instance.report_run_failed(
            run,
            message,
            JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
        )
        dead.append(run.run_id)
    storage = instance.event_log_storage
    for run_id in held_slot_runs(instance):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:  # also slots of runs that ended some other way
            storage.free_concurrency_slots_for_run(run_id)
    return dead


def recover_lake(settings: Settings) -> int:
    """Remove the Parquet files of DuckLake transactions a killed writer never committed.

    Takes the writer lock: no live writer can own an uncommitted file while we
    hold it. Returns how many files were removed.
    """
    with open_lake(settings) as con:
        orphans = con.execute(
            f"CALL ducklake_delete_orphaned_files('{ALIAS}', cleanup_all => true)"
        ).fetchall()
    if orphans:
        log.warning("recovery: removed %d uncommitted lake files", len(orphans))
    return len(orphans)


def recover(settings: Settings, instance: dg.DagsterInstance) -> list[str]:
    """Everything a run does before it starts: dead runs failed, slots freed, lake swept."""
    dead = recover_dead_runs(instance)
    recover_lake(settings)
    return dead
