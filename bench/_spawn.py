"""Children whose CPU time and peak RSS are their own, measured from ``os.wait4``.

A child's ``ru_maxrss`` starts from its parent: Linux gives a process started by vfork
(what ``subprocess`` and ``posix_spawn`` use wherever they may) the most its parent ever
held, and a forked one what its parent holds at the fork. The ingest benchmark of
2026-12-07, whose process had grown to ~865 MB somewhere between its sampled run and its
growth runs, measured every later child at 864.7 MB: the 10,000- and 50,000-resident
runs and the scorecard alone, at all three sizes, alike to the tenth.

So a measured child is started by a launcher: a bare interpreter (a few MB, whatever
the benchmark holds) that starts the command, waits for it and writes its status, CPU
seconds and peak to a pipe of the benchmark's. The command inherits the launcher's
working directory, environment and standard streams, which are the ones given to
:func:`popen`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any, NamedTuple

_LAUNCHER = """
import os, signal, sys
report, cmd = int(sys.argv[1]), sys.argv[2:]
os.set_inheritable(report, False)  # the command's own children never hold the report open
# the signals Python ignores in itself, given back their defaults, as subprocess does
default = [getattr(signal, n) for n in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, n)]
pid = os.posix_spawnp(cmd[0], cmd, os.environ, setsigdef=default)
_, status, usage = os.wait4(pid, 0)
os.write(report, f"{status} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}".encode())
"""


class Usage(NamedTuple):
    """What a child that ended cost: its exit code, CPU seconds (user + system) and peak
    RSS in MB (its own and its children's)."""

    code: int
    cpu: float
    peak_mb: float


class Measured(subprocess.Popen):
    """A launcher's process (:func:`popen`), with the pipe its report comes through."""

    report: int


def popen(cmd: list[str], **kwargs: Any) -> Measured:
    """``subprocess.Popen(cmd, **kwargs)`` through a launcher (see the module's docstring);
    reap it with :func:`reap`."""
    read, write = os.pipe()
    try:
        proc = Measured(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(write), *cmd],
            pass_fds=(write,),
            **kwargs,
        )
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    proc.report = read
    return proc


def reap(proc: Measured) -> Usage:
    """Wait for ``proc`` to end: the command's :class:`Usage` (its exit code also set as
    ``proc``'s return code)."""
    proc.wait()
    with os.fdopen(proc.report, "rb") as report:
        said = report.read().split()
    if len(said) != 3:
        raise RuntimeError(f"the launcher of {proc.args[6:]} failed (exit code {proc.returncode})")
    status, cpu, peak_kb = int(said[0]), float(said[1]), int(said[2])
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Usage(proc.returncode, cpu, peak_kb / 1024)


class Child(NamedTuple):
    """What one measured command did: its stdout, wall and CPU seconds, peak RSS in MB, exit
    code, and the last lines of its stderr where its exit code was not 0."""

    out: str
    wall: float
    cpu: float  # user + system seconds of the command (and of children it waited for)
    peak_mb: float
    code: int
    err_tail: str = ""


def run_measured(cmd: list[str], what: str, ok: tuple[int, ...] = (0,), **kwargs: Any) -> Child:
    """Run ``cmd`` through a launcher (``kwargs``: :func:`popen`'s, stdout and stderr taken
    here) and measure it: a :class:`Child`. An exit code not in ``ok`` raises, with the
    tail of stderr; ``what`` names the command there. On a shared machine trust CPU seconds
    and peak RSS over wall time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        code, cpu, peak = reap(popen(cmd, stdout=out, stderr=err, **kwargs))
        wall = time.perf_counter() - started
        err_tail = ""
        if code != 0:
            err.seek(0)
            err_tail = err.read().decode(errors="replace")[-4000:]
        if code not in ok:
            raise RuntimeError(f"{what} failed with exit code {code}:\n{err_tail}")
        out.seek(0)
        text = out.read().decode(errors="replace")
    return Child(text, wall, cpu, peak, code, err_tail)
