"""The benchmarks' measured children report their own peak and CPU, not their parent's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench._spawn import popen, reap

SMALL = [sys.executable, "-c", "pass"]  # an interpreter that holds next to nothing


def test_a_measured_child_peaks_at_its_own_memory_not_its_parents() -> None:
    """While this process holds 300 MB, a child started as subprocess starts one says it
    peaked at 300 MB or more (the premise: the benchmarks' 864.7 MB at every size);
    started by :func:`bench._spawn.popen`, it says its own few MB."""
    held = bytearray(b"\x01") * (300 << 20)  # written: resident, and held meanwhile
    plain = subprocess.Popen(SMALL)
    _, status, usage = os.wait4(plain.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert usage.ru_maxrss >> 10 >= 300  # this process's high water, carried in

    child = popen(SMALL)
    code, cpu, peak = reap(child)
    del held
    assert (code, child.returncode) == (0, 0)
    assert 0 < peak < 100 and 0 < cpu < 5


def test_a_measured_child_keeps_its_streams_place_env_and_exit_code(tmp_path: Path) -> None:
    """The command gets the working directory, environment and output given to popen, its
    exit code comes back, and its CPU is its own: a child that spins 0.3 CPU s says so."""
    script = (
        "import os, sys, time\n"
        "until = time.process_time() + 0.3\n"
        "while time.process_time() < until: pass\n"
        "print(os.getcwd(), os.environ['SPAWN_PROBE'])\n"
        "print('to stderr', file=sys.stderr)\n"
        "raise SystemExit(3)\n"
    )
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as o, err.open("wb") as e:
        child = popen(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env={**os.environ, "SPAWN_PROBE": "here"},
            stdout=o,
            stderr=e,
        )
        usage = reap(child)
    assert usage.code == 3 == child.returncode
    assert 0.3 <= usage.cpu < 3
    assert out.read_text().split() == [str(tmp_path), "here"]
    assert err.read_text().strip() == "to stderr"


def test_a_measured_child_read_through_a_pipe() -> None:
    """What the command prints can be read from a pipe before it is reaped (the reader
    benchmark reads its child's figures so)."""
    child = popen([sys.executable, "-c", "print('figures 1 2')"], stdout=subprocess.PIPE)
    printed = child.stdout.read()
    child.stdout.close()
    assert reap(child).code == 0
    assert printed.split() == [b"figures", b"1", b"2"]


def test_a_child_left_behind_by_the_command_does_not_hold_the_report() -> None:
    """The report comes when the command ends, though a process it started lives on (it
    never gets the report's pipe)."""
    linger = "import time; time.sleep(6)"
    script = (  # the lingering child given every inheritable descriptor of the command's
        "import subprocess, sys; "
        f"subprocess.Popen([sys.executable, '-c', {linger!r}], close_fds=False)"
    )
    started = time.perf_counter()
    assert reap(popen([sys.executable, "-c", script])).code == 0
    assert time.perf_counter() - started < 4


def test_a_measured_command_does_not_ignore_the_signals_python_ignores() -> None:
    """SIGPIPE (which the launcher's interpreter ignores in itself) has its default in the
    command, as in a child of subprocess: a shell's ignored signals leave it out."""
    ignored = popen(["sh", "-c", "grep SigIgn /proc/self/status"], stdout=subprocess.PIPE)
    mask = int(ignored.stdout.read().split()[1], 16)
    ignored.stdout.close()
    assert reap(ignored).code == 0
    assert not mask & (1 << (signal.SIGPIPE - 1))


def test_a_run_measured_gives_its_output_and_its_errors_tail_or_raises(tmp_path: Path) -> None:
    """:func:`bench._spawn.run_measured`, which every benchmark's measured command goes
    through: its stdout, exit code and own CPU; an allowed failure keeps stderr's tail
    (what a run that reported failures of the data said); another exit code raises with
    that tail and the command's name."""
    from bench._spawn import run_measured

    script = (
        "import sys\n"
        "print('summary line')\n"
        "sys.stderr.write('x' * 5000 + 'the last words\\n')\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    ok = run_measured([sys.executable, "-c", script, "0"], "the ok run", cwd=tmp_path)
    assert (ok.out, ok.code, ok.err_tail) == ("summary line\n", 0, "")
    assert ok.wall > 0 and 0 < ok.cpu < 5 and 0 < ok.peak_mb < 100
    allowed = run_measured([sys.executable, "-c", script, "1"], "the run", (0, 1))
    assert allowed.code == 1 and allowed.out == "summary line\n"
    assert allowed.err_tail.endswith("the last words\n") and len(allowed.err_tail) == 4000
    with pytest.raises(RuntimeError, match=r"^the failing run failed with exit code 2:") as exc:
        run_measured([sys.executable, "-c", script, "2"], "the failing run", (0, 1))
    assert str(exc.value).endswith("the last words\n")
