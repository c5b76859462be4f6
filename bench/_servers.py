"""The server processes of the service benchmarks (``bench/share.py``): uvicorn children on
free ports of 127.0.0.1, their CPU, and plain HTTP GETs of them."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    log: Path


def _wait_ready(server: Server, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"the {server.name} server exited ({server.proc.returncode}):\n"
                + server.log.read_text(errors="replace")[-3000:]
            )
        with contextlib.suppress(OSError), socket.create_connection((HOST, server.port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the {server.name} server did not listen within {timeout_s:.0f} s")


@contextlib.contextmanager
def serve(name: str, factory: str, env: dict[str, str], logs: Path) -> Iterator[Server]:
    """``uvicorn --factory <factory>``, one worker, uvloop + httptools, no access log."""
    port = free_port()
    log = logs / f"{name}.log"
    cmd = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", HOST]
    cmd += ["--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    cmd += ["--no-access-log", "--log-level", "warning"]
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
    server = Server(name, port, proc, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch(server: Server, target: str, token: str | None = None):
    """GET ``target`` of ``server``: (status, body, media type, seconds). ``http.client``
    reads a body of known length in one piece: on a 54 MB answer ``httpx`` spent 0.45 s
    more of its own (measured here), which would be charged to the service."""
    import http.client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.perf_counter()
    con = http.client.HTTPConnection(HOST, server.port, timeout=600)
    try:
        con.request("GET", target, headers=headers)
        answer = con.getresponse()
        body = answer.read()
    finally:
        con.close()
    media = answer.getheader("content-type", "")
    return answer.status, body, media, time.perf_counter() - started
