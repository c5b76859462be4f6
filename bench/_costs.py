"""Where a whole run's time goes, by kind of cost: py-spy's samples of ``streethub run``
with native frames, each sample given to one kind (``bench/ingest.py``'s fixed-cost run).

Why sampling, and native frames: a deterministic profiler (cProfile) charges every Python
call its own overhead, so code made of many small calls looks dearer than it is (it gave
Dagster 27 % of a 1,000-resident run, where sampling gives it ~6 %), and it sees a call
into DuckDB as one opaque C function, so it cannot tell DuckLake reading its own catalogue
from DuckDB reading our data. py-spy samples the process from outside at a fixed rate and
unwinds the C++ frames too; the shares are of the samples (the sampled run is slower than
an unsampled one: shares, not a measurement of time).

Each sample goes to the first kind of :data:`KINDS` whose test its stack passes: DuckLake's
catalogue (commits, then reads) before everything, since any statement on a lake table may
pay it; module loading before the library that asked for it; then the libraries whose work
is not ours (MLflow, Great Expectations, Dagster); then ours by what it calls (encryption,
polars, DuckDB's work on our statements), and our own Python last.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# samples a second. With native frames py-spy stops the process for each sample and
# unwinds it, ~10 ms a sample on this host (2026-12-07): at 100 a second the process was
# stopped nearly all the time, and the bench's sampled 1,000-resident run took 51 minutes
# of wall time (unsampled ~40 s); at 50 it took 128.5 s with 6,300 samples (the shares:
# DuckLake's catalogue reads 28 %, DuckDB's work 16 %, commits 15 %, imports 12 %)
RATE = 50
# our packages (a Python frame's file path begins with one)
OURS = ("catalog", "lakehouse", "quality", "masking", "curated", "marts", "pipelines",
        "share_api", "departments")  # fmt: skip

# DuckLake's work on its catalogue: a commit's writes, and the reads every statement on a
# lake table makes (the current snapshot, the table's file list and statistics, the schema)
_COMMIT = re.compile(r"DuckLakeTransaction(?:Manager)?::Commit")
_CATALOGUE = re.compile(
    r"DuckLakeMetadataManager::|DuckLakeTransaction::GetSnapshot"
    r"|DuckLakeCatalog::(?:LookupSchema|GetSchema|LoadSchema|GetCatalogVersion)"
    r"|DuckLakeMultiFileList::(?:GetFiles|GetCardinality|GetTotalFileCount)|GetTableStats"
    r"|DuckLakeGetPartitionStats|DuckLakeStatistics|duckdb::SQLite|duckdb::Sqlite"
)


class Frame:
    """One frame of a py-spy stack: ``function (file:line)`` for Python, ``function
    (library)`` for native code."""

    __slots__ = ("name", "package", "path")

    def __init__(self, text: str) -> None:
        name, _, where = text.rpartition(" (")
        self.name = name or text
        self.path = re.sub(r":\d+$", "", where.rstrip(")")) if name else ""
        self.package = self.path.split("/", 1)[0] if "/" in self.path else ""


def _last(frames: list[Frame], packages: Iterable[str]) -> int:
    wanted = set(packages)
    return max((i for i, f in enumerate(frames) if f.package in wanted), default=-1)


def _under_ours(frames: list[Frame], packages: Iterable[str]) -> bool:
    """Whether, below our deepest frame, a frame of ``packages`` runs (what ours called)."""
    wanted = set(packages)
    return any(f.package in wanted for f in frames[_last(frames, OURS) + 1 :])


def _library_owns(frames: list[Frame], packages: Iterable[str]) -> bool:
    """Whether a frame of ``packages`` stands below our deepest frame (the library's work,
    whatever it calls), or there is no frame of ours at all and one of theirs."""
    return _last(frames, packages) > _last(frames, OURS)


COMMITS = "DuckLake's commits (its catalogue's writes)"
CATALOGUE_READS = "DuckLake's catalogue reads (snapshot, file lists, statistics, schema)"
DUCKLAKE = (COMMITS, CATALOGUE_READS)  # the kinds that are DuckLake's catalogue

KINDS: tuple[tuple[str, Callable[[list[Frame]], bool]], ...] = (
    (COMMITS, lambda fs: any(_COMMIT.search(f.name) for f in fs)),
    (CATALOGUE_READS, lambda fs: any(_CATALOGUE.search(f.name) for f in fs)),
    ("module loading (imports, wherever they happen)",
     lambda fs: any("importlib" in f.path or "importlib" in f.name for f in fs)),
    ("MLflow (the model registry and its store)",
     lambda fs: _library_owns(fs, ("mlflow", "alembic"))),
    ("Great Expectations (the expectation suites)",
     lambda fs: _library_owns(fs, ("great_expectations",))),
    ("Dagster (steps, events, run storage)",
     lambda fs: _library_owns(fs, ("dagster", "dagster_shared", "dagster_pipes", "sqlalchemy"))),
    ("encryption and pseudonyms (SM4, HMAC)",
     lambda fs: (i := _last(fs, OURS)) >= 0 and fs[i].path.startswith(
         ("masking/crypto.py", "masking/pseudonym.py"))),
    ("polars (standardising, the gate, masks, leak scans)",
     lambda fs: _under_ours(fs, ("polars",))),
    ("DuckDB's own work on our statements (planning, reading, writing data)",
     lambda fs: any(f.name.startswith("duckdb::") for f in fs)),
    ("our Python", lambda fs: _last(fs, OURS) >= 0),
)  # fmt: skip
REST = "the rest (the interpreter, other libraries)"
# a thread waiting on a lock, a condition or a queue (a progress bar's refresher between
# frames, a pool's idle worker): py-spy with native frames counts it as running, it is not
WAITING = "waiting"
_WAIT = re.compile(
    r"^(?:PyThread_acquire_lock_timed|pthread_cond_(?:timed)?wait|sem_(?:timed)?wait)$"
)


def cost_kind(stack: list[str]) -> str:
    """The kind of cost of one sample's stack (frames outermost first); :data:`WAITING`
    for a thread that waits."""
    frames = [Frame(t) for t in stack if not t.startswith("process ")]
    if any(_WAIT.match(f.name) for f in frames):
        return WAITING
    return next((kind for kind, test in KINDS if test(frames)), REST)


def cost_shares(raw: Path, rate: int = RATE, *, within: str = "") -> dict[str, float]:
    """Seconds of samples per kind of cost (largest first) and their ``total``, from
    py-spy's raw output (``stack count`` a line, frames separated by ``;``); the samples of
    waiting threads apart (:data:`WAITING`, not in the total). ``within``: only the samples
    with a frame that begins so (``ingest (bench/ingest.py``: that function's calls).
    Read a line at a time, not whole: the process that reads it starts the measured runs,
    and what it holds should not grow with the length of a sampled run."""
    seconds: dict[str, float] = {}
    with raw.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            _count(line.rstrip("\n"), rate, within, seconds)
    waited = seconds.pop(WAITING, 0.0)
    ranked = sorted(seconds.items(), key=lambda kv: -kv[1])
    total = {"total": round(sum(seconds.values()), 2), WAITING: round(waited, 2)}
    return {k: round(v, 2) for k, v in ranked} | total


def _count(line: str, rate: int, within: str, seconds: dict[str, float]) -> None:
    """One line of py-spy's raw output added to ``seconds`` by kind."""
    stack, _, count = line.rpartition(" ")
    if not stack or not count.isdigit():
        return
    frames = stack.split(";")
    if within and not any(f.startswith(within) for f in frames):
        return
    kind = cost_kind(frames)
    seconds[kind] = seconds.get(kind, 0.0) + int(count) / rate


def share_lines(shares: dict[str, float]) -> list[str]:
    """The kinds of :func:`cost_shares` (or any seconds per part with their ``total``) as
    lines ``share  kind``, in their order."""
    total = shares.get("total") or 1.0
    return [f"{v / total:>4.0%}  {k}" for k, v in shares.items() if k not in ("total", WAITING)]


def spy() -> Path:
    """py-spy, installed beside this interpreter (a pinned dependency of ``[dev]``)."""
    return Path(sys.executable).parent / "py-spy"


def sampled_command(cmd: list[str], out: Path, rate: int = RATE) -> list[str]:
    """``cmd`` run under py-spy: every thread of its process, native frames, ``rate``
    samples a second, raw (collapsed) stacks to ``out``."""
    return [str(spy()), "record", "--native", "--rate", str(rate), "--format", "raw",
            "--output", str(out), "--", *cmd]  # fmt: skip


@functools.cache  # one probe a bench: the fixed-cost run and the ingest both ask
def can_sample() -> str | None:
    """None when py-spy can sample a child here, else why not (it traces its child:
    a container may forbid ``ptrace``). The probe's child lives a second: py-spy must find
    its interpreter before it exits."""
    if not spy().exists():
        return f"py-spy is not installed beside {sys.executable}"
    probe = subprocess.run(
        sampled_command([sys.executable, "-c", "import time; time.sleep(1)"], Path(os.devnull)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return f"py-spy cannot sample here ({probe.stderr.strip()[-300:]})"
    return None
