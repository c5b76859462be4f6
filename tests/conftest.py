"""Shared fixtures: every test gets its own STREETHUB_HOME."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings as hypothesis_settings

import pipelines  # noqa: F401  (first, as every process of the hub: its libraries' settings)
from catalog.settings import Settings
from tests.scratch import scratch_dir

if TYPE_CHECKING:
    from tests.mart_street import MartStreet
    from tests.need_street import NeedStreet

# property tests judge results, not speed: a per-example deadline (hypothesis's 200 ms) fails
# them at random on a busy machine (CI's two cores, a developer's running build)
hypothesis_settings.register_profile("streethub", deadline=None)
hypothesis_settings.load_profile("streethub")

# master key files live outside every test home, as in production, and never in the
# developer's own config folder: one config folder for the session (subprocesses inherit it)
os.environ["XDG_CONFIG_HOME"] = str(scratch_dir("config-"))
# a home for every test that names none of its own (the ``home`` fixture does): never the
# checkout's .streethub, nor a developer's street named by their environment (a test of the
# simulate command once wrote a street into the checkout)
os.environ["STREETHUB_HOME"] = str(scratch_dir("home-") / "home")
# the main job's own simulation delivers no history in tests (a year of it is what the need
# street, tests/need_street.py, asks for explicitly): small streets, fast runs
os.environ.setdefault("STREETHUB_SIM_HISTORY_DAYS", "0")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("STREETHUB_HOME", str(h))
    return h


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home).ensure_dirs()


@pytest.fixture(scope="session")
def staged_street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One small street simulated, landed and staged once for the whole session (every
    dataset of the shipped catalogue), its simulator folder beside it: tests read it; a
    test or module that changes a lake works on a copy (``tests.streets.copy_home``). A
    test that wrote to it anyway fails the session at the end."""
    from catalog.loader import load_catalogue
    from lakehouse.lake import close_idle
    from tests.streets import SESSION_RESIDENTS, SESSION_SEED, ingest_and_stage, lake_snapshot

    home = tmp_path_factory.mktemp("session-street") / "home"
    settings = ingest_and_stage(
        home, load_catalogue(), residents=SESSION_RESIDENTS, seed=SESSION_SEED
    )
    close_idle()
    settings = Settings(home=home)
    before = lake_snapshot(settings)
    yield settings
    close_idle()
    assert lake_snapshot(settings) == before, (
        "a test changed the session street's lake: copy it first (tests.streets.copy_home)"
    )


@pytest.fixture(scope="session")
def mart_street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MartStreet]:
    """One street for every test that needs marts (tests/marts, tests/share_api …): the main
    job run once per session on a small simulated street, then every catalogued mart built
    on it (``tests/mart_street.py``). Never write to it: copy the home first
    (``tests.streets.copy_home(street.settings.home, tmp_path)``); a test that changed its
    lake anyway fails the session at the end. ``STREETHUB_TEST_MART_STREET`` +
    ``STREETHUB_TEST_MART_KEYS`` reuse a ready street."""
    from lakehouse.lake import close_idle
    from tests.mart_street import make_mart_street
    from tests.streets import lake_snapshot

    street = make_mart_street(tmp_path_factory)
    before = lake_snapshot(street.settings)
    yield street
    close_idle()
    assert lake_snapshot(street.settings) == before, (
        "a test changed the session's mart street's lake: copy it first (tests.streets.copy_home)"
    )


@pytest.fixture(scope="session")
def need_street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NeedStreet]:
    """One street for the need model's tests: the simulator with a year of history, the main
    job and the stored features of monthly cut-offs (``tests/need_street.py``);
    ``STREETHUB_TEST_NEED_STREET`` + ``STREETHUB_TEST_NEED_KEYS`` reuse a ready one. Never
    write to it: copy the home first; a test that changed its lake anyway fails the session
    at the end."""
    from lakehouse.lake import close_idle
    from tests.need_street import make_need_street
    from tests.streets import lake_snapshot

    street = make_need_street(tmp_path_factory)
    before = lake_snapshot(street.settings)
    yield street
    close_idle()
    assert lake_snapshot(street.settings) == before, (
        "a test changed the session's need street's lake: copy it first (tests.streets.copy_home)"
    )


