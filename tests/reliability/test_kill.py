"""Kill ingestion with SIGKILL at every named kill point; the next run finishes and the lake
then equals an uninterrupted run's.

For each point the test drives ingestion of the session street in a child process
(``tests/reliability/driver.py``) with ``STREETHUB_KILL_AT`` arming that point, checks the
child died by SIGKILL and left the leftover that point is about (a half-written copy, a
landed file without a ledger row, a delivery without an account, uncommitted lake files,
a delivery read into raw but not gated, no scorecard), then runs what the main job runs
first (``recover_lake``) and the driver again, unarmed: it must end with exit code 0 within
a timeout, leave nothing pending, and the lake must equal a reference run's — the same
tables, the same row counts, and the same digest per column over the decrypted business
columns, rows sorted. Times of processing (``_loaded_at``, ``accounted_at`` …), absolute
paths and the timestamps in pulled files' names differ by design and are left out;
``marts.quality_expectations`` keeps one set per run, so only the last run's is compared.

Points on the ingest path are run without the scorecard (``--no-scorecard``, both runs)
and compared on the ingest tables; the scorecard points run everything and compare every
table. An ingest point fires in the first delivery the driver reaches (the catalogue's
first dataset, 城管's first file) before any other dataset is touched, so the scenarios run
on a catalogue of that department and the person authority (公安, pulled from its database,
what 城管's people are scored against) only (:data:`SMALL_DEPARTMENTS`): the same kill, and
a rerun that recovers it and goes on to another department and connector, without
re-ingesting 23 datasets the kill never reached (a whole street's run costs ~5× more).
One point, :data:`WHOLE_STREET` (the scorecard's tables committed, its report not yet
written), runs on the whole street: its killed run scores every dataset, its rerun goes
through every dataset again and rewrites the scorecard, and the lake is compared table by
table with an uninterrupted run of the whole street. Each catalogue has its reference run,
whose keys its scenario homes share (so pseudonyms and keyed digests compare too), made in
two drives: the ingest, then the scorecard alone. A scorecard point's scenario starts from
a copy of the reference's home between the two (every delivery ingested, nothing scored):
its killed run scores and is killed where the scorecard writes, without ingesting the
street a second time (the lake the kill leaves is the same), and its rerun is a whole run.
Two at a time (``STREETHUB_KILL_JOBS``): the whole street's reference and scenario one
after the other, the small catalogue's beside them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

import pipelines.ingest.landing  # noqa: F401 - importing the owners' modules registers their points
from catalog.loader import load_catalogue
from catalog.settings import Settings
from lakehouse.lake import ALIAS, open_lake, tables_in
from pipelines.ingest.ledger import pending_by_dataset
from pipelines.ingest.raw import raw_table
from pipelines.killpoints import KILL_POINTS
from pipelines.protection import Protection
from pipelines.recovery import recover_lake
from tests.reliability.conftest import fresh_home, sub_catalogue
from tests.streets import copy_home

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("driver.py")
# a whole run of the street takes ~30 s on 2 idle cores; a hang fails the test instead of
# hanging CI (generous: a loaded CI machine is several times slower)
RUN_TIMEOUT_S = 600
JOBS = int(os.environ.get("STREETHUB_KILL_JOBS", "2"))
# the catalogue of the scenarios but one: the department every ingest point fires in (the
# shipped catalogue's first) and the person authority, a pulled source
SMALL_DEPARTMENTS = ("cgj", "gaj")
# the points run on the whole street (the shipped catalogue)
WHOLE_STREET = ("scorecard.written",)

# point -> (owner, leftovers the kill must leave: the test would prove nothing without them).
# A run lands a new delivery, reads it into raw and gates it in one transaction
# (pipelines.ingest.staged.stage_with_landing): killed inside it, nothing of the delivery
# is committed (its copy lies in landing unrecorded, the file still in the inbox); after
# it, the delivery is landed, read and gated
EXPECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "landing.copy_started": ("LANDING (pipelines/ingest/landing.py)", ("partial_copies",)),
    "landing.copied": ("LANDING (pipelines/ingest/landing.py)", ("unrecorded_copies",)),
    "landing.recorded": ("LANDING (pipelines/ingest/landing.py)", ("staged_deliveries",)),
    "raw.parsed": ("CONNECTORS (pipelines/ingest/raw.py)", ("unrecorded_copies",)),
    "raw.before_commit": (
        "CONNECTORS (pipelines/ingest/raw.py)",
        ("unrecorded_copies", "uncommitted_files"),
    ),
    "raw.committed": ("CONNECTORS (pipelines/ingest/raw.py)", ("staged_deliveries",)),
    "staged.gated": (
        "KEYS (pipelines/ingest/staged.py)",
        ("unrecorded_copies", "uncommitted_files"),
    ),
    "staged.before_commit": (
        "KEYS (pipelines/ingest/staged.py)",
        ("unrecorded_copies", "uncommitted_files"),
    ),
    "staged.committed": ("KEYS (pipelines/ingest/staged.py)", ("staged_deliveries",)),
    "scorecard.before_write": ("RECOVERY (pipelines/killpoints.py)", ("no_scorecard",)),
    "scorecard.written": ("RECOVERY (pipelines/killpoints.py)", ("no_report",)),
}
# the same points on the two-transaction path: a run that lands what is new, then reads and
# gates what is landed (a run of some assets only, ``deliveries retry``, an earlier run's
# leftovers; the driver's --land-first), each delivery read and gated in a transaction of its
# own after its landing's; the rerun (one commit a new delivery) reads what it left
LAND_FIRST = "@land-first"
EXPECTED_LAND_FIRST: dict[str, tuple[str, ...]] = {
    "landing.recorded": ("unaccounted",),
    "raw.parsed": ("unaccounted",),
    "raw.before_commit": ("unaccounted", "uncommitted_files"),
    "raw.committed": ("staged_deliveries",),
    "staged.gated": ("unaccounted", "uncommitted_files"),
    "staged.before_commit": ("unaccounted", "uncommitted_files"),
    "staged.committed": ("staged_deliveries",),
}
POINTS = sorted(set(EXPECTED) | set(KILL_POINTS)) + [p + LAND_FIRST for p in EXPECTED_LAND_FIRST]
PENDING_AFTER = ("partial_copies", "unrecorded_copies", "unaccounted", "unstaged")
PENDING_AFTER += ("uncommitted_files", "unbalanced")

# tables the scorecard writes (compared only where the scorecard ran)
SCORECARD_TABLES = {("quarantine", "disagreements"), ("quarantine", "issues")}
PULL_STAMP = re.compile(r"(_pull_|pull-)\d{8}T\d{6}\d*")
# the scorecard describes timeliness as "newest delivery 0.1 h old at 2026-11-30 01:48 UTC":
# ages and times of scoring differ by design (the scores themselves are compared)
AGE = re.compile(r"\d+(\.\d+)? h old")
CLOCK = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?( UTC)?")
# ids made from a time of processing (an issue's id hashes its opening time)
TIME_IDS = {
    ("quarantine", "issues"): ["issue_id"],
    # the file's identity on its filesystem (device and inode): each scenario's home is a copy
    ("landing", "inbox_files"): ["file_key"],
    # what the scorecard read: the lake's snapshot id and a digest of ledger rows with times
    ("marts", "quality_state"): ["snapshot_id", "inputs_digest"],
}


def needs_scorecard(point: str) -> bool:
    return point.startswith("scorecard.")


# -- running the driver ------------------------------------------------------------------


def drive(
    settings: Settings,
    *,
    kill_at: str | None,
    scorecard: bool,
    timeout: float,
    scorecard_only: bool = False,
    land_first: bool = False,
) -> tuple[int, str]:
    """Run the driver on the home (and catalogue) of ``settings`` (``scorecard_only``: the
    scorecard over what is staged, no ingest; ``land_first``: the two-transaction path);
    (exit code, last lines of stderr). A hang fails."""
    env = {k: v for k, v in os.environ.items() if k != "STREETHUB_KILL_AT"}
    env["STREETHUB_CATALOG_DIR"] = str(settings.catalog_dir)
    if kill_at is not None:
        env["STREETHUB_KILL_AT"] = kill_at
    home = settings.home_abs
    cmd = [sys.executable, str(DRIVER), str(home)] + ([] if scorecard else ["--no-scorecard"])
    cmd += ["--scorecard-only"] if scorecard_only else []
    cmd += ["--land-first"] if land_first else []
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -999, f"no end within {timeout:.0f} s (hung)"
    return proc.returncode, "\n".join(proc.stderr.strip().splitlines()[-5:])


# -- what a run left behind --------------------------------------------------------------


def pending(settings: Settings) -> dict[str, int]:
    """Work a killed run left for the next one (all zero after a finished run)."""
    landing = settings.landing_dir
    files = [p for p in landing.rglob("*") if p.is_file()] if landing.exists() else []
    with open_lake(settings) as con:  # the writer lock: nobody else writes meanwhile
        have = tables_in(con)
        recorded: set[str] = set()
        out = {"unaccounted": 0, "unstaged": 0, "staged_deliveries": 0, "unbalanced": 0}
        if ("landing", "deliveries") in have:
            recorded = {
                Path(r[0]).name
                for r in con.execute("SELECT landed_path FROM landing.deliveries").fetchall()
            }
            # every dataset's in one statement, as a run's steps read it (two a dataset
            # were ~5 % of this test's CPU: each statement reads DuckLake's catalogue)
            for left in pending_by_dataset(con).values():
                out["unaccounted"] += len(left.unread)
                out["unstaged"] += len(left.ungated)
            out["staged_deliveries"] = con.execute(
                "SELECT count(*) FROM landing.stage_accounts WHERE stage = 'staged'"
            ).fetchone()[0]
            out["unbalanced"] = con.execute(
                """SELECT (SELECT count(*) FROM landing.delivery_accounts
                           WHERE rows_read <> rows_loaded + rows_quarantined)
                        + (SELECT count(*) FROM landing.stage_accounts
                           WHERE rows_in <> rows_out + rows_quarantined
                                            + coalesce(rows_skipped, 0))"""
            ).fetchone()[0]
        out["uncommitted_files"] = len(
            con.execute(
                f"CALL ducklake_delete_orphaned_files('{ALIAS}', dry_run => true, "
                "cleanup_all => true)"
            ).fetchall()
        )
        out["no_scorecard"] = int(("marts", "quality_scorecard") not in have)
    out["partial_copies"] = sum(p.name.endswith(".part") for p in files)
    out["unrecorded_copies"] = sum(
        not p.name.endswith(".part") and p.name not in recorded for p in files
    )
    out["no_report"] = int(not (settings.home_abs / "reports" / "quality.html").exists())
    return out


# -- the lake as content -----------------------------------------------------------------


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        pl.col(c).map_elements(repr, return_dtype=pl.String)
        if t.is_nested() or t == pl.Binary
        else pl.col(c).cast(pl.String)
        for c, t in frame.schema.items()
    )


def _digest(frame: pl.DataFrame) -> dict[str, str]:
    text = _as_text(frame)
    if text.width:
        text = text.sort(text.columns, nulls_last=True)
    return {
        c: hashlib.sha256(
            "\x1e".join("\x00" if v is None else v for v in text[c].to_list()).encode()
        ).hexdigest()
        for c in text.columns
    }


def lake_content(settings: Settings, *, with_scorecard: bool) -> dict[str, tuple[int, dict]]:
    """Per table: (rows, digest per column) over decrypted business columns, rows sorted.

    Left out: times of processing (``_loaded_at``, ``_staged_at``, every ``*_at`` column
    of the ledger and marts, an issue's id made from its opening time), landed paths and
    sources (absolute paths, API URLs with their port), the timestamp in a pulled file's
    name, and in the scorecard's texts the age of the newest delivery and the time of
    scoring.
    """
    cat = load_catalogue(settings.catalog_dir)
    datasets = {raw_table(d.code, ds): ds for d, ds in cat.datasets()}
    protection = Protection.from_settings(settings, actor="test:kill")
    out: dict[str, tuple[int, dict]] = {}
    with open_lake(settings, read_only=True) as con:
        for zone, table in sorted(tables_in(con)):
            scorecard_table = zone == "marts" or (zone, table) in SCORECARD_TABLES
            if scorecard_table and not with_scorecard:
                continue
            frame = con.execute(f'SELECT * FROM {zone}."{table}"').pl()
            if zone in ("raw", "staged"):
                ds = datasets[table]
                frame = (
                    protection.reveal_text(frame, ds, "quality_gate")
                    if zone == "raw"
                    else protection.reveal(frame, ds, "quality_scores")
                )
                frame = frame.drop("_loaded_at", "_staged_at", strict=False)
            else:
                if (zone, table) == ("marts", "quality_expectations") and frame.height:
                    frame = frame.filter(pl.col("run_at") == pl.col("run_at").max())
                volatile = [c for c in frame.columns if c.endswith("_at")]
                volatile += TIME_IDS.get((zone, table), [])
                frame = frame.drop(*volatile, "landed_path", "source", strict=False)
                text = pl.col(pl.String).str.replace_all(PULL_STAMP.pattern, "${1}<time>")
                if scorecard_table:
                    text = text.str.replace_all(AGE.pattern, "<age> h old").str.replace_all(
                        CLOCK.pattern, "<time>"
                    )
                frame = frame.with_columns(text)
            out[f"{zone}.{table}"] = (frame.height, _digest(frame))
    return out


def landed_names(settings: Settings) -> set[str]:
    root = settings.landing_dir
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def differences(want: dict, got: dict) -> list[str]:
    """Tables, counts and columns that differ — names only, never a value."""
    problems = []
    for name in sorted(set(want) | set(got)):
        if name not in got or name not in want:
            problems.append(f"{name}: only in the {'reference' if name in want else 'rerun'}")
            continue
        (n_want, d_want), (n_got, d_got) = want[name], got[name]
        if n_want != n_got:
            problems.append(f"{name}: {n_got} rows, reference {n_want}")
        cols = sorted(c for c in set(d_want) | set(d_got) if d_want.get(c) != d_got.get(c))
        if cols:
            problems.append(f"{name}: columns differ: {', '.join(cols)}")
    return problems


# -- the scenarios -----------------------------------------------------------------------


@dataclass
class Outcome:
    killed_rc: int | None = None
    killed_stderr: str = ""
    left: dict[str, int] = field(default_factory=dict)
    recovered_files: int = 0
    rerun_rc: int | None = None
    rerun_stderr: str = ""
    after: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Reference:
    """An uninterrupted run of the street over one catalogue (``catalog_dir`` None: the
    shipped one), made once: the ingest, a copy of the home as the ingest left it (where
    the scorecard points' scenarios start), then the scorecard; its lake content computed
    once per mode."""

    street: tuple[Path, dict]
    home: Path
    catalog_dir: Path | None
    scorecard: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    seconds: float = 0.0
    _settings: Settings | None = None
    _ingested: Settings | None = None
    _error: str | None = None
    _content: dict[bool, dict] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        """The reference's home, run on first use (scenarios wait for it)."""
        with self.lock:
            if self._settings is None and self._error is None:
                started = time.monotonic()
                settings = fresh_home(self.street, self.home, catalog_dir=self.catalog_dir)
                rc, err = drive(settings, kill_at=None, scorecard=False, timeout=RUN_TIMEOUT_S)
                if rc == 0 and self.scorecard:
                    self._ingested = self._copy(
                        settings, self.home.with_name(f"{self.home.name}_ingested")
                    )
                    rc, err = drive(
                        settings,
                        kill_at=None,
                        scorecard=True,
                        scorecard_only=True,
                        timeout=RUN_TIMEOUT_S,
                    )
                self.seconds = time.monotonic() - started
                if rc == 0:
                    self._settings = settings
                else:
                    self._error = f"the uninterrupted reference run failed (exit {rc}): {err}"
            if self._error is not None:
                raise RuntimeError(self._error)
            return self._settings

    def _copy(self, settings: Settings, target: Path) -> Settings:
        """A copy of a home of this catalogue (its simulator folder and witness with it)."""
        home = copy_home(settings.home_abs, target, departments=True).home
        return Settings(home=home, catalog_dir=settings.catalog_dir).ensure_dirs()

    def scenario_home(self, target: Path, *, ingested: bool) -> Settings:
        """A scenario's home: the street as simulated, or (``ingested``) as the reference's
        ingest left it."""
        if not ingested:
            return fresh_home(self.street, target, catalog_dir=self.catalog_dir)
        self.settings  # noqa: B018 - the reference's run made the copy
        assert self._ingested is not None, "the reference did not score: no ingested copy"
        return self._copy(self._ingested, target)

    def content(self, with_scorecard: bool) -> dict:
        settings = self.settings
        with self.lock:
            if with_scorecard not in self._content:
                self._content[with_scorecard] = lake_content(
                    settings, with_scorecard=with_scorecard
                )
            return self._content[with_scorecard]


def run_scenario(point: str, root: Path, ref: Reference) -> Outcome:
    outcome = Outcome()
    try:
        scorecard = needs_scorecard(point)
        settings = ref.scenario_home(root / point, ingested=scorecard)
        shutil.copytree(ref.settings.keys_dir, settings.keys_dir, dirs_exist_ok=True)
        t0 = time.monotonic()
        outcome.killed_rc, outcome.killed_stderr = drive(
            settings,
            kill_at=point.removesuffix(LAND_FIRST),
            scorecard=scorecard,
            scorecard_only=scorecard,  # started from the reference's ingest (scenario_home)
            timeout=RUN_TIMEOUT_S,
            land_first=point.endswith(LAND_FIRST),
        )
        t1 = time.monotonic()
        outcome.left = pending(settings)
        outcome.recovered_files = recover_lake(settings)  # what the main job does first
        t2 = time.monotonic()
        outcome.rerun_rc, outcome.rerun_stderr = drive(
            settings, kill_at=None, scorecard=scorecard, timeout=RUN_TIMEOUT_S
        )
        t3 = time.monotonic()
        if outcome.rerun_rc == 0:
            outcome.after = pending(settings)
            outcome.differences = differences(
                ref.content(scorecard), lake_content(settings, with_scorecard=scorecard)
            )
            if landed_names(settings) != landed_names(ref.settings):
                outcome.differences.append("landing folder: other files than the reference's")
        outcome.seconds = {
            "killed": t1 - t0,
            "recovery": t2 - t1,
            "rerun": t3 - t2,
            "compare": time.monotonic() - t3,
        }
    except Exception as exc:  # reported by the point's test
        outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome


@pytest.fixture(scope="module")
def kill_runs(reliability_street, tmp_path_factory, request) -> dict[str, Outcome]:
    """The selected points' scenarios (``-k`` selects), two at a time, each after the
    reference run of its catalogue."""
    selected = {
        item.callspec.params["point"]
        for item in request.session.items
        if item.module is sys.modules[__name__] and hasattr(item, "callspec")
    }
    root = tmp_path_factory.mktemp("kill")
    started = time.monotonic()
    whole = Reference(reliability_street, root / "_reference", None, scorecard=True)
    small = Reference(
        reliability_street,
        root / "_reference_small",
        sub_catalogue(root / "_catalogue_small", SMALL_DEPARTMENTS),
        scorecard=True,
    )
    registered = [p for p in POINTS if p.removesuffix(LAND_FIRST) in KILL_POINTS and p in selected]
    on_whole = [p for p in registered if p in WHOLE_STREET]
    on_small = [p for p in registered if p not in WHOLE_STREET]

    def whole_street() -> dict[str, Outcome]:  # its reference, then its scenarios
        return {p: run_scenario(p, root, whole) for p in on_whole}

    with ThreadPoolExecutor(max_workers=max(1, JOBS)) as pool:
        chain = pool.submit(whole_street)
        if on_small:
            pool.submit(lambda: small.settings)  # a failure: each scenario says it
        futures = {p: pool.submit(run_scenario, p, root, small) for p in on_small}
        outcomes = {p: f.result() for p, f in futures.items()} | chain.result()
    total = time.monotonic() - started
    print(
        f"\nkill test: reference runs {whole.seconds:.1f} s (whole street), "
        f"{small.seconds:.1f} s ({', '.join(SMALL_DEPARTMENTS)}); "
        f"{len(outcomes)} points, {JOBS} at a time"
    )
    for p, o in outcomes.items():
        times = ", ".join(f"{k} {v:.1f} s" for k, v in o.seconds.items())
        print(f"  {p:24s} {times}")
    print(f"kill test: {total:.1f} s in all")
    return outcomes


def test_every_kill_point_is_registered():
    missing = [f"{p} (owner: {EXPECTED[p][0]})" for p in EXPECTED if p not in KILL_POINTS]
    assert not missing, "kill points not registered yet: " + "; ".join(missing)
    assert len(KILL_POINTS) >= 10


@pytest.mark.timeout(3600)  # the first one runs every scenario (the module fixture)
@pytest.mark.parametrize("point", POINTS)
def test_killed_run_is_recovered_by_the_next(point: str, kill_runs: dict[str, Outcome]):
    name = point.removesuffix(LAND_FIRST)
    if name not in KILL_POINTS:
        pytest.fail(
            f"kill point {name!r} is not registered: its owner, {EXPECTED[name][0]}, "
            f"registers it and calls kill_point({name!r}) at its place"
        )
    o = kill_runs[point]
    assert o.error is None, o.error
    assert o.killed_rc == -9, (
        f"the run armed at {point} was not SIGKILLed there (exit {o.killed_rc}): "
        f"{'never reached the point' if o.killed_rc == 0 else o.killed_stderr}"
    )
    wanted = (
        EXPECTED_LAND_FIRST[name] if point.endswith(LAND_FIRST) else EXPECTED.get(name, ("", ()))[1]
    )
    missing = [w for w in wanted if not o.left.get(w)]
    assert not missing, f"killed at {point} but it left no {missing}: {o.left}"
    assert o.rerun_rc == 0, (
        f"the run after the kill did not finish (exit {o.rerun_rc}): {o.rerun_stderr}"
    )
    still = {k: o.after[k] for k in PENDING_AFTER if o.after.get(k)}
    if needs_scorecard(point):
        still |= {k: o.after[k] for k in ("no_scorecard", "no_report") if o.after.get(k)}
    assert not still, f"after the next run, still pending: {still}"
    assert not o.differences, "the lake differs from an uninterrupted run's: " + "; ".join(
        o.differences
    )
