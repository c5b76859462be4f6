"""``lakehouse.processes``: the one rule for a process that left something behind: whether it
is alive, and when it started."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from lakehouse.processes import alive, started_at


def test_this_process_is_alive_and_a_reaped_one_is_not():
    assert alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process (until the kernel hands it out again)
    assert not psutil.pid_exists(child.pid) and not alive(child.pid)


def test_a_zombie_is_not_alive():
    """A child that has exited but is not reaped still has its pid (``psutil.pid_exists`` says
    it exists), and holds nothing: it is not alive."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert psutil.pid_exists(child.pid)
        assert not alive(child.pid)
    finally:
        child.wait()


def test_a_process_start_is_its_own_and_a_gone_one_has_none():
    """``started_at``: a child started now started after this process and within the
    seconds around its start; once reaped it has no start (the pid names nothing)."""
    before = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        started = started_at(child.pid)
        assert started is not None and before - 1 <= started <= time.time() + 1
        assert started >= started_at(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert started_at(child.pid) is None