# -- parallel runs: `make test` runs pytest-xdist (-n 3 --dist loadgroup) ---------------------
# Every worker process builds the session fixtures its tests ask for. The costly ones (more
# than ~20 s on CI) keep all their tests in one group, run by one worker, so that one worker
# builds each; a NEW SESSION FIXTURE COSTING MORE THAN ~20 s BELONGS IN THIS LIST. The first
# one a test uses names its group (a test using two of them runs where the first is built).
# The scheduler hands these groups out first, in this order (costliest first: on 3 workers
# the need street's, the mart street's and the staged street's start at once, the onboarded
# one goes to whichever is free first, the small units fill in around them).
# xdist 3.8's own loadgroup does not group under pytest 9.2 (it appends the group to
# item._nodeid, which pytest 9.2's structured node ids no longer read: pytest-xdist#1386), so
# the groups go to the controller in a file and GroupScheduling (below) reads them.
HEAVY_SESSION_FIXTURES = ("need_street", "mart_street", "staged_street", "onboarded")
GROUPS_DIR = "streethub_xdist_groups"  # the workerinput key: where the workers write groups


def xdist_group(item: pytest.Item) -> str | None:
    """A test's group: its costly session fixture's name, else its module when it uses a
    module or class fixture (built once, on one worker); None: it may run anywhere."""
    names = item.fixturenames if hasattr(item, "fixturenames") else ()
    group = next((name for name in HEAVY_SESSION_FIXTURES if name in names), None)
    if group is None and uses_shared_fixture(item):
        group = item.nodeid.split("::")[0]
    return group


@pytest.hookimpl(trylast=True)  # the node ids as the worker sends them to the controller
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: every grouped test's node id and group, written for the
    controller's GroupScheduling."""
    folder = getattr(config, "workerinput", {}).get(GROUPS_DIR)
    if folder is None:
        return
    groups = {item.nodeid: group for item in items if (group := xdist_group(item))}
    worker = config.workerinput["workerid"]
    (Path(folder) / f"{worker}.json.tmp").write_text(json.dumps(groups))
    (Path(folder) / f"{worker}.json.tmp").replace(Path(folder) / f"{worker}.json")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """On the xdist controller: the folder its workers write their groups to."""
    config = node.config
    if not hasattr(config, "_streethub_groups"):
        config._streethub_groups = scratch_dir("xdist-groups-")
    node.workerinput[GROUPS_DIR] = str(config._streethub_groups)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup``: xdist's scope scheduling (one work unit a scope, the largest
    first, the next unit to whichever worker is free) with the workers' groups as scopes; an
    ungrouped test is a unit of its own."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # called once every worker's collection is in
                self.groups = {}
                for path in sorted(config._streethub_groups.glob("*.json")):
                    self.groups.update(json.loads(path.read_text()))
            return self.groups.get(nodeid, nodeid)

        def _assign_work_unit(self, node) -> None:
            """The costly session fixtures' groups first, costliest first (xdist orders the
            units by their number of tests: the need street's 27 tests came fourth, after
            the staged street's whole group on the same worker)."""
            for name in reversed(HEAVY_SESSION_FIXTURES):
                if name in self.workqueue:
                    self.workqueue.move_to_end(name, last=False)
            super()._assign_work_unit(node)

    return GroupScheduling(config, log)


def uses_shared_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a module- or class-scoped fixture."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        defs[-1].scope in ("module", "class")
        for name in item.fixturenames
        if (defs := info.name2fixturedefs.get(name))
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "_streethub_groups"):  # the xdist controller's groups folder
        shutil.rmtree(config._streethub_groups, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On CI (``CI=true``, set by .ci/run) every test must run: a skip fails the session
    (e.g. the PKCS#11 tests when SoftHSM2 is missing). Under xdist the controller judges:
    the workers' reports reach it."""
    if os.environ.get("CI", "").lower() != "true" or hasattr(session.config, "workerinput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"CI: {skipped} test(s) skipped; on CI every test must run")


# -- where the suite's time goes: STREETHUB_TEST_CPU=FILE ---------------------------------------
# Wall times move with the machine's load (the same test took 5x longer at load 20 than at 3);
# CPU seconds of the test process and of the children it waited for do not. With the variable
# set, each test's setup, call and teardown append a line to FILE.<worker> (tab-separated:
# node id, phase, CPU s, wall s); a session fixture's cost lands on the first test that asked
# for it. `python tests/cpu_report.py FILE` sums them.
CPU_REPORT = os.environ.get("STREETHUB_TEST_CPU")


def _cpu_seconds() -> float:
    import resource

    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(item: pytest.Item, phase: str) -> Iterator[None]:
    import time

    cpu, wall = _cpu_seconds(), time.perf_counter()
    yield
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    line = f"{item.nodeid}\t{phase}\t{_cpu_seconds() - cpu:.2f}\t{time.perf_counter() - wall:.2f}\n"
    with open(f"{CPU_REPORT}.{worker}", "a", encoding="utf-8") as out:
        out.write(line)


if CPU_REPORT:

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
        yield from _timed(item, "setup")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
        yield from _timed(item, "call")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
        yield from _timed(item, "teardown")
