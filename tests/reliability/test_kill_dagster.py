"""A Dagster run SIGKILLed inside an asset keeps the ``lake`` pool's one slot; recovery frees it.

The slow test runs ``dg.materialize`` of one dataset's landing, raw and staged assets in a
child process, as the main job does (``run_tags()``, the instance from
``prepare_dagster_home``), SIGKILLed at ``raw.before_commit`` (inside the raw asset, slot
held). It then shows the slot still claimed by the dead run, a second run waiting for it
(the hang of issue 9: killed after it has waited), ``recover_dead_runs`` failing both and
freeing the pool, and a third run — starting, like the main job, with ``recover`` —
finishing within a timeout with every delivery of the dataset accounted and gated.

The fast tests check ``recover_dead_runs`` against hand-made run records: a run whose
process is alive (this one), on another host, or not yet known is never touched; a dead
pid, a recycled pid, an earlier boot and a dead pid on an untagged run's RUN_START event
are failed; slots of ended runs are given back, slots of live runs kept.

Run as a file (``python test_kill_dagster.py HOME DATASET LABEL [--recover]``) it is the
child: one materialisation, exit code 0 when it succeeded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType

from catalog.loader import load_catalogue
from catalog.model import ConnectorKind
from catalog.settings import Settings
from lakehouse.lake import ALIAS, open_lake
from lakehouse.processes import started_at
from pipelines.ingest.ledger import unaccounted
from pipelines.ingest.staged import unstaged
from pipelines.instance import prepare_dagster_home
from pipelines.recovery import (
    TAG_BOOT,
    TAG_HOST,
    TAG_PID,
    TAG_PID_START,
    recover,
    recover_dead_runs,
    run_tags,
)

POOL = "lake"
LABEL = "streethub/test"
CHILD_TIMEOUT_S = 240


def child(home: Path, dataset: str, label: str, recover_first: bool) -> int:
    """One materialisation of a dataset's landing → raw → staged, as the main job runs it."""
    from pipelines.defs.sources.assets import build_dataset_assets
    from pipelines.resources import LakeResource

    settings = Settings(home=home).ensure_dirs()
    prepare_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    if recover_first:
        recover(settings, instance)
    dept, ds = load_catalogue(settings.catalog_dir).dataset(dataset)
    result = dg.materialize(
        build_dataset_assets(dept, ds),  # one step: landing, raw, staged and their checks
        instance=instance,
        resources={"lake": LakeResource()},
        tags={LABEL: label, **run_tags()},
        raise_on_error=False,
    )
    return 0 if result.success else 1


# -- helpers -----------------------------------------------------------------------------


def child_cmd(home: Path, dataset: str, label: str, recover_first: bool) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), str(home), dataset, label]
    return cmd + (["--recover"] if recover_first else [])


def child_env(home: Path, kill_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STREETHUB_KILL_AT"}
    env["STREETHUB_HOME"] = str(home)  # the LakeResource reads the settings from here
    if kill_at:
        env["STREETHUB_KILL_AT"] = kill_at
    return env


def runs_labelled(instance: dg.DagsterInstance, label: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={LABEL: label})))


