"""Running an analyst's query away from the share service (查询工作进程): a small pool of
worker processes, each answering one query at a time on the analyst's locked database.

The service never runs analyst SQL itself. :class:`WorkerPool` keeps up to ``size``
processes (``python -m share_api.analysts.worker``, started with no ``STREETHUB_*``
variable in their environment: no key reaches them), each reading one :class:`Job` a line
on its stdin and writing one answer a line. A worker, for each job:

1. opens the database with :func:`~share_api.analysts.lock.open_locked` — memory limit and
   threads set, then the configuration locked: a fresh connection a query, so nothing
   one query does is seen by the next, and a rebuilt file is read as it is now;
2. judges the text with :func:`~share_api.analysts.guard.check` (sqlglot's parsing runs
   here too, never in the service);
3. runs what passed, with a timer that calls ``con.interrupt()`` at the time limit, and
   fetches at most ``max_rows`` rows (one more tells it the answer was cut);
4. answers columns, types, rows (as JSON values), the truncated flag, the time it took and
   the SHA-256 of the result (:func:`result_digest`).

Workers run at a lower priority (``nice`` +10): on a busy machine the service's own
threads come first. The pool gives a worker ``time_limit_s`` + :data:`GRACE_S` to answer;
one that does not (stuck outside DuckDB's interruptible work) is killed, a spare started
in the background, and the job answered as interrupted; one that ends (out of memory) is
replaced likewise, the job failed.
A job finding every worker busy is refused at once (:class:`PoolBusy`): queued analyst
queries never hold the service's threads.

Why kept processes: measured on this 2-core machine at load average 8-14, a fresh process
a query cost 0.33-0.66 s (median 0.55 s: the interpreter, DuckDB's and sqlglot's imports),
a kept worker's round trip 14-53 ms (median 33 ms, most of it opening the file), and
over HTTP, signed in and audited, 109 ms median against 7 ms for a bare GET.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import os
import re
import resource
import select
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from share_api.analysts.guard import (
    Allowed,
    QueryRefused,
    check,
    database_tables,
    function_names,
    usable_functions,
)
from share_api.analysts.lock import open_locked

GRACE_S = 2.0  # after the time limit, how long a worker has to answer before it is killed
STARTUP_TIMEOUT_S = 60.0
MAX_ERROR_CHARS = 300  # of a DuckDB error's first line, in an answer
NICENESS = 10  # a worker yields the CPU to the service's own threads on a busy machine
# an answer's largest size: DuckDB's memory_limit bounds its buffers, not one value (a
# repeat('x', 10^8) is made whole), and the row cap bounds rows, not their width
MAX_ANSWER_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Job:
    """One query: the database, the text, and the limits it runs under."""

    db: str
    sql: str
    max_rows: int
    time_limit_s: float
    memory_limit: str
    threads: int


class PoolBusy(Exception):
    """Every worker is running a query."""


class WorkerLost(Exception):
    """A worker did not answer in time (``timed_out``), or ended, or never started."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