def a_csv_dataset(settings: Settings) -> str:
    for dept, ds in load_catalogue(settings.catalog_dir).datasets():
        if ds.delivery.kind is ConnectorKind.csv:
            return f"{dept.code}.{ds.code}"
    raise AssertionError("the catalogue has no CSV dataset")


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """A Dagster instance with streethub's dagster.yaml in a temporary home."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored after the test
    prepare_dagster_home(Settings(home=tmp_path / "home"))
    with dg.DagsterInstance.get() as inst:
        yield inst


def add_run(
    instance: dg.DagsterInstance,
    tags: dict[str, str] | None = None,
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.STARTED,
    start_pid: int | None = None,
    start_event_at: float | None = None,
) -> str:
    from dagster._core.utils import make_new_run_id

    run = instance.add_run(
        dg.DagsterRun(job_name="probe", run_id=make_new_run_id(), status=status, tags=tags or {})
    )
    if start_pid is not None:
        event = DagsterEvent(DagsterEventType.RUN_START.value, "probe", pid=start_pid)
        instance.report_dagster_event(event, run_id=run.run_id, timestamp=start_event_at)
    return run.run_id


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


# -- fast: what recovery touches and what it leaves alone --------------------------------


def test_recovery_leaves_live_and_uncheckable_runs_alone(instance: dg.DagsterInstance):
    gone = dead_pid()
    alive = add_run(instance, run_tags())
    elsewhere = add_run(instance, {**run_tags(), TAG_PID: str(gone), TAG_HOST: "another-host"})
    untagged_alive = add_run(instance, start_pid=os.getpid())
    not_yet_known = add_run(instance, status=dg.DagsterRunStatus.STARTING)
    queued_by_someone = add_run(instance, status=dg.DagsterRunStatus.NOT_STARTED)

    assert recover_dead_runs(instance) == []
    for run_id in (alive, elsewhere, untagged_alive, not_yet_known):
        assert status(instance, run_id) in (
            dg.DagsterRunStatus.STARTED,
            dg.DagsterRunStatus.STARTING,
        )
    assert status(instance, queued_by_someone) == dg.DagsterRunStatus.NOT_STARTED


def test_recovery_fails_runs_whose_process_is_gone(instance: dg.DagsterInstance):
    gone = dead_pid()
    mine = run_tags()
    dead = {
        "dead pid": add_run(instance, {**mine, TAG_PID: str(gone)}),
        "recycled pid": add_run(instance, {**mine, TAG_PID_START: "1"}),
        "earlier boot": add_run(instance, {**mine, TAG_BOOT: "an-earlier-boot"}),
        "untagged, dead pid on RUN_START": add_run(instance, start_pid=gone),
        # the pid on its RUN_START names a live process begun after it: this one
        "untagged, recycled pid": add_run(
            instance, start_pid=os.getpid(), start_event_at=started_at(os.getpid()) - 3600
        ),
        "never started, dead": add_run(
            instance, {**mine, TAG_PID: str(gone)}, dg.DagsterRunStatus.NOT_STARTED
        ),
    }
    alive = add_run(instance, mine)

    failed = recover_dead_runs(instance)

    assert sorted(failed) == sorted(dead.values())
    for why, run_id in dead.items():
        assert status(instance, run_id) == dg.DagsterRunStatus.FAILURE, why
    assert status(instance, alive) == dg.DagsterRunStatus.STARTED
    assert recover_dead_runs(instance) == []  # once is enough


def test_recovery_frees_slots_of_ended_runs_and_keeps_live_ones(instance: dg.DagsterInstance):
    storage = instance.event_log_storage
    storage.set_concurrency_slots(POOL, 2)
    ended = add_run(instance, run_tags(), dg.DagsterRunStatus.FAILURE)
    alive = add_run(instance, run_tags())
    storage.claim_concurrency_slot(POOL, ended, "raw_step")
    storage.claim_concurrency_slot(POOL, alive, "raw_step")

    recover_dead_runs(instance)

    holders = {s.run_id for s in storage.get_concurrency_info(POOL).claimed_slots}
    assert holders == {alive}


# -- slow: a real run killed inside an asset ---------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_dagster_run_gives_its_pool_slot_back(
    reliability_street, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from tests.reliability.conftest import fresh_home

    started = time.monotonic()
    settings = fresh_home(reliability_street, tmp_path / "home")
    home = settings.home_abs
    dataset = a_csv_dataset(settings)

    # 1. a run killed inside the raw asset, after its rows were inserted, before COMMIT
    killed = subprocess.run(
        child_cmd(home, dataset, "killed", recover_first=False),
        env=child_env(home, "raw.before_commit"),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    assert killed.returncode == -9, (
        f"not SIGKILLed (exit {killed.returncode}): {killed.stderr[-800:]}"
    )

    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        (dead_run,) = runs_labelled(instance, "killed")
        assert dead_run.status == dg.DagsterRunStatus.STARTED  # nobody told Dagster
        info = storage.get_concurrency_info(POOL)
        assert info.limit == 1
        assert {s.run_id for s in info.claimed_slots} == {dead_run.run_id}  # the slot is held

        # 2. without recovery the next run waits for that slot (killed once it has waited)
        waiting = subprocess.Popen(
            child_cmd(home, dataset, "blocked", recover_first=False),
            env=child_env(home, None),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline, seen_at = time.monotonic() + CHILD_TIMEOUT_S, None
            while time.monotonic() < deadline and waiting.poll() is None:
                blocked = runs_labelled(instance, "blocked")
                pending = storage.get_concurrency_info(POOL).pending_steps
                if blocked and any(p.run_id == blocked[0].run_id for p in pending):
                    seen_at = seen_at or time.monotonic()
                    if time.monotonic() - seen_at > 5:
                        break
                time.sleep(0.5)
            assert waiting.poll() is None, "the second run ended although the slot was held"
            assert seen_at is not None, "the second run never queued for the lake slot"
            waited = time.monotonic() - seen_at
        finally:
            waiting.kill()
            waiting.wait()
        (blocked_run,) = runs_labelled(instance, "blocked")
        assert not instance.get_records_for_run(
            blocked_run.run_id, of_type=DagsterEventType.STEP_SUCCESS
        ).records, "the blocked run did work while the slot was held"

        # 3. recovery: both dead runs failed, the slot and the queued step given back
        recovered = recover_dead_runs(instance)
        assert sorted(recovered) == sorted([dead_run.run_id, blocked_run.run_id])
        for run_id in recovered:
            assert status(instance, run_id) == dg.DagsterRunStatus.FAILURE
        info = storage.get_concurrency_info(POOL)
        assert not info.claimed_slots and not info.pending_steps

        # 4. the next run, starting like the main job with recover(), finishes
        t0 = time.monotonic()
        final = subprocess.run(
            child_cmd(home, dataset, "next", recover_first=True),
            env=child_env(home, None),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        assert final.returncode == 0, f"the next run failed: {final.stderr[-800:]}"
        next_s = time.monotonic() - t0
        (next_run,) = runs_labelled(instance, "next")
        assert next_run.status == dg.DagsterRunStatus.SUCCESS
        assert not storage.get_concurrency_info(POOL).claimed_slots

    dept, code = dataset.split(".")
    with open_lake(settings) as con:
        left = len(unaccounted(con, dept, code)), len(unstaged(con, dept, code))
        read = con.execute(
            "SELECT count(*) FROM landing.delivery_accounts WHERE dept = ? AND dataset = ?",
            [dept, code],
        ).fetchone()[0]
        orphans = con.execute(
            f"CALL ducklake_delete_orphaned_files('{ALIAS}', dry_run => true, cleanup_all => true)"
        ).fetchall()
    assert left == (0, 0), f"unaccounted {left[0]}, not gated {left[1]}"
    assert read > 0, "nothing of the dataset was read"
    assert not orphans, "uncommitted lake files of the killed run are still there"
    print(
        f"\ndagster kill test: blocked run waited {waited:.1f} s for the held slot; after "
        f"recovery the next run took {next_s:.1f} s; {time.monotonic() - started:.1f} s in all"
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(child(Path(args[0]), args[1], args[2], recover_first="--recover" in args[3:]))