# -- the worker process -------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` (as DuckDB's Python API returns it) as a JSON value: numbers and text as
    they are, decimals, times and UUIDs as text, bytes as hex, a non-finite float as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal | uuid.UUID | dt.timedelta):
        return str(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def result_digest(columns: list[str], rows: list[list[Any]]) -> str:
    """SHA-256 of a result as answered (canonical JSON of its columns and rows)."""
    text = json.dumps(
        {"columns": columns, "rows": rows},
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Runner:
    """A worker's side: answers jobs (the function list asked of DuckDB once)."""

    def __init__(self) -> None:
        self.functions: tuple[frozenset[str], frozenset[str]] | None = None

    def answer(self, job: Job) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            con = open_locked(job.db, memory_limit=job.memory_limit, threads=job.threads)
        except duckdb.Error as exc:
            return _failed("the analyst database could not be opened", exc)
        try:
            if self.functions is None:
                self.functions = (usable_functions(con), function_names(con))
            checked = check(job.sql, Allowed(database_tables(con), *self.functions))
            return self._run(con, checked.sql, job, started)
        except QueryRefused as exc:
            return {"kind": "refused", "reason": exc.reason, "summary": exc.audited}
        except duckdb.InterruptException:
            return {"kind": "interrupted", "elapsed_ms": _ms(started)}
        except duckdb.Error as exc:
            return _failed("the query failed", exc)
        finally:
            con.close()

    @staticmethod
    def _run(con, sql: str, job: Job, started: float) -> dict[str, Any]:
        timer = threading.Timer(max(0.0, job.time_limit_s - (time.perf_counter() - started)),
                                con.interrupt)  # fmt: skip
        timer.daemon = True
        timer.start()
        try:
            cursor = con.execute(sql)
            fetched = cursor.fetchmany(job.max_rows + 1)
            description = cursor.description or []
        finally:
            timer.cancel()
        columns = [str(d[0]) for d in description]
        rows = [[jsonable(v) for v in row] for row in fetched[: job.max_rows]]
        return {
            "kind": "ok",
            "columns": columns,
            "types": [str(d[1]) for d in description],
            "rows": rows,
            "truncated": len(fetched) > job.max_rows,
            "elapsed_ms": _ms(started),
            "result_sha256": result_digest(columns, rows),
        }


def _failed(what: str, exc: Exception) -> dict[str, Any]:
    """A failure's answer: DuckDB's first line for the analyst (``reason``), its kind alone
    for the audit log (``summary``: the message may quote a value the query held)."""
    first = (str(exc).splitlines() or [""])[0][:MAX_ERROR_CHARS]
    summary = f"{what}: {type(exc).__name__}"
    return {"kind": "failed", "reason": f"{summary}: {first}", "summary": summary}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def encoded(answer: dict[str, Any]) -> bytes:
    """``answer`` as one JSON line's bytes; one over :data:`MAX_ANSWER_BYTES` is replaced by
    a failure saying so."""
    data = json.dumps(answer, ensure_ascii=False).encode("utf-8")
    if len(data) <= MAX_ANSWER_BYTES:
        return data
    reason = (f"the result is larger than {MAX_ANSWER_BYTES // 2**20} MiB: select fewer or "
              "narrower rows")  # fmt: skip
    return json.dumps({"kind": "failed", "reason": reason}).encode("utf-8")


_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def address_space_for(memory_limit: str, threads: int) -> int:
    """The address space a worker may map (``RLIMIT_AS``), a backstop behind DuckDB's
    ``memory_limit``, which bounds its buffers but not every allocation (one huge value):
    twice the limit (units read as powers of 1024, the larger reading), 1 GiB for the
    interpreter and DuckDB themselves (a worker runs in ~0.5 GiB of it), 128 MiB a thread.
    Past it DuckDB answers ``OutOfMemoryException`` and the worker lives on."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", memory_limit, re.IGNORECASE)
    if m is None:
        raise ValueError(f"not a memory size: {memory_limit!r}")
    limit = float(m.group(1)) * _UNITS[m.group(2).upper()]
    return int(2 * limit) + 2**30 + max(1, threads) * 128 * 2**20


def main(argv: list[str] | None = None) -> None:
    """The worker's loop: a job a line on stdin, an answer a line on the protocol channel
    (the original stdout; anything else printing goes to stderr). ``argv``: the address
    space it may map, in bytes (``RLIMIT_AS``; none: no limit)."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        resource.setrlimit(resource.RLIMIT_AS, (int(args[0]), int(args[0])))
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    os.nice(NICENESS)
    runner = _Runner()
    channel.write(b'{"kind": "ready"}\n')
    for line in sys.stdin.buffer:
        try:
            answer = runner.answer(Job(**json.loads(line)))
        except Exception as exc:  # the worker outlives any one job: this one failed
            answer = {"kind": "failed", "reason": f"the query failed ({type(exc).__name__})"}
        channel.write(encoded(answer) + b"\n")


# -- the service's side ----------------------------------------------------------------------


class _Worker:
    """One worker process, seen from the service (``address_space``: its ``RLIMIT_AS``)."""

    def __init__(self, address_space: int | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREETHUB_")}
        limit = [str(address_space)] if address_space else []
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "share_api.analysts.worker", *limit],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise WorkerLost(f"a worker could not start ({type(exc).__name__})") from exc
        self._buffer = bytearray()
        ready = self._read(STARTUP_TIMEOUT_S)
        if ready.get("kind") != "ready":
            self.kill()
            raise WorkerLost("a worker started but did not say it was ready")

    def ask(self, job: Job, timeout: float) -> dict[str, Any]:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(asdict(job)).encode("utf-8") + b"\n")
        except (BrokenPipeError, OSError) as exc:
            raise WorkerLost("the worker ended") from exc
        return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while (end := self._buffer.find(b"\n")) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerLost("the worker did not answer in time", timed_out=True)
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise WorkerLost("the worker ended")
                self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class WorkerPool:
    """Up to ``size`` worker processes, started on first use, each mapping at most
    ``address_space`` bytes (:func:`address_space_for`); ``run`` blocks its caller (a
    thread of the service's pool, never the event loop) until the job's answer."""

    def __init__(self, size: int, address_space: int | None = None) -> None:
        self.size = size
        self.address_space = address_space
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self.killed = 0  # workers killed at the time limit (for tests and the curious)

    def run(self, job: Job) -> dict[str, Any]:
        """The job's answer (``kind``: ok, refused, interrupted, failed); :class:`PoolBusy`
        when every worker is running a query; :class:`WorkerLost` when none could start."""
        if not self._slots.acquire(blocking=False):
            raise PoolBusy(f"all {self.size} analyst query workers are busy")
        try:
            worker = self._take()
            try:
                answer = worker.ask(job, job.time_limit_s + GRACE_S)
            except WorkerLost as exc:
                worker.kill()
                self.killed += 1
                threading.Thread(target=self._spare, name="analyst-sql-spare", daemon=True).start()
                if exc.timed_out:
                    return {"kind": "interrupted", "elapsed_ms": job.time_limit_s * 1000}
                return {"kind": "failed", "reason": "the query's worker process ended "
                        "(out of memory?)"}  # fmt: skip
            self._give_back(worker)
            return answer
        finally:
            self._slots.release()

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise PoolBusy("the analyst query workers are stopped")
            if self._idle:
                return self._idle.pop()
        return _Worker(self.address_space)

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.size:
                self._idle.append(worker)
                return
        worker.kill()

    def _spare(self) -> None:
        """A worker started in the background in place of one killed: the next query does
        not wait for an interpreter to start."""
        try:
            worker = _Worker(self.address_space)
        except WorkerLost:
            return  # the next query starts one, or says why it cannot
        self._give_back(worker)

    @property
    def idle(self) -> int:
        """Workers started and waiting for a query."""
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Stop every idle worker (one running a query is stopped when it answers)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


def database_path(path: Path | str) -> str:
    """A database's path as a worker is handed it (absolute: the worker's cwd may differ)."""
    return str(Path(path).resolve())


if __name__ == "__main__":
    main()
